"""What `make` prints while pip installs mendbot: a few lines of progress instead of minutes of silence.

    python bot/tools/install_progress.py .venv/bin/pip install -e .

Runs the pip command it is given (with pip's own output, minus its progress bars) and prints what a
person waiting wants to know: that the first install takes minutes and why, how many packages are
collected so far, when it is installing them, and how long it took. On a terminal the count is one
line updated in place; elsewhere (CI, a pipe) a line every ten packages. When pip fails, everything
it said is printed, then its exit code is returned.

It is run by path before mendbot is installed, so it uses the standard library only.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import TextIO

__all__ = ["main"]

_COLLECTING = re.compile(r"^Collecting (?P<name>[A-Za-z0-9_.\-\[\],]+)")
_INSTALLING = re.compile(r"^Installing collected packages: (?P<names>.*)$")
_EVERY = 10  # packages between two progress lines when the output is not a terminal
HEADER = (
    "mendbot: installing into .venv — the first time takes a few minutes "
    "(claude-agent-sdk alone brings the Claude Code CLI, about 380 MB)"
)


def _took(seconds: float) -> str:
    minutes, left = divmod(round(seconds), 60)
    return f"{minutes} min {left} s" if minutes else f"{left} s"


def follow(lines: Iterable[str], out: TextIO, *, live: bool) -> tuple[list[str], int]:
    """Print progress for pip's output lines as they come; (every line pip printed, packages collected)."""
    said: list[str] = []
    collected = 0
    for raw in lines:
        line = raw.rstrip("\n")
        said.append(line)
        if (match := _COLLECTING.match(line)) is not None:
            collected += 1
            name = match["name"]
            if live:
                out.write(f"\r\033[K  collecting packages: {collected} ({name})")
                out.flush()
            elif collected % _EVERY == 1:
                out.write(f"  collecting packages: {collected} so far ({name})\n")
                out.flush()
        elif (match := _INSTALLING.match(line)) is not None:
            count = len([name for name in match["names"].split(",") if name.strip()])
            out.write(("\r\033[K" if live else "") + f"  installing {count} packages…\n")
            out.flush()
    if live and collected:
        out.write("\r\033[K")
    return said, collected


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    if not command:
        out.write(__doc__ or "")
        return 2
    started = time.monotonic()
    out.write(HEADER + "\n")
    out.flush()
    process = subprocess.Popen(
        [*command, "--progress-bar", "off"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert process.stdout is not None
    said, _ = follow(process.stdout, out, live=out.isatty())
    code = process.wait()
    if code != 0:
        out.write("\n".join(said) + "\n")
        out.write(f"mendbot: the install failed (pip exited {code}); pip's output is above\n")
        return code
    out.write(f"  done in {_took(time.monotonic() - started)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
