"""The services `userops dev run` starts on this machine, and what each one is told.

Data-driven: a service runs locally once its package has a `__main__.py`, so rewards and notifier
join `make run` by existing. Each local replica gets a stable Kafka instance id
(`local-<service>-<n>`): a restarted consumer then takes its partitions back at once (static
membership) instead of waiting a session timeout for its old self to expire. The segmenter can
run as several processes (`USEROPS_SEGMENTER_PROCESSES`, `make run SEGMENTER_PROCESSES=2`): they
share its partitions, each with its own instance id `local-segmenter-<n>` and HTTP port
(`REPLICA_PORT_STEP`).
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


REPLICA_PORT_STEP: Final = 100
"""Replica n (from 0) of a service listens on the service's port + n * this (8001, 8101, ...)."""


def instance_id(service: str, replica: int = 0) -> str:
    """The stable consumer-group instance id of one local replica."""
    return f"local-{service}-{replica}"


def replica_name(service: str, replica: int) -> str:
    """The supervisor's name of a replica: the service's own for the first, `<service>-<n>` after."""
    return service if replica == 0 else f"{service}-{replica}"


def service_port(settings: StackSettings, name: str) -> int:
    """The HTTP port of a service or of one of its replicas (`replica_name`)."""
    service, _, replica = name.partition("-")
    port: int = getattr(settings, f"{service}_port")
    return port + REPLICA_PORT_STEP * int(replica or 0)


def replicas(settings: StackSettings, service: str) -> int:
    """How many processes of `service` run locally (only the segmenter's count is a setting)."""
    return settings.segmenter_processes if service == "segmenter" else 1


def service_env(settings: StackSettings, base: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The environment every local service shares: where Kafka and PostgreSQL are, the ports."""
    env = {
        **base,
        "USEROPS_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "USEROPS_PG_HOST": "127.0.0.1",
        "USEROPS_PG_PORT": str(settings.pg_port),
    }
    for name in names:
        if "-" not in name:  # a replica's own port is in its own environment only
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
        count = replicas(settings, name)
        for replica in range(count):
            own = dict(env)
            if name == "notifier":
                for key, value in DEV_NOTIFIER_ENV.items():
                    own.setdefault(key, value)
            if name in CONSUMERS:
                if count > 1:  # one id per process: each keeps its own partitions across restarts
                    own[f"USEROPS_{name.upper()}_INSTANCE_ID"] = instance_id(name, replica)
                else:
                    own.setdefault(f"USEROPS_{name.upper()}_INSTANCE_ID", instance_id(name))
            spec_name = replica_name(name, replica)
            port = service_port(settings, spec_name)
            own[f"USEROPS_{name.upper()}_PORT"] = str(port)
            specs.append(
                ServiceSpec(
                    name=spec_name,
                    command=(sys.executable, "-m", f"services.{name}"),
                    env=own,
                    ready_url=f"http://127.0.0.1:{port}/ready",
                    cwd=REPO_ROOT,
                )
            )
    return specs
