"""`mendbot doctor`: its exit code means "can run", and with a token it asks Discord (the loopback double)
about the token, the intents, the dev guild and the dev channels — each failure one ❌ line with the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from mendbot.db.migrate import head_revision
from mendbot.tools.doctor import Check, Level, channel_permissions, doctor_exit_code, run_doctor
from mendbot.trust.loopback_discord import DiscordDouble
from tests.harness.postgres import PostgresServer
from tests.harness.repo import git as repo_git

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\nrepo_dir: {tmp_path}\nhealth: {{enabled: false}}\n" + text
    )
    return path


def _doctor_process(
    tmp_path: Path, config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MENDBOT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mendbot", "--config", str(config), "doctor"],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "PYTHONPATH": str(REPO), **(env or {})},
    )


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_playground_setup_without_token_can_run_and_says_so(tmp_path: Path) -> None:
    """`mendbot doctor` with no token: exit 0, the playground named as the mode, unconfigured parts ⚠️."""
    result = _doctor_process(tmp_path, _config(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✅ config",
        "✅ mode",
        "✅ database",
        "⚠️ git",
        "⚠️ model",
        "✅ forge",
        "✅ code agent",
        "✅ sandbox",
    ]
    assert "playground" in lines[1] and "DISCORD_TOKEN" in lines[1]
    assert "not a git repository" in lines[3] and "self-improvement is off" in lines[3]
    assert "ANTHROPIC_API_KEY" in lines[4]


def test_invalid_config_cannot_run_exit_1(tmp_path: Path) -> None:
    """A config that does not load is one ❌ line naming the key, and exit 1."""
    result = _doctor_process(tmp_path, _config(tmp_path, "observe:\n  error_rate:\n    threshold: 3\n"))
    assert result.returncode == 1
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("❌ config: ") and "observe.error_rate.threshold" in line


async def test_shard_subset_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only some shards of the count in this process is the config ❌ `mendbot run` would stop on."""
    config = _config(tmp_path, "discord: {shard_count: 4, shard_ids: [0, 1]}\n")
    monkeypatch.setenv("MENDBOT_CONFIG", str(config))  # restored after the test (load_settings sets it)
    checks = await run_doctor(config)
    (check,) = checks
    assert not check.ok and check.name == "config"
    assert "runs only part of the 4 shards" in check.detail and "PostgreSQL" in check.detail


async def test_run_on_workers_without_postgresql_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """improve.run_on: workers on SQLite is the config ❌ `mendbot run` and `mendbot worker` stop on."""
    config = _config(tmp_path, "improve: {run_on: workers}\nforge: {kind: github, repository: o/r}\n")
    monkeypatch.setenv("MENDBOT_CONFIG", str(config))  # restored after the test (load_settings sets it)
    (check,) = await run_doctor(config)
    assert not check.ok and check.name == "config" and "database.url" in check.detail


async def test_missing_sandbox_is_a_warning_not_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With bubblewrap missing the sandbox line is ⚠️ (fix runs refuse), and doctor still says it can run."""
    monkeypatch.chdir(tmp_path)
    checks = await run_doctor(_config(tmp_path, "improve: {sandbox: {bwrap: /nonexistent/bwrap}}\n"))
    sandbox = _by_name(checks)["sandbox"]
    assert sandbox.level is Level.WARN
    assert str(sandbox).startswith("⚠️ sandbox: no bubblewrap at /nonexistent/bwrap")
    assert str(sandbox).endswith("fix runs refuse until a sandbox starts")
    assert doctor_exit_code(checks) == 0


async def test_a_repository_defining_git_drivers_is_a_warning_naming_them(tmp_path: Path) -> None:
    """A filter, diff or merge driver in the repository's config could be selected by a tree the agent
    wrote: doctor says which, and that self-improvement is off until it is removed."""
    repo_git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "README").write_text("x\n")
    repo_git(tmp_path, "add", "README")
    repo_git(tmp_path, "commit", "-qm", "x")
    repo_git(tmp_path, "config", "merge.ours.driver", "true")

    git_check = _by_name(await run_doctor(_config(tmp_path)))["git"]

    assert git_check.level is Level.WARN
    assert "merge.ours.driver" in git_check.detail and "self-improvement is off" in git_check.detail


async def test_unusable_data_dir_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data_dir the database cannot be created in is ❌ with the fix, and exit code 1."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").write_text("a file, not a directory")
    checks = await run_doctor(_config(tmp_path))
    database = _by_name(checks)["database"]
    assert database.level is Level.FAIL and "check the path and permissions of data_dir" in database.detail
    assert doctor_exit_code(checks) == 1


async def test_a_postgresql_database_is_named_with_its_schema_and_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str, postgres_server: PostgresServer
) -> None:
    """database.url: ✅ with the URL, the schema revision and the server's version; a server that is
    not there: ❌ naming database.url and PGPASSWORD, exit code 1."""
    monkeypatch.chdir(tmp_path)
    database = _by_name(await run_doctor(_config(tmp_path, f"database: {{url: '{postgres_url}'}}\n")))[
        "database"
    ]
    assert database.level is Level.OK
    assert database.detail.startswith(f"{postgres_url} (schema {head_revision()}, PostgreSQL ")
    missing = postgres_server.url("no_such_database")
    checks = await run_doctor(_config(tmp_path, f"database: {{url: '{missing}'}}\n"))
    database = _by_name(checks)["database"]
    assert database.level is Level.FAIL and "no_such_database" in database.detail
    assert "check database.url, the server and PGPASSWORD" in database.detail
    assert doctor_exit_code(checks) == 1


# -- with a token: asking the Discord double ------------------------------------------------------------


@pytest.fixture
async def discord_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DiscordDouble]:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    async with DiscordDouble() as double:
        monkeypatch.setenv("DISCORD_TOKEN", double.token)
        with double.pointed_at():
            yield double


def _discord_config(tmp_path: Path, double: DiscordDouble, channels: list[int] | None = None) -> Path:
    channel_ids = [double.guild.channel("dev").id] if channels is None else channels
    return _config(
        tmp_path, f"discord: {{dev_guild_id: {double.guild.id}, dev_channel_ids: {channel_ids}}}\n"
    )


def _discord_lines(checks: list[Check]) -> list[str]:
    return [str(check) for check in checks if check.name.startswith(("discord", "dev "))]


async def test_good_discord_setup_passes_every_check(tmp_path: Path, discord_api: DiscordDouble) -> None:
    """Token, Message Content intent, guild membership and #dev access: all ✅, mode Discord."""
    checks = await run_doctor(_discord_config(tmp_path, discord_api))
    assert "Discord" in _by_name(checks)["mode"].detail
    lines = _discord_lines(checks)
    assert [line.split(":")[0] for line in lines] == [
        "✅ discord token",
        "✅ discord intents",
        "✅ dev guild",
        "✅ dev channel #dev",
    ]
    assert "Message Content enabled" in lines[1] and "mendbot dev" in lines[2]
    app = discord_api.application_id
    assert {
        "GET /users/@me",
        "GET /oauth2/applications/@me",
        f"GET /applications/{app}/guilds/{discord_api.guild.id}/commands",
    } <= set(discord_api.paths)
    assert not any(method == "GATEWAY" for method, _ in discord_api.requests)  # REST only, no session start


async def test_rejected_token_is_one_line_with_the_fix(
    tmp_path: Path, discord_api: DiscordDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token Discord answers 401 to is one ❌ line saying where to get a new one; exit 1."""
    config = _discord_config(tmp_path, discord_api)
    monkeypatch.setenv("DISCORD_TOKEN", "not-the-token")
    checks = await run_doctor(config)
    assert _discord_lines(checks) == [
        "❌ discord token: Discord rejected DISCORD_TOKEN — copy the bot token again from the Developer "
        "Portal (https://discord.com/developers/applications) (Bot → Reset Token) into .env"
    ]
    assert doctor_exit_code(checks) == 1


async def test_message_content_intent_off_is_a_failure(tmp_path: Path, discord_api: DiscordDouble) -> None:
    """An application without the Message Content flag: ❌ naming the portal switch."""
    discord_api.application_flags = 0
    checks = await run_doctor(_discord_config(tmp_path, discord_api))
    intents = _by_name(checks)["discord intents"]
    assert intents.level is Level.FAIL
    assert (
        "Message Content intent is off" in intents.detail and "Privileged Gateway Intents" in intents.detail
    )


async def test_bot_not_in_the_dev_guild_gets_the_invite_url(
    tmp_path: Path, discord_api: DiscordDouble
) -> None:
    """A dev_guild_id the bot is not in: ❌ with an invite link for this application and both scopes."""
    discord_api.guild.bot_is_member = False
    checks = await run_doctor(_discord_config(tmp_path, discord_api))
    guild = _by_name(checks)["dev guild"]
    assert guild.level is Level.FAIL
    assert f"not in discord.dev_guild_id {discord_api.guild.id}" in guild.detail
    assert f"client_id={discord_api.application_id}" in guild.detail
    assert "scope=bot+applications.commands" in guild.detail
    assert doctor_exit_code(checks) == 1


async def test_unknown_dev_guild_is_a_failure(tmp_path: Path, discord_api: DiscordDouble) -> None:
    """A dev_guild_id that names no guild (a typo) is ❌ too."""
    config = _config(tmp_path, "discord: {dev_guild_id: 123456789012345678}\n")
    checks = await run_doctor(config)
    assert _by_name(checks)["dev guild"].level is Level.FAIL
    assert "404 Unknown Guild" in _by_name(checks)["dev guild"].detail


async def test_dev_channel_the_bot_cannot_see(tmp_path: Path, discord_api: DiscordDouble) -> None:
    """A dev channel hidden from the bot (View Channel denied) is ❌ saying to allow it."""
    hidden = discord.Permissions(view_channel=True).value
    dev = discord_api.guild.channel("dev")
    dev.overwrites = [
        {"id": str(discord_api.guild.bot_role_id), "type": 0, "allow": "0", "deny": str(hidden)}
    ]
    checks = await run_doctor(_discord_config(tmp_path, discord_api))
    (line,) = [line for line in _discord_lines(checks) if "dev channel" in line]
    assert line.startswith(f"❌ dev channel {dev.id}: the bot cannot see it (403 Missing Access)")


async def test_dev_channel_without_send_permissions(tmp_path: Path, discord_api: DiscordDouble) -> None:
    """A dev channel where the bot may read but not post or react lists exactly what is missing."""
    denied = discord.Permissions(send_messages=True, add_reactions=True).value
    dev = discord_api.guild.channel("dev")
    dev.overwrites = [{"id": str(discord_api.guild.id), "type": 0, "allow": "0", "deny": str(denied)}]
    checks = await run_doctor(_discord_config(tmp_path, discord_api))
    (line,) = [line for line in _discord_lines(checks) if "dev channel" in line]
    assert line.startswith("❌ dev channel #dev: the bot lacks Add Reactions, Send Messages — allow them")


async def test_unknown_dev_channel_and_missing_settings(tmp_path: Path, discord_api: DiscordDouble) -> None:
    """A dev channel id that does not exist is ❌; no dev_guild_id and no channels are ⚠️ (nothing breaks)."""
    checks = await run_doctor(_discord_config(tmp_path, discord_api, channels=[42]))
    assert str(_by_name(checks)["dev channel 42"]).startswith("❌ dev channel 42: the bot cannot see it (404")
    bare = await run_doctor(_config(tmp_path))
    assert _by_name(bare)["dev guild"].level is Level.WARN
    assert _by_name(bare)["dev channels"].level is Level.WARN
    assert doctor_exit_code(bare) == 0


async def test_discord_unreachable_is_one_failure_line(tmp_path: Path, discord_api: DiscordDouble) -> None:
    """Connection refused: one ❌ line saying Discord cannot be reached, and exit 1."""
    await discord_api.refuse()
    checks = await run_doctor(_discord_config(tmp_path, discord_api))
    lines = _discord_lines(checks)
    assert len(lines) == 1 and lines[0].startswith("❌ discord: cannot reach Discord (ClientConnectorError")
    assert doctor_exit_code(checks) == 1


def test_channel_permissions_follow_discords_order() -> None:
    """Role allow beats @everyone deny, a member deny beats both, administrator overrides everything."""
    view, send = discord.Permissions(view_channel=True).value, discord.Permissions(send_messages=True).value
    roles: list[dict[str, Any]] = [
        {"id": "1", "permissions": str(view | send)},
        {"id": "2", "permissions": "0"},
    ]
    guild = {"id": "1", "owner_id": "9", "roles": roles}
    member = {"roles": ["2"]}
    channel = {
        "permission_overwrites": [
            {"id": "1", "allow": "0", "deny": str(send)},
            {"id": "2", "allow": str(send), "deny": "0"},
        ]
    }
    assert channel_permissions(guild, member, channel, 5).send_messages
    channel["permission_overwrites"].append({"id": "5", "allow": "0", "deny": str(send)})
    assert not channel_permissions(guild, member, channel, 5).send_messages
    roles[1]["permissions"] = str(discord.Permissions(administrator=True).value)
    assert channel_permissions(guild, member, channel, 5).send_messages


def test_doctor_in_an_adopted_bot_reads_its_mendbot_yaml(tmp_path: Path) -> None:
    """In a bot's repository after `mendbot adopt`, `mendbot doctor` checks mendbot.yaml (its data in
    `.mendbot/`, never a `data/mendbot.db` in the bot's tree), says how the bot runs with mendbot, and a
    wrong value in mendbot.yaml is ❌ naming the file and the key, exit 1."""
    from tests.harness.hosts import host_repo

    repo = host_repo(tmp_path, "shelf")
    env = {k: v for k, v in os.environ.items() if k not in ("MENDBOT_CONFIG", "DISCORD_TOKEN", "SHELF_TOKEN")}
    mendbot = [str(Path(sys.executable).parent / "mendbot")]
    subprocess.run([*mendbot, "adopt"], cwd=repo, env=env, capture_output=True, check=True)

    def doctor() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*mendbot, "doctor"], cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    good = doctor()
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert lines[0] == "✅ config: mendbot.yaml (your bot: python bot.py, bot:ShelfBot)", lines
    assert lines[1].startswith("✅ mode: attached — `mendbot attach -- python bot.py`"), lines
    assert "$SHELF_TOKEN" in lines[1]
    assert any(line.startswith("✅ database: .mendbot/mendbot.db") for line in lines), lines
    assert not (repo / "data").exists() and not (repo / "mendbot.db").exists()
    changed = repo_git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert changed == ["?? .gitignore", "?? mendbot.yaml"], changed  # what adopt wrote, no data of mendbot's

    text = (repo / "mendbot.yaml").read_text().replace("dev_guild_id: null", "dev_guild_id: my server")
    (repo / "mendbot.yaml").write_text(text)
    wrong = doctor()
    assert wrong.returncode == 1
    (line,) = wrong.stdout.strip().splitlines()
    assert line.startswith("❌ config: ") and "mendbot.yaml" in line and "discord.dev_guild_id" in line, line
