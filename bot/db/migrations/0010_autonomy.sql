-- Autonomy: runs the bot starts by itself are told apart from requested ones, because they spend
-- from their own daily pool and because a person reading /run should know nobody asked for it.
ALTER TABLE runs ADD COLUMN origin TEXT NOT NULL DEFAULT 'requested'
    CHECK (origin IN ('requested', 'autonomous'));

-- "Has this incident had a run?" is asked for every incident that reaches the autonomous severity.
CREATE INDEX runs_incident ON runs (incident_id) WHERE incident_id IS NOT NULL;

-- What the bot did about an incident by itself ("Investigating — run #7", then the root cause, or
-- why it held back), shown in the announcement. Set once decided, so a reopening or a restart never
-- decides again.
ALTER TABLE incidents ADD COLUMN autonomy TEXT;
