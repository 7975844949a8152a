"""`mendbot doctor`: one line per check, ✅ or ❌ with the fix."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import git

from bot.db import open_database
from bot.settings import ConfigError, Settings, load_settings

__all__ = ["Check", "run_doctor"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'✅' if self.ok else '❌'} {self.name}: {self.detail}"


async def _database(settings: Settings) -> Check:
    try:
        db = await open_database(settings.db_path)
    except Exception as exc:
        return Check(
            "database", False, f"{settings.db_path}: {exc} — check the path and permissions of data_dir"
        )
    try:
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        async with db.execute("PRAGMA journal_mode") as cursor:
            mode = await cursor.fetchone()
    finally:
        await db.close()
    return Check(
        "database", True, f"{settings.db_path} (schema {row[0] if row else 0}, {mode[0] if mode else '?'})"
    )


async def _repository(settings: Settings) -> Check:
    try:
        repo = git.Repo(settings.repo_dir, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return Check(
            "git", False, f"{settings.repo_dir.resolve()} is not a git repository — run me from a clone"
        )
    if repo.head.is_detached:
        return Check("git", False, "HEAD is detached — check out the main branch")
    branch = repo.active_branch.name
    if not repo.head.is_valid():
        return Check("git", False, f"branch {branch} has no commits yet — commit the code first")
    if repo.is_dirty(untracked_files=False):
        return Check(
            "git",
            False,
            f"{branch} has uncommitted changes — commit or stash them; deploys never overwrite hand edits",
        )
    return Check("git", True, f"{branch} at {repo.head.commit.hexsha[:10]}, clean")


async def _model(settings: Settings) -> Check:
    if settings.anthropic_api_key is None:
        return Check(
            "model", False, "no ANTHROPIC_API_KEY — chat and self-improvement are off; set it in .env"
        )
    from anthropic import APIError, AsyncAnthropic

    client = AsyncAnthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        max_retries=0,
        timeout=10,
    )
    try:
        await client.messages.count_tokens(
            model=settings.improve.model, messages=[{"role": "user", "content": "hi"}]
        )
    except APIError as exc:
        return Check(
            "model", False, f"{type(exc).__name__}: {exc} — check ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL"
        )
    finally:
        await client.close()
    return Check("model", True, f"reachable at {settings.anthropic_base_url or 'api.anthropic.com'}")


async def _forge(settings: Settings) -> Check:
    forge = settings.forge
    if forge.kind == "local":
        return Check("forge", True, "local (proposals are branches in this repository)")
    if settings.github_token is None or not forge.repository:
        return Check(
            "forge", False, "forge.kind is github but GITHUB_TOKEN or forge.repository is missing — set both"
        )
    from githubkit import GitHub
    from githubkit.exception import GitHubException

    owner, _, name = forge.repository.partition("/")
    try:
        async with GitHub(settings.github_token.get_secret_value(), base_url=forge.api_url) as gh:
            response = await gh.rest.repos.async_get(owner, name)
    except GitHubException as exc:
        return Check("forge", False, f"GitHub: {exc} — check GITHUB_TOKEN's access to {forge.repository}")
    return Check("forge", True, f"GitHub {response.parsed_data.full_name}")


async def _cli(_: Settings) -> Check:
    import claude_agent_sdk

    bundled = Path(claude_agent_sdk.__file__ or ".").parent / "_bundled" / "claude"
    if bundled.exists() or shutil.which("claude"):
        return Check("code agent", True, "Claude Code CLI available")
    return Check("code agent", False, "no Claude Code CLI — reinstall with `make setup`")


async def _sandbox(settings: Settings) -> Check:
    from bot.sandbox import Sandbox, SandboxUnavailable

    try:
        what = await Sandbox.from_config(settings.improve.sandbox).probe()
    except SandboxUnavailable as exc:
        return Check("sandbox", False, f"{exc} — fix runs refuse until a sandbox starts")
    return Check("sandbox", True, f"{what}: no network, no host files, own PID namespace")


async def run_doctor(config_file: Path | None) -> list[Check]:
    try:
        settings = load_settings(config_file)
    except ConfigError as exc:
        return [Check("config", False, str(exc))]
    checks: list[Check] = [Check("config", True, "valid")]
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
            checks.append(Check(step.__name__.strip("_"), False, f"{type(exc).__name__}: {exc}"))
    if settings.discord_token is None:
        checks.append(
            Check(
                "discord",
                False,
                "no DISCORD_TOKEN — `mendbot` runs the local playground; set it in .env to go live",
            )
        )
    else:
        checks.append(Check("discord", True, "token set"))
    return checks
