"""The dashboard's sign-in and the action explorer's index.

- `dashboard_links`: one-time sign-in links, bound to a user, kept as a SHA-256 of the token.
- `dashboard_sessions`: the sessions those links open, kept as a SHA-256 of the cookie's value.
- `actions_user_ts`: the actions of one user, newest first (the explorer's "user" filter).

Revision ID: v0015_dashboard
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0015_dashboard"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the two sign-in tables and the index of actions by user."""
    op.create_table(
        "dashboard_links",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("used_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_dashboard_links")),
    )
    op.create_index("dashboard_links_expires", "dashboard_links", ["expires_at"], unique=False)
    op.create_table(
        "dashboard_sessions",
        sa.Column("session_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("session_hash", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index("dashboard_sessions_expires", "dashboard_sessions", ["expires_at"], unique=False)
    where = sa.text("user_id IS NOT NULL")
    op.create_index(
        "actions_user_ts",
        "actions",
        ["user_id", "ts"],
        unique=False,
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("actions_user_ts", table_name="actions")
    op.drop_index("dashboard_sessions_expires", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_index("dashboard_links_expires", table_name="dashboard_links")
    op.drop_table("dashboard_links")
