"""The GraphQL gateway, one layer per subpackage:

- `transport`: HTTP and WebSocket, documents, persisted queries, admission, drain, health,
  metrics and tracing;
- `auth`: accounts, sessions, tokens, revocation and passwords;
- `limits`: what a document may cost, and rate limits;
- `schema`: the GraphQL types and operations, one module per domain;
- `services`: the domain services resolvers call (authorization, caching, which events
  to emit); their SQL lives in `storage`.

`create_app` (gateway.app) and `GatewayRuntime` (gateway.runtime) are what the Serve
deployment uses.
"""
