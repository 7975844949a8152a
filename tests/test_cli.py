"""The `mendbot` command as a new user runs it: config errors and the scripted playground."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _mendbot(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
    )


def _config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("health: {enabled: false}\n" + text)
    return path


def test_invalid_config_is_one_line_naming_the_key_exit_78(tmp_path: Path) -> None:
    """A bad value stops start-up with one line naming the key and the fix, exit code 78."""
    config = _config(tmp_path, "observe:\n  error_rate:\n    threshold: 3\n")
    result = _mendbot("--config", str(config), "play", cwd=tmp_path)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "observe.error_rate.threshold" in lines[0]
    assert "config.yaml" in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_key_is_refused_exit_78(tmp_path: Path) -> None:
    """A misspelt key is refused rather than silently ignored."""
    result = _mendbot("--config", str(_config(tmp_path, "discrod: {}\n")), "play", cwd=tmp_path)
    assert result.returncode == 78
    assert "discrod" in result.stderr


def test_run_without_token_says_how_to_fix_exit_78(tmp_path: Path) -> None:
    """`mendbot run` without DISCORD_TOKEN explains where to put it and offers the playground."""
    result = _mendbot("--config", str(_config(tmp_path)), "run", cwd=tmp_path)
    assert result.returncode == 78
    assert "DISCORD_TOKEN" in result.stderr
    assert "mendbot play" in result.stderr


def test_scripted_playground_answers_roll_and_bad_roll(tmp_path: Path) -> None:
    """Piped lines run as a script: /roll 2d6 is answered, /roll 2x gets a clear error, exit 0."""
    script = "/roll 2d6\n/roll 2x\n@mallory\n#dev\n!roll d20\n/remind 10m stretch\nwait 10m\n"
    result = _mendbot("--config", str(_config(tmp_path)), cwd=tmp_path, stdin=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "mendbot playground ready" in out
    assert "[#general] mendbot (m1): 🎲 `2d6` →" in out
    assert "[#general] mendbot (m2): `2x` isn't dice notation" in out
    assert "mallory in #dev> !roll d20" in out
    assert "[#dev] mendbot (m3): 🎲 `1d20` →" in out
    assert "[#dev] mendbot (m4): ⏰ Okay @mallory, I'll remind you in 600s: stretch" in out
    assert "[#dev] mendbot (m5): ⏰ @mallory reminder: stretch" in out
    assert (tmp_path / "data" / "mendbot.db").exists()


def test_playground_line_it_cannot_run_gives_exit_2(tmp_path: Path) -> None:
    """A line the playground cannot run is reported, the script goes on, and the exit code is 2."""
    result = _mendbot("--config", str(_config(tmp_path)), cwd=tmp_path, stdin="/nosuch\n/roll d4\n")
    assert result.returncode == 2
    assert "! no slash command /nosuch" in result.stdout
    assert "🎲 `1d4`" in result.stdout
