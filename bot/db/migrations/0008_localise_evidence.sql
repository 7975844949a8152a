-- Evidence for faults that leave no traceback (wrong output, latency) and for handlers that stop.
--
-- An action row now carries what it was asked (`invocation`: the command or event and its
-- options, redacted), a digest of what the bot answered (`reply`: the first characters and a
-- hash) and, for a handler that ran past the slow threshold, where its time went (`samples`:
-- sampled in-repo stacks with counts). All three are JSON.
ALTER TABLE actions ADD COLUMN invocation TEXT;
ALTER TABLE actions ADD COLUMN reply TEXT;
ALTER TABLE actions ADD COLUMN samples TEXT;

-- "The slowest sampled calls of this kind": only slow handlers carry samples, so this stays small.
CREATE INDEX actions_sampled_kind_ts ON actions (kind, ts) WHERE samples IS NOT NULL;

-- Which function handles each kind (`app:convert`, `command:roll`, `listener:on_message`,
-- `task:refresh`), rewritten from the loaded bot whenever a cog is added or removed. A kind
-- may have several handlers (every cog's on_message).
CREATE TABLE handlers (
    kind        TEXT    NOT NULL,
    path        TEXT    NOT NULL,   -- relative to the repository
    qualname    TEXT    NOT NULL,   -- Class.method or function
    line        INTEGER NOT NULL,   -- first line of the definition
    cog         TEXT    NOT NULL,
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (kind, path, qualname)
);
CREATE INDEX handlers_cog ON handlers (cog);
