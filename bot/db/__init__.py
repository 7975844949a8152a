"""Database access: the aiosqlite connection, migrations, and one query module per table."""

from bot.db.connection import open_database

__all__ = ["open_database"]
