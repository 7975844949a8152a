-- mendbot schema at the head of the history with sha256 8bea3af5a710cca7e67aa63813842bd3c8d0f12c0802f97496eb811d2f6ea3c5
-- Written by `python -m mendbot.db.history`; used only while that digest matches.
BEGIN;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE actions (
	id INTEGER NOT NULL, 
	ts DOUBLE NOT NULL, 
	kind TEXT NOT NULL, 
	source TEXT NOT NULL, 
	ok INTEGER NOT NULL, 
	duration_ms DOUBLE NOT NULL, 
	guild_id BIGINT, 
	channel_id BIGINT, 
	user_id BIGINT, 
	message_id BIGINT, 
	cost_usd DOUBLE DEFAULT 0 NOT NULL, 
	error_type TEXT, 
	error_message TEXT, 
	fingerprint TEXT, 
	frames TEXT, 
	run_id BIGINT, 
	extra TEXT, 
	invocation TEXT, 
	reply TEXT, 
	samples TEXT, process TEXT, 
	CONSTRAINT pk_actions PRIMARY KEY (id)
);
CREATE INDEX actions_failures_ts ON actions (ts, fingerprint, kind) WHERE fingerprint IS NOT NULL;
CREATE INDEX actions_fingerprint_ts ON actions (fingerprint, ts) WHERE fingerprint IS NOT NULL;
CREATE INDEX actions_kind_failures_ts ON actions (kind, ts) WHERE ok = 0;
CREATE INDEX actions_kind_ts ON actions (kind, ts, duration_ms);
CREATE INDEX actions_sampled_kind_ts ON actions (kind, ts) WHERE samples IS NOT NULL;
CREATE INDEX actions_ts_audit ON actions (ts, kind, ok, duration_ms, cost_usd);
CREATE TABLE approvals (
	id INTEGER NOT NULL, 
	proposal_id BIGINT NOT NULL, 
	run_id BIGINT NOT NULL, 
	user_id BIGINT NOT NULL, 
	sha TEXT NOT NULL, 
	form TEXT NOT NULL, 
	via TEXT NOT NULL, 
	created_at DOUBLE NOT NULL, 
	stale INTEGER DEFAULT 0 NOT NULL, 
	source TEXT DEFAULT '' NOT NULL, 
	message_id BIGINT, 
	emoji TEXT, 
	withdrawn_at DOUBLE, 
	withdrawn_why TEXT, channel_id BIGINT, 
	CONSTRAINT pk_approvals PRIMARY KEY (id), 
	CONSTRAINT ck_approvals_form CHECK (form IN ('approve', 'approve_security', 'approve_unproven', 'reject')), 
	CONSTRAINT uq_approvals_proposal_id_user_id_sha_form_source UNIQUE (proposal_id, user_id, sha, form, source)
);
CREATE INDEX approvals_message ON approvals (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX approvals_run ON approvals (run_id);
CREATE TABLE chat_messages (
	id INTEGER NOT NULL, 
	channel_id BIGINT NOT NULL, 
	message_id BIGINT, 
	author_id BIGINT NOT NULL, 
	author_name TEXT NOT NULL, 
	role TEXT NOT NULL, 
	content TEXT NOT NULL, 
	created_at TEXT NOT NULL, 
	CONSTRAINT pk_chat_messages PRIMARY KEY (id), 
	CONSTRAINT ck_chat_messages_role CHECK (role IN ('user', 'assistant'))
);
CREATE INDEX chat_messages_channel ON chat_messages (channel_id, id);
CREATE TABLE dev_mode (
	id INTEGER NOT NULL, 
	ts DOUBLE NOT NULL, 
	user_id BIGINT NOT NULL, 
	active INTEGER NOT NULL, 
	until DOUBLE, 
	CONSTRAINT pk_dev_mode PRIMARY KEY (id), 
	CONSTRAINT ck_dev_mode_active CHECK (active IN (0, 1))
);
CREATE TABLE fingerprints (
	fingerprint TEXT NOT NULL, 
	kind TEXT NOT NULL, 
	error_type TEXT, 
	first_seen DOUBLE NOT NULL, 
	last_seen DOUBLE NOT NULL, 
	count INTEGER NOT NULL, 
	CONSTRAINT pk_fingerprints PRIMARY KEY (fingerprint)
);
CREATE INDEX fingerprints_kind_last_seen ON fingerprints (kind, last_seen);
CREATE TABLE handlers (
	kind TEXT NOT NULL, 
	path TEXT NOT NULL, 
	qualname TEXT NOT NULL, 
	line INTEGER NOT NULL, 
	cog TEXT NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	CONSTRAINT pk_handlers PRIMARY KEY (kind, path, qualname)
);
CREATE INDEX handlers_cog ON handlers (cog);
CREATE TABLE incidents (
	id INTEGER NOT NULL, 
	rule TEXT NOT NULL, 
	rules TEXT NOT NULL, 
	level TEXT NOT NULL, 
	kind TEXT NOT NULL, 
	fingerprint TEXT, 
	state TEXT NOT NULL, 
	summary TEXT NOT NULL, 
	first_seen DOUBLE NOT NULL, 
	last_seen DOUBLE NOT NULL, 
	count INTEGER NOT NULL, 
	user_ids TEXT NOT NULL, 
	sample TEXT NOT NULL, 
	channel_id BIGINT, 
	message_id BIGINT, 
	updated_at DOUBLE NOT NULL, 
	closed_at DOUBLE, 
	closed_by BIGINT, 
	category TEXT DEFAULT 'code' NOT NULL, 
	need TEXT, 
	autonomy TEXT, 
	CONSTRAINT pk_incidents PRIMARY KEY (id), 
	CONSTRAINT ck_incidents_category CHECK (category IN ('code', 'environment')), 
	CONSTRAINT ck_incidents_level CHECK (level IN ('notice', 'warning', 'error')), 
	CONSTRAINT ck_incidents_state CHECK (state IN ('open', 'acknowledged', 'resolved', 'muted'))
);
CREATE INDEX incidents_closed_at ON incidents (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX incidents_fingerprint ON incidents (fingerprint) WHERE fingerprint IS NOT NULL;
CREATE INDEX incidents_first_seen ON incidents (first_seen);
CREATE INDEX incidents_kind_last_seen ON incidents (kind, last_seen);
CREATE UNIQUE INDEX incidents_message ON incidents (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX incidents_state ON incidents (state);
CREATE TABLE lessons (
	id INTEGER NOT NULL, 
	run_id BIGINT NOT NULL, 
	fingerprint TEXT, 
	files TEXT NOT NULL, 
	root_cause TEXT NOT NULL, 
	fix_commit TEXT, 
	outcome TEXT NOT NULL, 
	created_at DOUBLE NOT NULL, 
	CONSTRAINT pk_lessons PRIMARY KEY (id)
);
CREATE INDEX lessons_fingerprint ON lessons (fingerprint, created_at) WHERE fingerprint IS NOT NULL;
CREATE INDEX lessons_run ON lessons (run_id);
CREATE TABLE proofs (
	id INTEGER NOT NULL, 
	run_id BIGINT NOT NULL, 
	stage TEXT NOT NULL, 
	sha TEXT NOT NULL, 
	base_sha TEXT NOT NULL, 
	verdict TEXT NOT NULL, 
	reason TEXT NOT NULL, 
	items TEXT NOT NULL, 
	overhead_s DOUBLE NOT NULL, 
	created_at DOUBLE NOT NULL, 
	CONSTRAINT pk_proofs PRIMARY KEY (id), 
	CONSTRAINT ck_proofs_stage CHECK (stage IN ('verify', 'deploy')), 
	CONSTRAINT ck_proofs_verdict CHECK (verdict IN ('proven', 'unproven', 'disproven', 'tested'))
);
CREATE INDEX proofs_run ON proofs (run_id, stage, id);
CREATE TABLE proposal_messages (
	message_id INTEGER NOT NULL, 
	proposal_id BIGINT NOT NULL, 
	channel_id BIGINT NOT NULL, 
	CONSTRAINT pk_proposal_messages PRIMARY KEY (message_id)
);
CREATE INDEX proposal_messages_proposal ON proposal_messages (proposal_id);
CREATE TABLE proposals (
	id INTEGER NOT NULL, 
	run_id BIGINT NOT NULL, 
	forge TEXT NOT NULL, 
	branch TEXT NOT NULL, 
	head_sha TEXT NOT NULL, 
	title TEXT NOT NULL, 
	body TEXT NOT NULL, 
	url TEXT DEFAULT '' NOT NULL, 
	number INTEGER, 
	state TEXT NOT NULL, 
	created_at DOUBLE NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	CONSTRAINT pk_proposals PRIMARY KEY (id), 
	CONSTRAINT ck_proposals_state CHECK (state IN ('open', 'merged', 'closed'))
);
CREATE INDEX proposals_run ON proposals (run_id);
CREATE TABLE reminders (
	id INTEGER NOT NULL, 
	guild_id BIGINT, 
	channel_id BIGINT NOT NULL, 
	user_id BIGINT NOT NULL, 
	text TEXT NOT NULL, 
	created_at TEXT NOT NULL, 
	due_at TEXT NOT NULL, 
	fired_at TEXT, 
	failed TEXT, 
	CONSTRAINT pk_reminders PRIMARY KEY (id)
);
CREATE INDEX reminders_pending ON reminders (due_at) WHERE fired_at IS NULL;
CREATE TABLE runs (
	id INTEGER NOT NULL, 
	kind TEXT NOT NULL, 
	state TEXT NOT NULL, 
	requester_id BIGINT NOT NULL, 
	channel_id BIGINT, 
	incident_id BIGINT, 
	description TEXT NOT NULL, 
	slug TEXT NOT NULL, 
	security INTEGER DEFAULT 0 NOT NULL, 
	branch TEXT, 
	worktree TEXT, 
	base_sha TEXT, 
	head_sha TEXT, 
	verified_sha TEXT, 
	cost_usd DOUBLE DEFAULT 0 NOT NULL, 
	attempts INTEGER DEFAULT 0 NOT NULL, 
	failure_stage TEXT, 
	failure_reason TEXT, 
	status_message_id BIGINT, 
	proposal_id BIGINT, 
	interrupted_from TEXT, 
	created_at DOUBLE NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	origin TEXT DEFAULT 'requested' NOT NULL, 
	CONSTRAINT pk_runs PRIMARY KEY (id), 
	CONSTRAINT ck_runs_kind CHECK (kind IN ('investigate', 'fix')), 
	CONSTRAINT ck_runs_origin CHECK (origin IN ('requested', 'autonomous')), 
	CONSTRAINT ck_runs_state CHECK (state IN ('queued', 'observing', 'investigating', 'planning', 'editing', 'verifying', 'proposing', 'awaiting_approval', 'merging', 'deployed', 'watching', 'resolved', 'reported', 'failed', 'rejected', 'cancelled', 'regressed', 'interrupted', 'rolled_back'))
);
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_incident ON runs (incident_id) WHERE incident_id IS NOT NULL;
CREATE INDEX runs_requester_created ON runs (requester_id, created_at);
CREATE INDEX runs_state ON runs (state);
CREATE TABLE search_failures (
	id INTEGER NOT NULL, 
	fingerprint TEXT NOT NULL, 
	CONSTRAINT pk_search_failures PRIMARY KEY (id), 
	CONSTRAINT uq_search_failures_fingerprint UNIQUE (fingerprint)
);
CREATE TABLE settings_kv (
	"key" TEXT NOT NULL, 
	value TEXT NOT NULL, 
	CONSTRAINT pk_settings_kv PRIMARY KEY ("key")
);
CREATE TABLE claims (
	run_id BIGINT NOT NULL, 
	path TEXT NOT NULL, 
	why TEXT DEFAULT '' NOT NULL, 
	created_at DOUBLE NOT NULL, 
	CONSTRAINT pk_claims PRIMARY KEY (run_id, path), 
	CONSTRAINT fk_claims_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id)
);
CREATE INDEX claims_path ON claims (path);
CREATE TABLE incident_requests (
	id INTEGER NOT NULL, 
	incident_id BIGINT NOT NULL, 
	user_id BIGINT NOT NULL, 
	action TEXT NOT NULL, 
	via TEXT NOT NULL, 
	created_at DOUBLE NOT NULL, 
	CONSTRAINT pk_incident_requests PRIMARY KEY (id), 
	CONSTRAINT ck_incident_requests_action CHECK (action IN ('investigate', 'fix')), 
	CONSTRAINT fk_incident_requests_incident_id_incidents FOREIGN KEY(incident_id) REFERENCES incidents (id), 
	CONSTRAINT uq_incident_requests_incident_id_user_id_action UNIQUE (incident_id, user_id, action)
);
CREATE TABLE run_events (
	id INTEGER NOT NULL, 
	run_id BIGINT NOT NULL, 
	ts DOUBLE NOT NULL, 
	actor TEXT NOT NULL, 
	event TEXT NOT NULL, 
	state TEXT NOT NULL, 
	detail TEXT, 
	cost_usd DOUBLE DEFAULT 0 NOT NULL, 
	CONSTRAINT pk_run_events PRIMARY KEY (id), 
	CONSTRAINT fk_run_events_run_id_runs FOREIGN KEY(run_id) REFERENCES runs (id)
);
CREATE INDEX run_events_run ON run_events (run_id, id);
CREATE INDEX run_events_ts ON run_events (ts);
CREATE VIRTUAL TABLE search_index USING fts5 (
    summary, kind, error_type, message, frames,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE VIEW search_incident_base AS
SELECT
    id,
    summary,
    kind,
    coalesce(CASE WHEN json_valid(sample) THEN json_extract(sample, '$.error_type') END, '') AS error_type,
    CASE WHEN json_valid(sample) THEN json_extract(sample, '$.error_message') END AS message,
    CASE WHEN json_valid(sample) THEN json_extract(sample, '$.frames') END AS frames
FROM incidents;
CREATE VIEW search_incident_split AS
SELECT *, replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(error_type, 'A', ' A'), 'B', ' B'), 'C', ' C'), 'D', ' D'), 'E', ' E'), 'F', ' F'), 'G', ' G'), 'H', ' H'), 'I', ' I'), 'J', ' J'), 'K', ' K'), 'L', ' L'), 'M', ' M') AS half_split FROM search_incident_base;
CREATE VIEW search_incident_docs AS
SELECT
    id,
    id * 2 AS rid,
    summary,
    kind,
    error_type || ' ' || replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(half_split, 'N', ' N'), 'O', ' O'), 'P', ' P'), 'Q', ' Q'), 'R', ' R'), 'S', ' S'), 'T', ' T'), 'U', ' U'), 'V', ' V'), 'W', ' W'), 'X', ' X'), 'Y', ' Y'), 'Z', ' Z') AS error_type,
    message,
    frames
FROM search_incident_split;
CREATE VIEW search_failure_base AS
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
);
CREATE VIEW search_failure_split AS
SELECT *, replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(error_type, 'A', ' A'), 'B', ' B'), 'C', ' C'), 'D', ' D'), 'E', ' E'), 'F', ' F'), 'G', ' G'), 'H', ' H'), 'I', ' I'), 'J', ' J'), 'K', ' K'), 'L', ' L'), 'M', ' M') AS half_split FROM search_failure_base;
CREATE VIEW search_failure_docs AS
SELECT
    id * 2 + 1 AS rid,
    fingerprint,
    '' AS summary,
    kind,
    error_type || ' ' || replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(half_split, 'N', ' N'), 'O', ' O'), 'P', ' P'), 'Q', ' Q'), 'R', ' R'), 'S', ' S'), 'T', ' T'), 'U', ' U'), 'V', ' V'), 'W', ' W'), 'X', ' X'), 'Y', ' Y'), 'Z', ' Z') AS error_type,
    message,
    frames
FROM search_failure_split;
CREATE TRIGGER search_incident_insert AFTER INSERT ON incidents BEGIN
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames FROM search_incident_docs WHERE id = new.id;
END;
CREATE TRIGGER search_incident_update AFTER UPDATE OF summary, kind, sample ON incidents BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 2;
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames FROM search_incident_docs WHERE id = new.id;
END;
CREATE TRIGGER search_incident_delete AFTER DELETE ON incidents BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 2;
END;
CREATE TRIGGER search_failure_insert AFTER INSERT ON fingerprints BEGIN
    INSERT OR IGNORE INTO search_failures (fingerprint) VALUES (new.fingerprint);
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames
    FROM search_failure_docs WHERE fingerprint = new.fingerprint;
END;
CREATE TRIGGER search_failure_update AFTER UPDATE ON fingerprints
WHEN new.fingerprint IS NOT old.fingerprint OR new.kind IS NOT old.kind
    OR new.error_type IS NOT old.error_type OR new.count IN (10, 100, 1000, 10000, 100000, 1000000)
BEGIN
    DELETE FROM search_index
    WHERE rowid = (SELECT id * 2 + 1 FROM search_failures WHERE fingerprint = old.fingerprint);
    UPDATE search_failures SET fingerprint = new.fingerprint WHERE fingerprint = old.fingerprint;
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames
    FROM search_failure_docs WHERE fingerprint = new.fingerprint;
END;
CREATE TRIGGER search_failure_delete AFTER DELETE ON fingerprints BEGIN
    DELETE FROM search_index
    WHERE rowid = (SELECT id * 2 + 1 FROM search_failures WHERE fingerprint = old.fingerprint);
    DELETE FROM search_failures WHERE fingerprint = old.fingerprint;
END;
CREATE TABLE objections (
	id INTEGER NOT NULL, 
	proposal_id BIGINT NOT NULL, 
	run_id BIGINT NOT NULL, 
	user_id BIGINT NOT NULL, 
	kind TEXT NOT NULL, 
	reason TEXT DEFAULT '' NOT NULL, 
	message_id BIGINT NOT NULL, 
	channel_id BIGINT NOT NULL, 
	created_at DOUBLE NOT NULL, 
	withdrawn_at DOUBLE, 
	withdrawn_why TEXT, 
	CONSTRAINT pk_objections PRIMARY KEY (id), 
	CONSTRAINT ck_objections_kind CHECK (kind IN ('object', 'unclear')), 
	CONSTRAINT uq_objections_proposal_id_message_id UNIQUE (proposal_id, message_id)
);
CREATE INDEX objections_message ON objections (message_id);
CREATE TABLE dashboard_links (
	token_hash TEXT NOT NULL, 
	user_id BIGINT NOT NULL, 
	created_at DOUBLE NOT NULL, 
	expires_at DOUBLE NOT NULL, 
	used_at DOUBLE, 
	CONSTRAINT pk_dashboard_links PRIMARY KEY (token_hash)
);
CREATE INDEX dashboard_links_expires ON dashboard_links (expires_at);
CREATE TABLE dashboard_sessions (
	session_hash TEXT NOT NULL, 
	user_id BIGINT NOT NULL, 
	created_at DOUBLE NOT NULL, 
	expires_at DOUBLE NOT NULL, 
	CONSTRAINT pk_dashboard_sessions PRIMARY KEY (session_hash)
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
CREATE INDEX actions_user_ts ON actions (user_id, ts) WHERE user_id IS NOT NULL;
CREATE TABLE cog_rows (
	table_name TEXT NOT NULL, 
	"key" TEXT NOT NULL, 
	value TEXT NOT NULL, 
	written_by TEXT, 
	writer TEXT, 
	written_at DOUBLE, 
	CONSTRAINT pk_cog_rows PRIMARY KEY (table_name, "key")
);
CREATE TABLE drills (
	id INTEGER NOT NULL, 
	number BIGINT NOT NULL, 
	unfinished INTEGER, 
	process TEXT, 
	started_at DOUBLE NOT NULL, 
	stage TEXT NOT NULL, 
	incident_id BIGINT, 
	run_id BIGINT, 
	proposal_id BIGINT, 
	ended_at DOUBLE, 
	outcome TEXT, 
	CONSTRAINT pk_drills PRIMARY KEY (id), 
	CONSTRAINT uq_drills_unfinished UNIQUE (unfinished)
);
CREATE TABLE people (
	user_id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	seen_at DOUBLE NOT NULL, 
	CONSTRAINT pk_people PRIMARY KEY (user_id)
);
CREATE TABLE journal_positions (
	journal TEXT NOT NULL, 
	seq BIGINT NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	CONSTRAINT pk_journal_positions PRIMARY KEY (journal)
);
INSERT INTO alembic_version (version_num) VALUES ('v0021_tested_proofs');
PRAGMA user_version = 13;
COMMIT;
