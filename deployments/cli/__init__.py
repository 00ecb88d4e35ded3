"""The `nova` command: run the stack, deploy, operate the outbox and the dead-letter queue,
ship ranking models.

nova up                      start the embedded stack (or use the URLs set) and deploy
nova stop                    stop what `nova up` started
nova status [--json|--watch] parts, Serve, shards, consumers' lag, outbox, workers
nova top [--once]            the same, live in the terminal, with rates
nova deploy                  deploy to the Ray cluster at RAY_ADDRESS (cluster.yaml)
nova test [PYTEST ARGS]      lint, type-check and run the whole suite on a test stack
nova config                  every setting: variable, default, meaning
nova schema [--check]        write (or check) schema.graphql, the served GraphQL schema
nova db migrate              apply pending migrations
nova outbox replay --since T re-send events committed since T (consumers dedupe)
nova dlq list | replay       inspect and replay dead letters
nova keys rotate             add a JWT signing key
nova users grant | revoke USER ROLE   give an account a role, or take it (audited)
nova audit [--json]          the audit log: moderation actions and role changes
nova queries add FILE...     register documents for persisted-query-only mode
nova models ...              register, list, route, roll back, report, evaluate and train
nova features rebuild        recompute the online ranking features
nova demo seed               a synthetic community through the API (and visits to learn from)

`parser` builds the command line; the command bodies live in `stack`, `status`, `top`,
`operations`, `models`, `audit` and `demo`.
"""

from deployments.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
