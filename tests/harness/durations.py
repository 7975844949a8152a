"""`python -m tests.harness.durations OUTPUT`: the slow tests of a pytest run, for tests/durations.txt.

OUTPUT is what `pytest --durations=0` printed. Each test's setup, call and teardown are added up; one
line per test, `seconds nodeid`, longest first. tests/conftest.py hands the longest out first, so the
parallel workers finish together instead of one waiting on a long test started last.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

_LINE = re.compile(r"^(\d+(?:\.\d+)?)s (?:setup|call|teardown)\s+(\S.*)$")
_AT_LEAST_S = 1.0


def durations(output: str) -> dict[str, float]:
    total: defaultdict[str, float] = defaultdict(float)
    for line in output.splitlines():
        match = _LINE.match(line.rstrip())
        if match:
            total[match.group(2)] += float(match.group(1))
    return dict(total)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m tests.harness.durations PYTEST_OUTPUT\n")
        return 2
    found = durations(Path(argv[0]).read_text(encoding="utf-8", errors="replace"))
    print("# seconds nodeid: the tests that took 1 s or more in a whole run (make durations)")
    for nodeid, seconds in sorted(found.items(), key=lambda kv: (-kv[1], kv[0])):
        if seconds >= _AT_LEAST_S:
            print(f"{seconds:.1f} {nodeid}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
