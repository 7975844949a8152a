"""Fire drills are stored from start to end.

- `drills`: one row per drill — its number, the process running it, the stage it reached, its
  incident, run and proposal, and how it ended. `unfinished` (1 until the drill ends, NULL after) is
  UNIQUE: one drill at a time holds in storage, across processes. A start finds a drill a stop left
  unfinished and ends it as interrupted.

Revision ID: v0018_drills
Revises: v0017_rollout
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0018_drills"
down_revision: str | None = "v0017_rollout"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the drills table."""
    op.create_table(
        "drills",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("unfinished", sa.Integer(), nullable=True),
        sa.Column("process", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("proposal_id", sa.BigInteger(), nullable=True),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drills")),
        sa.UniqueConstraint("unfinished", name=op.f("uq_drills_unfinished")),
    )


def downgrade() -> None:
    """Drop it again."""
    op.drop_table("drills")
