-- Reminders: persisted so they survive a restart; fired_at is set exactly once.
CREATE TABLE reminders (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER,
    channel_id  INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    text        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    due_at      TEXT    NOT NULL,
    fired_at    TEXT,
    failed      TEXT
);
CREATE INDEX reminders_pending ON reminders (due_at) WHERE fired_at IS NULL;

-- Chat history per channel, replayed to the model as context.
CREATE TABLE chat_messages (
    id          INTEGER PRIMARY KEY,
    channel_id  INTEGER NOT NULL,
    message_id  INTEGER,
    author_id   INTEGER NOT NULL,
    author_name TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content     TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);
CREATE INDEX chat_messages_channel ON chat_messages (channel_id, id);
