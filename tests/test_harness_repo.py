"""The temp repository fixture: a clean, independent copy of the bot."""

from __future__ import annotations

from pathlib import Path

from tests.harness.repo import PROJECT, copy_of_bot, git


def test_copy_is_a_clean_independent_repository(tmp_path: Path) -> None:
    """The copy has the bot's code on main with one commit; editing it leaves the project alone."""
    repo = copy_of_bot(tmp_path / "repo")
    assert (repo / "cogs" / "dice.py").read_text() == (PROJECT / "cogs" / "dice.py").read_text()
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".venv").exists()
    (repo / "cogs" / "dice.py").write_text("# changed in the copy\n")
    assert (PROJECT / "cogs" / "dice.py").read_text() != "# changed in the copy\n"
