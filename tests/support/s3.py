"""A real S3-API server for tests: moto's standalone server, in its own process on a free
loopback port, once per session.

Tests talk to it over HTTP exactly as Nova talks to S3, so request signing, ranges,
multipart uploads and presigned URLs go through real sockets. moto keeps everything in
memory and accepts any credentials; it does not verify signatures. A server that does not
start fails the tests that need it, with its log.

Use it by importing the fixture into a test module (`from tests.support.s3 import
s3_server`), or for every module by naming this module in the root conftest:
`pytest_plugins = ["tests.support.s3"]`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
# Loopback is asked directly, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    log_file: Path
    access_key: str = "nova-test-access"
    secret_key: str = "nova-test-secret"

    def location(self, bucket: str, prefix: str = "") -> str:
        """The `NOVA_MEDIA_STORE` URL of a bucket (and prefix) on this server."""
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}"

    def client(self) -> Any:
        """A plain boto3 client, for looking behind a store's back."""
        return boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        ).client("s3", endpoint_url=self.endpoint)


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def unique_bucket(name: str) -> str:
    """A bucket name no other test has used on this server."""
    return f"{name}-{uuid.uuid4().hex[:12]}"


def start_moto(log_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto's server and wait (at most `START_TIMEOUT_S`) until it answers S3's
    ListBuckets; returns the process and its endpoint."""
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_until_answers(process, endpoint, log_file)
    except BaseException:
        stop(process)
        raise
    return process, endpoint


def _wait_until_answers(process: subprocess.Popen[bytes], endpoint: str, log_file: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"moto's server exited ({process.returncode}) at start:\n{_tail(log_file)}"
            )
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            _DIRECT.open(f"{endpoint}/", timeout=1.0) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(
        f"moto's server did not answer at {endpoint} within {START_TIMEOUT_S:.0f}s:\n"
        + _tail(log_file)
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


def _tail(log_file: Path, lines: int = 30) -> str:
    if not log_file.exists():
        return "(no log)"
    return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    log_file = tmp_path_factory.mktemp("moto") / "moto.log"
    process, endpoint = start_moto(log_file)
    try:
        yield S3Server(endpoint=endpoint, log_file=log_file)
    finally:
        stop(process)
