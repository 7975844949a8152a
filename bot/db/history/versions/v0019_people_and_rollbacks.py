"""A run whose merge was rolled back has a state of its own; people are named as the bot saw them.

- `runs.state` may be `rolled_back`: the run's change was merged and then reverted (an emergency
  rollback, a rollback run merged, a canary taken back), whatever it said before (`watching`,
  `resolved`, `regressed`). It read "resolved" everywhere after a rollback.
- `people`: the display name of each person the bot has seen (a message, an interaction, a reaction),
  with when: chat and the dashboard name who asked, approved or failed after a restart too.

SQLite cannot change a CHECK constraint with ALTER TABLE: `_sqlite_check` says how it is done.

Revision ID: v0019_people_and_rollbacks
Revises: v0018_drills
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v0019_people_and_rollbacks"
down_revision: str | None = "v0018_drills"
branch_labels: str | None = None
depends_on: str | None = None

_BEFORE = (
    "queued", "observing", "investigating", "planning", "editing", "verifying", "proposing",
    "awaiting_approval", "merging", "deployed", "watching", "resolved", "reported", "failed",
    "rejected", "cancelled", "regressed", "interrupted",
)  # fmt: skip


def _condition(states: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{state}'" for state in states) + ")"


def _set_states(before: tuple[str, ...], after: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_check(before[-1], after[-1])
        return
    op.drop_constraint(op.f("ck_runs_state"), "runs", type_="check")
    op.create_check_constraint(op.f("ck_runs_state"), "runs", _condition(after))


def _sqlite_check(last_before: str, last_after: str) -> None:
    """SQLite keeps a CHECK constraint only as the text of its table's CREATE statement, and cannot
    change one with ALTER TABLE; copying the table instead would trip the foreign keys of the tables
    that reference it inside this transaction. Loosening a check changes nothing stored, so the
    statement's text is edited as SQLite's documentation describes for such changes (writable_schema,
    the schema version bumped so every connection reads it again). It works alike on the named check
    a new file has and the column check of a file adopted from the SQL migrations: both list the
    states in the same order, and only the end of the list changes."""
    bind = op.get_bind()
    old, new = _tail(last_before), _tail(last_after)
    found = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'")
    sql = str(found.scalar_one())
    if sql.count(old) != 1:
        raise RuntimeError(f"the runs table's state check does not end as expected ({old!r})")
    version = int(bind.exec_driver_sql("PRAGMA schema_version").scalar_one())
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'runs'",
            (sql.replace(old, new),),
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def _tail(last: str) -> str:
    return (
        "'regressed', 'interrupted')"
        if last == "interrupted"
        else "'regressed', 'interrupted', 'rolled_back')"
    )


def upgrade() -> None:
    """Allow `rolled_back`; add the people table."""
    _set_states(_BEFORE, (*_BEFORE, "rolled_back"))
    op.create_table(
        "people",
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False,
                  nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_people")),
    )  # fmt: skip


def downgrade() -> None:
    """Drop the people table; runs that were rolled back read "resolved" again, as before this revision."""
    op.drop_table("people")
    op.execute("UPDATE runs SET state = 'resolved' WHERE state = 'rolled_back'")
    _set_states((*_BEFORE, "rolled_back"), _BEFORE)
