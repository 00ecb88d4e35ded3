"""A failed operation is logged by its name, type and trace id: the secrets a client wrote
into the document (passwords, reset and refresh tokens) never reach the replicas' logs."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from deployments.stack import Stack
from storage.tracing import trace_id_of

pytestmark = pytest.mark.stack

WAIT_S = 30.0


def _holding(logs: Path, needle: str) -> list[Path]:
    found = []
    for path in logs.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_text(errors="replace"):
                    found.append(path)
            except OSError:  # rotated away while we read
                continue
    return found


async def _send(http_url: str, query: str) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{http_url}/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    assert response.json()["errors"], response.text
    trace = trace_id_of(response.headers["traceparent"])
    assert trace is not None
    return trace


@pytest.mark.parametrize(
    "operation",
    [
        'mutation SignIn {{ login(input: {{login: "nobody_{tag}", password: "{secret}"}}) '
        "{{ accessToken }} }}",
        'mutation {{ resetPassword(token: "{secret}", newPassword: "{secret}") }}',
        'mutation Refresh {{ refreshToken(refreshToken: "{secret}") {{ accessToken }} }}',
    ],
)
async def test_a_failed_operation_is_logged_without_its_arguments(
    http_url: str, stack: Stack, operation: str
) -> None:
    secret = f"SECRET-{uuid.uuid4().hex}"
    trace = await _send(http_url, operation.format(secret=secret, tag=uuid.uuid4().hex[:8]))
    logs = Path(stack.layout.path("ray", "session_latest", "logs"))
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        leaked = _holding(logs, secret)
        assert not leaked, f"the secret reached {[str(path) for path in leaked]}"
        if _holding(logs, trace):
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"the failed operation (trace {trace}) was never logged")
    assert not _holding(logs, secret)
