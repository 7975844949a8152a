-- Approval decisions on proposals (DESIGN §7), and the chat messages that stand for a proposal.

-- One row per approval or rejection, bound to the head sha it was given for: when the branch
-- moves, earlier rows are marked stale and no longer count. Refusals are not stored here; they
-- are run_events like every other decision.
CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY,
    proposal_id INTEGER NOT NULL,
    run_id      INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    sha         TEXT    NOT NULL,
    form        TEXT    NOT NULL CHECK (form IN ('approve', 'approve_security', 'reject')),
    via         TEXT    NOT NULL,      -- "reaction", "button", "reply", "thread", "command", ...
    created_at  REAL    NOT NULL,
    stale       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (proposal_id, user_id, sha, form)
);
CREATE INDEX approvals_run ON approvals (run_id);

-- Messages that represent a proposal (the run's report, the announcement of the proposal), so a
-- reaction or a reply on them finds the proposal again after a restart, without the cache.
CREATE TABLE proposal_messages (
    message_id  INTEGER PRIMARY KEY,
    proposal_id INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL
);
CREATE INDEX proposal_messages_proposal ON proposal_messages (proposal_id);
