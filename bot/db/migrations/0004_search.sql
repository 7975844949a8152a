-- Full-text search for "what does 'this' mean": incidents and distinct failures by their words.
--
-- One FTS5 table holds both, so their bm25 scores share one scale: an incident is row 2*id, a
-- fingerprint (one row per distinct failure) is row 2*search_failures.id+1. Triggers keep it in
-- sync, so a query never touches `actions` (which may hold millions of rows). A failure's error
-- message and frames come from its newest action, looked up by index when the fingerprint is
-- first stored and refreshed when its count reaches 10, 100, 1000... — not on every failure.
-- Error types are indexed whole and split at capitals ("ZeroDivisionError Zero Division Error")
-- so "zero division" finds them; the porter stemmer makes "rolling" find "roll". Recency is
-- applied by the query (bot/db/search.py), from `last_seen` of the joined rows.

CREATE VIRTUAL TABLE search_index USING fts5 (
    summary, kind, error_type, message, frames,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

-- The document for each incident and each fingerprint; triggers select one row by key. The
-- capitals are split in two view layers because one expression of 26 nested replace() calls
-- overflows SQLite's parser stack.
CREATE VIEW search_incident_base AS
SELECT
    id,
    summary,
    kind,
    coalesce(CASE WHEN json_valid(sample) THEN json_extract(sample, '$.error_type') END, '') AS error_type,
    CASE WHEN json_valid(sample) THEN json_extract(sample, '$.error_message') END AS message,
    CASE WHEN json_valid(sample) THEN json_extract(sample, '$.frames') END AS frames
FROM incidents;

CREATE VIEW search_incident_split AS
SELECT *, replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(error_type, 'A', ' A'), 'B', ' B'), 'C', ' C'), 'D', ' D'), 'E', ' E'), 'F', ' F'), 'G', ' G'), 'H', ' H'), 'I', ' I'), 'J', ' J'), 'K', ' K'), 'L', ' L'), 'M', ' M') AS half_split FROM search_incident_base;

CREATE VIEW search_incident_docs AS
SELECT
    id,
    id * 2 AS rid,
    summary,
    kind,
    error_type || ' ' || replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(half_split, 'N', ' N'), 'O', ' O'), 'P', ' P'), 'Q', ' Q'), 'R', ' R'), 'S', ' S'), 'T', ' T'), 'U', ' U'), 'V', ' V'), 'W', ' W'), 'X', ' X'), 'Y', ' Y'), 'Z', ' Z') AS error_type,
    message,
    frames
FROM search_incident_split;

-- Fingerprints are keyed by text and their implicit rowid may change on VACUUM, so each gets a
-- stable integer here for its row in the index.
CREATE TABLE search_failures (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE
);

CREATE VIEW search_failure_base AS
SELECT
    s.id AS id,
    g.fingerprint AS fingerprint,
    g.kind AS kind,
    coalesce(g.error_type, '') AS error_type,
    a.error_message AS message,
    a.frames AS frames
FROM search_failures AS s
JOIN fingerprints AS g ON g.fingerprint = s.fingerprint
LEFT JOIN actions AS a ON a.id = (
    SELECT n.id FROM actions AS n WHERE n.fingerprint = g.fingerprint ORDER BY n.ts DESC LIMIT 1
);

CREATE VIEW search_failure_split AS
SELECT *, replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(error_type, 'A', ' A'), 'B', ' B'), 'C', ' C'), 'D', ' D'), 'E', ' E'), 'F', ' F'), 'G', ' G'), 'H', ' H'), 'I', ' I'), 'J', ' J'), 'K', ' K'), 'L', ' L'), 'M', ' M') AS half_split FROM search_failure_base;

CREATE VIEW search_failure_docs AS
SELECT
    id * 2 + 1 AS rid,
    fingerprint,
    '' AS summary,
    kind,
    error_type || ' ' || replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(half_split, 'N', ' N'), 'O', ' O'), 'P', ' P'), 'Q', ' Q'), 'R', ' R'), 'S', ' S'), 'T', ' T'), 'U', ' U'), 'V', ' V'), 'W', ' W'), 'X', ' X'), 'Y', ' Y'), 'Z', ' Z') AS error_type,
    message,
    frames
FROM search_failure_split;

CREATE TRIGGER search_incident_insert AFTER INSERT ON incidents BEGIN
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames FROM search_incident_docs WHERE id = new.id;
END;

CREATE TRIGGER search_incident_update AFTER UPDATE OF summary, kind, sample ON incidents BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 2;
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames FROM search_incident_docs WHERE id = new.id;
END;

CREATE TRIGGER search_incident_delete AFTER DELETE ON incidents BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 2;
END;

CREATE TRIGGER search_failure_insert AFTER INSERT ON fingerprints BEGIN
    INSERT OR IGNORE INTO search_failures (fingerprint) VALUES (new.fingerprint);
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames
    FROM search_failure_docs WHERE fingerprint = new.fingerprint;
END;

-- insert_many bumps count and last_seen on every failing action: re-index only now and then.
CREATE TRIGGER search_failure_update AFTER UPDATE ON fingerprints
WHEN new.fingerprint IS NOT old.fingerprint OR new.kind IS NOT old.kind
    OR new.error_type IS NOT old.error_type OR new.count IN (10, 100, 1000, 10000, 100000, 1000000)
BEGIN
    DELETE FROM search_index
    WHERE rowid = (SELECT id * 2 + 1 FROM search_failures WHERE fingerprint = old.fingerprint);
    UPDATE search_failures SET fingerprint = new.fingerprint WHERE fingerprint = old.fingerprint;
    INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
    SELECT rid, summary, kind, error_type, message, frames
    FROM search_failure_docs WHERE fingerprint = new.fingerprint;
END;

CREATE TRIGGER search_failure_delete AFTER DELETE ON fingerprints BEGIN
    DELETE FROM search_index
    WHERE rowid = (SELECT id * 2 + 1 FROM search_failures WHERE fingerprint = old.fingerprint);
    DELETE FROM search_failures WHERE fingerprint = old.fingerprint;
END;

-- Whatever was stored before this migration.
INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
SELECT rid, summary, kind, error_type, message, frames FROM search_incident_docs;
INSERT INTO search_failures (fingerprint) SELECT fingerprint FROM fingerprints ORDER BY first_seen;
INSERT INTO search_index (rowid, summary, kind, error_type, message, frames)
SELECT rid, summary, kind, error_type, message, frames FROM search_failure_docs;

-- "The newest incident / failure of this kind" and "the incident of this failure".
CREATE INDEX incidents_kind_last_seen ON incidents (kind, last_seen);
CREATE INDEX incidents_fingerprint ON incidents (fingerprint) WHERE fingerprint IS NOT NULL;
CREATE INDEX fingerprints_kind_last_seen ON fingerprints (kind, last_seen);
