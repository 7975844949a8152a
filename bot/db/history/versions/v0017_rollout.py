"""Action records name the process that made them.

- `actions.process`: the shards label of the bot process that recorded the action (as in the
  `cluster.process.<shards>` settings), NULL for a single process and for rows stored before. A
  staged rollout's watch compares the canary's own records after the fix with its own before it.

Revision ID: v0017_rollout
Revises: v0016_row_provenance
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0017_rollout"
down_revision: str | None = "v0016_row_provenance"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the nullable actions.process column."""
    # A plain ADD COLUMN on both engines (a batch copy of a large actions table would take long).
    op.add_column("actions", sa.Column("process", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    op.drop_column("actions", "process")
