"""Ingest's settings (environment) and rules (`config/ingest.yaml`).

The YAML names sources and limits; write keys are secrets and come from the environment variable
each source names. `load_config` is the only place that reads those variables: an enabled source
whose variable is unset or empty stops the service at start with a `ConfigError` naming the file,
the field and the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from services.ingest.domain.envelope import Limits
from services.ingest.domain.write_key import SourceKey
from shared import topics
from shared.config import BaseServiceSettings, ConfigError, StrictModel, load_yaml


def default_workers() -> int:
    """One uvicorn worker per core: the hot path is CPU-bound Python (JSON, enrichment, the
    producer), so two workers on two cores beat one, and more than cores only adds switching."""
    return max(1, os.cpu_count() or 1)


class IngestSettings(BaseServiceSettings):
    """`USEROPS_INGEST_*` environment settings (plus the shared `USEROPS_*` ones)."""

    ingest_host: str = "127.0.0.1"
    ingest_port: int = Field(8000, ge=0, le=65535)
    ingest_workers: int = Field(default_factory=default_workers, ge=1)
    ingest_config: Path | None = None
    ingest_events_topic: str = topics.EVENTS
    # How long a request waits for Kafka to acknowledge its events before answering 503.
    ingest_produce_timeout_seconds: float = Field(5.0, gt=0)
    # The `Retry-After` sent with a 503 while Kafka cannot take events.
    ingest_unavailable_retry_after_seconds: int = Field(2, ge=1)
    # How often the broker connection is probed for `/ready` (and to recover after an outage).
    ingest_probe_interval_seconds: float = Field(1.0, gt=0)
    # During an outage the broker is retried with jittered exponential backoff, from the probe
    # interval up to this; a retry costs a connection attempt (and CPU) per worker.
    ingest_max_probe_interval_seconds: float = Field(5.0, gt=0)
    # Bytes of events a worker holds awaiting Kafka's acknowledgement before it answers 503
    # (backpressure instead of unbounded memory when the broker slows down).
    ingest_max_in_flight_bytes: int = Field(64 * 1024 * 1024, gt=0)

    @property
    def config_path(self) -> Path:
        return self.ingest_config or self.config_dir / "ingest.yaml"


class SourceConfig(StrictModel):
    """One sending application. `write_key_env` names the variable holding its key."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    write_key_env: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    enabled: bool = True


class LimitsConfig(StrictModel):
    """Size limits, measured after decompression (Segment's defaults)."""

    max_event_bytes: int = Field(32 * 1024, gt=0)
    max_request_bytes: int = Field(500 * 1024, gt=0)
    max_batch_events: int = Field(2500, gt=0)

    @model_validator(mode="after")
    def _event_fits_request(self) -> Self:
        if self.max_event_bytes > self.max_request_bytes:
            raise ValueError("max_event_bytes must not exceed max_request_bytes")
        return self


class RateLimitConfig(StrictModel):
    """A token bucket per write key, counted in events; off by default."""

    enabled: bool = False
    events_per_second: float = Field(1000.0, gt=0)
    burst: int = Field(2000, gt=0)


class IngestConfig(StrictModel):
    """The whole `config/ingest.yaml`."""

    sources: tuple[SourceConfig, ...] = Field(min_length=1)
    limits: LimitsConfig = LimitsConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for source in self.sources:
            if source.id in seen:
                raise ValueError(f"source id {source.id!r} is used twice")
            seen.add(source.id)
        return self


@dataclass(frozen=True)
class ResolvedConfig:
    """The validated rules with each source's key read from the environment."""

    path: Path
    rules: IngestConfig
    keys: tuple[SourceKey, ...]

    @property
    def limits(self) -> Limits:
        lim = self.rules.limits
        return Limits(
            max_event_bytes=lim.max_event_bytes,
            max_request_bytes=lim.max_request_bytes,
            max_batch_events=lim.max_batch_events,
        )

    def __repr__(self) -> str:  # never print the keys
        return f"ResolvedConfig(path={self.path!s}, sources={[k.source_id for k in self.keys]})"


def resolve_keys(path: Path, rules: IngestConfig, environ: Mapping[str, str]) -> ResolvedConfig:
    """Read each source's write key from `environ`; a missing one is a ConfigError."""
    keys: list[SourceKey] = []
    owners: dict[str, str] = {}
    for i, source in enumerate(rules.sources):
        key = environ.get(source.write_key_env, "")
        field = f"sources[{i}].write_key_env"
        if not key:
            if not source.enabled:
                continue  # a disabled source needs no key: an unknown key is refused anyway
            raise ConfigError(
                f"{path}: field '{field}': environment variable {source.write_key_env} "
                f"(the write key of source {source.id!r}) is not set"
            )
        if key in owners:
            raise ConfigError(
                f"{path}: field '{field}': source {source.id!r} has the same write key as "
                f"source {owners[key]!r}; each source needs its own key"
            )
        owners[key] = source.id
        keys.append(SourceKey(key=key, source_id=source.id, enabled=source.enabled))
    return ResolvedConfig(path=path, rules=rules, keys=tuple(keys))


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> ResolvedConfig:
    """Validate `path` and resolve its write keys, or raise a ConfigError."""
    rules = load_yaml(path, IngestConfig)
    return resolve_keys(path, rules, os.environ if environ is None else environ)
