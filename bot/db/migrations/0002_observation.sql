-- One row per handled event. ts is unix seconds.
CREATE TABLE actions (
    id            INTEGER PRIMARY KEY,
    ts            REAL    NOT NULL,
    kind          TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    ok            INTEGER NOT NULL,
    duration_ms   REAL    NOT NULL,
    guild_id      INTEGER,
    channel_id    INTEGER,
    user_id       INTEGER,
    message_id    INTEGER,
    cost_usd      REAL    NOT NULL DEFAULT 0,
    error_type    TEXT,
    error_message TEXT,
    fingerprint   TEXT,
    frames        TEXT,            -- JSON list of "file:line:function", innermost last
    run_id        INTEGER,
    extra         TEXT             -- JSON object
);
CREATE INDEX actions_ts ON actions (ts);
CREATE INDEX actions_kind_ts ON actions (kind, ts);
CREATE INDEX actions_fingerprint_ts ON actions (fingerprint, ts) WHERE fingerprint IS NOT NULL;

-- Every distinct failure seen, kept past action retention so "new" means new.
CREATE TABLE fingerprints (
    fingerprint   TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    error_type    TEXT,
    first_seen    REAL NOT NULL,
    last_seen     REAL NOT NULL,
    count         INTEGER NOT NULL
);

CREATE TABLE incidents (
    id            INTEGER PRIMARY KEY,
    rule          TEXT    NOT NULL,            -- the rule that opened it
    rules         TEXT    NOT NULL,            -- JSON list of every rule that fired for it
    level         TEXT    NOT NULL CHECK (level IN ('notice', 'warning', 'error')),
    kind          TEXT    NOT NULL,
    fingerprint   TEXT,
    state         TEXT    NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved', 'muted')),
    summary       TEXT    NOT NULL,
    first_seen    REAL    NOT NULL,
    last_seen     REAL    NOT NULL,
    count         INTEGER NOT NULL,
    user_ids      TEXT    NOT NULL,            -- JSON list, capped
    sample        TEXT    NOT NULL,            -- JSON: error_type, error_message, frames, kind
    channel_id    INTEGER,                     -- the announcement
    message_id    INTEGER,
    updated_at    REAL    NOT NULL,
    closed_at     REAL,
    closed_by     INTEGER
);
CREATE INDEX incidents_state ON incidents (state);
CREATE UNIQUE INDEX incidents_message ON incidents (message_id) WHERE message_id IS NOT NULL;

-- 🔍/🛠 requests on announcements (the improvement agent picks them up).
CREATE TABLE incident_requests (
    id            INTEGER PRIMARY KEY,
    incident_id   INTEGER NOT NULL REFERENCES incidents (id),
    user_id       INTEGER NOT NULL,
    action        TEXT    NOT NULL CHECK (action IN ('investigate', 'fix')),
    via           TEXT    NOT NULL,
    created_at    REAL    NOT NULL,
    UNIQUE (incident_id, user_id, action)
);
