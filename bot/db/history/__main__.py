"""`python -m mendbot.db.history`: write the history's snapshot, `fresh.sql`, after changing the history.

An empty SQLite database is made from the snapshot while it carries the digest of the history's files
as they are (`mendbot.db.migrate.current_snapshot`); a test fails until the snapshot is written again.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mendbot.db.migrate import HISTORY, SNAPSHOT, dump_snapshot


def main() -> int:
    target = Path(str(HISTORY)) / SNAPSHOT
    target.write_text(dump_snapshot(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
