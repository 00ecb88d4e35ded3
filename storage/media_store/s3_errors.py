"""botocore's and aiohttp's errors as Nova's, in one place (`mapped`).

What the gateway and tasks decide on: `NotFound` (a missing key or object), `Unavailable`
(retriable: the store is unreachable, timed out or overloaded), `ConfigError` (an operator
must act: no such bucket, refused credentials). Anything else is a `StorageError`. The
driver's text goes to the debug log and the `__cause__`, not into Nova's message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from boto3.exceptions import S3UploadFailedError
from botocore import exceptions as boto

from storage.errors import ConfigError, NotFound, NovaError, StorageError, Unavailable
from storage.media_store.keys import RangeNotSatisfiable

log = logging.getLogger(__name__)

PART = "media store"
MISSING = frozenset({"NoSuchKey", "NotFound", "404"})
_REFUSED = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"}
)
_BUSY = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})
# The store cannot be reached, or stopped answering, or cut the answer short.
_OUTAGES = (
    boto.ConnectionError,
    boto.HTTPClientError,
    boto.IncompleteReadError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


def error_code(exc: boto.ClientError) -> str:
    """The S3 error code (`NoSuchKey`), or the HTTP status for bodiless answers (HEAD)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Run S3 calls, raising what fails as Nova's error; Nova's own errors pass as they
    are. `what` names the operation and key for the message (`"get <id>/large.webp"`)."""
    try:
        yield
    except NovaError:
        raise
    except S3UploadFailedError as exc:  # boto3's upload_file wraps the ClientError
        cause = exc.__context__
        if isinstance(cause, boto.ClientError):
            raise from_client_error(cause, what) from exc
        raise StorageError(f"{PART}: {what}: {exc}") from exc
    except boto.ClientError as exc:
        raise from_client_error(exc, what) from exc
    except (boto.NoCredentialsError, boto.PartialCredentialsError) as exc:
        raise ConfigError(
            f"no credentials for the media store ({what}): set NOVA_MEDIA_S3_ACCESS_KEY and "
            "NOVA_MEDIA_S3_SECRET_KEY, or AWS's own variables"
        ) from exc
    except _OUTAGES as exc:
        log.debug("media store: %s: %s: %s", what, type(exc).__name__, exc)
        raise Unavailable(PART, f"{what}: {type(exc).__name__}") from exc
    except boto.BotoCoreError as exc:
        raise StorageError(f"{PART}: {what}: {type(exc).__name__}: {exc}") from exc


def from_client_error(exc: boto.ClientError, what: str) -> NovaError:
    log.debug("media store: %s: %s", what, exc)
    code = error_code(exc)
    if code == "InvalidRange":
        return RangeNotSatisfiable(f"{what}: the range starts past the end", _size_told(exc))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return from_code(code, status, what)


def from_code(code: str, status: int, what: str) -> NovaError:
    """Nova's error for an S3 error code (and the HTTP status it came with, if any)."""
    if code in MISSING:
        return NotFound(f"{what}: no such object")
    if code == "NoSuchBucket":
        return ConfigError(f"{what}: the media store's bucket does not exist (see ensure_bucket)")
    if code in _REFUSED:
        return ConfigError(f"{what}: the media store refused Nova's credentials ({code})")
    if code in _BUSY or status >= 500 or code.startswith("5"):
        return Unavailable(PART, f"{what}: {code or status}")
    return StorageError(f"{PART}: {what}: {code or status}")


def _size_told(exc: boto.ClientError) -> int:
    """The object size S3 puts in an InvalidRange answer; -1 where a server does not."""
    told = str(exc.response.get("Error", {}).get("ActualObjectSize", ""))
    return int(told) if told.isdigit() else -1
