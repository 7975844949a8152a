"""Settings: secrets from the environment or `.env`, everything else from `config.yaml`.

`load_settings()` is the only way in. A missing or invalid value becomes a `ConfigError`
whose message names the key, the file it came from (`--config` path, `.env`, the environment)
and how to fix it; `__main__` prints that one line and exits with `EX_CONFIG` (78) instead of a
traceback.

Two sources, two policies: config.yaml is strict (an unknown key is refused, with "did you mean"
when one is close), while `.env` is shared with other tools and may hold anything, so only the
variables mendbot reads are taken from it and the rest are ignored. An empty value
(`DISCORD_TOKEN=` as copied from `.env.example`) means unset, everywhere.

What each key may hold — the sections, their defaults and checks — is in bot/kernel/sections.py.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Any

from msgspec import field

from mendbot.kernel import yamldoc
from mendbot.kernel.secret import Secret
from mendbot.kernel.sections import (
    HOST_CHECKS,
    HOST_PROTECTED_PATHS,
    AccessConfig,
    AuditConfig,
    ChatConfig,
    DashboardConfig,
    DatabaseConfig,
    DeployConfig,
    DiscordConfig,
    DrillConfig,
    ForgeConfig,
    HealthConfig,
    HostConfig,
    ImproveConfig,
    LoggingConfig,
    LogLevel,
    ObserveConfig,
    PlaygroundConfig,
    StorageConfig,
)
from mendbot.kernel.structs import Before, Invalid, Problem, Section, read

__all__ = [
    "EX_CONFIG",
    "ConfigError",
    "Settings",
    "config_file_shown",
    "load_settings",
    "refuse_shard_subset",
    "refuse_workers_without_store",
]

EX_CONFIG = 78  # sysexits.h: configuration error
# No pydantic model is on a start's path, but a run's may make one (the forge's client, the SDKs):
# pydantic looks for plugins in every installed package's entry points when a process makes its first
# model (~10 ms of CPU); mendbot uses none. The settings are read first in every process; an explicit
# value still wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


class ConfigError(Exception):
    """A configuration problem a user can fix; the message is the whole explanation."""


def _read_config(path: Path) -> dict[str, Any]:
    """config.yaml, which must be a mapping of known keys (typos get "did you mean"); none is no keys.
    A directory there is read, and fails: running on the defaults would hide the mistake."""
    if not path.exists():
        return {}
    data: object = yamldoc.load(path.read_text(encoding="utf-8"))
    if data is None:  # an empty file
        return {}
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        raise ConfigError(
            f"config error: {path} holds {kind}, not keys and values — it should look like "
            "config.example.yaml (`discord:`, `access:`, … at the top level)"
        )
    for key in data:
        if str(key) in _ENV_ONLY_KEYS:
            raise ConfigError(
                f"config error: {path}: `{key}` is not read from config files — "
                f"set {str(key).upper()} in the environment or in .env (see .env.example)"
            )
    return data


def _read_environment(env_file: str | Path | None) -> dict[str, str]:
    """The variables mendbot reads (secrets and LOG_LEVEL), from `.env` and then the environment,
    which wins; names in any case, empty meaning unset. Every other variable is another program's:
    a `DATABASE` or `DATA_DIR` set for something else changes nothing here."""
    found: dict[str, str] = {}
    try:
        dotenv = _dotenv(Path(env_file)) if env_file and Path(env_file).is_file() else {}
    except (OSError, ValueError) as exc:  # unreadable, or not UTF-8
        raise ConfigError(f"config error: cannot read {env_file}: {' '.join(str(exc).split())}") from None
    for source in (dotenv, os.environ):
        for name, value in source.items():
            if name.lower() in _ENV_ONLY_KEYS and value:
                found[name.lower()] = value
    return found


def _dotenv(path: Path) -> dict[str, str | None]:
    """The variables of a `.env` file (python-dotenv, imported only where there is one)."""
    from dotenv import dotenv_values

    return dotenv_values(path, encoding="utf-8")


def _layered(*layers: dict[str, Any]) -> dict[str, Any]:
    """The layers merged, later over earlier; a section given in two is merged key by key."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            below = merged.get(key)
            if isinstance(below, dict) and isinstance(value, dict):
                merged[key] = _layered(below, value)
            else:
                merged[key] = value
    return merged


def _blank_is_unset(value: object) -> object:
    """Empty or blank means unset, whichever source it came from (env, .env, arguments)."""
    if isinstance(value, Secret):
        return None if not value.get_secret_value().strip() else value
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _a_path(value: object) -> object:
    """An empty path would be the working directory: the database would land wherever mendbot ran."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty — name a directory (data_dir's default is data)")
    return value


class Settings(Section):
    """All of mendbot's configuration. Secrets have no defaults that could leak into a repo.

    Built by `load_settings` from its sources: config.yaml, then `.env`, then the environment, then
    the caller's overrides.
    """

    # Secrets and the log level: environment or .env only (see `_read_environment`).
    discord_token: Annotated[Secret | None, Before(_blank_is_unset)] = None
    anthropic_api_key: Annotated[Secret | None, Before(_blank_is_unset)] = None
    anthropic_base_url: Annotated[str | None, Before(_blank_is_unset)] = None
    github_token: Annotated[Secret | None, Before(_blank_is_unset)] = None
    log_level: LogLevel = None  # LOG_LEVEL: overrides logging.level

    # Everything else: config.yaml.
    data_dir: Annotated[Path, Before(_a_path)] = Path("data")
    repo_dir: Annotated[Path, Before(_a_path)] = Path(".")
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    observe: ObserveConfig = field(default_factory=ObserveConfig)
    improve: ImproveConfig = field(default_factory=ImproveConfig)
    forge: ForgeConfig = field(default_factory=ForgeConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    playground: PlaygroundConfig = field(default_factory=PlaygroundConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    drill: DrillConfig = field(default_factory=DrillConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # The bot mendbot is attached to (mendbot.yaml); None: mendbot's own sample bot and repository.
    bot: HostConfig | None = None

    @property
    def level(self) -> str | None:
        """The log level chosen by LOG_LEVEL or logging.level; None when neither is set."""
        return self.log_level or self.logging.level

    @property
    def db_path(self) -> Path:
        """The SQLite file, when no `database.url` names a PostgreSQL server."""
        return self.data_dir / "mendbot.db"

    @property
    def database_target(self) -> Path | str:
        """Where the bot's data lives: the PostgreSQL URL, else the SQLite file."""
        return self.database.url or self.db_path

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


_SECRET_KEYS = {"discord_token", "anthropic_api_key", "anthropic_base_url", "github_token"}
_ENV_ONLY_KEYS = _SECRET_KEYS | {"log_level"}


def _config_path() -> str:
    return os.environ.get("MENDBOT_CONFIG") or "config.yaml"  # empty means unset, as everywhere


def config_file_shown(settings: Settings) -> str:
    """The file a person edits to change `settings`, as said in a reply: the one MENDBOT_CONFIG names,
    else an attached bot's mendbot.yaml (`mendbot adopt` writes it), else mendbot's own config.yaml."""
    named = os.environ.get("MENDBOT_CONFIG")
    if named and named != os.devnull:
        return Path(named).name
    return "mendbot.yaml" if settings.bot is not None else "config.yaml"


def _env_origin(top: str, env_file: object) -> str:
    """Where an environment-only value came from: the process environment wins over `.env`."""
    if any(name.lower() == top for name in os.environ):
        return "the environment"
    return str(env_file) if env_file else ".env"


def _fix_for(key: str, env_file: object) -> str:
    top = key.split(".", 1)[0]
    if top in _ENV_ONLY_KEYS:
        return f"set {top.upper()} in {_env_origin(top, env_file)} (see .env.example)"
    return f"fix it in {_config_path()} (see config.example.yaml for every key and its default)"


def _unknown_key(problem: Problem, env_file: object) -> str:
    known = sorted(problem.known or ())
    if len(problem.key) == 1:  # the top level: the environment's keys are refused from the file anyway
        known = [name for name in known if name not in _ENV_ONLY_KEYS]
    import difflib  # only for a config with a mistake in it

    close = difflib.get_close_matches(str(problem.key[-1]), known, n=1, cutoff=0.6)
    hint = f" — did you mean `{close[0]}`?" if close else f" — known keys here: {', '.join(known)}"
    return f"config error: {_config_path()}: unknown key `{problem.dotted}`{hint} (see config.example.yaml)"


def _problem_line(problem: Problem, env_file: object) -> str:
    """The problem as the one line a user reads: the key, what a good value is, what was given (but
    for a secret, or a URL that may hold a password), and where to fix it."""
    if problem.known is not None:
        return _unknown_key(problem, env_file)
    key = problem.dotted or "config"
    hidden = key.split(".")[0] in _ENV_ONLY_KEYS or key == "database.url"  # may hold a password
    quiet = hidden or not problem.given or isinstance(problem.value, dict)
    shown = "" if quiet else f" (got {problem.value!r})"
    return f"config error: {key}: {problem.message}{shown} — {_fix_for(key, env_file)}"


def _host_defaults(settings: Settings, given: dict[str, Any]) -> None:
    """An attached bot's checks and protected paths are its own, unless mendbot.yaml sets them."""
    if settings.bot is None:
        return
    improve = given.get("improve")
    improve_keys = improve if isinstance(improve, dict) else {}
    if "checks" not in improve_keys:
        checks = settings.bot.checks
        settings.improve.checks = list(checks if checks is not None else HOST_CHECKS)
    if "protected_paths" not in improve_keys:
        settings.improve.protected_paths = list(HOST_PROTECTED_PATHS)


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build Settings, turning any validation failure into one readable `ConfigError`."""
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist: copy config.example.yaml to it")
        os.environ["MENDBOT_CONFIG"] = str(config_file)
    elif os.environ.get("MENDBOT_CONFIG") and not Path(_config_path()).exists():
        # Named on purpose, so not there by mistake: running on the defaults instead would hide it.
        raise ConfigError(
            f"config error: MENDBOT_CONFIG names {_config_path()}, which does not exist — "
            "fix the path, copy config.example.yaml there, or unset MENDBOT_CONFIG to read config.yaml"
        )
    env_file = overrides.pop("_env_file", ".env")
    try:
        dotenv = env_file if isinstance(env_file, str | Path) else None
        sources = (_read_config(Path(_config_path())), _read_environment(dotenv), overrides)
        given = _layered(*sources)
        settings = read(Settings, given)
    except Invalid as exc:
        count = len(exc.problems)
        more = f"; {count - 1} more problem(s) after this one" if count > 1 else ""
        raise ConfigError(_problem_line(exc.problems[0], env_file) + more) from None
    except (OSError, ValueError) as exc:  # unreadable, or malformed YAML (yamldoc.YamlError)
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"config error: cannot read {_config_path()}: {one_line}") from None
    _host_defaults(settings, given)
    _refuse_missing_extras(settings)
    return settings


def _refuse_missing_extras(settings: Settings) -> None:
    """A feature the settings ask for whose library is an extra not installed: one line saying which."""
    if settings.forge.kind == "github" and importlib.util.find_spec("githubkit") is None:
        raise ConfigError(
            "config error: forge.kind is github, whose client mendbot installs with its `github` extra — "
            "`pip install 'mendbot[github]'`, or leave forge.kind: local"
        )


def refuse_workers_without_store(settings: Settings) -> None:
    """Runs on workers need what every process shares: the database and the forge.

    The queue and the runs' progress live in PostgreSQL, so `database.url` must name it; a worker
    works in a clone of its own and pushes its branch to the forge, where the bot merges it from,
    so proposals cannot be branches in one machine's repository (the local forge).
    """
    if settings.improve.run_on != "workers":
        return
    if settings.database.url is None:
        raise ConfigError(
            "config error: improve.run_on is workers, which take runs from a queue in PostgreSQL — "
            "set database.url in config.yaml (postgresql://user@host:5432/name), or set "
            "improve.run_on: bot to run them in the bot process"
        )
    if settings.forge.kind != "github":
        raise ConfigError(
            "config error: improve.run_on is workers, whose clones push their branches to the forge "
            "the bot merges from — set forge.kind: github (with forge.repository, and "
            "forge.remote_url/api_url for your server), or set improve.run_on: bot"
        )


def refuse_shard_subset(settings: Settings) -> None:
    """Running only some of the shards is one process of several, which needs a shared store.

    On SQLite each process would hold its own database: incidents, runs and approvals split by
    shard, and every process would run the self-improvement loop on the one repository. With
    `database.url` the processes share PostgreSQL and elect a leader; all shards in one process
    are fine either way. A canary (`deploy.canary_shards`) is one of several such processes.
    """
    discord = settings.discord
    canary = settings.deploy.canary_shards
    if canary is not None and (settings.database.url is None or not discord.runs_shard_subset):
        raise ConfigError(
            f"config error: deploy.canary_shards {canary} names the process that takes a fix first, "
            "which needs several shard processes on one PostgreSQL store: set database.url and "
            "discord.shard_ids (each process its part), or remove deploy.canary_shards"
        )
    if canary is not None and (not canary or any(not 0 <= s < (discord.shard_count or 0) for s in canary)):
        raise ConfigError(
            f"config error: deploy.canary_shards {canary} must list shards of the "
            f"{discord.shard_count} (0 to {(discord.shard_count or 1) - 1}), exactly those one process runs"
        )
    if not discord.runs_shard_subset or settings.database.url is not None:
        return
    count = discord.shard_count or 0
    raise ConfigError(
        f"config error: discord.shard_ids {discord.shard_ids} runs only part of the {count} shards — "
        "several processes each running a part share one PostgreSQL store: set database.url in "
        "config.yaml; with the SQLite database run every shard in one process: remove "
        f"discord.shard_ids (or list all of 0 to {count - 1})"
    )
