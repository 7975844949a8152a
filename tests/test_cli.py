"""The `mendbot` command as a new user runs it: config errors and the scripted playground."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.docblocks import blocks, console_commands, make_targets, mismatches, piped_script, transcript

REPO = Path(__file__).resolve().parent.parent


def _mendbot(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mendbot", *args],
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
    assert "[#dev] mendbot (m4): ⏰ Okay @mallory, I'll remind you in 10 min: stretch" in out
    assert "[#dev] mendbot (m5): ⏰ @mallory reminder: stretch" in out
    assert (tmp_path / "data" / "playground" / "mendbot.db").exists()
    assert not (tmp_path / "data" / "mendbot.db").exists()  # the production database is never touched


def test_a_failing_command_is_one_line_between_the_chat_lines(tmp_path: Path) -> None:
    """A command that fails in the playground prints one `!` line, its traceback going to the log file:
    no traceback (and no "incident opened" line, which the announcement in #dev says) in the transcript."""
    config = _config(tmp_path, "discord: {extensions: [mendbot.cogs.incidents, tests.fixtures.buggy_dice]}\n")
    result = _mendbot("--config", str(config), "play", "--data-dir", str(tmp_path / "pg"), cwd=tmp_path,
                      stdin="!roll 1d6\n!roll 1d6\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    log = tmp_path / "pg" / "logs" / "mendbot.jsonl"
    assert "Traceback" not in result.stderr and "incident opened" not in result.stderr, result.stderr
    assert all(line.startswith("! ") for line in lines), result.stderr  # one line each, nothing under it
    assert [line for line in lines if "roll" in line] == 2 * [
        f"! command failed (command=roll): ZeroDivisionError: integer division or modulo by zero "
        f"(traceback in {log})"
    ]
    assert "Traceback" in log.read_text()
    assert "Something went wrong on my side (ZeroDivisionError)" in result.stdout


def test_an_incident_from_an_earlier_session_is_announced_again(tmp_path: Path) -> None:
    """In the next playground session an incident's announcement (a message of the session before) is
    posted again when the incident changes: the reply is right and nothing is logged about it."""
    config = _config(tmp_path, "discord: {extensions: [mendbot.cogs.incidents, tests.fixtures.buggy_dice]}\n")
    play = ["--config", str(config), "play", "--data-dir", str(tmp_path / "pg")]
    first = _mendbot(*play, cwd=tmp_path, stdin="!roll 1d6\n")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Incident #1: the `roll` command" in first.stdout, first.stdout
    second = _mendbot(*play, cwd=tmp_path, stdin="#dev\n/incident 1 acknowledge\n")
    assert second.returncode == 0, second.stderr
    assert "[#dev] mendbot (m1): Incident #1 is now acknowledged." in second.stdout, second.stdout
    assert "Incident #1: the `roll` command — acknowledged" in second.stdout, second.stdout
    assert "Traceback" not in second.stderr and "bookkeeping failed" not in second.stderr, second.stderr


def test_playground_line_it_cannot_run_gives_exit_2(tmp_path: Path) -> None:
    """A line the playground cannot run is reported, the script goes on, and the exit code is 2."""
    result = _mendbot("--config", str(_config(tmp_path)), cwd=tmp_path, stdin="/nosuch\n/roll d4\n")
    assert result.returncode == 2
    assert "! no slash command /nosuch" in result.stdout
    assert "🎲 `1d4`" in result.stdout


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    """`mendbot --version` prints the installed version and exits 0."""
    result = _mendbot("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert re.fullmatch(r"mendbot \d+\.\d+\.\d+\S*\n", result.stdout)


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("run", ["--config"]),
        ("play", ["--config", "--data-dir", "--fresh"]),
        ("doctor", ["--config"]),
        ("worker", ["--config"]),
    ],
)
def test_each_subcommand_has_help_with_its_options(tmp_path: Path, command: str, options: list[str]) -> None:
    """`mendbot <command> --help` lists that command's own options and exits 0."""
    result = _mendbot(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert f"usage: mendbot {command}" in result.stdout
    for option in options:
        assert option in result.stdout


def test_config_after_the_subcommand_works(tmp_path: Path) -> None:
    """`mendbot play --config FILE` reads FILE, like `mendbot --config FILE play`."""
    config = _config(tmp_path, "discord: {command_prefix: '?'}\n")
    result = _mendbot("play", "--config", str(config), cwd=tmp_path, stdin="?roll d4\n")
    assert result.returncode == 0, result.stderr
    assert "🎲 `1d4`" in result.stdout


def test_env_file_with_other_variables_and_empty_secrets_starts(tmp_path: Path) -> None:
    """`.env.example` copied as is, plus another tool's variable, starts the playground (exit 0)."""
    example = (REPO / ".env.example").read_text()
    (tmp_path / ".env").write_text(example + "\nSOME_OTHER_TOOL=1\nLOG_LEVEL=debug\n")
    result = _mendbot("--config", str(_config(tmp_path)), cwd=tmp_path, stdin="/roll d4\n")
    assert result.returncode == 0, result.stderr
    assert "mendbot playground ready" in result.stdout  # no token: the playground, not Discord


def test_log_level_debug_from_env_file_reaches_the_log(tmp_path: Path) -> None:
    """LOG_LEVEL=debug in .env makes the JSON log keep debug records (the default keeps info and up)."""
    config = _config(tmp_path)
    quiet = _mendbot("--config", str(config), "play", "--data-dir", "quiet", cwd=tmp_path, stdin="/roll d4\n")
    assert quiet.returncode == 0, quiet.stderr
    (tmp_path / ".env").write_text("LOG_LEVEL=debug\n")
    loud = _mendbot("--config", str(config), "play", "--data-dir", "loud", cwd=tmp_path, stdin="/roll d4\n")
    assert loud.returncode == 0, loud.stderr
    assert '"level": "debug"' not in (tmp_path / "quiet" / "logs" / "mendbot.jsonl").read_text()
    assert '"level": "debug"' in (tmp_path / "loud" / "logs" / "mendbot.jsonl").read_text()


def test_negative_discord_id_in_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    """`dev_channel_ids: [-5]` stops start-up with exit 78 naming the key and the config file."""
    config = _config(tmp_path, "discord: {dev_channel_ids: [-5]}\n")
    result = _mendbot("--config", str(config), "play", cwd=tmp_path)
    assert result.returncode == 78
    assert "discord.dev_channel_ids.0: must be a Discord id" in result.stderr
    assert str(config) in result.stderr


def test_playground_keeps_its_own_state_and_fresh_wipes_it(tmp_path: Path) -> None:
    """Reminders persist between playground sessions in --data-dir; --fresh starts from nothing."""
    config = _config(tmp_path)
    first = _mendbot(
        "--config", str(config), "play", "--data-dir", "pg", cwd=tmp_path, stdin="/remind 1h tea\n"
    )
    assert first.returncode == 0, first.stderr
    assert not (tmp_path / "data").exists()
    with sqlite3.connect(tmp_path / "pg" / "mendbot.db") as db:
        assert db.execute("SELECT text FROM reminders").fetchall() == [("tea",)]
    again = _mendbot("--config", str(config), "play", "--data-dir", "pg", "--fresh", cwd=tmp_path, stdin="")
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(tmp_path / "pg" / "mendbot.db") as db:
        assert db.execute("SELECT text FROM reminders").fetchall() == []


def test_fresh_refuses_to_wipe_the_production_data_dir(tmp_path: Path) -> None:
    """`--fresh --data-dir data` (the bot's real state) is refused with exit 78 and nothing removed."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mendbot.db").write_text("precious")
    result = _mendbot(
        "--config", str(_config(tmp_path)), "play", "--data-dir", "data", "--fresh", cwd=tmp_path
    )
    assert result.returncode == 78
    assert "--fresh will not wipe" in result.stderr
    assert (tmp_path / "data" / "mendbot.db").read_text() == "precious"


def test_fresh_refuses_a_directory_holding_other_files(tmp_path: Path) -> None:
    """`--fresh --data-dir` on a directory with files the bot did not make removes nothing, exit 78."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    result = _mendbot(
        "--config", str(_config(tmp_path)), "play", "--data-dir", "home", "--fresh", cwd=tmp_path
    )
    assert result.returncode == 78
    assert "--fresh will not wipe home (it holds thesis.tex)" in result.stderr
    assert (home / "thesis.tex").read_text() == "years of work"


def test_playground_clock_starts_at_the_real_time(tmp_path: Path) -> None:
    """A reminder made in the playground is stamped with today's time, not a fixed date."""
    before = time.time()
    result = _mendbot("--config", str(_config(tmp_path)), cwd=tmp_path, stdin="/remind 10m stretch\n")
    after = time.time()
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "data" / "playground" / "mendbot.db") as db:
        ((created,),) = db.execute("SELECT created_at FROM reminders").fetchall()
    assert before - 1 <= datetime.fromisoformat(created).timestamp() <= after + 1


def test_bad_option_values_are_reported_lines_exit_2(tmp_path: Path) -> None:
    """A bad choice, number, user or duration is a `!` line; the script goes on and ends with exit 2."""
    script = "/incident 1 action=bogus\n/incident x\n/roll d4\nwait 99999999999999d\nsleep forever\n"
    result = _mendbot("--config", str(_config(tmp_path)), cwd=tmp_path, stdin=script)
    assert result.returncode == 2, result.stderr
    assert "! action must be one of show, acknowledge, mute, resolve, reopen, not 'bogus'" in result.stdout
    assert "! incident_id must be an integer, not 'x'" in result.stdout
    assert "! wait takes a duration up to a year" in result.stdout
    assert "! sleep takes seconds" in result.stdout
    assert "🎲 `1d4`" in result.stdout
    assert "Traceback" not in result.stderr


def test_ctrl_c_ends_the_playground_cleanly(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) while the playground waits for input ends it with exit 0 and no traceback."""
    base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mendbot", "--config", str(_config(tmp_path)), "play"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    try:
        assert "playground ready" in process.stdout.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)  # stdin stays open: Ctrl-C alone must end it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert "mendbot stopped (signal)" in out  # runs are stopped as resumable, and the user is told


def test_a_taken_dashboard_port_is_no_warning_in_the_playground(tmp_path: Path) -> None:
    """With the dashboard's port held by something else the playground serves on another and prints
    its link; the console shows no "dashboard not started" warning, which was untrue."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    try:
        config = _config(tmp_path, f"dashboard: {{port: {taken}}}\n")
        result = _mendbot(
            "--config", str(config), "play", "--data-dir", str(tmp_path / "pg"), cwd=tmp_path, stdin="quit\n"
        )
    finally:
        holder.close()
    assert result.returncode == 0, result.stderr
    link = re.search(r"^dashboard: http://127\.0\.0\.1:(\d+)/signin\?u=\d+&t=", result.stdout, re.M)
    assert link is not None and int(link.group(1)) != taken, result.stdout
    assert "dashboard not started" not in result.stderr and "address already in use" not in result.stderr


def _fresh_clone(tmp_path: Path) -> Path:
    """The tracked tree as it is now (no .env, config.yaml or data/), with this checkout's
    virtualenv (a fresh install needs the package index; `-o` tells make it is up to date)."""
    clone = tmp_path / "clone"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    (clone / ".venv").symlink_to(REPO / ".venv")
    assert not (clone / ".env").exists() and not (clone / "config.yaml").exists()
    return clone


def _make(
    target: str, clone: Path, stdin: str = "", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`make <target>` in the clone as a newcomer runs it: no keys, no config, the clone's code."""
    unset = {"MENDBOT_CONFIG", "MAKEFLAGS", "MAKELEVEL", "DISCORD_TOKEN", "ANTHROPIC_API_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    up_to_date = ["-o", ".venv/.installed", "-o", ".venv/.installed-dev"]
    return subprocess.run(
        ["make", "--no-print-directory", *up_to_date, target],
        cwd=clone,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "PYTHONPATH": str(clone)},
        check=False,
    )


@pytest.mark.cli  # `make demo` runs the bundled Claude Code CLI
def test_readme_quick_start_in_a_fresh_clone(tmp_path: Path) -> None:
    """The README's quickstart, verbatim, in a fresh clone: every `make` command of its console blocks
    runs — `make run` typed the README's playground script prints the README's transcript, `make
    demo` goes through the loop — each exiting 0; then `make doctor` there says it can run.

    `make test` is the suite this test is part of: it is checked to exist, not run again.
    """
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.fail("make and git are required, as the README says")
    clone = _fresh_clone(tmp_path)
    readme = clone / "README.md"
    (shown,) = [block for block in blocks(readme) if block.kind == "playground"]
    session = transcript(shown)
    assert session.command is not None, "the README's playground example lost its command"
    script, _ = piped_script(session.command)
    targets = [
        words[1:]
        for block in blocks(readme)
        if block.kind == "console"
        for words in console_commands(block.body)
        if words[0] == "make"
    ]
    assert ["run"] in targets and ["demo"] in targets, targets
    for target in targets:
        assert len(target) == 1 and target[0] in {"run", "demo", "test"}, (
            f"teach this test to run make {target}"
        )
        if target == ["test"]:
            assert "test" in make_targets()
            continue
        result = _make(target[0], clone, stdin=script if target == ["run"] else "")
        assert result.returncode == 0, f"make {target[0]}: {result.stdout}{result.stderr}"
        assert "Traceback" not in result.stdout + result.stderr
        printed = [
            line for line in result.stdout.splitlines() if line.strip() and not line.startswith(".venv/bin/")
        ]
        if target == ["run"]:
            assert mismatches(session.lines, printed) == [], result.stdout
            assert (clone / "data" / "playground" / "mendbot.db").exists()
            assert not (clone / "data" / "mendbot.db").exists()
        else:
            assert "⏪ Rolled back run #1" in result.stdout and printed[-1].startswith(
                "That was the loop."
            ), printed

    # The README's other first-hour command: `make doctor` says it can run (the playground) and why.
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run(["git", *identity, *args], cwd=clone, check=True, capture_output=True)
    doctor = _make("doctor", clone, timeout=120)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    lines = [line for line in doctor.stdout.splitlines() if not line.startswith(".venv/bin/")]
    assert any(line.startswith("✅ mode: playground") for line in lines), lines
    assert any(line.startswith("✅ config") for line in lines), lines
    assert any(line.startswith("✅ git: main at") for line in lines), lines
    assert any(line.startswith("✅ sandbox") for line in lines), lines
    assert not any(line.startswith("❌") for line in lines), lines


def _in_a_terminal(tmp_path: Path, keys: list[tuple[str, bytes]]) -> tuple[str, int]:
    """Run the interactive playground on a pseudo-terminal; each (wait_for, keys) waits, then types."""
    import pty
    import select

    config = _config(tmp_path)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the playground, as a person starts it in a terminal
        os.chdir(tmp_path)
        os.environ.pop("MENDBOT_CONFIG", None)
        os.environ["PYTHONPATH"] = str(REPO)
        os.execv(sys.executable, [sys.executable, "-m", "mendbot", "--config", str(config), "play"])
    seen = b""

    def read_until(marker: str, limit_s: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + limit_s
        while marker.encode() not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 65536)
                except OSError:  # the child closed the terminal
                    return

    try:
        for marker, typed in keys:
            read_until(marker, 60)
            assert marker.encode() in seen, seen.decode(errors="replace")[-500:]
            os.write(fd, typed)
        read_until("\0never", 30)  # until the terminal closes
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return seen.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def test_ctrl_c_in_the_terminal_ends_cleanly(tmp_path: Path) -> None:
    """Ctrl-C at the interactive prompt ends the playground with exit 0 and no traceback."""
    out, code = _in_a_terminal(tmp_path, [("alice #general> ", b"\x03")])
    assert code == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out


def test_ctrl_d_in_the_terminal_ends_cleanly(tmp_path: Path) -> None:
    """Ctrl-D (end of input) after a command ends the interactive playground with exit 0."""
    out, code = _in_a_terminal(tmp_path, [("alice #general> ", b"/roll d4\r"), ("🎲 `1d4`", b"\x04")])
    assert code == 0, out
    assert "Traceback" not in out
