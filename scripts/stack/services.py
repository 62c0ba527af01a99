"""The services `userops dev run` starts on this machine, and what each one is told.

Data-driven: a service runs locally once its package has a `__main__.py`, so rewards and notifier
join `make run` by existing. Each local replica gets a stable Kafka instance id
(`local-<service>-<n>`): a restarted consumer then takes its partitions back at once (static
membership) instead of waiting a session timeout for its old self to expire.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Final

from scripts.stack.kafka import REPO_ROOT
from scripts.stack.settings import StackSettings
from scripts.stack.supervisor import ServiceSpec

# Start order; ingest first so events can be accepted while the consumers join their groups.
KNOWN_SERVICES: Final = ("ingest", "segmenter", "rewards", "notifier")
CONSUMERS: Final = frozenset({"segmenter", "rewards", "notifier"})

SINKS_HTTP_PORT: Final = 8025
SINKS_SMTP_PORT: Final = 1025
# LOCAL DEVELOPMENT ONLY: the notifier's secrets when the environment sets none, so a fresh clone
# runs. They are public (they are in this file): set real ones in the environment anywhere else.
DEV_NOTIFIER_ENV: Final = {
    "USEROPS_WEBHOOK_SECRET": "whsec_ZGV2LW9ubHktd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMh",
    "USEROPS_UNSUBSCRIBE_SECRET": "dev-only-unsubscribe-secret-of-32-bytes-or-more",
    "USEROPS_INBOX_SECRET": "dev-only-inbox-token-secret-of-32-bytes-or-more",
    "USEROPS_SMTP_HOST": "127.0.0.1",
    "USEROPS_SMTP_PORT": str(SINKS_SMTP_PORT),
    "USEROPS_WEBHOOK_ENDPOINTS_OVERRIDE": f"http://127.0.0.1:{SINKS_HTTP_PORT}/hooks",
}


def local_services() -> tuple[str, ...]:
    """The known services whose package exists in this checkout."""
    return tuple(n for n in KNOWN_SERVICES if (REPO_ROOT / "services" / n / "__main__.py").is_file())


def instance_id(service: str, replica: int = 0) -> str:
    """The stable consumer-group instance id of one local replica."""
    return f"local-{service}-{replica}"


def service_port(settings: StackSettings, service: str) -> int:
    port: int = getattr(settings, f"{service}_port")
    return port


def service_env(settings: StackSettings, base: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The environment every local service shares: where Kafka and PostgreSQL are, the ports."""
    env = {
        **base,
        "USEROPS_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "USEROPS_PG_HOST": "127.0.0.1",
        "USEROPS_PG_PORT": str(settings.pg_port),
    }
    for name in names:
        env[f"USEROPS_{name.upper()}_PORT"] = str(service_port(settings, name))
    return env


def service_specs(settings: StackSettings, env: Mapping[str, str]) -> list[ServiceSpec]:
    """One spec per local service, with its own instance id when it consumes Kafka.

    With the notifier come the local development sinks (a webhook receiver and an SMTP server,
    `scripts.stack.sinks`), started first, and the notifier is pointed at them unless the
    environment says otherwise.
    """
    specs = []
    names = local_services()
    if "notifier" in names:
        sinks_env = {**env, **{k: v for k, v in DEV_NOTIFIER_ENV.items() if k not in env}}
        specs.append(
            ServiceSpec(
                name="sinks",
                command=(sys.executable, "-m", "scripts.stack.sinks"),
                env=sinks_env,
                ready_url=f"http://127.0.0.1:{SINKS_HTTP_PORT}/health",
                cwd=REPO_ROOT,
            )
        )
    for name in names:
        own = dict(env)
        if name == "notifier":
            for key, value in DEV_NOTIFIER_ENV.items():
                own.setdefault(key, value)
        if name in CONSUMERS:
            own.setdefault(f"USEROPS_{name.upper()}_INSTANCE_ID", instance_id(name))
        port = service_port(settings, name)
        specs.append(
            ServiceSpec(
                name=name,
                command=(sys.executable, "-m", f"services.{name}"),
                env=own,
                ready_url=f"http://127.0.0.1:{port}/ready",
                cwd=REPO_ROOT,
            )
        )
    return specs
