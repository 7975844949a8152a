-- Environment incidents: a locked or full database, Discord refusing a call (missing permission,
-- unknown message, an outage). They are not bugs in the code: announced with what they need,
-- without 🔍/🛠, and never handed to the code agent. `need` says what would fix it.
ALTER TABLE incidents ADD COLUMN category TEXT NOT NULL DEFAULT 'code'
    CHECK (category IN ('code', 'environment'));
ALTER TABLE incidents ADD COLUMN need TEXT;
