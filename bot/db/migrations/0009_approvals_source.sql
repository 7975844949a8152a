-- Approvals follow the human: each approval remembers the signal it came from, so editing or
-- deleting the approving message, or removing the reaction, withdraws exactly that approval —
-- also after a restart, when only raw Discord events (ids, no cached message) arrive.
--
-- `source` names the signal ("message:<approving message id>", "reaction:<proposal message id>:
-- <emoji>", "button:<proposal message id>", ...) and joins the uniqueness key: one person may
-- approve by a reply and a ✅, and withdrawing one leaves the other standing. `message_id` is the
-- approving message (words) or the message reacted on (reactions); `emoji` the reaction.
CREATE TABLE approvals_new (
    id              INTEGER PRIMARY KEY,
    proposal_id     INTEGER NOT NULL,
    run_id          INTEGER NOT NULL,
    user_id         INTEGER NOT NULL,
    sha             TEXT    NOT NULL,
    form            TEXT    NOT NULL CHECK (form IN ('approve', 'approve_security', 'reject')),
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
INSERT INTO approvals_new (id, proposal_id, run_id, user_id, sha, form, via, created_at, stale)
    SELECT id, proposal_id, run_id, user_id, sha, form, via, created_at, stale FROM approvals;
DROP TABLE approvals;
ALTER TABLE approvals_new RENAME TO approvals;
CREATE INDEX approvals_run ON approvals (run_id);
CREATE INDEX approvals_message ON approvals (message_id) WHERE message_id IS NOT NULL;
