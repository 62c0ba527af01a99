"""The segmenter's environment settings (`USEROPS_*`); rules live in config/segmenter.yaml."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr

from shared import topics
from shared.config import BaseServiceSettings, DedupeRetention


class SegmenterSettings(BaseServiceSettings):
    segmenter_host: str = "127.0.0.1"
    segmenter_port: int = 8001
    segmenter_config: Path | None = None  # default: <config_dir>/segmenter.yaml
    segmenter_database: str = "segmenter"
    segmenter_database_url: str | None = None  # overrides host/port/database when set
    segmenter_group: str = "segmenter"
    segmenter_max_batch: int = Field(default=1000, ge=1, le=10_000)
    segmenter_timer_batch: int = Field(default=2000, ge=1, le=20_000)
    segmenter_timer_workers: int = Field(default=2, ge=1, le=16)
    # Event batches in flight at once (each from its own share of the partitions), so one
    # batch's database round trips overlap another's Python work.
    segmenter_lanes: int = Field(default=2, ge=1, le=16)
    # How often the business gauges (users per stage, segment sizes) are refreshed. Users per
    # stage are kept as deltas (cheap); segment sizes count the segment_members table.
    segmenter_metrics_every: float = Field(default=30.0, gt=0)
    segmenter_instance_id: str | None = None  # stable per replica (e.g. the pod name): fast restarts
    segmenter_session_timeout_ms: int = Field(default=30_000, ge=6_000, le=300_000)
    # How long processed input ids are remembered (dedupe). Must be at least the consumed topic's
    # retention (checked against the broker at start): ISO-8601 ("P7D"), seconds, or "forever".
    segmenter_dedupe_retention: DedupeRetention = timedelta(days=7)
    admin_token: SecretStr
    events_topic: str = topics.EVENTS
    lifecycle_topic: str = topics.LIFECYCLE
    deadletter_topic: str = topics.DEADLETTER

    @property
    def config_path(self) -> Path:
        return self.segmenter_config or self.config_dir / "segmenter.yaml"

    @property
    def db_url(self) -> str:
        return self.segmenter_database_url or self.database_url(self.segmenter_database)
