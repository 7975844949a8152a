"""The playground as a session: it never freezes during a run, Ctrl-C leaves the run resumable, its world
keeps its ids across sessions, one playground per data directory, and one clock rule that holds."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import discord
import pytest

from mendbot.tools.playground import Playground, PlaygroundError, VirtualWorld
from tests.docblocks import blocks
from tests.harness.discord import make_settings, running_world
from tests.harness.model_double import Hold, ModelDouble, text
from tests.harness.playground import PlaygroundProcess
from tests.harness.repo import copy_of_bot, python_path

PROJECT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, repo: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\nrepo_dir: {repo}\nhealth: {{enabled: false}}\n")
    return config


class Terminal:
    """`mendbot play` on a pseudo-terminal, as a person runs it: interactive, lines typed one by one."""

    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.output = ""

    @classmethod
    async def start(cls, config: Path, *, code: Path, env: dict[str, str]) -> Terminal:
        master, slave = pty.openpty()
        base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mendbot",
            "--config",
            str(config),
            "play",
            cwd=config.parent,
            env={**base, "PYTHONPATH": python_path(code), **env},
            stdin=slave,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        os.close(slave)
        terminal = cls(process, master)
        await terminal.expect("playground ready", timeout=60)
        return terminal

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    async def expect(self, needle: str, timeout: float = 30) -> None:
        """Read output until `needle` appears (everything read is kept in `output`)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} within {timeout}s; output:\n{self.output[-3000:]}")
            try:
                chunk = await asyncio.wait_for(self.process.stdout.read(4096), left)
            except TimeoutError:
                continue
            if not chunk:
                raise AssertionError(f"output ended without {needle!r}:\n{self.output[-3000:]}")
            self.output += chunk.decode(errors="replace")

    async def close(self) -> None:
        os.close(self.master)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.mark.cli
async def test_every_command_is_answered_during_a_run_and_ctrl_c_leaves_it_resumable(tmp_path: Path) -> None:
    """Interactive, while run #1 waits on the model: `/runs`, `/run 1` and `@mendbot status` are answered
    at once (the playground froze for minutes), and Ctrl-C ends the session with exit 0 and the run
    interrupted, resumable."""
    repo = copy_of_bot(tmp_path / "repo")
    async with ModelDouble() as model:
        hold = Hold(then=text("never read"))
        model.script(hold)
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": model.base_url}
        terminal = await Terminal.start(_config(tmp_path, repo), code=repo, env=env)
        try:
            terminal.type("#dev")
            terminal.type("/investigate the roll command is broken")
            await asyncio.wait_for(hold.reached.wait(), 120)
            answers = {
                "/runs": "**#1** investigate 🧠 investigating",
                "/run 1": "**Origin:** requested by @alice",
                "@mendbot status": "#1 investigate 🧠 investigating",
            }
            for line, answer in answers.items():
                terminal.type(line)
                await terminal.expect(answer, timeout=30)
            assert not hold.release.is_set()  # all of it while the run was still waiting on the model
            terminal.process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(terminal.process.wait(), 60)
            await terminal.expect("mendbot stopped (signal)")
            assert code == 0, terminal.output[-2000:]
            await terminal.expect("mendbot stopped (signal)")
        finally:
            hold.release.set()
            await terminal.close()
    assert "did not settle" not in terminal.output
    with sqlite3.connect(tmp_path / "data" / "playground" / "mendbot.db") as db:
        assert db.execute("SELECT state, interrupted_from FROM runs").fetchall() == [
            ("interrupted", "investigating")
        ]


@pytest.mark.cli
async def test_cancel_answers_during_a_run_and_stops_it(tmp_path: Path) -> None:
    """In the playground a line is answered while a run works in the background, and `/cancel 1` stops
    the run (the line used to wait for the whole run)."""
    repo = copy_of_bot(tmp_path / "repo")
    async with ModelDouble() as model:
        hold = Hold(then=text("never read"))
        model.script(hold)
        settings = make_settings(
            tmp_path / "data",
            repo_dir=repo,
            anthropic_api_key="test-key",
            anthropic_base_url=model.base_url,
            improve={"stuck_timeout_s": 1e12},
        )
        async with running_world(settings, playground=True) as world:
            out = io.StringIO()
            playground = Playground(world, out=out)
            try:
                await asyncio.wait_for(playground.execute("#dev"), 5)
                await asyncio.wait_for(playground.execute("/investigate the roll is broken"), 20)
                await asyncio.wait_for(hold.reached.wait(), 120)
                await asyncio.wait_for(playground.execute("/cancel 1"), 20)
                await asyncio.wait_for(world.bot.services.improve.quiesce(), 60)
            finally:
                hold.release.set()
            state = (await world.bot.services.improve.runs.get(1)).state
    assert state == "cancelled"
    assert "cancel" in out.getvalue().lower()


async def _lines(world: VirtualWorld, *lines: str) -> str:
    out = io.StringIO()
    playground = Playground(world, out=out)
    for line in lines:
        try:
            await playground.execute(line)
        except PlaygroundError as exc:
            out.write(f"! {exc}\n")
    return out.getvalue()


async def test_a_reminder_does_not_fire_by_real_time_only_by_wait(tmp_path: Path) -> None:
    """The clock moves only with `wait`: `/remind 3s` is not delivered after 4 s of real time, and
    `wait 3s` delivers it."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, playground=True, real_clock=True) as world:
        out = await _lines(world, "/remind 3s stretch")
        assert "I'll remind you" in out
        await asyncio.sleep(4)
        await world.env.settle()
        assert "reminder: stretch" not in await _lines(world, "wait")
        assert "reminder: stretch" in await _lines(world, "wait 3s")


async def test_audit_counts_the_failures_just_recorded(tmp_path: Path) -> None:
    """`/audit` right after failures counts them (it read the database before the recorder's batch
    was written, and reported 0 failed)."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, playground=True) as world:
        await world.quiesce()
        for _ in range(6):
            world.bot.services.recorder.record(
                "command:flaky", "test", ok=False, duration_ms=1.0, error=RuntimeError("flaky broke")
            )
        out = await _lines(world, "#dev", "/audit")
    assert "the `flaky` command 6/6 failed" in out


async def test_an_incident_just_opened_reads_just_now(tmp_path: Path) -> None:
    """An incident's "Since" right after its failure reads "just now", not "in 0s"."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, playground=True, real_clock=True) as world:
        world.bot.services.recorder.record(
            "command:flaky", "test", ok=False, duration_ms=1.0, error=RuntimeError("flaky broke")
        )
        await world.quiesce()
        out = await _lines(world, "wait")
    assert "Since: just now" in out
    assert "in 0s" not in out


async def test_discord_timestamps_read_as_the_client_writes_them(tmp_path: Path) -> None:
    """Only the relative style (`<t:…:R>`) reads "in 30 min"; the others are a moment, in UTC as the
    playground says ("until in 30 min" was a `:f` stamp read as relative)."""
    settings = make_settings(tmp_path / "data")
    async with running_world(settings, playground=True, real_clock=True) as world:
        at = int(world.env.now().timestamp()) + 1800
        moment = datetime.fromtimestamp(at, UTC)
        stamps = " | ".join(f"<t:{at}:{style}>" for style in "RftTdDF") + f" | <t:{at}>"
        channel = world.bot.get_channel(world.dev.id)
        assert isinstance(channel, discord.TextChannel)
        await channel.send(f"until {stamps}")  # as the bot: the playground shows what it sends
        out = await _lines(world, "wait")
    assert (
        f"until in 30 min | {moment:%d %B %Y %H:%M} UTC | {moment:%H:%M} UTC | {moment:%H:%M:%S} UTC | "
        f"{moment:%Y-%m-%d} UTC | {moment:%d %B %Y} UTC | {moment:%A, %d %B %Y %H:%M} UTC | "
        f"{moment:%d %B %Y %H:%M} UTC"
    ) in out, out


async def test_a_cog_never_committed_is_named_at_start(tmp_path: Path) -> None:
    """README's `/coin` pasted into cogs/coin.py of a checkout and never committed serves, and the bot
    says at start, in #dev, that runs (which start from main) will not see it."""
    repo = copy_of_bot(tmp_path / "repo")
    readme = [block for block in blocks(repo / "README.md") if block.kind == "python"]
    (repo / "cogs" / "coin.py").write_text(readme[0].body)
    playground = await PlaygroundProcess.start(_config(tmp_path, repo), code=repo)
    try:
        await playground.expect(
            r"^\[#dev\] mendbot \(m1\): ⚠️ `cogs/coin.py` is not committed: runs start from main and "
            r"will not see it\. Commit it to `main` for a fix to work on it\.$"
        )
        await playground.send("/coin 3")
        await playground.expect(r"mendbot \(m2\): [HT] [HT] [HT]$")
    finally:
        assert await playground.finish() == 0


async def test_a_reminder_set_in_one_session_is_delivered_in_the_next(tmp_path: Path) -> None:
    """The world keeps its ids on a data directory: a reminder set in one session is delivered in the
    next, in the same channel, to the same user (it failed with 404 Unknown Channel and was lost)."""
    config = _config(tmp_path, tmp_path)
    first = await PlaygroundProcess.start(config, code=PROJECT)
    await first.send("/remind 1m stretch")
    await first.expect(r"I'll remind you")
    assert await first.finish() == 0
    second = await PlaygroundProcess.start(config, code=PROJECT)
    await second.send("wait 2m")
    await second.expect(r"\[#general\] mendbot \(m\d+\): ⏰ @alice reminder: stretch")
    assert await second.finish() == 0
    with sqlite3.connect(tmp_path / "data" / "playground" / "mendbot.db") as db:
        assert db.execute("SELECT fired_at IS NOT NULL, failed FROM reminders").fetchall() == [(1, None)]


async def test_a_second_playground_on_a_data_dir_in_use_is_refused_with_one_line(tmp_path: Path) -> None:
    """While one playground runs on a data directory, a second one on it exits 75 with one line, and
    the first goes on."""
    config = _config(tmp_path, tmp_path)
    first = await PlaygroundProcess.start(config, code=PROJECT)
    second = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mendbot",
        "--config",
        str(config),
        "play",
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(second.communicate(), 60)
    assert second.returncode == 75
    assert out == b""
    assert err.decode().splitlines() == [
        f"mendbot: {tmp_path / 'data' / 'playground'} is in use by another playground "
        f"(pid {first.process.pid}): end it, or give this one its own --data-dir"
    ]
    await first.send("/roll 2d6")
    await first.expect(r"🎲 `2d6` →")
    assert await first.finish() == 0


async def test_a_resumed_runs_vanished_status_message_is_posted_anew(
    world: VirtualWorld,
) -> None:
    """A run resumed in a new session has a status message that no longer exists: its progress is posted
    as a new message, which later progress edits (it failed with 404 Unknown Message on every step)."""
    alice = world.users["alice"]
    runs = world.bot.services.improve.runs
    run = await runs.create("investigate", alice.id, world.dev.id, None, "the roll command is broken")
    run = await runs.update(run.id, status_message_id=1234567890123456789)  # a message of a world gone
    cog = world.bot.get_cog("Improve")
    assert cog is not None
    await cog.progress(run, ["🔎 gathering evidence"])  # type: ignore[attr-defined]
    run = await runs.get(run.id)
    await cog.progress(run, ["🔎 gathering evidence", "🧠 investigating (read-only)"])  # type: ignore[attr-defined]
    await world.quiesce()
    status = [m for m in world.dev.history() if "**Run #1**" in m.content]
    assert len(status) == 1 and "investigating (read-only)" in status[0].content
    assert (await runs.get(run.id)).status_message_id == status[0].id
