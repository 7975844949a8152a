"""How far the database has taken each action journal.

- `journal_positions`: one row per action journal (`data/logs/actions.ndjson*` of one bot process,
  named by the id in its `actions.journal-id`): the sequence number of the last record the database
  holds from it. The row changes in the same transaction as the records, so a stretch of the journal
  read twice (after a restart, a lock, a deleted database) inserts nothing twice.

Revision ID: v0020_journal
Revises: v0019_people_and_rollbacks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0020_journal"
down_revision: str | None = "v0019_people_and_rollbacks"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create journal_positions."""
    op.create_table(
        "journal_positions",
        sa.Column("journal", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("journal", name=op.f("pk_journal_positions")),
    )


def downgrade() -> None:
    """Drop it again."""
    op.drop_table("journal_positions")
