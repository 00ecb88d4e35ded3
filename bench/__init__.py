"""Benchmark scenarios. Each runs against the dev stack (`nova up`) and reports, as one JSON
document, its numbers next to a baseline measured in the same run and their ratios.

    python -m bench.outbox      outbox -> relay -> Kafka -> consumer vs. direct aiokafka
"""
