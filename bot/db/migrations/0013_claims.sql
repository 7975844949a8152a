-- File claims: the repository-relative paths a run may change (a path ending in "/" is a directory
-- and everything under it). A claim counts only while its run is live (see bot/improve/claims.py):
-- rows of runs that ended are deleted as they end, and at start-up for runs no longer live.
CREATE TABLE claims (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    path        TEXT    NOT NULL,
    why         TEXT    NOT NULL DEFAULT '',
    created_at  REAL    NOT NULL,
    PRIMARY KEY (run_id, path)
);
CREATE INDEX claims_path ON claims (path);
