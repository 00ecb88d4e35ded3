"""Ray's mutual TLS and the gRPC ingress's TLS on an embedded stack with TLS on
(`NOVA_TLS`): a driver with the stack's certificate runs tasks and actors; one without it,
or with another CA's, never connects; Serve's HAProxy answers gRPC over TLS only, and the
ranking service still wants its token.

A throwaway stack of its own (`tests.support.tls`): PostgreSQL, Redis and a Ray head on a
port base and in a temp dir of its own. Drivers run as subprocesses: this process may be
connected to the session's test stack already, and Ray allows one cluster per process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from deployments.stack import Stack
from deployments.stack.certs import TlsDir, create, stack_tls_dir
from ranking.proto import nova_ranking_pb2 as pb
from ranking.proto import nova_ranking_pb2_grpc as pbg
from tests.support.tls import UNUSED_KAFKA, UNUSED_SMTP, tls_stack

REPO = Path(__file__).resolve().parents[2]
# A certificate that does not fit makes `ray.init` hang rather than fail: a driver that has
# not connected by then never will.
REFUSED_WITHIN_S = 30.0
DEPLOY_TIMEOUT_S = 240.0
GRPC_READY_S = 90.0

DRIVER = """
import os, ray
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)

@ray.remote
def square(x):
    return x * x

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n

assert ray.get(square.remote(7), timeout=60) == 49
counter = Counter.remote()
assert ray.get(counter.add.remote(5), timeout=60) == 5
print("DRIVER OK", flush=True)
"""

DEPLOY_RANKING = """
import os, ray
from ray import serve
from ray.serve.config import gRPCOptions
from deployments.app import GRPC_SERVICERS, RANKING_APP, RANKING_ROUTE
from deployments.ranking import build_ranking_app
from deployments.settings import Settings

settings = Settings.from_env()
ray.init(address=os.environ["RAY_ADDRESS"], namespace="nova", log_to_driver=False)
serve.start(
    http_options={"host": "127.0.0.1", "port": settings.http_port},
    grpc_options=gRPCOptions(port=settings.grpc_port, grpc_servicer_functions=GRPC_SERVICERS),
)
serve.run(build_ranking_app(settings), name=RANKING_APP, route_prefix=RANKING_ROUTE)
print("DEPLOYED", flush=True)
"""


@pytest.fixture(scope="module")
def started() -> Iterator[tuple[Stack, dict[str, str]]]:
    with tls_stack("ray", NOVA_KAFKA_BOOTSTRAP=UNUSED_KAFKA, NOVA_SMTP_URL=UNUSED_SMTP) as (
        stack,
        env,
    ):
        yield stack, env


def _run(code: str, env: dict[str, str], timeout_s: float) -> tuple[bool, str]:
    """Run `code` in a fresh interpreter; (finished in time, its output). One still
    running at `timeout_s` is killed with everything it started."""
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
        return True, output
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=10)
        return False, output


def test_the_stack_runs_ray_with_mutual_tls(started: tuple[Stack, dict[str, str]]) -> None:
    stack, env = started
    tls = stack_tls_dir(stack.layout)
    assert env["RAY_USE_TLS"] == "1"
    assert env["RAY_TLS_CA_CERT"] == str(tls.ca_cert)
    assert env["RAY_TLS_SERVER_CERT"] == str(tls.node().cert)
    stored = stack.layout.env_file.read_text()  # what `nova` commands connect with
    assert "RAY_USE_TLS=1\n" in stored


def test_a_driver_with_the_stacks_certificate_runs_tasks_and_actors(
    started: tuple[Stack, dict[str, str]],
) -> None:
    finished, output = _run(DRIVER, started[1], timeout_s=120)
    assert finished, f"the driver did not finish within 120 s:\n{output[-3000:]}"
    assert "DRIVER OK" in output, output[-3000:]


def test_a_plaintext_driver_never_connects(started: tuple[Stack, dict[str, str]]) -> None:
    env = {k: v for k, v in started[1].items() if not k.startswith("RAY_TLS_")}
    env["RAY_USE_TLS"] = "0"
    _, output = _run(DRIVER, env, timeout_s=REFUSED_WITHIN_S)
    assert "DRIVER OK" not in output, output[-3000:]


def test_a_driver_with_another_cas_certificate_never_connects(
    started: tuple[Stack, dict[str, str]], tmp_path: Path
) -> None:
    other = TlsDir(tmp_path / "other")
    create(other, {"local": ("127.0.0.1", "localhost")})
    env = {
        **started[1],
        "RAY_TLS_SERVER_CERT": str(other.node().cert),
        "RAY_TLS_SERVER_KEY": str(other.node().key),
        "RAY_TLS_CA_CERT": str(other.ca_cert),
    }
    _, output = _run(DRIVER, env, timeout_s=REFUSED_WITHIN_S)
    assert "DRIVER OK" not in output, output[-3000:]


@pytest.fixture(scope="module")
def grpc_ingress(started: tuple[Stack, dict[str, str]]) -> tuple[str, str, bytes]:
    """The ranking application deployed on the TLS stack: (address, token, CA)."""
    stack, env = started
    layout = stack.layout
    deploy_env = {
        **env,
        "NOVA_HTTP_PORT": str(layout.http_port),
        "NOVA_GRPC_PORT": str(layout.grpc_port),
    }
    finished, output = _run(DEPLOY_RANKING, deploy_env, timeout_s=DEPLOY_TIMEOUT_S)
    assert finished, f"deploying took over {DEPLOY_TIMEOUT_S:.0f} s:\n{output[-3000:]}"
    assert "DEPLOYED" in output, output[-3000:]
    address, token = f"127.0.0.1:{layout.grpc_port}", env["NOVA_GRPC_TOKEN"]
    ca = stack_tls_dir(layout).ca_cert.read_bytes()
    deadline = time.monotonic() + GRPC_READY_S
    with _tls_channel(address, ca) as channel:
        while True:  # HAProxy learns of the replicas a moment after the deploy
            try:
                _features(channel, _metadata(token))
                break
            except grpc.RpcError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no answer over TLS within {GRPC_READY_S} s") from exc
                time.sleep(1)
    return address, token, ca


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("application", "ranking"), ("authorization", f"Bearer {token}"))


def _features(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> pb.FeaturesResponse:
    stub = pbg.FeatureStoreStub(channel)  # type: ignore[no-untyped-call]  # generated
    request = pb.FeaturesRequest(viewer_id=str(uuid.uuid4()), post_ids=[str(uuid.uuid4())])
    reply: pb.FeaturesResponse = stub.GetFeatures(request, metadata=metadata, timeout=10)
    return reply


def _tls_channel(address: str, ca: bytes) -> grpc.Channel:
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))


def test_grpc_over_tls_with_the_token_is_answered(grpc_ingress: tuple[str, str, bytes]) -> None:
    address, token, ca = grpc_ingress
    with _tls_channel(address, ca) as channel:
        reply = _features(channel, _metadata(token))
    assert (reply.rows, reply.columns) == (1, len(reply.feature_names))
    assert reply.columns > 0


def test_grpc_without_the_token_is_refused(grpc_ingress: tuple[str, str, bytes]) -> None:
    address, _, ca = grpc_ingress
    with _tls_channel(address, ca) as channel, pytest.raises(grpc.RpcError) as refused:
        _features(channel, (("application", "ranking"),))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_plaintext_grpc_is_refused(grpc_ingress: tuple[str, str, bytes]) -> None:
    address, token, _ = grpc_ingress
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as refused:
        _features(channel, _metadata(token))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_to_a_server_of_another_ca_is_refused(
    grpc_ingress: tuple[str, str, bytes], tmp_path: Path
) -> None:
    address, token, _ = grpc_ingress
    other = TlsDir(tmp_path / "other")
    create(other, {"local": ("127.0.0.1",)})
    with (
        _tls_channel(address, other.ca_cert.read_bytes()) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        _features(channel, _metadata(token))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
