"""The proof's test runner: a change's regression tests under coverage, with the changed sources unreadable.

`bot.improve.proof` binds this file read-only into the sandbox (the installed bot's copy, never the
checkout's) and runs it in a fresh copy of the branch's (or the base's) tree:

    python /run/mendbot/proof/runner.py '<json: {"tests": [...], "sources": {path: [changed lines]}}>'

It runs pytest on the tests in this process under `coverage`, measuring which of the changed lines of
each changed source file (`sources`, repository paths) the tests executed, and denies every read of those
files that is not an import (an audit hook, which Python cannot remove once added): a "test" that only
looks for the text the change adds fails instead of passing. It prints one line
`mendbot-proof-coverage {json}` — for each source, the changed lines that are statements and those the
tests ran — and exits with pytest's code.

This runs in the process under test, so the tests' code could still fake the coverage it reports; the
label it supports ("proven by test") ranks below the replay's, which is judged from outside.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

__all__ = ["MARKER", "main"]

MARKER = "mendbot-proof-coverage"
_IMPORT_LOADERS = ("get_data", "get_code", "source_to_code")


def _deny_reading(paths: set[str], active: list[bool]) -> None:
    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not active or event != "open" or not args or not isinstance(args[0], str | bytes | os.PathLike):
            return
        try:
            path = os.path.realpath(os.fsdecode(args[0]))
        except (TypeError, ValueError):
            return
        if path not in paths:
            return
        caller = sys._getframe(1)
        while caller is not None:  # an import reads the source through importlib's loader
            if caller.f_code.co_name in _IMPORT_LOADERS and "importlib" in caller.f_code.co_filename:
                return
            caller = caller.f_back  # type: ignore[assignment]
        raise PermissionError(f"a proof's test may not read the source of a changed file: {path}")

    sys.addaudithook(hook)


def main(argv: list[str]) -> int:
    request = json.loads(argv[1])
    tests: list[str] = request["tests"]
    sources: dict[str, list[int]] = request["sources"]
    absolute = {os.path.realpath(path): path for path in sources}
    import coverage
    import pytest

    cov = coverage.Coverage(data_file=None, include=list(absolute), config_file=False, branch=False)
    guarding = [True]  # emptied once the tests are done: coverage itself then reads the sources
    _deny_reading(set(absolute), guarding)
    cov.start()
    try:
        code = pytest.main(["-q", "-p", "no:cacheprovider", *tests])
    finally:
        cov.stop()
        guarding.clear()
    data = cov.get_data()
    report: dict[str, dict[str, list[int]]] = {}
    for real, rel in absolute.items():
        statements = set(cov.analysis2(real)[1]) if os.path.exists(real) else set()
        changed = sorted(set(sources[rel]) & statements)
        ran = set(data.lines(real) or ())
        report[rel] = {"changed": changed, "ran": sorted(line for line in changed if line in ran)}
    sys.stdout.write(f"\n{MARKER} {json.dumps(report)}\n")
    sys.stdout.flush()
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
