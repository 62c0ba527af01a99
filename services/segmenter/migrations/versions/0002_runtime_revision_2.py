"""Runtime revision 2: hashed dedupe keys, timer attempts and dead state, the job queue.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from shared.runtime.schema import RUNTIME_REVISIONS

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in RUNTIME_REVISIONS[1]:
        op.execute(statement)
