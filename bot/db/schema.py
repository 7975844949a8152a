"""The database schema: one SQLAlchemy Core `MetaData` for SQLite and PostgreSQL.

This is the schema as it stands at the head of the migration history (`bot/db/history/`). It
describes what both engines share; each engine's own parts are made by the baseline revision:
on SQLite the FTS5 `search_index` with its views and triggers, on PostgreSQL `actions`
partitioned by day of `ts` and a `search_index` of `tsvector` documents.

Changing the schema means changing this file *and* adding an Alembic revision that makes the same
change (`bot/db/history/versions/vNNNN_name.py`, numbered on from the last); a test compares the
migrated database with this metadata on both engines, so one without the other fails. The
numbered `.sql` files in `bot/db/migrations/` are the history from before Alembic: they only
bring an old SQLite file up to the baseline.

Column types keep SQLite's behaviour: integer primary keys are `INTEGER` there (the rowid alias
every insert relies on) and `BIGINT` on PostgreSQL; Discord ids and references to our own ids are
64-bit; flags stay integers (0/1) and times stay unix seconds in floating point, so no query
changes meaning.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = ["metadata"]

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)

# INTEGER on SQLite so that the column is the rowid alias (assigned on insert); BIGINT elsewhere.
RowId = BigInteger().with_variant(Integer(), "sqlite")
Seconds: Double[float] = Double()


def _in(column: str, *values: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _id() -> Column[int]:
    return Column("id", RowId, primary_key=True, autoincrement=True)


def _partial(where: str) -> dict[str, Any]:
    return {"sqlite_where": text(where), "postgresql_where": text(where)}


reminders = Table(
    "reminders",
    metadata,
    _id(),
    Column("guild_id", BigInteger),
    Column("channel_id", BigInteger, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("due_at", Text, nullable=False),
    Column("fired_at", Text),
    Column("failed", Text),
)
Index("reminders_pending", reminders.c.due_at, **_partial("fired_at IS NULL"))

chat_messages = Table(
    "chat_messages",
    metadata,
    _id(),
    Column("channel_id", BigInteger, nullable=False),
    Column("message_id", BigInteger),
    Column("author_id", BigInteger, nullable=False),
    Column("author_name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    CheckConstraint(_in("role", "user", "assistant"), name="role"),
)
Index("chat_messages_channel", chat_messages.c.channel_id, chat_messages.c.id)

# One row per handled event. On PostgreSQL the baseline creates it partitioned by range of ts,
# with (id, ts) as its primary key, since a partitioned table's keys must hold the partition key.
actions = Table(
    "actions",
    metadata,
    _id(),
    Column("ts", Seconds, nullable=False),
    Column("kind", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("duration_ms", Double, nullable=False),
    Column("guild_id", BigInteger),
    Column("channel_id", BigInteger),
    Column("user_id", BigInteger),
    Column("message_id", BigInteger),
    Column("cost_usd", Double, nullable=False, server_default=text("0")),
    Column("error_type", Text),
    Column("error_message", Text),
    Column("fingerprint", Text),
    Column("frames", Text),
    Column("run_id", BigInteger),
    Column("extra", Text),
    Column("invocation", Text),
    Column("reply", Text),
    Column("samples", Text),
    Column("process", Text),  # the recording process's shards label (several processes); v0017_rollout
)
Index("actions_fingerprint_ts", actions.c.fingerprint, actions.c.ts, **_partial("fingerprint IS NOT NULL"))
Index(
    "actions_ts_audit", actions.c.ts, actions.c.kind, actions.c.ok, actions.c.duration_ms, actions.c.cost_usd
)
Index("actions_kind_ts", actions.c.kind, actions.c.ts, actions.c.duration_ms)
Index(
    "actions_failures_ts",
    actions.c.ts,
    actions.c.fingerprint,
    actions.c.kind,
    **_partial("fingerprint IS NOT NULL"),
)
Index("actions_sampled_kind_ts", actions.c.kind, actions.c.ts, **_partial("samples IS NOT NULL"))
Index("actions_kind_failures_ts", actions.c.kind, actions.c.ts, **_partial("ok = 0"))

fingerprints = Table(
    "fingerprints",
    metadata,
    Column("fingerprint", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("error_type", Text),
    Column("first_seen", Seconds, nullable=False),
    Column("last_seen", Seconds, nullable=False),
    Column("count", Integer, nullable=False),
)
Index("fingerprints_kind_last_seen", fingerprints.c.kind, fingerprints.c.last_seen)

incidents = Table(
    "incidents",
    metadata,
    _id(),
    Column("rule", Text, nullable=False),
    Column("rules", Text, nullable=False),
    Column("level", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("fingerprint", Text),
    Column("state", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("first_seen", Seconds, nullable=False),
    Column("last_seen", Seconds, nullable=False),
    Column("count", Integer, nullable=False),
    Column("user_ids", Text, nullable=False),
    Column("sample", Text, nullable=False),
    Column("channel_id", BigInteger),
    Column("message_id", BigInteger),
    Column("updated_at", Seconds, nullable=False),
    Column("closed_at", Seconds),
    Column("closed_by", BigInteger),
    Column("category", Text, nullable=False, server_default=text("'code'")),
    Column("need", Text),
    Column("autonomy", Text),
    CheckConstraint(_in("level", "notice", "warning", "error"), name="level"),
    CheckConstraint(_in("state", "open", "acknowledged", "resolved", "muted"), name="state"),
    CheckConstraint(_in("category", "code", "environment"), name="category"),
)
Index("incidents_state", incidents.c.state)
Index("incidents_message", incidents.c.message_id, unique=True, **_partial("message_id IS NOT NULL"))
Index("incidents_kind_last_seen", incidents.c.kind, incidents.c.last_seen)
Index("incidents_fingerprint", incidents.c.fingerprint, **_partial("fingerprint IS NOT NULL"))
Index("incidents_first_seen", incidents.c.first_seen)
Index("incidents_closed_at", incidents.c.closed_at, **_partial("closed_at IS NOT NULL"))

incident_requests = Table(
    "incident_requests",
    metadata,
    _id(),
    Column("incident_id", BigInteger, ForeignKey("incidents.id"), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("action", Text, nullable=False),
    Column("via", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
    CheckConstraint(_in("action", "investigate", "fix"), name="action"),
    UniqueConstraint("incident_id", "user_id", "action"),
)

_RUN_STATES = (
    "queued", "observing", "investigating", "planning", "editing", "verifying", "proposing",
    "awaiting_approval", "merging", "deployed", "watching", "resolved", "reported", "failed",
    "rejected", "cancelled", "regressed", "interrupted", "rolled_back",
)  # fmt: skip

runs = Table(
    "runs",
    metadata,
    _id(),
    Column("kind", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("requester_id", BigInteger, nullable=False),
    Column("channel_id", BigInteger),
    Column("incident_id", BigInteger),
    Column("description", Text, nullable=False),
    Column("slug", Text, nullable=False),
    Column("security", Integer, nullable=False, server_default=text("0")),
    Column("branch", Text),
    Column("worktree", Text),
    Column("base_sha", Text),
    Column("head_sha", Text),
    Column("verified_sha", Text),
    Column("cost_usd", Double, nullable=False, server_default=text("0")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("failure_stage", Text),
    Column("failure_reason", Text),
    Column("status_message_id", BigInteger),
    Column("proposal_id", BigInteger),
    Column("interrupted_from", Text),
    Column("created_at", Seconds, nullable=False),
    Column("updated_at", Seconds, nullable=False),
    Column("origin", Text, nullable=False, server_default=text("'requested'")),
    CheckConstraint(_in("kind", "investigate", "fix"), name="kind"),
    CheckConstraint(_in("state", *_RUN_STATES), name="state"),
    CheckConstraint(_in("origin", "requested", "autonomous"), name="origin"),
)
Index("runs_state", runs.c.state)
Index("runs_created", runs.c.created_at)
Index("runs_requester_created", runs.c.requester_id, runs.c.created_at)
Index("runs_incident", runs.c.incident_id, **_partial("incident_id IS NOT NULL"))

run_events = Table(
    "run_events",
    metadata,
    _id(),
    Column("run_id", BigInteger, ForeignKey("runs.id"), nullable=False),
    Column("ts", Seconds, nullable=False),
    Column("actor", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("detail", Text),
    Column("cost_usd", Double, nullable=False, server_default=text("0")),
)
Index("run_events_run", run_events.c.run_id, run_events.c.id)
Index("run_events_ts", run_events.c.ts)

# No foreign key on run_id in lessons, proposals, approvals, proofs: those rows are written by
# other services and runs are never deleted (see migration 0003).
lessons = Table(
    "lessons",
    metadata,
    _id(),
    Column("run_id", BigInteger, nullable=False),
    Column("fingerprint", Text),
    Column("files", Text, nullable=False),
    Column("root_cause", Text, nullable=False),
    Column("fix_commit", Text),
    Column("outcome", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
)
Index(
    "lessons_fingerprint", lessons.c.fingerprint, lessons.c.created_at, **_partial("fingerprint IS NOT NULL")
)
Index("lessons_run", lessons.c.run_id)

proposals = Table(
    "proposals",
    metadata,
    _id(),
    Column("run_id", BigInteger, nullable=False),
    Column("forge", Text, nullable=False),
    Column("branch", Text, nullable=False),
    Column("head_sha", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("url", Text, nullable=False, server_default=text("''")),
    Column("number", Integer),
    Column("state", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
    Column("updated_at", Seconds, nullable=False),
    CheckConstraint(_in("state", "open", "merged", "closed"), name="state"),
)
Index("proposals_run", proposals.c.run_id)

settings_kv = Table(
    "settings_kv",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# Small keyed JSON rows that cogs keep (mendbot.db.cog_rows), each with the action that last wrote it:
# a crash on a bad row names the command that stored it (mendbot.db.provenance).
cog_rows = Table(
    "cog_rows",
    metadata,
    Column("table_name", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("written_by", Text),
    Column("writer", Text),
    Column("written_at", Seconds),
)

# Fingerprints are keyed by text; each gets a stable integer here for its row in `search_index`.
search_failures = Table(
    "search_failures",
    metadata,
    _id(),
    Column("fingerprint", Text, nullable=False, unique=True),
)

approvals = Table(
    "approvals",
    metadata,
    _id(),
    Column("proposal_id", BigInteger, nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("sha", Text, nullable=False),
    Column("form", Text, nullable=False),
    Column("via", Text, nullable=False),
    Column("created_at", Seconds, nullable=False),
    Column("stale", Integer, nullable=False, server_default=text("0")),
    Column("source", Text, nullable=False, server_default=text("''")),
    Column("message_id", BigInteger),
    Column("emoji", Text),
    Column("withdrawn_at", Seconds),
    Column("withdrawn_why", Text),
    Column("channel_id", BigInteger),  # where the signal was given: an approving message is re-read there
    CheckConstraint(_in("form", "approve", "approve_security", "approve_unproven", "reject"), name="form"),
    UniqueConstraint("proposal_id", "user_id", "sha", "form", "source"),
)
Index("approvals_run", approvals.c.run_id)
Index("approvals_message", approvals.c.message_id, **_partial("message_id IS NOT NULL"))

# What an approver said against shipping a proposal (or could not be read as a yes or a no): it holds
# the merge until that person withdraws it or approves after it. Not bound to a head: a new commit
# does not answer an objection.
objections = Table(
    "objections",
    metadata,
    _id(),
    Column("proposal_id", BigInteger, nullable=False),
    Column("run_id", BigInteger, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=text("''")),
    Column("message_id", BigInteger, nullable=False),
    Column("channel_id", BigInteger, nullable=False),
    Column("created_at", Seconds, nullable=False),
    Column("withdrawn_at", Seconds),
    Column("withdrawn_why", Text),
    CheckConstraint(_in("kind", "object", "unclear"), name="kind"),
    UniqueConstraint("proposal_id", "message_id"),
)
Index("objections_message", objections.c.message_id)

proposal_messages = Table(
    "proposal_messages",
    metadata,
    Column("message_id", RowId, primary_key=True, autoincrement=False),
    Column("proposal_id", BigInteger, nullable=False),
    Column("channel_id", BigInteger, nullable=False),
)
Index("proposal_messages_proposal", proposal_messages.c.proposal_id)

dev_mode = Table(
    "dev_mode",
    metadata,
    _id(),
    Column("ts", Seconds, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("active", Integer, nullable=False),
    Column("until", Seconds),
    CheckConstraint("active IN (0, 1)", name="active"),
)

handlers = Table(
    "handlers",
    metadata,
    Column("kind", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("qualname", Text, nullable=False),
    Column("line", Integer, nullable=False),
    Column("cog", Text, nullable=False),
    Column("updated_at", Seconds, nullable=False),
    PrimaryKeyConstraint("kind", "path", "qualname"),
)
Index("handlers_cog", handlers.c.cog)

proofs = Table(
    "proofs",
    metadata,
    _id(),
    Column("run_id", BigInteger, nullable=False),
    Column("stage", Text, nullable=False),
    Column("sha", Text, nullable=False),
    Column("base_sha", Text, nullable=False),
    Column("verdict", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("items", Text, nullable=False),
    Column("overhead_s", Double, nullable=False),
    Column("created_at", Seconds, nullable=False),
    CheckConstraint(_in("stage", "verify", "deploy"), name="stage"),
    CheckConstraint(_in("verdict", "proven", "unproven", "disproven", "tested"), name="verdict"),
)
Index("proofs_run", proofs.c.run_id, proofs.c.stage, proofs.c.id)

claims = Table(
    "claims",
    metadata,
    Column("run_id", BigInteger, ForeignKey("runs.id"), nullable=False),
    Column("path", Text, nullable=False),
    Column("why", Text, nullable=False, server_default=text("''")),
    Column("created_at", Seconds, nullable=False),
    PrimaryKeyConstraint("run_id", "path"),
)
Index("claims_path", claims.c.path)

# The dashboard's sign-in (bot/dashboard/signin.py): one-time links and the sessions they open. Only
# a SHA-256 of each secret is kept, so a copy of the database signs nobody in.
dashboard_links = Table(
    "dashboard_links",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("created_at", Seconds, nullable=False),
    Column("expires_at", Seconds, nullable=False),
    Column("used_at", Seconds),
)
Index("dashboard_links_expires", dashboard_links.c.expires_at)

dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("session_hash", Text, primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("created_at", Seconds, nullable=False),
    Column("expires_at", Seconds, nullable=False),
)
Index("dashboard_sessions_expires", dashboard_sessions.c.expires_at)

# The action explorer's "by user" (bot/db/browse.py): newest first within one user's actions.
Index("actions_user_ts", actions.c.user_id, actions.c.ts, **_partial("user_id IS NOT NULL"))

# Fire drills (bot/improve/drill.py), each from its start to its end: the stage it reached and the
# records it made. `unfinished` is 1 until the drill ends and NULL after; being UNIQUE, it lets one
# drill at a time be unfinished, whichever process starts it (v0018_drills).
drills = Table(
    "drills",
    metadata,
    _id(),
    Column("number", BigInteger, nullable=False),
    Column("unfinished", Integer, unique=True),
    Column("process", Text),  # the shards label of the process running it; NULL for a single process
    Column("started_at", Seconds, nullable=False),
    Column("stage", Text, nullable=False),  # the last stage it saw happen; "" before detection
    Column("incident_id", BigInteger),
    Column("run_id", BigInteger),
    Column("proposal_id", BigInteger),
    Column("ended_at", Seconds),
    Column("outcome", Text),  # ok | missed | stopped | failed | interrupted
)

# The names people go by, as the bot last saw them (bot/runtime/people.py): who asked, approved or failed
# reads as a name in chat and on the dashboard after a restart too, not as a Discord id.
people = Table(
    "people",
    metadata,
    Column("user_id", RowId, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("seen_at", Seconds, nullable=False),
)

# How far the database has taken each action journal (bot/observe/journal.py): the sequence number of
# the last record it holds from it, changed in the same transaction as the records; v0020_journal.
journal_positions = Table(
    "journal_positions",
    metadata,
    Column("journal", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("updated_at", Seconds, nullable=False),
)
