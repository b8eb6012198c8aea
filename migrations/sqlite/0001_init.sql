-- Roster schema, SQLite flavour. Kept in step with migrations/postgres/0001_init.sql:
-- same tables, same columns, same unique indexes; only the types differ.
-- Ids are UUIDs (BLOB here), timestamps RFC 3339 text, JSON documents text.

CREATE TABLE server_state (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY NOT NULL,
    private_der BLOB NOT NULL,
    public_x    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    retired_at  TEXT
);

CREATE TABLE accounts (
    id         BLOB PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    settings   TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id           BLOB PRIMARY KEY NOT NULL,
    account_id   BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    secret_hash  BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_keys_account ON api_keys (account_id, id);

CREATE TABLE rooms (
    id         BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    space_id   BLOB,
    name       TEXT NOT NULL,
    visibility TEXT NOT NULL,
    is_default INTEGER NOT NULL,
    created_by BLOB,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX rooms_account ON rooms (account_id, id);
CREATE INDEX rooms_default ON rooms (account_id, is_default);

CREATE TABLE users (
    id                      BLOB PRIMARY KEY NOT NULL,
    account_id              BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    room_id                 BLOB,
    custom_id               TEXT,
    username                TEXT,
    username_norm           TEXT,
    name                    TEXT,
    nickname                TEXT,
    bio                     TEXT,
    email                   TEXT,
    email_norm              TEXT,
    email_verified          INTEGER NOT NULL,
    phone                   TEXT,
    profile_picture         TEXT,
    link                    TEXT,
    status                  TEXT NOT NULL,
    status_message          TEXT,
    active                  INTEGER NOT NULL,
    roles                   TEXT NOT NULL,
    metadata                TEXT NOT NULL,
    tags                    TEXT NOT NULL,
    custom_fields           TEXT NOT NULL,
    require_password_change INTEGER NOT NULL,
    password_hash           TEXT,
    tokens_valid_after      TEXT,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    last_seen_at            TEXT,
    deactivated_at          TEXT
);
CREATE INDEX users_account ON users (account_id, id);
CREATE UNIQUE INDEX users_custom_id ON users (account_id, custom_id) WHERE custom_id IS NOT NULL;
CREATE UNIQUE INDEX users_username ON users (account_id, username_norm) WHERE username_norm IS NOT NULL;
CREATE UNIQUE INDEX users_email ON users (account_id, email_norm) WHERE email_norm IS NOT NULL;
CREATE INDEX users_status ON users (account_id, status, id);

CREATE TABLE user_tags (
    account_id BLOB NOT NULL,
    tag        TEXT NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, tag, user_id)
);
CREATE INDEX user_tags_user ON user_tags (user_id);

CREATE TABLE user_roles (
    account_id BLOB NOT NULL,
    role       TEXT NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, role, user_id)
);
CREATE INDEX user_roles_user ON user_roles (user_id);

CREATE TABLE room_members (
    account_id BLOB NOT NULL,
    room_id    BLOB NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    joined_at  TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);
CREATE INDEX room_members_account_room ON room_members (account_id, room_id, user_id);

CREATE TABLE tokens (
    id         BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    room_id    BLOB,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX tokens_user ON tokens (user_id, created_at);
