"""Where the local stack lives and which ports it uses (`USEROPS_*` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from scripts.stack.kafka import REPO_ROOT, KafkaNode
from scripts.stack.postgres import PostgresNode


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="USEROPS_", frozen=True, extra="ignore")

    home: Path = REPO_ROOT / ".local"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    # USEROPS_KAFKA_DURABLE=1: the broker fsyncs every batch before acknowledging it.
    kafka_durable: bool = False
    pg_port: int = 5432
    topic_partitions: int = 12
    ingest_port: int = 8000
    segmenter_port: int = 8001
    rewards_port: int = 8002
    notifier_port: int = 8003
    # Segmenter processes on this machine (`make run SEGMENTER_PROCESSES=2`): one consumer group,
    # the partitions shared out, each process with its own instance id and HTTP port.
    segmenter_processes: int = Field(
        default=1,
        ge=1,
        le=12,
        validation_alias=AliasChoices("USEROPS_SEGMENTER_PROCESSES", "SEGMENTER_PROCESSES"),
    )

    @property
    def kafka(self) -> KafkaNode:
        return KafkaNode(
            home=self.home / "kafka" / "node",
            libs=self.home / "kafka" / "libs",
            port=self.kafka_port,
            controller_port=self.kafka_controller_port,
            durable=self.kafka_durable,
        )

    @property
    def postgres(self) -> PostgresNode:
        return PostgresNode(home=self.home / "postgres", port=self.pg_port)
