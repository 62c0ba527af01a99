"""The segmenter's store: profiles, identities, stage history, segments, activity days.

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.runtime.schema import RUNTIME_REVISIONS

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DDL = (
    """
    CREATE TABLE profiles (
        user_id          text        PRIMARY KEY,
        state            jsonb       NOT NULL,
        stage            text        NOT NULL,
        activated        boolean     NOT NULL DEFAULT false,
        first_seen       timestamptz NOT NULL,
        last_activity_at timestamptz,
        merged_into      text,
        updated_at       timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX profiles_stage ON profiles (stage, user_id)",
    "CREATE INDEX profiles_first_seen ON profiles (first_seen)",
    """
    CREATE TABLE identities (
        anonymous_id text        PRIMARY KEY,
        user_id      text        NOT NULL,
        linked_at    timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE stage_history (
        id         bigserial   PRIMARY KEY,
        event_id   text        NOT NULL UNIQUE,
        user_id    text        NOT NULL,
        from_stage text,
        to_stage   text        NOT NULL,
        reason     text        NOT NULL,
        at         timestamptz NOT NULL
    )
    """,
    "CREATE INDEX stage_history_user ON stage_history (user_id, at)",
    "CREATE INDEX stage_history_at ON stage_history (at)",
    """
    CREATE TABLE segment_members (
        segment text        NOT NULL,
        user_id text        NOT NULL,
        since   timestamptz NOT NULL,
        PRIMARY KEY (segment, user_id)
    )
    """,
    "CREATE INDEX segment_members_user ON segment_members (user_id)",
    """
    CREATE TABLE activity_days (
        user_id text NOT NULL,
        day     date NOT NULL,
        PRIMARY KEY (user_id, day)
    )
    """,
    "CREATE INDEX activity_days_day ON activity_days (day, user_id)",
)


def upgrade() -> None:
    for statement in (*RUNTIME_REVISIONS[0], *DDL):
        op.execute(statement)
