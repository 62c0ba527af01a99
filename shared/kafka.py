"""Kafka client factories with the reliability settings of DESIGN.md §3 baked in."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer


def create_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer that waits for all in-sync replicas (`acks=all`).

    Built here, not at import time; the caller's lifespan starts and stops it. `request_timeout_ms`
    bounds a send, so a dead broker surfaces as an error instead of a hang.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "max_request_size": 2 * 1024 * 1024,
        "request_timeout_ms": 10_000,
        "retry_backoff_ms": 100,
        "compression_type": None,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)
