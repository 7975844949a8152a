-- The self-audit (bot/db/audit.py) aggregates a period of `actions` (a million rows must take
-- seconds, not minutes) and dev mode is a persisted switch with a history.

-- Per kind and day: counts, failures and spend read from the index alone, never the fat rows
-- (extra, frames). It starts with ts, so it also serves everything `actions_ts` served (range
-- scans, retention) and replaces it rather than adding a fourth index on every insert.
DROP INDEX actions_ts;
CREATE INDEX actions_ts_audit ON actions (ts, kind, ok, duration_ms, cost_usd);

-- Exact percentiles per kind sort a kind's durations in the period, read from this index alone.
-- It widens (kind, ts) rather than adding (kind, duration_ms): an index in duration order takes
-- each insert at a random page, which made the writer six times slower on a large table.
DROP INDEX actions_kind_ts;
CREATE INDEX actions_kind_ts ON actions (kind, ts, duration_ms);

-- Failures of the period by fingerprint: only failing rows are in it, so it costs little.
CREATE INDEX actions_failures_ts ON actions (ts, fingerprint, kind) WHERE fingerprint IS NOT NULL;

-- Incidents opened and resolved in a period.
CREATE INDEX incidents_first_seen ON incidents (first_seen);
CREATE INDEX incidents_closed_at ON incidents (closed_at) WHERE closed_at IS NOT NULL;

-- Dev mode switched on or off by hand: the newest row is the current state; older rows say
-- who did what when. `until` (unix seconds) ends an "on" by itself on the bot's clock.
CREATE TABLE dev_mode (
    id          INTEGER PRIMARY KEY,
    ts          REAL    NOT NULL,
    user_id     INTEGER NOT NULL,
    active      INTEGER NOT NULL CHECK (active IN (0, 1)),
    until       REAL
);
