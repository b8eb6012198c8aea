-- Sessions and the token lifecycle (issue 4), SQLite flavour. Kept in step
-- with migrations/postgres/0003_sessions.sql.
--
-- A session is a refresh-token family: every refresh token and every access
-- token it ever produced carries its id, so reuse of a rotated refresh token
-- revokes them all at once. Refresh tokens are stored only as SHA-256.

ALTER TABLE tokens ADD COLUMN session_id BLOB;
CREATE INDEX tokens_session ON tokens (session_id) WHERE session_id IS NOT NULL;

CREATE TABLE sessions (
    id         BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    hash       BLOB PRIMARY KEY NOT NULL,
    session_id BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    account_id BLOB NOT NULL,
    user_id    BLOB NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
