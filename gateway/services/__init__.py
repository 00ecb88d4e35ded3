"""The gateway's domain services: one per aggregate, called by the schema's resolvers.

A service decides who may do what, what is cached and which events a change emits; the
SQL and the transaction with its outbox rows live in `storage`.
"""
