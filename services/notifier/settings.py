"""The notifier's environment settings (`USEROPS_*`); campaigns live in config/notifier.yaml.

Secrets come from the environment only and are required: the admin token, the Standard Webhooks
signing secret (`whsec_` + base64), and the HMAC secrets of unsubscribe links and inbox tokens
(each at least 32 bytes).
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from shared import topics
from shared.config import BaseServiceSettings, DedupeRetention

MIN_SECRET_BYTES = 32


class NotifierSettings(BaseServiceSettings):
    notifier_host: str = "127.0.0.1"
    notifier_port: int = 8003
    notifier_config: Path | None = None  # default: <config_dir>/notifier.yaml
    notifier_database: str = "notifier"
    notifier_database_url: str | None = None  # overrides host/port/database when set
    notifier_group: str = "notifier"
    notifier_instance_id: str | None = None  # stable per replica (static membership)
    notifier_session_timeout_ms: int = Field(default=30_000, ge=6_000, le=300_000)
    notifier_max_batch: int = Field(default=500, ge=1, le=10_000)
    notifier_lanes: int = Field(default=2, ge=1, le=16)
    notifier_timer_workers: int = Field(default=1, ge=1, le=16)
    notifier_timer_batch: int = Field(default=500, ge=1, le=20_000)
    # Job workers, each performing up to 8 deliveries at once. Each in-flight delivery records its
    # outcome on its own database connection: keep workers x 8 + lanes + 2 within the engine's
    # pool (10 + 10 overflow), or connections are opened and closed per job.
    notifier_job_workers: int = Field(default=2, ge=1, le=64)
    # How long processed input ids are remembered (dedupe); at least the consumed topics'
    # retention (checked against the broker at start): ISO-8601 ("P7D"), seconds, or "forever".
    notifier_dedupe_retention: DedupeRetention = timedelta(days=7)
    # Webhook delivery: per-attempt timeout and the retry schedule (attempts, first and largest
    # backoff; full jitter between). With the defaults: ~5 s, 10 s, 20 s ... capped at 1 h.
    # Local development: send every endpoint's webhooks to `<this>/<endpoint name>` instead of the
    # URLs in the config (e.g. http://127.0.0.1:8025/hooks, the local sinks). Unset in production.
    webhook_endpoints_override: str | None = Field(default=None, pattern=r"^https?://\S+$")
    webhook_timeout: float = Field(default=10.0, gt=0, le=120)
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_backoff_initial: float = Field(default=5.0, gt=0)
    webhook_backoff_max: float = Field(default=3600.0, gt=0)
    email_max_attempts: int = Field(default=8, ge=1, le=50)
    email_backoff_initial: float = Field(default=5.0, gt=0)
    email_backoff_max: float = Field(default=3600.0, gt=0)
    admin_token: SecretStr
    webhook_secret: SecretStr  # whsec_<base64>: signs every webhook (Standard Webhooks)
    unsubscribe_secret: SecretStr  # signs one-click unsubscribe links
    inbox_secret: SecretStr  # signs the per-user inbox tokens the app's backend mints
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = Field(default=30.0, gt=0)
    smtp_from: str = "userops <no-reply@userops.local>"
    unsubscribe_mailto: str | None = None  # optional second List-Unsubscribe target
    events_topic: str = topics.EVENTS
    lifecycle_topic: str = topics.LIFECYCLE
    rewards_topic: str = topics.REWARDS
    deliveries_topic: str = topics.DELIVERIES
    deadletter_topic: str = topics.DEADLETTER

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw.startswith("whsec_"):
            raise ValueError("must start with 'whsec_' followed by base64 (Standard Webhooks)")
        try:
            key = base64.b64decode(raw.removeprefix("whsec_") + "==", validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("the part after 'whsec_' must be base64") from exc
        if len(key) < 24:
            raise ValueError("the decoded key must be at least 24 bytes")
        return value

    @field_validator("unsubscribe_secret", "inbox_secret", "admin_token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("unsubscribe_secret", "inbox_secret")
    @classmethod
    def _hmac_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes")
        return value

    @property
    def config_path(self) -> Path:
        return self.notifier_config or self.config_dir / "notifier.yaml"

    @property
    def db_url(self) -> str:
        return self.notifier_database_url or self.database_url(self.notifier_database)
