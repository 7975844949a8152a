-- Proof of fix: what a run's change was shown to do to the reported failure.
--
-- One row per proof taken: at verification (`stage` 'verify': the regression tests and the
-- incident replay on the base and on the branch, for the head sha that was proposed) and after a
-- deploy (`stage` 'deploy': the replay against the deployed commit). `verdict` is 'proven'
-- (something reproduced the failure on the base and saw it gone on the branch, nothing said
-- otherwise), 'unproven' (nothing could show it either way) or 'disproven' (an item showed the
-- change does not fix it). `items` is the table itself (JSON), `reason` the verdict in words.
CREATE TABLE proofs (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL,
    stage       TEXT    NOT NULL CHECK (stage IN ('verify', 'deploy')),
    sha         TEXT    NOT NULL,
    base_sha    TEXT    NOT NULL,
    verdict     TEXT    NOT NULL CHECK (verdict IN ('proven', 'unproven', 'disproven')),
    reason      TEXT    NOT NULL,
    items       TEXT    NOT NULL,
    overhead_s  REAL    NOT NULL,
    created_at  REAL    NOT NULL
);
CREATE INDEX proofs_run ON proofs (run_id, stage, id);

-- "ship it unproven": the explicit approval a change without proof needs (deploy.require_proof).
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt as 0009 left it.
CREATE TABLE approvals_new (
    id              INTEGER PRIMARY KEY,
    proposal_id     INTEGER NOT NULL,
    run_id          INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    sha             TEXT    NOT NULL,
    form            TEXT    NOT NULL
        CHECK (form IN ('approve', 'approve_security', 'approve_unproven', 'reject')),
    via             TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    stale           INTEGER NOT NULL DEFAULT 0,
    source          TEXT    NOT NULL DEFAULT '',
    message_id      INTEGER,
    emoji           TEXT,
    withdrawn_at    REAL,
    withdrawn_why   TEXT,
    UNIQUE (proposal_id, user_id, sha, form, source)
);
INSERT INTO approvals_new
    SELECT id, proposal_id, run_id, user_id, sha, form, via, created_at, stale, source, message_id,
           emoji, withdrawn_at, withdrawn_why FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;
CREATE INDEX approvals_run ON approvals (run_id);
CREATE INDEX approvals_message ON approvals (message_id) WHERE message_id IS NOT NULL;
