"""What marks a fire drill's records: the drill path's action kinds and its synthetic user.

A fire drill (`mendbot.improve.drill`) sends a synthetic fault down the real repair loop. Everything it
produces starts from actions of a kind under `DRILL_KIND_PREFIX`, recorded by `DRILL_USER_ID` — a
path no command reaches (command kinds are `command:…`, `app:…`, `listener:…`), so no real user
can make a record look like a drill's, nor a drill's look like a user's. Incidents of those kinds,
and the runs on them, are drill records: never merged, and left out of the anomaly baselines, the
audit and the spending reports (bot/db, bot/observe and bot/deploy test `is_drill_kind`).
"""

from __future__ import annotations

__all__ = ["DRILL_KIND", "DRILL_KIND_PREFIX", "DRILL_POINT", "DRILL_USER_ID", "is_drill_kind"]

DRILL_KIND_PREFIX = "drill:"
DRILL_KIND = "drill:probe"  # the drill command: the only action a drill records
DRILL_POINT = "drill.probe"  # the failpoint the drill arms to make its command fail
# A snowflake no Discord user can have before 2084 (ids encode their creation time), and the largest a
# PostgreSQL bigint holds: a small id like 1 is a test's or an import's user, and 0 is the bot's own
# autonomous requester.
DRILL_USER_ID = 2**63 - 1


def is_drill_kind(kind: str | None) -> bool:
    """Whether an action or incident kind belongs to a fire drill."""
    return kind is not None and kind.startswith(DRILL_KIND_PREFIX)
