"""The GraphQL schema, one module per domain; `schema` is the one the gateway serves."""

from gateway.schema.root import build_schema, schema

__all__ = ["build_schema", "schema"]
