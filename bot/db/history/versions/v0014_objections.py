"""Objections hold a merge, and an approving message can be read again where it was written.

- `objections`: what an approver said against shipping a proposal, or what could not be read as a
  yes or a no (bot/deploy/approval.py); it holds the merge until withdrawn.
- `approvals.channel_id`: the channel a signal was given in, so the approving message can be
  fetched again at start-up and at merge time. Rows from before have none (the deploy side falls
  back to the proposal's own channel).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the objections table and the approvals' channel."""
    op.add_column("approvals", sa.Column("channel_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "objections",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("proposal_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("withdrawn_at", sa.Double(), nullable=True),
        sa.Column("withdrawn_why", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('object', 'unclear')", name=op.f("ck_objections_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objections")),
        sa.UniqueConstraint("proposal_id", "message_id", name=op.f("uq_objections_proposal_id_message_id")),
    )
    op.create_index("objections_message", "objections", ["message_id"], unique=False)


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("objections_message", table_name="objections")
    op.drop_table("objections")
    op.drop_column("approvals", "channel_id")
