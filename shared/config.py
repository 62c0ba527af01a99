"""Settings and YAML config loading shared by every service.

Environment settings (ports, URLs, secrets) come from `USEROPS_*` variables through
pydantic-settings; rules come from one YAML file per service under `config/`. A bad file stops the
service at start with a `ConfigError` naming the file, the field and the reason.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

M = TypeVar("M", bound=BaseModel)


def _retention(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in {"forever", "none", "infinite"}:
        return None
    try:
        return timedelta(seconds=float(text))  # plain seconds, as the environment gives them
    except (ValueError, OverflowError):
        return value  # ISO-8601 ("P7D"), [DD ]HH:MM:SS, or nonsense: left to pydantic to judge


DedupeRetention = Annotated[timedelta | None, BeforeValidator(_retention)]
"""How long a consumer remembers processed input ids: ISO-8601 (`P7D`), seconds, or `forever`
(None). Checked at start against the consumed topics' retention."""


class ConfigError(Exception):
    """Invalid configuration; the message names the file, the field and the problem."""


class StrictModel(BaseModel):
    """Base of every YAML config model: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseServiceSettings(BaseSettings):
    """Environment settings common to every service (`USEROPS_` prefix)."""

    model_config = SettingsConfigDict(env_prefix="USEROPS_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    log_level: str = "INFO"
    config_dir: Path = Path("config")
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    pg_connect_timeout_seconds: float = Field(10.0, gt=0)
    # The longest one statement of the service may run (migrations are not limited); 0: no limit.
    pg_statement_timeout_seconds: float = Field(30.0, ge=0)

    @property
    def pg_statement_timeout(self) -> float | None:
        return self.pg_statement_timeout_seconds or None

    def database_url(self, database: str) -> str:
        """The async SQLAlchemy URL of one service's own database on the configured server."""
        auth = self.pg_user + (f":{self.pg_password}" if self.pg_password else "")
        return f"postgresql+asyncpg://{auth}@{self.pg_host}:{self.pg_port}/{database}"


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_yaml(path: Path, model: type[M], context: dict[str, Any] | None = None) -> M:
    """Parse and validate a YAML config file into `model`, or raise a ConfigError."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        for mark in (getattr(exc, "context_mark", None), getattr(exc, "problem_mark", None)):
            if mark is not None:
                mark.name = str(path)  # `in "segmenter.yaml", line 3`, not `in "<unicode string>"`
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(raw).__name__}")
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        problems = "; ".join(f"field '{_format_loc(err['loc'])}': {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc


def config_version(path: Path) -> str:
    """A short content hash of a config file, stamped on every output event it produced; a
    ConfigError (not a traceback) when the file cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
