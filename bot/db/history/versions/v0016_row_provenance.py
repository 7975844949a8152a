"""Rows that cogs keep, each with the action that last wrote it.

- `cog_rows`: small keyed JSON rows a cog stores (bot/db/cog_rows.py), with `written_by` (the kind
  of the action that wrote the row), `writer` (where in the code, as JSON frames) and `written_at`,
  so a crash on a bad row names the command that stored it.

Revision ID: v0016_row_provenance
Revises: v0015_dashboard
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0016_row_provenance"
down_revision: str | None = "v0015_dashboard"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the cog_rows table."""
    op.create_table(
        "cog_rows",
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("written_by", sa.Text(), nullable=True),
        sa.Column("writer", sa.Text(), nullable=True),
        sa.Column("written_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("table_name", "key", name=op.f("pk_cog_rows")),
    )


def downgrade() -> None:
    """Drop it again."""
    op.drop_table("cog_rows")
