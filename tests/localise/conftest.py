"""Collects each seeded fault's outcome and prints the localisation rates at the end of the run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.localise.driver import Outcome

_OUTCOMES: list[Outcome] = []  # filled by the suite, read by the summary below


@pytest.fixture
def outcomes() -> list[Outcome]:
    """Where a localisation test leaves its outcome for the summary."""
    return _OUTCOMES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _OUTCOMES:
        return
    total = len(_OUTCOMES)
    files = sum(o.file_top1 for o in _OUTCOMES)
    functions = sum(o.function_top3 for o in _OUTCOMES)
    terminalreporter.section("fault localisation")
    for o in _OUTCOMES:
        terminalreporter.write_line(
            f"{o.seed.name:>8} {o.seed.shape:<46} file {'top-1' if o.file_top1 else 'MISS ':5}"
            f"  function {'top-3' if o.function_top3 else 'MISS '}  first: {(o.suspects or ['-'])[0]}"
        )
    terminalreporter.write_line(
        f"file top-1 {files}/{total} ({100 * files / total:.0f}%), "
        f"function top-3 {functions}/{total} ({100 * functions / total:.0f}%)"
    )
    for origin in sorted({o.seed.origin for o in _OUTCOMES}):
        group = [o for o in _OUTCOMES if o.seed.origin == origin]
        terminalreporter.write_line(
            f"  {origin}: file top-1 {sum(o.file_top1 for o in group)}/{len(group)}, "
            f"function top-3 {sum(o.function_top3 for o in group)}/{len(group)}"
        )
