-- Improvement runs: the persisted state machine of DESIGN §5. Times are unix seconds.
CREATE TABLE runs (
    id                INTEGER PRIMARY KEY,
    kind              TEXT    NOT NULL CHECK (kind IN ('investigate', 'fix')),
    state             TEXT    NOT NULL CHECK (state IN (
                          'queued', 'observing', 'investigating', 'planning', 'editing', 'verifying',
                          'proposing', 'awaiting_approval', 'merging', 'deployed', 'watching', 'resolved',
                          'reported', 'failed', 'rejected', 'cancelled', 'regressed', 'interrupted')),
    requester_id      INTEGER NOT NULL,
    channel_id        INTEGER,
    incident_id       INTEGER,
    description       TEXT    NOT NULL,
    slug              TEXT    NOT NULL,
    security          INTEGER NOT NULL DEFAULT 0,
    branch            TEXT,
    worktree          TEXT,
    base_sha          TEXT,
    head_sha          TEXT,
    verified_sha      TEXT,
    cost_usd          REAL    NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    failure_stage     TEXT,
    failure_reason    TEXT,
    status_message_id INTEGER,
    proposal_id       INTEGER,
    interrupted_from  TEXT,            -- the state a stop caught it in; resuming returns there
    created_at        REAL    NOT NULL,
    updated_at        REAL    NOT NULL
);
CREATE INDEX runs_state ON runs (state);
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_requester_created ON runs (requester_id, created_at);

-- Every transition and notable event of a run: when, who, what it cost.
CREATE TABLE run_events (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    ts          REAL    NOT NULL,
    actor       TEXT    NOT NULL,      -- "user:<id>", "system", "agent", "pipeline", ...
    event       TEXT    NOT NULL,      -- "created", "transition", "guard_denied", "check_failed", ...
    state       TEXT    NOT NULL,      -- the run's state after the event
    detail      TEXT,                  -- JSON object
    cost_usd    REAL    NOT NULL DEFAULT 0
);
CREATE INDEX run_events_run ON run_events (run_id, id);
CREATE INDEX run_events_ts ON run_events (ts);

-- What each finished run taught us, recalled into later evidence packs.
-- No foreign key on run_id here or in proposals: those rows are written by other services and
-- runs are never deleted, so the constraint would only get in the way of their tests.
CREATE TABLE lessons (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL,
    fingerprint TEXT,
    files       TEXT    NOT NULL,      -- JSON list of repository-relative paths
    root_cause  TEXT    NOT NULL,
    fix_commit  TEXT,
    outcome     TEXT    NOT NULL,
    created_at  REAL    NOT NULL
);
CREATE INDEX lessons_fingerprint ON lessons (fingerprint, created_at) WHERE fingerprint IS NOT NULL;
CREATE INDEX lessons_run ON lessons (run_id);

-- Proposals opened on a forge (LocalForge keeps them only here). A run may propose again.
CREATE TABLE proposals (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL,
    forge       TEXT    NOT NULL,      -- "local" or "github"
    branch      TEXT    NOT NULL,
    head_sha    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    url         TEXT    NOT NULL DEFAULT '',  -- LocalForge's url holds the id, so it is set after insert
    number      INTEGER,
    state       TEXT    NOT NULL CHECK (state IN ('open', 'merged', 'closed')),
    created_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL
);
CREATE INDEX proposals_run ON proposals (run_id);

-- Small persisted switches that must survive a restart (e.g. runs paused by whom).
CREATE TABLE settings_kv (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL          -- JSON
);
