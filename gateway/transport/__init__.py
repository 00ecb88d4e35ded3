"""How requests reach the schema: GraphQL over HTTP and WebSocket, parsed documents,
persisted queries, admission and drain, health, metrics and trace context."""
