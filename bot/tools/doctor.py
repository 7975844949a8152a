"""`mendbot doctor`: one line per check — ✅ works, ⚠️ off because it is not configured, ❌ broken — and
an exit code that means "can run": 0 when `mendbot` can start in the mode it would pick and everything
configured works, 1 when something must be fixed first (every ❌ line says how).

Without DISCORD_TOKEN the mode is the local playground, and a valid playground setup passes. With a
token, Discord itself is asked over REST — through discord.py's HTTP client, never the gateway, so a
check does not use up a session start: whether the token is accepted (`GET /users/@me`), whether the
privileged intents the bot asks for are enabled for the application (its flags), whether the bot is in
`discord.dev_guild_id` and may sync commands there, and whether it can see and write in each dev channel
(its permissions there, computed from roles and channel overwrites as Discord does).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import aiohttp
import discord
from dotenv import dotenv_values

from mendbot.db import core
from mendbot.kernel.git import driver_problem, git
from mendbot.kernel.settings import (
    ConfigError,
    Settings,
    load_settings,
    refuse_shard_subset,
    refuse_workers_without_store,
)
from mendbot.kernel.waits import wait_for
from mendbot.runtime.standalone import CONFIG_FILE as ATTACHED_CONFIG
from mendbot.runtime.standalone import host_settings

__all__ = ["Check", "Level", "doctor_exit_code", "run_doctor"]

_PORTAL = "the Developer Portal (https://discord.com/developers/applications)"
_REQUEST_TIMEOUT_S = 15.0
_REVISION = "SELECT version_num FROM alembic_version"
_JOURNAL_MODE = "PRAGMA journal_mode"
_POSTGRESQL_VERSION = "SELECT version()"
# What the bot needs in a dev channel: the permissions README's invite step grants.
DEV_CHANNEL_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    add_reactions=True,
    read_message_history=True,
)
# The application flags that mean a privileged intent is enabled (the limited ones: unverified bots).
_PRIVILEGED = {
    "message_content": ("Message Content", 1 << 18, 1 << 19),
    "members": ("Server Members", 1 << 14, 1 << 15),
    "presences": ("Presence", 1 << 12, 1 << 13),
}


class Level(Enum):
    OK = "✅"
    WARN = "⚠️"
    FAIL = "❌"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    level: Level
    detail: str

    @property
    def ok(self) -> bool:
        """Not a reason to stop: a warning is a feature that is off, not something broken."""
        return self.level is not Level.FAIL

    def __str__(self) -> str:
        return f"{self.level.value} {self.name}: {self.detail}"


def _ok(name: str, detail: str) -> Check:
    return Check(name, Level.OK, detail)


def _warn(name: str, detail: str) -> Check:
    return Check(name, Level.WARN, detail)


def _fail(name: str, detail: str) -> Check:
    return Check(name, Level.FAIL, detail)


def _token(settings: Settings) -> str | None:
    """DISCORD_TOKEN, or None when unset or blank (a copied `.env.example` leaves it empty)."""
    secret = settings.discord_token
    value = secret.get_secret_value().strip() if secret is not None else ""
    return value or None


def _shown(target: Path | str) -> Path | str:
    """A database file as the reader would type it: relative to where doctor runs, when it is below."""
    if isinstance(target, Path) and target.is_absolute() and target.is_relative_to(Path.cwd()):
        return target.relative_to(Path.cwd())
    return target


async def _database(settings: Settings) -> Check:
    target = settings.database_target
    try:
        db = await core.connect(target)
    except Exception as exc:
        if isinstance(target, str):
            return _fail("database", f"{target}: {exc} — check database.url, the server and PGPASSWORD")
        return _fail("database", f"{target}: {exc} — check the path and permissions of data_dir")
    try:
        # The migration history's revision (bot/db/history), not PRAGMA user_version, which
        # stopped at 13 when the schema moved to Alembic.
        revision = await core.scalar(db, _REVISION)
        if isinstance(target, str):
            version = str(await core.scalar(db, _POSTGRESQL_VERSION)).split(" (")[0]
            return _ok("database", f"{target} (schema {revision}, {version})")
        mode = await core.scalar(db, _JOURNAL_MODE)
    finally:
        await db.close()
    return _ok("database", f"{_shown(target)} (schema {revision}, {mode})")


def _repository_state(root: Path) -> tuple[str, str] | str:
    """(branch, head sha) of the work tree at `root`, or why there is none.

    GitPython reads the repository in-process (refs and objects, no git program runs), so it is
    the read-only view here; every git *program* the bot runs goes through mendbot.kernel.git, which starts
    it from an empty environment (GitPython would hand it the bot's — see bot/kernel/git.py).
    """
    import git as gitpython

    try:
        repo = gitpython.Repo(root, search_parent_directories=False)
    except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError):
        return f"{root} is not a git repository"
    if repo.bare or repo.working_tree_dir is None or Path(repo.working_tree_dir).resolve() != root.resolve():
        return f"{root} is not the top of a git work tree"
    if repo.head.is_detached:
        return "HEAD is detached"
    branch = repo.active_branch.name
    if not repo.head.is_valid():
        return f"branch {branch} has no commits yet"
    return branch, repo.head.commit.hexsha


async def _repository(settings: Settings) -> Check:
    root = settings.repo_dir.absolute()
    off = "self-improvement is off"
    fixes = {"is not": "run me from a clone", "detached": "check out the main branch"}
    state = await asyncio.to_thread(_repository_state, root)
    if isinstance(state, str):
        fix = next((fix for key, fix in fixes.items() if key in state), "commit the code first")
        return _warn("git", f"{state} — {off}; {fix}")
    name, head = state
    if (problem := await driver_problem(root)) is not None:
        return _warn("git", f"{problem} — {off} until then")
    status = await git(root, "status", "--porcelain", "--untracked-files=no", check=False)
    if status.output.strip():
        return _warn(
            "git",
            f"{name} has uncommitted changes — deploys wait (they never overwrite hand edits); "
            "commit or stash them",
        )
    return _ok("git", f"{name} at {head[:10]}, clean")


async def _model(settings: Settings) -> Check:
    key = settings.anthropic_api_key.get_secret_value().strip() if settings.anthropic_api_key else ""
    if not key:
        return _warn("model", "no ANTHROPIC_API_KEY — chat and self-improvement are off; set it in .env")
    from anthropic import APIError, AsyncAnthropic

    client = AsyncAnthropic(api_key=key, base_url=settings.anthropic_base_url, max_retries=0, timeout=10)
    try:
        await client.messages.count_tokens(
            model=settings.improve.model, messages=[{"role": "user", "content": "hi"}]
        )
    except APIError as exc:
        return _fail("model", f"{type(exc).__name__}: {exc} — check ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL")
    finally:
        await client.close()
    return _ok("model", f"reachable at {settings.anthropic_base_url or 'api.anthropic.com'}")


async def _forge(settings: Settings) -> Check:
    forge = settings.forge
    if forge.kind == "local":
        return _ok("forge", "local (proposals are branches in this repository)")
    if settings.github_token is None or not forge.repository:
        return _fail(
            "forge", "forge.kind is github but GITHUB_TOKEN or forge.repository is missing — set both"
        )
    from githubkit import GitHub
    from githubkit.exception import GitHubException

    owner, _, name = forge.repository.partition("/")
    try:
        async with GitHub(settings.github_token.get_secret_value(), base_url=forge.api_url) as gh:
            response = await gh.rest.repos.async_get(owner, name)
    except GitHubException as exc:
        return _fail("forge", f"GitHub: {exc} — check GITHUB_TOKEN's access to {forge.repository}")
    return _ok("forge", f"GitHub {response.parsed_data.full_name}")


async def _cli(_: Settings) -> Check:
    import claude_agent_sdk

    bundled = Path(claude_agent_sdk.__file__ or ".").parent / "_bundled" / "claude"
    if bundled.exists() or shutil.which("claude"):
        return _ok("code agent", "Claude Code CLI available")
    return _warn("code agent", "no Claude Code CLI — self-improvement is off; reinstall with `make setup`")


async def _sandbox(settings: Settings) -> Check:
    from mendbot.trust.sandbox import Sandbox, SandboxUnavailable

    try:
        what = await Sandbox.from_config(settings.improve.sandbox).probe()
    except SandboxUnavailable as exc:
        return _warn("sandbox", f"{exc} — fix runs refuse until a sandbox starts")
    return _ok("sandbox", f"{what}: no network, no host files, own PID namespace")


# -- Discord, over REST ------------------------------------------------------------------------------


def channel_permissions(
    guild: dict[str, Any], member: dict[str, Any], channel: dict[str, Any], user_id: int
) -> discord.Permissions:
    """The member's permissions in the channel, from raw payloads, computed the way Discord does:
    @everyone and the member's roles, administrator means all, then the channel's @everyone, role and
    member overwrites in that order."""
    guild_id = str(guild["id"])
    roles = {str(role["id"]): int(role["permissions"]) for role in guild.get("roles", [])}
    member_roles = {str(role) for role in member.get("roles", [])}
    if str(guild.get("owner_id")) == str(user_id):
        return discord.Permissions.all()
    value = roles.get(guild_id, 0)
    for role in member_roles:
        value |= roles.get(role, 0)
    if discord.Permissions(value).administrator:
        return discord.Permissions.all()
    overwrites = {
        str(o["id"]): (int(o["allow"]), int(o["deny"])) for o in channel.get("permission_overwrites", [])
    }
    if guild_id in overwrites:
        allow, deny = overwrites[guild_id]
        value = (value & ~deny) | allow
    allow = deny = 0
    for role in member_roles:
        role_allow, role_deny = overwrites.get(role, (0, 0))
        allow |= role_allow
        deny |= role_deny
    value = (value & ~deny) | allow
    if str(user_id) in overwrites:
        allow, deny = overwrites[str(user_id)]
        value = (value & ~deny) | allow
    return discord.Permissions(value)


def _permission_names(permissions: discord.Permissions) -> str:
    return ", ".join(name.replace("_", " ").title() for name, on in permissions if on)


def _invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(
        application_id, permissions=DEV_CHANNEL_PERMISSIONS, scopes=("bot", "applications.commands")
    )


class _Discord:
    """Doctor's Discord checks over one HTTP client; each returns its lines."""

    def __init__(self, settings: Settings, http: discord.http.HTTPClient) -> None:
        self.settings = settings
        self.http = http
        self.user_id = 0
        self.application_id = 0

    async def _call(self, coro: Awaitable[Any]) -> Any:
        return await wait_for(coro, timeout=_REQUEST_TIMEOUT_S)

    async def token(self, token: str) -> Check:
        user = await self._call(self.http.static_login(token))
        self.user_id = int(user["id"])
        return _ok("discord token", f"accepted — the bot is {user['username']} (id {self.user_id})")

    async def intents(self) -> Check:
        from mendbot.runtime.app import bot_intents

        application = await self._call(self.http.application_info())
        self.application_id = int(application["id"])
        flags = int(application.get("flags") or 0)
        wanted = [name for name, on in bot_intents() if on and name in _PRIVILEGED]
        missing = [
            _PRIVILEGED[name][0]
            for name in wanted
            if not flags & (_PRIVILEGED[name][1] | _PRIVILEGED[name][2])
        ]
        if missing:
            return _fail(
                "discord intents",
                f"{', '.join(missing)} intent is off — turn it on in {_PORTAL} "
                "(Bot → Privileged Gateway Intents); without it Discord refuses the connection",
            )
        names = ", ".join(_PRIVILEGED[name][0] for name in wanted) or "no privileged intents needed"
        return _ok("discord intents", f"{names} enabled")

    async def dev_guild(self) -> tuple[list[Check], dict[str, Any] | None, dict[str, Any] | None]:
        guild_id = self.settings.discord.dev_guild_id
        if guild_id is None:
            return (
                [
                    _warn(
                        "dev guild",
                        "discord.dev_guild_id is not set — slash commands are not synced anywhere; "
                        "set it in config.yaml to your server's id",
                    )
                ],
                None,
                None,
            )
        invite = f"invite it with {_invite_url(self.application_id)}"
        try:
            guild = await self._call(self.http.get_guild(guild_id))
            member = await self._call(self.http.get_member(guild_id, self.user_id))
            await self._call(self.http.get_guild_commands(self.application_id, guild_id))
        except (discord.Forbidden, discord.NotFound) as exc:
            return (
                [
                    _fail(
                        "dev guild",
                        f"the bot is not in discord.dev_guild_id {guild_id} or may not add commands there "
                        f"({exc.status} {exc.text}) — check the id in config.yaml, or {invite}",
                    )
                ],
                None,
                None,
            )
        return (
            [_ok("dev guild", f"{guild['name']} ({guild_id}): member, slash commands can sync")],
            guild,
            member,
        )

    async def dev_channels(self, guild: dict[str, Any] | None, member: dict[str, Any] | None) -> list[Check]:
        channel_ids = self.settings.discord.dev_channel_ids
        if not channel_ids:
            return [
                _warn(
                    "dev channels",
                    "discord.dev_channel_ids is empty — incidents and run reports have nowhere to go; "
                    "set it in config.yaml",
                )
            ]
        checks = []
        for channel_id in channel_ids:
            name = f"dev channel {channel_id}"
            try:
                channel = await self._call(self.http.get_channel(channel_id))
            except (discord.Forbidden, discord.NotFound) as exc:
                checks.append(
                    _fail(
                        name,
                        f"the bot cannot see it ({exc.status} {exc.text}) — check the id in "
                        "discord.dev_channel_ids, and give the bot's role View Channel there",
                    )
                )
                continue
            name = f"dev channel #{channel['name']}"
            if guild is None or member is None or str(channel.get("guild_id")) != str(guild["id"]):
                checks.append(_warn(name, "not in discord.dev_guild_id, so its permissions were not checked"))
                continue
            have = channel_permissions(guild, member, channel, self.user_id)
            missing = discord.Permissions(DEV_CHANNEL_PERMISSIONS.value & ~have.value)
            if missing.value:
                checks.append(
                    _fail(
                        name,
                        f"the bot lacks {_permission_names(missing)} — allow them for its role in the "
                        "channel's settings (Edit Channel → Permissions)",
                    )
                )
            else:
                checks.append(_ok(name, "the bot can read, post, react and start threads"))
        return checks


async def _discord_checks(settings: Settings, token: str) -> list[Check]:
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    checker = _Discord(settings, http)
    checks: list[Check] = []
    try:
        checks.append(await checker.token(token))
        checks.append(await checker.intents())
        guild_checks, guild, member = await checker.dev_guild()
        checks += guild_checks
        checks += await checker.dev_channels(guild, member)
    except discord.LoginFailure:
        checks.append(
            _fail(
                "discord token",
                f"Discord rejected DISCORD_TOKEN — copy the bot token again from {_PORTAL} "
                "(Bot → Reset Token) into .env",
            )
        )
    except (OSError, aiohttp.ClientError, TimeoutError, discord.DiscordServerError) as exc:
        summary = " ".join(f"{type(exc).__name__}: {exc}".split())
        checks.append(
            _fail(
                "discord",
                f"cannot reach Discord ({summary}) — check the network; "
                "`mendbot run` retries until it answers",
            )
        )
    except discord.HTTPException as exc:
        checks.append(_fail("discord", f"Discord answered {exc.status} {exc.text} — try again in a while"))
    finally:
        await http.close()
    return checks


def _attached_config(config_file: Path | None) -> Path | None:
    """The mendbot.yaml of a bot mendbot is attached to, when that is what doctor checks: the one named,
    or — with no config named and no config.yaml here — the one `mendbot adopt` wrote in this
    directory (mendbot's own settings would be its defaults there, and its database a `data/` in the
    bot's tree)."""
    named = config_file or (Path(os.environ["MENDBOT_CONFIG"]) if os.environ.get("MENDBOT_CONFIG") else None)
    if named is not None:
        return named if named.name == ATTACHED_CONFIG else None
    here = Path(ATTACHED_CONFIG)
    return here if here.is_file() and not Path("config.yaml").exists() else None


def _attached_token(settings: Settings) -> str | None:
    """The attached bot's own token — its variable (mendbot.yaml's `bot.token_env`) in the environment or
    the bot's `.env` — which the Discord checks ask with: it is the bot that logs in, not mendbot."""
    assert settings.bot is not None
    name = settings.bot.token_env
    value = os.environ.get(name) or dotenv_values(settings.repo_dir / ".env").get(name) or ""
    return value.strip() or None


def _attached_mode(settings: Settings, token: str | None) -> Check:
    assert settings.bot is not None
    program = " ".join(settings.bot.entry)
    variable = f"${settings.bot.token_env}"
    if token is None:
        return _ok(
            "mode",
            f"attached — `mendbot attach -- {program}` runs your bot with mendbot; {variable} is not set, "
            f"so `mendbot attach --play -- {program}` (the local playground) until you set it",
        )
    return _ok("mode", f"attached — `mendbot attach -- {program}` runs your bot on Discord with {variable}")


async def run_doctor(config_file: Path | None) -> list[Check]:
    """Every check, in order; the last line says whether mendbot can run and in which mode. In a bot
    mendbot is attached to (its mendbot.yaml), the bot's settings and its own token are checked."""
    attached = _attached_config(config_file)
    try:
        settings = host_settings(attached) if attached is not None else load_settings(config_file)
        refuse_shard_subset(settings)
        refuse_workers_without_store(settings)
    except ConfigError as exc:
        return [_fail("config", str(exc))]
    if settings.bot is not None:
        token = _attached_token(settings)
        bot_class = f", {settings.bot.bot_class}" if settings.bot.bot_class else ""
        checks = [
            _ok(
                "config",
                f"{attached or ATTACHED_CONFIG} (your bot: {' '.join(settings.bot.entry)}{bot_class})",
            ),
            _attached_mode(settings, token),
        ]
        return checks + await _the_rest(settings, token)
    checks = [_ok("config", "valid")]
    token = _token(settings)
    if token is None:
        checks.append(
            _ok(
                "mode",
                "playground — no DISCORD_TOKEN, so `mendbot` runs the local playground "
                "(set DISCORD_TOKEN in .env to go live on Discord)",
            )
        )
    else:
        checks.append(_ok("mode", "Discord — `mendbot` runs on Discord with DISCORD_TOKEN (checked below)"))
    return checks + await _the_rest(settings, token)


async def _the_rest(settings: Settings, token: str | None) -> list[Check]:
    """The checks after the config and the mode: storage, git, model, forge, agent, sandbox, Discord."""
    checks: list[Check] = []
    steps: list[Callable[[Settings], Awaitable[Check]]] = [
        _database,
        _repository,
        _model,
        _forge,
        _cli,
        _sandbox,
    ]
    for step in steps:
        try:
            checks.append(await step(settings))
        except Exception as exc:
            checks.append(_fail(step.__name__.strip("_"), f"{type(exc).__name__}: {exc}"))
    if token is not None:
        checks += await _discord_checks(settings, token)
    return checks


def doctor_exit_code(checks: list[Check]) -> int:
    """0: mendbot can run as configured; 1: at least one ❌."""
    return 0 if all(check.ok for check in checks) else 1
