"""gRPC contract of Nova ranking: the `nova.ranking.v1` Ranker and FeatureStore services.

`nova_ranking.proto` is the source. `nova_ranking_pb2.py`, `nova_ranking_pb2.pyi` and
`nova_ranking_pb2_grpc.py` are GENERATED from it by grpcio-tools 1.85.1 (bundled protoc
libprotoc 35.1, gencode 7.35.1, which runs on the protobuf 7.x runtime >= 7.35.1 and on
grpcio >= 1.85.1): do not edit them. After changing the .proto, regenerate from the repo root:

    bash ranking/proto/generate.sh

which installs grpcio-tools==1.85.1 into a throwaway venv (/tmp/nova-grpcio-tools, or
$GRPC_TOOLS_VENV) and runs

    python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \\
        ranking/proto/nova_ranking.proto

Import them as `from ranking.proto import nova_ranking_pb2, nova_ranking_pb2_grpc`.
"""
