"""Tables the runtime owns inside each service's database, created by the service's migrations.

The runtime's schema has revisions of its own. A service's Alembic history applies each one in
order (`RUNTIME_REVISIONS[0]` in its first migration, `[1]` in a later one); a service created
after a revision applies all of them in its first migration with `runtime_ddl()`.
"""

from __future__ import annotations

_REVISION_1: tuple[str, ...] = (
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

# Revision 2: dedupe keys stored as a fixed-size hash of the scoped input id (no input can make
# recording them fail), purged per consumer; timers with attempts, retry backoff and a dead state;
# the durable job queue for effects outside the database.
_REVISION_2: tuple[str, ...] = (
    # Keys of revision 1 were unscoped text; the input ids they came from are not recoverable,
    # so the table starts afresh (a redelivery straddling the upgrade is deduped downstream by
    # the deterministic output ids).
    "DROP TABLE IF EXISTS processed_messages",
    """
    CREATE TABLE processed_messages (
        consumer     text        NOT NULL,
        key_hash     bytea       NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, key_hash)
    )
    """,
    "CREATE INDEX processed_messages_at ON processed_messages (consumer, processed_at)",
    "ALTER TABLE timers ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0",
    "ALTER TABLE timers ADD COLUMN IF NOT EXISTS retry_at timestamptz",
    "ALTER TABLE timers ADD COLUMN IF NOT EXISTS last_error text",
    "ALTER TABLE timers ADD COLUMN IF NOT EXISTS dead_at timestamptz",
    "DROP INDEX IF EXISTS timers_due_at",
    "CREATE INDEX timers_due ON timers (due_at) WHERE dead_at IS NULL",
    "CREATE INDEX timers_dead ON timers (dead_at) WHERE dead_at IS NOT NULL",
    """
    CREATE TABLE jobs (
        id           text        PRIMARY KEY,
        kind         text        NOT NULL,
        payload      jsonb       NOT NULL DEFAULT '{}'::jsonb,
        state        text        NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
        due_at       timestamptz NOT NULL DEFAULT now(),
        attempts     integer     NOT NULL DEFAULT 0,
        max_attempts integer     NOT NULL,
        lease_until  timestamptz,
        last_error   text,
        created_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now(),
        finished_at  timestamptz
    )
    """,
    "CREATE INDEX jobs_due ON jobs (due_at) WHERE state IN ('queued', 'running')",
    "CREATE INDEX jobs_failed ON jobs (kind, finished_at) WHERE state = 'failed'",
    "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'succeeded'",
)

RUNTIME_REVISIONS: tuple[tuple[str, ...], ...] = (_REVISION_1, _REVISION_2)


def runtime_ddl(upto: int = len(RUNTIME_REVISIONS)) -> tuple[str, ...]:
    """Every statement of runtime revisions 1..`upto`, in order (for a new service's first migration)."""
    return tuple(statement for revision in RUNTIME_REVISIONS[:upto] for statement in revision)


RUNTIME_DDL: tuple[str, ...] = runtime_ddl()
"""The whole current runtime schema (tests and new services)."""
