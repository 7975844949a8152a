"""Baseline: the schema the hand-written SQL migrations 0001–0013 left behind.

Tables and indexes are the same on both engines. Each engine then gets its own parts:

- SQLite: `search_index`, the FTS5 table of migration 0004 (incidents at row 2*id, distinct
  failures at row 2*search_failures.id+1), with the same views and triggers, word for word, so
  `bot/db/search.py` runs unchanged. `PRAGMA user_version` is set to 13, as the SQL history
  left it, so a file made here and a file adopted from that history are told apart by nothing.
- PostgreSQL: `actions` is partitioned by range of `ts` (a default partition takes rows no
  daily partition covers; `actions_add_daily_partitions` creates days ahead and
  `actions_drop_partitions_before` is retention by dropping whole days). `search_index` is a
  table of the same documents with a stored `tsvector` (GIN-indexed), kept current by triggers
  on `incidents` and `fingerprints` as on SQLite.

Revision ID: 0013
Revises: (none)
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the schema on an empty database."""
    dialect = op.get_bind().dialect.name
    _create_actions(partitioned=dialect == "postgresql")
    _create_shared_tables()
    if dialect == "sqlite":
        for statement in SQLITE_SEARCH:
            op.execute(statement)
        op.execute("PRAGMA user_version = 13")
    elif dialect == "postgresql":
        for statement in POSTGRESQL_ACTIONS + POSTGRESQL_SEARCH:
            op.execute(statement)
    else:
        raise NotImplementedError(f"no search index for {dialect}")


def downgrade() -> None:
    """There is nothing before the baseline to go back to."""
    raise NotImplementedError("the baseline cannot be downgraded")


_SPLIT_A_M = (
    "replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace("
    "replace(replace(error_type, 'A', ' A'), 'B', ' B'), 'C', ' C'), 'D', ' D'), 'E', ' E'), 'F', "
    "' F'), 'G', ' G'), 'H', ' H'), 'I', ' I'), 'J', ' J'), 'K', ' K'), 'L', ' L'), 'M', ' M')"
)
_SPLIT_N_Z = (
    "replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace("
    "replace(replace(half_split, 'N', ' N'), 'O', ' O'), 'P', ' P'), 'Q', ' Q'), 'R', ' R'), 'S', "
    "' S'), 'T', ' T'), 'U', ' U'), 'V', ' V'), 'W', ' W'), 'X', ' X'), 'Y', ' Y'), 'Z', ' Z')"
)

# Migration 0004's search objects (see that file for why they are built this way).
SQLITE_SEARCH = [
    """CREATE VIRTUAL TABLE search_index USING fts5 (
    summary, kind, error_type, message, frames,
    tokenize = 'porter unicode61 remove_diacritics 2'
)""",
    """CREATE VIEW search_incident_base AS
SELECT
    id,
    summary,
    kind,
    coalesce(CASE WHEN json_valid(sample) THEN json_extract(sample, '$.error_type') END, '') AS error_type,
    CASE WHEN json_valid(sample) THEN json_extract(sample, '$.error_message') END AS message,
    CASE WHEN json_valid(sample) THEN json_extract(sample, '$.frames') END AS frames
FROM incidents""",
    f"""CREATE VIEW search_incident_split AS
SELECT *, {_SPLIT_A_M} AS half_split FROM search_incident_base""",
    f"""CREATE VIEW search_incident_docs AS
SELECT
    id,
    id * 2 AS rid,
    summary,
    kind,
    error_type || ' ' || {_SPLIT_N_Z} AS error_type,
    message,
    frames
FROM search_incident_split""",
    """CREATE VIEW search_failure_base AS
SELECT
    s.id AS id,
    g.fingerprint AS fingerprint,
    g.kind AS kind,
    coalesce(g.error_type, '') AS error_type,
    a.error_message AS message,
    a.frames AS frames
FROM search_failures AS s
JOIN fingerprints AS g ON g.fingerprint = s.fingerprint
LEFT JOIN actions AS a ON a.id = (
    SELECT n.id FROM actions AS n WHERE n.fingerprint = g.fingerprint ORDER BY n.ts DESC LIMIT 1
)""",
    f"""CREATE VIEW search_failure_split AS
SELECT *, {_SPLIT_A_M} AS half_split FROM search_failure_base""",
    f"""CREATE VIEW search_failure_docs AS
SELECT
    id * 2 + 1 AS rid,
    fingerprint,
    '' AS summary,
    kind,
    error_type || ' ' || {_SPLIT_N_Z} AS error_type,
    message,
    frames
FROM search_failure_split""",
    """CREATE TRIGGER search_incident_insert AFTER INSERT ON incidents BEGIN
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames FROM search_incident_docs WHERE id = new.id;
END""",
    """CREATE TRIGGER search_incident_update AFTER UPDATE OF summary, kind, sample ON incidents BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 2;
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames FROM search_incident_docs WHERE id = new.id;
END""",
    """CREATE TRIGGER search_incident_delete AFTER DELETE ON incidents BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 2;
END""",
    """CREATE TRIGGER search_failure_insert AFTER INSERT ON fingerprints BEGIN
    INSERT OR IGNORE INTO search_failures (fingerprint) VALUES (new.fingerprint);
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames
    FROM search_failure_docs WHERE fingerprint = new.fingerprint;
END""",
    """CREATE TRIGGER search_failure_update AFTER UPDATE ON fingerprints
WHEN new.fingerprint IS NOT old.fingerprint OR new.kind IS NOT old.kind
    OR new.error_type IS NOT old.error_type OR new.count IN (10, 100, 1000, 10000, 100000, 1000000)
BEGIN
    DELETE FROM search_index
    WHERE rowid = (SELECT id * 2 + 1 FROM search_failures WHERE fingerprint = old.fingerprint);
    UPDATE search_failures SET fingerprint = new.fingerprint WHERE fingerprint = old.fingerprint;
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames
    FROM search_failure_docs WHERE fingerprint = new.fingerprint;
END""",
    """CREATE TRIGGER search_failure_delete AFTER DELETE ON fingerprints BEGIN
    DELETE FROM search_index
    WHERE rowid = (SELECT id * 2 + 1 FROM search_failures WHERE fingerprint = old.fingerprint);
    DELETE FROM search_failures WHERE fingerprint = old.fingerprint;
END""",
]

# Days are UTC days of `ts` (unix seconds) named actions_YYYYMMDD. A day whose rows already sit in
# the default partition is skipped (PostgreSQL refuses to carve it out); they stay where they are.
POSTGRESQL_ACTIONS = [
    "CREATE TABLE actions_default PARTITION OF actions DEFAULT",
    """CREATE FUNCTION actions_add_daily_partitions(from_ts double precision, days integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    first_day double precision := floor(from_ts / 86400) * 86400;
    lo double precision;
    name text;
    created integer := 0;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        lo := first_day + i * 86400;
        name := 'actions_' || to_char(to_timestamp(lo) AT TIME ZONE 'UTC', 'YYYYMMDD');
        CONTINUE WHEN to_regclass(name) IS NOT NULL;
        CONTINUE WHEN EXISTS (SELECT 1 FROM actions_default WHERE ts >= lo AND ts < lo + 86400);
        EXECUTE format('CREATE TABLE %I PARTITION OF actions FOR VALUES FROM (%s) TO (%s)',
                       name, lo, lo + 86400);
        created := created + 1;
    END LOOP;
    RETURN created;
END $$""",
    """CREATE FUNCTION actions_drop_partitions_before(cutoff_ts double precision)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'actions'::regclass AND c.relname ~ '^actions_[0-9]{8}$'
    LOOP
        IF extract(epoch FROM to_date(substr(part.relname, 9), 'YYYYMMDD')) + 86400 <= cutoff_ts THEN
            EXECUTE format('DROP TABLE %I', part.relname);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$""",
]

# The same documents as SQLite's search_index, rows keyed the same way; the tsvector is weighted
# so a match in the summary or error type counts more than one in a message or the frames.
POSTGRESQL_SEARCH = [
    """CREATE TABLE search_index (
    rid         bigint PRIMARY KEY,
    summary     text NOT NULL,
    kind        text NOT NULL,
    error_type  text NOT NULL,
    message     text,
    frames      text,
    document    tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', summary), 'A')
        || setweight(to_tsvector('english', error_type), 'A')
        || setweight(to_tsvector('english', kind), 'B')
        || setweight(to_tsvector('english', coalesce(message, '')), 'C')
        || setweight(to_tsvector('english', coalesce(frames, '')), 'D')
    ) STORED
)""",
    "CREATE INDEX search_index_document ON search_index USING gin (document)",
    # "ZeroDivisionError" is indexed whole and as "Zero Division Error", as on SQLite.
    """CREATE FUNCTION search_error_type(error_type text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(error_type, '') || ' ' || regexp_replace(coalesce(error_type, ''), '([A-Z])', ' \\1', 'g')
$$""",
    """CREATE FUNCTION search_index_incident() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sample jsonb;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM search_index WHERE rid = OLD.id * 2;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    sample := CASE WHEN NEW.sample IS JSON OBJECT THEN NEW.sample::jsonb END;
    INSERT INTO search_index (rid, summary, kind, error_type, message, frames)
    VALUES (NEW.id * 2, NEW.summary, NEW.kind, search_error_type(sample ->> 'error_type'),
            sample ->> 'error_message', sample ->> 'frames');
    RETURN NEW;
END $$""",
    """CREATE TRIGGER search_incident AFTER INSERT OR DELETE OR UPDATE OF summary, kind, sample
ON incidents FOR EACH ROW EXECUTE FUNCTION search_index_incident()""",
    """CREATE FUNCTION search_index_failure() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    search_id bigint;
    newest_message text;
    newest_frames text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM search_index
        WHERE rid = (SELECT id * 2 + 1 FROM search_failures WHERE fingerprint = OLD.fingerprint);
    END IF;
    IF TG_OP = 'DELETE' THEN
        DELETE FROM search_failures WHERE fingerprint = OLD.fingerprint;
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        UPDATE search_failures SET fingerprint = NEW.fingerprint WHERE fingerprint = OLD.fingerprint;
    END IF;
    INSERT INTO search_failures (fingerprint) VALUES (NEW.fingerprint) ON CONFLICT (fingerprint) DO NOTHING;
    SELECT id INTO search_id FROM search_failures WHERE fingerprint = NEW.fingerprint;
    SELECT error_message, frames INTO newest_message, newest_frames
    FROM actions WHERE fingerprint = NEW.fingerprint ORDER BY ts DESC LIMIT 1;
    INSERT INTO search_index (rid, summary, kind, error_type, message, frames)
    VALUES (search_id * 2 + 1, '', NEW.kind, search_error_type(NEW.error_type),
            newest_message, newest_frames);
    RETURN NEW;
END $$""",
    """CREATE TRIGGER search_failure_insert AFTER INSERT ON fingerprints
FOR EACH ROW EXECUTE FUNCTION search_index_failure()""",
    # Counting a failure bumps count and last_seen every time: re-index only now and then.
    """CREATE TRIGGER search_failure_update AFTER UPDATE ON fingerprints FOR EACH ROW
WHEN (NEW.fingerprint IS DISTINCT FROM OLD.fingerprint OR NEW.kind IS DISTINCT FROM OLD.kind
      OR NEW.error_type IS DISTINCT FROM OLD.error_type
      OR NEW.count IN (10, 100, 1000, 10000, 100000, 1000000))
EXECUTE FUNCTION search_index_failure()""",
    """CREATE TRIGGER search_failure_delete AFTER DELETE ON fingerprints
FOR EACH ROW EXECUTE FUNCTION search_index_failure()""",
]


def _create_actions(partitioned: bool) -> None:
    # A partitioned table's primary key must hold the partition key, hence (id, ts) there.
    primary_key = (
        sa.PrimaryKeyConstraint("id", "ts", name=op.f("pk_actions"))
        if partitioned
        else sa.PrimaryKeyConstraint("id", name=op.f("pk_actions"))
    )
    partitioning: dict[str, Any] = {"postgresql_partition_by": "RANGE (ts)"} if partitioned else {}
    op.create_table(
        "actions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("cost_usd", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.Text(), nullable=True),
        sa.Column("frames", sa.Text(), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.Column("invocation", sa.Text(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("samples", sa.Text(), nullable=True),
        primary_key,
        **partitioning,
    )
    op.create_index(
        "actions_failures_ts",
        "actions",
        ["ts", "fingerprint", "kind"],
        unique=False,
        sqlite_where=sa.text("fingerprint IS NOT NULL"),
        postgresql_where=sa.text("fingerprint IS NOT NULL"),
    )
    op.create_index(
        "actions_fingerprint_ts",
        "actions",
        ["fingerprint", "ts"],
        unique=False,
        sqlite_where=sa.text("fingerprint IS NOT NULL"),
        postgresql_where=sa.text("fingerprint IS NOT NULL"),
    )
    op.create_index(
        "actions_kind_failures_ts",
        "actions",
        ["kind", "ts"],
        unique=False,
        sqlite_where=sa.text("ok = 0"),
        postgresql_where=sa.text("ok = 0"),
    )
    op.create_index("actions_kind_ts", "actions", ["kind", "ts", "duration_ms"], unique=False)
    op.create_index(
        "actions_sampled_kind_ts",
        "actions",
        ["kind", "ts"],
        unique=False,
        sqlite_where=sa.text("samples IS NOT NULL"),
        postgresql_where=sa.text("samples IS NOT NULL"),
    )
    op.create_index(
        "actions_ts_audit", "actions", ["ts", "kind", "ok", "duration_ms", "cost_usd"], unique=False
    )


def _create_shared_tables() -> None:
    op.create_table(
        "approvals",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("proposal_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("sha", sa.Text(), nullable=False),
        sa.Column("form", sa.Text(), nullable=False),
        sa.Column("via", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("stale", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("source", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("emoji", sa.Text(), nullable=True),
        sa.Column("withdrawn_at", sa.Double(), nullable=True),
        sa.Column("withdrawn_why", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "form IN ('approve', 'approve_security', 'approve_unproven', 'reject')",
            name=op.f("ck_approvals_form"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint(
            "proposal_id",
            "user_id",
            "sha",
            "form",
            "source",
            name=op.f("uq_approvals_proposal_id_user_id_sha_form_source"),
        ),
    )
    op.create_index(
        "approvals_message",
        "approvals",
        ["message_id"],
        unique=False,
        sqlite_where=sa.text("message_id IS NOT NULL"),
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )
    op.create_index("approvals_run", "approvals", ["run_id"], unique=False)
    op.create_table(
        "chat_messages",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("author_id", sa.BigInteger(), nullable=False),
        sa.Column("author_name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant')", name=op.f("ck_chat_messages_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
    )
    op.create_index("chat_messages_channel", "chat_messages", ["channel_id", "id"], unique=False)
    op.create_table(
        "dev_mode",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Integer(), nullable=False),
        sa.Column("until", sa.Double(), nullable=True),
        sa.CheckConstraint("active IN (0, 1)", name=op.f("ck_dev_mode_active")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dev_mode")),
    )
    op.create_table(
        "fingerprints",
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("error_type", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_fingerprints")),
    )
    op.create_index("fingerprints_kind_last_seen", "fingerprints", ["kind", "last_seen"], unique=False)
    op.create_table(
        "handlers",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("qualname", sa.Text(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("cog", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "path", "qualname", name=op.f("pk_handlers")),
    )
    op.create_index("handlers_cog", "handlers", ["cog"], unique=False)
    op.create_table(
        "incidents",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("user_ids", sa.Text(), nullable=False),
        sa.Column("sample", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("closed_at", sa.Double(), nullable=True),
        sa.Column("closed_by", sa.BigInteger(), nullable=True),
        sa.Column("category", sa.Text(), server_default=sa.text("'code'"), nullable=False),
        sa.Column("need", sa.Text(), nullable=True),
        sa.Column("autonomy", sa.Text(), nullable=True),
        sa.CheckConstraint("category IN ('code', 'environment')", name=op.f("ck_incidents_category")),
        sa.CheckConstraint("level IN ('notice', 'warning', 'error')", name=op.f("ck_incidents_level")),
        sa.CheckConstraint(
            "state IN ('open', 'acknowledged', 'resolved', 'muted')", name=op.f("ck_incidents_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(
        "incidents_closed_at",
        "incidents",
        ["closed_at"],
        unique=False,
        sqlite_where=sa.text("closed_at IS NOT NULL"),
        postgresql_where=sa.text("closed_at IS NOT NULL"),
    )
    op.create_index(
        "incidents_fingerprint",
        "incidents",
        ["fingerprint"],
        unique=False,
        sqlite_where=sa.text("fingerprint IS NOT NULL"),
        postgresql_where=sa.text("fingerprint IS NOT NULL"),
    )
    op.create_index("incidents_first_seen", "incidents", ["first_seen"], unique=False)
    op.create_index("incidents_kind_last_seen", "incidents", ["kind", "last_seen"], unique=False)
    op.create_index(
        "incidents_message",
        "incidents",
        ["message_id"],
        unique=True,
        sqlite_where=sa.text("message_id IS NOT NULL"),
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )
    op.create_index("incidents_state", "incidents", ["state"], unique=False)
    op.create_table(
        "lessons",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=True),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("root_cause", sa.Text(), nullable=False),
        sa.Column("fix_commit", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lessons")),
    )
    op.create_index(
        "lessons_fingerprint",
        "lessons",
        ["fingerprint", "created_at"],
        unique=False,
        sqlite_where=sa.text("fingerprint IS NOT NULL"),
        postgresql_where=sa.text("fingerprint IS NOT NULL"),
    )
    op.create_index("lessons_run", "lessons", ["run_id"], unique=False)
    op.create_table(
        "proofs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("sha", sa.Text(), nullable=False),
        sa.Column("base_sha", sa.Text(), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("overhead_s", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.CheckConstraint("stage IN ('verify', 'deploy')", name=op.f("ck_proofs_stage")),
        sa.CheckConstraint("verdict IN ('proven', 'unproven', 'disproven')", name=op.f("ck_proofs_verdict")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proofs")),
    )
    op.create_index("proofs_run", "proofs", ["run_id", "stage", "id"], unique=False)
    op.create_table(
        "proposal_messages",
        sa.Column(
            "message_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("proposal_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_proposal_messages")),
    )
    op.create_index("proposal_messages_proposal", "proposal_messages", ["proposal_id"], unique=False)
    op.create_table(
        "proposals",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("forge", sa.Text(), nullable=False),
        sa.Column("branch", sa.Text(), nullable=False),
        sa.Column("head_sha", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.CheckConstraint("state IN ('open', 'merged', 'closed')", name=op.f("ck_proposals_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposals")),
    )
    op.create_index("proposals_run", "proposals", ["run_id"], unique=False)
    op.create_table(
        "reminders",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("due_at", sa.Text(), nullable=False),
        sa.Column("fired_at", sa.Text(), nullable=True),
        sa.Column("failed", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminders")),
    )
    op.create_index(
        "reminders_pending",
        "reminders",
        ["due_at"],
        unique=False,
        sqlite_where=sa.text("fired_at IS NULL"),
        postgresql_where=sa.text("fired_at IS NULL"),
    )
    op.create_table(
        "runs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("requester_id", sa.BigInteger(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("incident_id", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("security", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("branch", sa.Text(), nullable=True),
        sa.Column("worktree", sa.Text(), nullable=True),
        sa.Column("base_sha", sa.Text(), nullable=True),
        sa.Column("head_sha", sa.Text(), nullable=True),
        sa.Column("verified_sha", sa.Text(), nullable=True),
        sa.Column("cost_usd", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failure_stage", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("status_message_id", sa.BigInteger(), nullable=True),
        sa.Column("proposal_id", sa.BigInteger(), nullable=True),
        sa.Column("interrupted_from", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("origin", sa.Text(), server_default=sa.text("'requested'"), nullable=False),
        sa.CheckConstraint("kind IN ('investigate', 'fix')", name=op.f("ck_runs_kind")),
        sa.CheckConstraint("origin IN ('requested', 'autonomous')", name=op.f("ck_runs_origin")),
        sa.CheckConstraint(
            (
                "state IN ('queued', 'observing', 'investigating', 'planning', 'editing', "
                "'verifying', 'proposing', 'awaiting_approval', 'merging', 'deployed', 'watching', "
                "'resolved', 'reported', 'failed', 'rejected', 'cancelled', 'regressed', "
                "'interrupted')"
            ),
            name=op.f("ck_runs_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("runs_created", "runs", ["created_at"], unique=False)
    op.create_index(
        "runs_incident",
        "runs",
        ["incident_id"],
        unique=False,
        sqlite_where=sa.text("incident_id IS NOT NULL"),
        postgresql_where=sa.text("incident_id IS NOT NULL"),
    )
    op.create_index("runs_requester_created", "runs", ["requester_id", "created_at"], unique=False)
    op.create_index("runs_state", "runs", ["state"], unique=False)
    op.create_table(
        "search_failures",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_failures")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_search_failures_fingerprint")),
    )
    op.create_table(
        "settings_kv",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_settings_kv")),
    )
    op.create_table(
        "claims",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("why", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_claims_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "path", name=op.f("pk_claims")),
    )
    op.create_index("claims_path", "claims", ["path"], unique=False)
    op.create_table(
        "incident_requests",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("incident_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("via", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.CheckConstraint("action IN ('investigate', 'fix')", name=op.f("ck_incident_requests_action")),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_incident_requests_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_requests")),
        sa.UniqueConstraint(
            "incident_id", "user_id", "action", name=op.f("uq_incident_requests_incident_id_user_id_action")
        ),
    )
    op.create_table(
        "run_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("cost_usd", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_events_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_events")),
    )
    op.create_index("run_events_run", "run_events", ["run_id", "id"], unique=False)
    op.create_index("run_events_ts", "run_events", ["ts"], unique=False)
