"""Benches that cannot rot: every bench is in `make bench` and in `make bench-short`, which CI runs after
`make test`, and every bench has a short mode (it reads `--short` through bench/sizes.py)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HELPERS = {"sizes.py", "minimal_bot.py"}  # imported or started by benches; not benches themselves


def _benches_in_makefile() -> list[str]:
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"^BENCHES := ((?:.*\\\n)*.*)$", makefile, re.M)
    assert match is not None, "the Makefile names its benches in BENCHES"
    return match.group(1).replace("\\\n", " ").split()


def test_every_bench_is_in_make_bench_and_in_its_short_run() -> None:
    """A bench file `make bench` does not run is one nobody notices breaking: every bench/*.py but its
    helpers is in BENCHES, which both `bench` and `bench-short` run."""
    makefile = (REPO / "Makefile").read_text()
    files = sorted(path.stem for path in (REPO / "bench").glob("*.py") if path.name not in HELPERS)
    assert sorted(_benches_in_makefile()) == files
    for target, short in (("bench", False), ("bench-short", True)):
        recipe = re.search(rf"^{target}: setup\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe is not None and "$(BENCHES)" in recipe.group(1), target
        assert ("--short" in recipe.group(1)) == short, target


def test_every_bench_has_a_short_mode() -> None:
    """Each bench takes its sizes from bench/sizes.py (imported before anything reads its arguments), so
    `--short` makes it small instead of being ignored or refused."""
    missing = [
        name
        for name in _benches_in_makefile()
        if "from sizes import" not in (REPO / "bench" / f"{name}.py").read_text()
    ]
    assert missing == []


def test_ci_runs_the_readme_test_command_first_then_the_short_benches() -> None:
    """`.ci/run` runs `make test` (the README's command) first, then `make bench-short`, stopping at the
    first that fails."""
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    assert "set -euo pipefail" in commands
    assert commands[commands.index("make test") :] == ["make test", "make bench-short"]
