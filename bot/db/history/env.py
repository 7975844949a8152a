"""Alembic's environment: runs the history on the connection `mendbot.db.migrate` hands over.

The caller has already begun the transaction, so the whole upgrade (and, for an old SQLite file,
the legacy SQL before it) commits or rolls back as one.
"""

from __future__ import annotations

from alembic import context

from mendbot.db.schema import metadata

if context.is_offline_mode():
    raise RuntimeError("the history runs on a live connection only (see mendbot.db.migrate)")

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
