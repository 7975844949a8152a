"""A `mendbot run` on SQLite starts lean: what it does not need at idle it neither imports nor runs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from mendbot.trust.loopback_discord import DiscordDouble
from mendbot.trust.loopback_discord_model import message_text
from tests.harness.live_bot import LiveBot, live_config

# Loaded at the first use, never by a start on SQLite: a run's evidence, its guard and its proof's
# runner with the loopback Discord a replay serves; SQLAlchemy and Alembic (a migration); the
# PostgreSQL driver and the run queue (a bot with database.url); Unicode's confusables table (the
# first non-ASCII reply to a proposal); the agent SDK and the model client (a run, a chat reply); the
# GitHub forge and its client (forge.kind: github); the charts; the dashboard's pages and jinja2
# (dashboard.enabled, off on Discord by default); croniter with dateutil (audit.schedule set);
# prometheus-client (the first scrape of /metrics); aiohttp's server side (the first connection to the
# health port, which is bound at start); HTML's entity table (the first untrusted text a prompt takes);
# the import-conflict resolver with difflib and tomllib (a rebase's first conflict; a config mistake);
# the self-audit's report, its queries and its rendering (the first audit).
# Never rich's console nor greenlet: structlog would load rich only to draw tracebacks, which mendbot
# formats as text itself, and greenlet for a thread-local context mendbot does not use.
_NOT_AT_START = (
    "mendbot.improve.evidence.gather",
    "mendbot.trust.guard",
    "mendbot.improve.proof.prover",
    "mendbot.trust.loopback_discord",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "psycopg_binary",
    "procrastinate",
    "confusable_homoglyphs.confusables",
    "claude_agent_sdk",
    "anthropic",
    "mendbot.forge.github",
    "githubkit",
    "matplotlib",
    "mendbot.dashboard.server",
    "jinja2",
    "croniter",
    "dateutil",
    "prometheus_client",
    "rich.console",
    "aiohttp.web",
    "html.entities",
    "mendbot.deploy.import_conflicts",
    "difflib",
    "tomllib",
    "mendbot.observe.audit_report",
    "mendbot.db.audit",
    "mendbot.observe.audit_render",
    "mendbot.observe.audit_charts",
    "greenlet._greenlet",
)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _command_line(pid: int) -> str | None:
    """`pid`'s command line, or None once it has ended."""
    try:
        return (
            (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return None


async def _lasting_children(pid: int, within: float = 30) -> dict[int, str]:
    """The children `pid` has now that are still its children `within` seconds on (with their command
    lines): each is waited for until it ends, so that one the bot runs for a moment (the git of the
    check of its tree it makes once ready) is not taken for one it keeps — a server, a worker — which
    never ends and is returned."""
    found = {child: _command_line(child) or "?" for child in await asyncio.to_thread(_children, pid)}
    deadline = asyncio.get_running_loop().time() + within
    while found and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)  # polling /proc for the children to end, not timing the bot
        still = set(await asyncio.to_thread(_children, pid))
        found = {child: line for child, line in found.items() if child in still}
    return found


def _imported(output: str) -> set[str]:
    """The modules `python -X importtime` (PYTHONPROFILEIMPORTTIME) reported in a process's output."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in output.splitlines()
        if line.startswith("import time:") and "|" in line
    }


async def test_a_bot_on_sqlite_runs_no_child_process_and_loads_no_postgresql_driver(
    tmp_path: Path,
) -> None:
    """Ready and idle on SQLite: no child process, and neither psycopg, procrastinate nor the
    confusables table imported; an action recorded and stored starts no process either (the journal
    and the store are threads of the bot's)."""
    async with DiscordDouble() as discord_api:
        home = tmp_path / "bot"
        config = live_config(discord_api, home)
        # With a model key, as a bot that can chat and fix itself runs: the key makes nothing load.
        env = {"PYTHONPROFILEIMPORTTIME": "1", "ANTHROPIC_API_KEY": "test-key"}
        async with await LiveBot.start(discord_api, config, home, env=env, wait_ready=False) as bot:
            for _ in range(600):  # its `ready` line, without a request to the health port yet
                if re.search(r"\[info\s*\] ready\b", bot.output()) or not bot.running:
                    break
                await asyncio.sleep(0.1)
            idle_children = await _lasting_children(bot.process.pid)
            imported = _imported(bot.output())
            await bot.wait_ready()  # the port bound at start serves its first connection
            assert "aiohttp.web" in _imported(bot.output())
            general = discord_api.guild.channel("general")
            said = await discord_api.send_message(general, "!roll 1d6", author="bob")
            answer = await discord_api.wait_for_message(
                lambda m: int(m["id"]) > int(said["id"]), channel=general
            )
            assert message_text(answer).startswith("🎲 `1d6` →")
            journal = home / "data" / "logs" / "actions.ndjson"
            for _ in range(200):  # the roll's record is journaled at once
                if journal.exists() and b'"kind":"command:roll"' in journal.read_bytes():
                    break
                await asyncio.sleep(0.05)
            busy_children = await _lasting_children(bot.process.pid)
    assert "mendbot.runtime.app" in imported  # the report is there to read
    assert set(_NOT_AT_START) & imported == set()
    assert idle_children == {}
    assert busy_children == {}
