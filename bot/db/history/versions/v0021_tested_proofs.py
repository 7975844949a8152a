"""A proof may say `tested`: a regression test the change's author wrote showed the fix, and nothing
replayed from outside did. Evidence the change's author wrote may add to a proof or disprove it; it no
longer proves alone, so a test that shows the fix by itself earns this lower label of its own.

- `proofs.verdict` may be `tested`.

SQLite cannot change a CHECK constraint with ALTER TABLE: as in v0019, the table's statement is edited
(loosening a check changes nothing stored); the named check of a new file and the column check of a file
adopted from the SQL migrations both end the same way.

Revision ID: v0021_tested_proofs
Revises: v0020_journal
"""

from __future__ import annotations

from alembic import op

revision = "v0021_tested_proofs"
down_revision: str | None = "v0020_journal"
branch_labels: str | None = None
depends_on: str | None = None

_BEFORE = ("proven", "unproven", "disproven")
_AFTER = (*_BEFORE, "tested")


def _condition(verdicts: tuple[str, ...]) -> str:
    return "verdict IN (" + ", ".join(f"'{verdict}'" for verdict in verdicts) + ")"


def _set_verdicts(before: tuple[str, ...], after: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_check(_condition(before), _condition(after))
        return
    op.drop_constraint(op.f("ck_proofs_verdict"), "proofs", type_="check")
    op.create_check_constraint(op.f("ck_proofs_verdict"), "proofs", _condition(after))


def _sqlite_check(old: str, new: str) -> None:
    """The proofs table's CREATE statement with its verdict check edited (v0019's `_sqlite_check`)."""
    bind = op.get_bind()
    found = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'proofs'")
    sql = str(found.scalar_one())
    if sql.count(old) != 1:
        raise RuntimeError(f"the proofs table's verdict check is not as expected ({old!r})")
    version = int(bind.exec_driver_sql("PRAGMA schema_version").scalar_one())
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'proofs'",
            (sql.replace(old, new),),
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    """Allow `tested`."""
    _set_verdicts(_BEFORE, _AFTER)


def downgrade() -> None:
    """A tested proof reads "unproven" again, as nothing before this revision proved by test alone."""
    op.execute("UPDATE proofs SET verdict = 'unproven' WHERE verdict = 'tested'")
    _set_verdicts(_AFTER, _BEFORE)
