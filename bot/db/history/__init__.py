"""The migration history (Alembic): `env.py` and one revision per schema change in `versions/`.

Run by `mendbot.db.migrate` on a connection it hands over; there is no `alembic.ini`.
"""
