"""Alembic, one migration history per service database, run at service start.

Each service has `services/<name>/migrations/` (alembic `script_location`) whose `env.py` is just
`from shared.runtime.migrations import run_env; run_env()`. `upgrade()` runs the history to head
on the service's async engine, under an advisory lock so replicas starting together take turns.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

_MIGRATION_LOCK = 0x6D69_6772_6174  # one constant for every service: each has its own database


def alembic_config(script_location: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    return cfg


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, script_location: Path, revision: str = "head") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, alembic_config(script_location), revision)


def current(connection: Connection) -> str | None:
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return None if row is None else str(row[0])


def run_env() -> None:
    """The body of every service's alembic `env.py`: migrate on the connection `upgrade()` passed in."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations with `userops db upgrade` or at service start, not the alembic CLI"
        )
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()
