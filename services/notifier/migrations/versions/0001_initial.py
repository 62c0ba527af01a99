"""The notifier's store: user projections, sends, outcomes, entries, inbox, preference changes.

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.runtime.schema import runtime_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DDL = (
    # One row per user: the projection (services.notifier.domain.projection_json) and the row
    # every write path locks (shared.runtime.locks).
    """
    CREATE TABLE users (
        user_id    text        PRIMARY KEY,
        projection jsonb,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # One row per send key: the planned send, its current state and its last outcome.
    # state: planned | deferred | queued (job enqueued) | sent | capped | suppressed | cancelled | failed
    """
    CREATE TABLE sends (
        send_key    text        PRIMARY KEY,
        user_id     text        NOT NULL,
        campaign    text        NOT NULL,
        variant     text        NOT NULL,
        channel     text        NOT NULL,
        state       text        NOT NULL,
        reason      text        NOT NULL DEFAULT '',
        attempts    integer     NOT NULL DEFAULT 0,
        planned     jsonb,
        message     jsonb,
        received_at timestamptz,
        due_at      timestamptz,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        sent_at     timestamptz
    )
    """,
    "CREATE INDEX sends_user ON sends (user_id, created_at)",
    "CREATE INDEX sends_failed ON sends (updated_at) WHERE state = 'failed'",
    # Every outcome of every send (a deferral then a send are two rows), by its published id.
    """
    CREATE TABLE outcomes (
        id       text        PRIMARY KEY,
        send_key text        NOT NULL,
        campaign text        NOT NULL,
        variant  text        NOT NULL,
        channel  text        NOT NULL,
        kind     text        NOT NULL,
        reason   text        NOT NULL DEFAULT '',
        at       timestamptz NOT NULL
    )
    """,
    "CREATE INDEX outcomes_campaign ON outcomes (campaign, variant, kind)",
    # Campaign entries (treatment variants and holdout) and whether each reached the goal.
    """
    CREATE TABLE entries (
        campaign     text        NOT NULL,
        user_id      text        NOT NULL,
        entered_at   timestamptz NOT NULL,
        grp          text        NOT NULL,
        input_id     text        NOT NULL,
        goal_until   timestamptz,
        converted_at timestamptz,
        PRIMARY KEY (campaign, user_id, entered_at)
    )
    """,
    "CREATE INDEX entries_campaign ON entries (campaign, grp)",
    # The in-app inbox: one message per send key.
    """
    CREATE TABLE inbox (
        send_key   text        PRIMARY KEY,
        user_id    text        NOT NULL,
        campaign   text        NOT NULL,
        title      text        NOT NULL,
        body       text        NOT NULL,
        url        text,
        created_at timestamptz NOT NULL,
        read_at    timestamptz
    )
    """,
    "CREATE INDEX inbox_user ON inbox (user_id, created_at DESC)",
    "CREATE INDEX inbox_unread ON inbox (user_id) WHERE read_at IS NULL",
    # Preference changes (unsubscribe links): the input id makes using one link twice one change.
    """
    CREATE TABLE preference_changes (
        input_id   text        PRIMARY KEY,
        user_id    text        NOT NULL,
        scope      text        NOT NULL,
        subscribed boolean     NOT NULL,
        at         timestamptz NOT NULL
    )
    """,
    "CREATE INDEX preference_changes_user ON preference_changes (user_id, at)",
)


def upgrade() -> None:
    for statement in (*runtime_ddl(), *DDL):
        op.execute(statement)
