"""Where an S3 media store is and how Nova talks to it: the `s3://` URL and the client
configuration both the async (aioboto3) and the sync (boto3) clients are made with.

`s3://bucket[/prefix]?endpoint=http://127.0.0.1:9000&region=eu-west-1&path_style=1`: the
bucket, an optional key prefix (several Novas may share a bucket), and for S3-compatible
servers (MinIO, Ceph, moto) the endpoint; without one, AWS's own for the region.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.config import Config

from storage.errors import ConfigError

SCHEME = "s3://"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""  # "" or ends with "/"
    endpoint: str | None = None
    region: str = "us-east-1"
    path_style: bool | None = None  # None: botocore decides (path style on an endpoint)

    @classmethod
    def parse(cls, url: str, *, region: str = "us-east-1") -> S3Location:
        """The location an `s3://` URL names; `region` unless the URL has its own.
        `ConfigError` (naming what is wrong) for anything else."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"a media store URL is s3://bucket[/prefix][?endpoint=…]: {url!r}")
        if not _BUCKET.match(parts.netloc):
            raise ConfigError(f"not an S3 bucket name: {parts.netloc!r} (in {url!r})")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = sorted(set(query) - {"endpoint", "region", "path_style"})
        if unknown:
            raise ConfigError(f"unknown media store URL options {unknown} in {url!r}")
        endpoint = query.get("endpoint")
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"the media store's endpoint must be an http(s) URL: {endpoint!r}")
        prefix = parts.path.strip("/")
        return cls(
            bucket=parts.netloc,
            prefix=f"{prefix}/" if prefix else "",
            endpoint=endpoint,
            region=query.get("region", region),
            path_style=_flag(query["path_style"]) if "path_style" in query else None,
        )

    def name(self, key: str) -> str:
        """The object name of a media key."""
        return self.prefix + key

    def upload_origins(self) -> tuple[str, ...]:
        """Where a browser PUTs to by a presigned URL (for the pages' `connect-src`): the
        endpoint, path style or virtual-hosted, or AWS's regional names for the bucket."""
        if self.endpoint is None:
            return (
                f"https://{self.bucket}.s3.{self.region}.amazonaws.com",
                f"https://s3.{self.region}.amazonaws.com",
            )
        parts = urlsplit(self.endpoint)
        return (
            f"{parts.scheme}://{parts.netloc}",
            f"{parts.scheme}://{self.bucket}.{parts.netloc}",
        )

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (
            f" at {self.endpoint}" if self.endpoint else ""
        )


@dataclass(frozen=True)
class S3Limits:
    """Bounds on every call: a store that does not answer costs a request seconds, not a
    hung replica. `max_attempts` counts the first try."""

    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    max_attempts: int = 2
    max_connections: int = 50  # per client: concurrent downloads each hold one

    def __post_init__(self) -> None:
        if self.connect_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("S3 timeouts must be > 0")
        if self.max_attempts < 1 or self.max_connections < 1:
            raise ValueError("S3 max_attempts and max_connections must be >= 1")


def client_options(location: S3Location, limits: S3Limits) -> dict[str, Any]:
    """Keyword arguments for `session.client("s3", **…)`, the same for both clients."""
    config = Config(
        signature_version="s3v4",  # presigned URLs then sign their headers (not SigV2)
        connect_timeout=limits.connect_timeout_s,
        read_timeout=limits.read_timeout_s,
        retries={"total_max_attempts": limits.max_attempts, "mode": "standard"},
        max_pool_connections=limits.max_connections,
        # Checksums only where S3 requires them: S3-compatible servers disagree on the
        # newer defaults, and a presigned PUT must not carry a checksum of no body.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3=_addressing(location.path_style),
    )
    return {
        "service_name": "s3",
        "region_name": location.region,
        "endpoint_url": location.endpoint,
        "config": config,
    }


def _addressing(path_style: bool | None) -> dict[str, str]:
    if path_style is None:
        return {"addressing_style": "auto"}
    return {"addressing_style": "path" if path_style else "virtual"}


def _flag(text: str) -> bool:
    try:
        return _FLAGS[text.strip().lower()]
    except KeyError:
        raise ConfigError(f"path_style must be 1 or 0, got {text!r}") from None
