"""NPS answers: one row per valid `NPS Submitted` event, for the weekly NPS analytics.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DDL = (
    """
    CREATE TABLE nps_responses (
        user_id  text        NOT NULL,
        event_id text        NOT NULL UNIQUE,
        score    smallint    NOT NULL CHECK (score BETWEEN 0 AND 10),
        at       timestamptz NOT NULL
    )
    """,
    "CREATE INDEX nps_responses_at ON nps_responses (at)",
    "CREATE INDEX nps_responses_user ON nps_responses (user_id)",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)
