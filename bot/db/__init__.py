"""Database access: the connections, the schema and its history, one query module per table.

The schema is one SQLAlchemy Core `MetaData` (`schema.py`) for SQLite and PostgreSQL, with one
Alembic history (`history/versions/`) that builds it on both. A schema change is a new revision
there plus the same change in `schema.py`; the numbered `.sql` files in `migrations/` are the
history from before Alembic and only bring an old SQLite file up to the baseline (`migrate.py`).
The query modules write each query once, in the SQL both engines share, and `core.py` runs it on
either engine: the aiosqlite connection (`open_database`) or a psycopg one (`core.open_postgresql`).
Only a migration loads SQLAlchemy and Alembic.
"""

from mendbot.db.connection import open_database

__all__ = ["open_database"]
