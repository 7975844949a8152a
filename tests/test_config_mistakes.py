"""A mistake in how mendbot is started — a path it cannot use, a config file that is not there, a
playground without users or with two alike — is one line and exit 78, never a traceback or a silent
default; an option value Discord's client would not offer is a reported line in the playground."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mendbot.kernel.settings import ConfigError, load_settings
from mendbot.tools.playground import VirtualWorld
from tests.test_playground import _play

REPO = Path(__file__).resolve().parent.parent


def _mendbot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mendbot", *args],
        cwd=cwd,
        check=False,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
    )


def _one_line_78(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused start printed (exit 78, no traceback)."""
    assert result.returncode == 78, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_data_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    """`--data-dir /proc/x` names the directory and why, in one line, exit 78."""
    (tmp_path / "config.yaml").write_text("health: {enabled: false}\n")
    line = _one_line_78(_mendbot("play", "--data-dir", "/proc/x", cwd=tmp_path))
    assert "--data-dir /proc/x cannot be used" in line


def test_an_empty_data_dir_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    """`--data-dir ""` is refused, instead of putting the database in the directory mendbot ran in."""
    (tmp_path / "config.yaml").write_text("health: {enabled: false}\n")
    assert "--data-dir is empty" in _one_line_78(_mendbot("play", "--data-dir", "", cwd=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_missing_config_named_by_mendbot_config_is_refused(tmp_path: Path) -> None:
    """`MENDBOT_CONFIG=/missing.yaml` stops start-up naming the file, instead of running on the defaults."""
    result = _mendbot("play", cwd=tmp_path, env={"MENDBOT_CONFIG": str(tmp_path / "missing.yaml")})
    line = _one_line_78(result)
    assert all(part in line for part in ("MENDBOT_CONFIG names", "missing.yaml", "does not exist")), line


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ("[]", "playground.users: needs at least one user"),
        ("[{name: alice}, {name: alice, allowed: true}]", "playground.users: `alice` is listed twice"),
    ],
    ids=["no users", "the same name twice"],
)
def test_playground_users_that_cannot_work_are_refused(tmp_path: Path, users: str, expected: str) -> None:
    """No playground user, or two with one name, is a config error naming playground.users, exit 78."""
    (tmp_path / "config.yaml").write_text(f"health: {{enabled: false}}\nplayground: {{users: {users}}}\n")
    assert expected in _one_line_78(_mendbot("play", cwd=tmp_path))


def test_an_empty_data_dir_in_config_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`data_dir: ""` in config.yaml is refused like `--data-dir ""`."""
    config = tmp_path / "config.yaml"
    config.write_text('data_dir: ""\n')
    monkeypatch.setenv("MENDBOT_CONFIG", str(config))  # restored after the test
    with pytest.raises(ConfigError, match="data_dir: is empty"):
        load_settings(_env_file=None)


async def test_a_boolean_option_that_is_not_one_is_refused(world: VirtualWorld) -> None:
    """`/fix … security=maybe` is a reported line, not a run started as if security were off."""
    out = await _play(world, "/fix the roll is broken security=maybe")
    assert "! security must be a boolean, not 'maybe'" in out
    assert await world.bot.services.improve.runs.list_recent() == []


async def test_devmode_on_with_a_duration_as_the_readme_writes_it(world: VirtualWorld) -> None:
    """`/devmode on 45m` switches dev mode on for 45 minutes, as README writes it."""
    out = await _play(world, "/devmode on 45m")
    assert re.search(r"Dev mode on for 45 min, until \d\d:\d\d UTC:", out), out
    assert "until in" not in out
    assert "state must be one of" not in out


@pytest.mark.parametrize(
    ("section", "written"),
    [
        ("access:\n  allowed_user_ids: [alice]\n", "'alice'"),
        ("access:\n  allowed_role_ids: [moderators]\n", "'moderators'"),
        ("discord:\n  dev_guild_id: my server\n", "'my server'"),
    ],
    ids=["user-name", "role-name", "guild-name"],
)
def test_a_name_where_a_discord_id_goes_says_how_to_copy_the_id(
    tmp_path: Path, section: str, written: str
) -> None:
    """An allow-list entry (or a guild) written as a name is refused in one line that says it must be the
    id, and how to get one: Developer Mode, then Copy ID — not only for a negative number."""
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n{section}")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, _env_file=None)
    line = str(refused.value)
    assert "\n" not in line and written in line, line
    assert "a Discord id, not a name" in line and "Developer Mode" in line and "Copy" in line, line
