"""Every SQL statement of Nova's domain, one module per aggregate. A repository owns its
queries and the transactions that write a change together with its outbox rows; the
services above choose the events and decide who may do what."""
