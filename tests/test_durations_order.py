"""The suite hands out its longest tests first, from a whole run's recorded durations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest
from tests.harness.durations import durations

OUTPUT = """\
============================= slowest durations ==============================
27.54s call     tests/test_ship_e2e.py::test_kill[deploy.during_reload-Run #1: back after a restart]
0.50s setup    tests/test_ship_e2e.py::test_kill[deploy.during_reload-Run #1: back after a restart]
3.10s call     tests/test_db.py::test_quick[postgresql]
======================= 3 passed in 31.00s =======================
"""


def test_a_tests_setup_call_and_teardown_add_up_and_ids_keep_their_spaces() -> None:
    assert durations(OUTPUT) == {
        "tests/test_ship_e2e.py::test_kill[deploy.during_reload-Run #1: back after a restart]": 28.04,
        "tests/test_db.py::test_quick[postgresql]": 3.1,
    }


def test_the_recorded_file_is_read_back_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = tmp_path / "durations.txt"
    recorded.write_text("# seconds nodeid\n28.0 tests/a.py::t[x y]\n3.1 tests/b.py::u\n", encoding="utf-8")
    monkeypatch.setattr(conftest, "_DURATIONS", recorded)
    assert conftest._recorded_durations() == {"tests/a.py::t[x y]": 28.0, "tests/b.py::u": 3.1}
