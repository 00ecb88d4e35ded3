"""The GraphQL gateway: schema, resolvers, errors, health. `create_app` and
`GatewayRuntime` (gateway.app) are what the Serve deployment uses."""
