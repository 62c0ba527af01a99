"""The rewards service's environment settings (`USEROPS_*`); rules live in config/rewards.yaml."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr

from shared import topics
from shared.config import BaseServiceSettings, DedupeRetention


class RewardsSettings(BaseServiceSettings):
    rewards_host: str = "127.0.0.1"
    rewards_port: int = 8002
    rewards_config: Path | None = None  # default: <config_dir>/rewards.yaml
    rewards_database: str = "rewards"
    rewards_database_url: str | None = None  # overrides host/port/database when set
    rewards_group: str = "rewards"
    rewards_instance_id: str | None = None  # stable per replica (e.g. the pod name): fast restarts
    rewards_max_batch: int = Field(default=1000, ge=1, le=10_000)
    # Event batches in flight at once (each from its own share of the partitions).
    rewards_lanes: int = Field(default=2, ge=1, le=16)
    rewards_timer_workers: int = Field(default=1, ge=1, le=16)
    rewards_timer_batch: int = Field(default=500, ge=1, le=10_000)
    rewards_session_timeout_ms: int = Field(default=30_000, ge=6_000, le=300_000)
    # How often the budget gauges are refreshed from the store.
    rewards_metrics_every: float = Field(default=15.0, gt=0)
    # How long processed input ids are remembered (dedupe). Must be at least the consumed topics'
    # retention (checked against the broker at start): ISO-8601 ("P7D"), seconds, or "forever".
    rewards_dedupe_retention: DedupeRetention = timedelta(days=7)
    admin_token: SecretStr
    events_topic: str = topics.EVENTS
    lifecycle_topic: str = topics.LIFECYCLE
    rewards_topic: str = topics.REWARDS
    deadletter_topic: str = topics.DEADLETTER

    @property
    def config_path(self) -> Path:
        return self.rewards_config or self.config_dir / "rewards.yaml"

    @property
    def db_url(self) -> str:
        return self.rewards_database_url or self.database_url(self.rewards_database)
