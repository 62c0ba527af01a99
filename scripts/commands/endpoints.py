"""Where the services answer and the credentials to call them, for the `userops` commands.

Read from the environment with local defaults (those of `make run`):

| variable | default |
|---|---|
| `USEROPS_INGEST_URL` | `http://127.0.0.1:$USEROPS_INGEST_PORT` (8000) |
| `USEROPS_SEGMENTER_URL` | `http://127.0.0.1:$USEROPS_SEGMENTER_PORT` (8001) |
| `USEROPS_REWARDS_URL` | `http://127.0.0.1:$USEROPS_REWARDS_PORT` (8002) |
| `USEROPS_NOTIFIER_URL` | `http://127.0.0.1:$USEROPS_NOTIFIER_PORT` (8003) |
| `USEROPS_WRITE_KEY` | `$USEROPS_DEV_WRITE_KEY`, else `dev-write-key` |
| `USEROPS_ADMIN_TOKEN` | `dev-admin-token` |
| `USEROPS_HTTP_TIMEOUT` | 10 (seconds per request) |

`load_endpoints()` reads them once; `Endpoints.url(service, *segments)` builds a URL with each
path segment percent-encoded (a user id with `/`, `?`, `#` or non-ASCII characters stays one
segment); `Endpoints.admin_headers()` is the bearer header of the admin APIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from scripts.commands.dev import DEV_ADMIN_TOKEN, DEV_WRITE_KEY

__all__ = [
    "DEV_ADMIN_TOKEN",
    "DEV_WRITE_KEY",
    "SERVICES",
    "EndpointError",
    "Endpoints",
    "Service",
    "load_endpoints",
]

Service = Literal["ingest", "segmenter", "rewards", "notifier"]
SERVICES: Final[tuple[Service, ...]] = ("ingest", "segmenter", "rewards", "notifier")


class EndpointError(ValueError):
    """An endpoint setting in the environment is invalid; the message names the variable."""


class _EndpointSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="USEROPS_", frozen=True, extra="ignore")

    ingest_port: int = Field(8000, ge=1, le=65535)
    segmenter_port: int = Field(8001, ge=1, le=65535)
    rewards_port: int = Field(8002, ge=1, le=65535)
    notifier_port: int = Field(8003, ge=1, le=65535)
    ingest_url: str | None = Field(None, pattern=r"^https?://\S+$")
    segmenter_url: str | None = Field(None, pattern=r"^https?://\S+$")
    rewards_url: str | None = Field(None, pattern=r"^https?://\S+$")
    notifier_url: str | None = Field(None, pattern=r"^https?://\S+$")
    write_key: SecretStr | None = None
    dev_write_key: SecretStr | None = None
    admin_token: SecretStr = SecretStr(DEV_ADMIN_TOKEN)
    http_timeout: float = Field(10.0, gt=0, le=600)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Base URLs of the four services, the write key for ingest and the admin bearer token."""

    ingest_url: str
    segmenter_url: str
    rewards_url: str
    notifier_url: str
    write_key: SecretStr
    admin_token: SecretStr
    timeout: float = 10.0

    def base(self, service: Service) -> str:
        """The base URL of `service`, without a trailing slash."""
        urls = {
            "ingest": self.ingest_url,
            "segmenter": self.segmenter_url,
            "rewards": self.rewards_url,
            "notifier": self.notifier_url,
        }
        return urls[service].rstrip("/")

    def url(self, service: Service, *segments: str) -> str:
        """`<base>/<segment>/<segment>...`, each segment percent-encoded as exactly one segment:
        `url("segmenter", "v1", "users", user_id)`; a user id `a/b` becomes `a%2Fb`."""
        return self.base(service) + "".join("/" + quote(s, safe="") for s in segments)

    def admin_headers(self) -> dict[str, str]:
        """`Authorization: Bearer <USEROPS_ADMIN_TOKEN>` for the admin APIs."""
        return {"Authorization": f"Bearer {self.admin_token.get_secret_value()}"}


def load_endpoints() -> Endpoints:
    """The endpoints from `USEROPS_*` variables with local defaults; EndpointError if one is invalid."""
    try:
        s = _EndpointSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"USEROPS_{str(err['loc'][0]).upper()}: {err['msg']}" if err["loc"] else err["msg"]
            for err in exc.errors()
        )
        raise EndpointError(problems) from exc

    def local(port: int) -> str:
        return f"http://127.0.0.1:{port}"

    return Endpoints(
        ingest_url=s.ingest_url or local(s.ingest_port),
        segmenter_url=s.segmenter_url or local(s.segmenter_port),
        rewards_url=s.rewards_url or local(s.rewards_port),
        notifier_url=s.notifier_url or local(s.notifier_port),
        write_key=s.write_key or s.dev_write_key or SecretStr(DEV_WRITE_KEY),
        admin_token=s.admin_token,
        timeout=s.http_timeout,
    )
