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

-- Mail waits here until the outbox worker has handed it to SMTP (or the
-- file outbox); written in the same transaction as what caused it.
CREATE TABLE outbox (
    id              BLOB PRIMARY KEY NOT NULL,
    account_id      BLOB,
    to_addr         TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    claimed_until   TEXT,
    sent_at         TEXT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL;

-- Single-use password reset links, stored as SHA-256 of their token.
CREATE TABLE password_resets (
    hash       BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX password_resets_user ON password_resets (user_id);

-- Single-use links that confirm a user's email address (SHA-256 of the token).
CREATE TABLE email_verifications (
    hash       BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX email_verifications_user ON email_verifications (user_id);
