"""Tables the runtime owns inside each service's database, created by the service's migrations."""

from __future__ import annotations

RUNTIME_DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS processed_messages (
        consumer     text        NOT NULL,
        key          text        NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, key)
    )
    """,
    "CREATE INDEX IF NOT EXISTS processed_messages_at ON processed_messages (processed_at)",
    """
    CREATE TABLE IF NOT EXISTS outbox (
        seq        bigserial   PRIMARY KEY,
        id         text        NOT NULL UNIQUE,
        topic      text        NOT NULL,
        key        text        NOT NULL,
        value      bytea       NOT NULL,
        headers    jsonb       NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS timers (
        kind       text        NOT NULL,
        key        text        NOT NULL,
        due_at     timestamptz NOT NULL,
        payload    jsonb       NOT NULL DEFAULT '{}'::jsonb,
        PRIMARY KEY (kind, key)
    )
    """,
    "CREATE INDEX IF NOT EXISTS timers_due_at ON timers (due_at)",
)
