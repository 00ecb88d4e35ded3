#!/usr/bin/env bash
# Regenerate nova_ranking_pb2.py, nova_ranking_pb2.pyi and nova_ranking_pb2_grpc.py from
# nova_ranking.proto. grpcio-tools is a build tool, not a runtime dependency: it is installed
# into a throwaway venv (GRPC_TOOLS_VENV, default /tmp/nova-grpcio-tools), never into the
# project's venv. Its version must match grpcio's, and its bundled protoc (libprotoc 35.1 for
# 1.85.1 -> gencode 7.35.1) must not be newer than the installed protobuf runtime (7.36.2).
set -euo pipefail
GRPC_TOOLS_VERSION=1.85.1
venv="${GRPC_TOOLS_VENV:-/tmp/nova-grpcio-tools}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if ! "$venv/bin/python" -c "import grpc_tools" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "grpcio-tools==$GRPC_TOOLS_VERSION"
fi

cd "$root"
# Include root = the repo root, so the generated _grpc module imports
# `from ranking.proto import nova_ranking_pb2` (works as ranking.proto.*, no sed needed).
"$venv/bin/python" -m grpc_tools.protoc -I . \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    ranking/proto/nova_ranking.proto

# Generated code: keep ruff (lint and format) and strict mypy off it. Without types-protobuf,
# mypy --strict flags the .pyi's google.protobuf imports; callers still get its field types.
for f in ranking/proto/nova_ranking_pb2.py ranking/proto/nova_ranking_pb2.pyi \
         ranking/proto/nova_ranking_pb2_grpc.py; do
    { printf '# ruff: noqa\n# mypy: ignore-errors\n# fmt: off\n'; cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
done
