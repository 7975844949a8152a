"""The first half of the smoke load of a bot mendbot is attached to: every Python file of a checkout of its
repository compiled, inside the sandbox.

`mendbot.trust.host_start` binds this file read-only into the sandbox (the copy that runs is the installed
mendbot's, never the checkout's) and runs it with the checkout as the working directory:

    python /run/mendbot/replay/host_smoke.py

A syntax error anywhere is a failure, whether the bot's start imports that module or not: one `❌ path:
SyntaxError: …` line each, and the exit status 1. It imports only the standard library and runs nothing
of the tree. The second half, the bot started by its own program, is `host_start.smoke_start`'s.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["main"]

_SKIPPED_DIRS = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", ".mendbot", ".tox"}


def _compile_all(root: Path) -> list[str]:
    failures = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = Path(directory) / name
            try:
                compile(path.read_bytes(), str(path.relative_to(root)), "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as exc:
                failures.append(f"{path.relative_to(root)}: {type(exc).__name__}: {exc}")
    return failures


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: host_smoke.py\n")
        return 2
    failures = _compile_all(Path.cwd())
    for failure in failures:
        print(f"❌ {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
