"""Ingest's adapters to the outside world: the Kafka publisher."""
