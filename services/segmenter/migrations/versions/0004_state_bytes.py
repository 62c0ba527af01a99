"""Cheaper profile writes: the state as bytes, room for in-place updates, stage counts kept as we go.

- `profiles.state` becomes `bytea` holding the state's compact JSON (orjson's bytes, written and
  read as they are): PostgreSQL no longer parses and re-prints a JSON document per user per
  batch. Existing states are converted (jsonb's text, which the state decoder reads the same).
  An empty value (`''`) marks a placeholder or a merged profile, as `'{}'` did.
- `fillfactor = 75`: a profile updated without a stage change (most events) fits on its own
  page, so PostgreSQL updates it in place (HOT) without touching `profiles_stage` or the other
  indexes. The conversion rewrites the table, so existing pages get the room too.
- `stage_counts`: users per stage as signed deltas (every batch appends the changes it made, the
  metrics refresh folds them), instead of counting the whole table every 30 seconds. Seeded here
  from the profiles.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DDL = (
    "ALTER TABLE profiles SET (fillfactor = 75)",
    "ALTER TABLE profiles ALTER COLUMN state TYPE bytea "
    "USING CASE WHEN state = '{}'::jsonb THEN ''::bytea ELSE convert_to(state::text, 'UTF8') END",
    "CREATE TABLE stage_counts (stage text NOT NULL, n bigint NOT NULL)",
    "INSERT INTO stage_counts (stage, n) "
    "SELECT stage, count(*) FROM profiles WHERE merged_into IS NULL GROUP BY stage",
)


def upgrade() -> None:
    for statement in DDL:
        op.execute(statement)
