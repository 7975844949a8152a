-- Kind-wide evidence ("the newest failures of this kind", for incidents without one fingerprint)
-- walked the kind's rows newest first until it found enough failures: every row when the kind
-- has not failed lately (~300 ms at 3 M rows). Failures are a small share of the rows; with an
-- index of their own the query reads only them.
CREATE INDEX actions_kind_failures_ts ON actions (kind, ts) WHERE ok = 0;
