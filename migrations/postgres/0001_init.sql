-- Roster schema, PostgreSQL flavour. Kept in step with migrations/sqlite/0001_init.sql:
-- same tables, same columns, same unique indexes; only the types differ.
-- Ids are UUID, timestamps TIMESTAMPTZ, JSON documents JSONB.

CREATE TABLE server_state (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY NOT NULL,
    private_der BYTEA NOT NULL,
    public_x    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    retired_at  TIMESTAMPTZ
);

CREATE TABLE accounts (
    id         UUID PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    settings   JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id           UUID PRIMARY KEY NOT NULL,
    account_id   UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_account ON api_keys (account_id, id);

CREATE TABLE rooms (
    id         UUID PRIMARY KEY NOT NULL,
    account_id UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    space_id   UUID,
    name       TEXT NOT NULL,
    visibility TEXT NOT NULL,
    is_default BOOLEAN NOT NULL,
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX rooms_account ON rooms (account_id, id);
CREATE INDEX rooms_default ON rooms (account_id, is_default);

CREATE TABLE users (
    id                      UUID PRIMARY KEY NOT NULL,
    account_id              UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    room_id                 UUID,
    custom_id               TEXT,
    username                TEXT,
    username_norm           TEXT,
    name                    TEXT,
    nickname                TEXT,
    bio                     TEXT,
    email                   TEXT,
    email_norm              TEXT,
    email_verified          BOOLEAN NOT NULL,
    phone                   TEXT,
    profile_picture         TEXT,
    link                    TEXT,
    status                  TEXT NOT NULL,
    status_message          TEXT,
    active                  BOOLEAN NOT NULL,
    roles                   JSONB NOT NULL,
    metadata                JSONB NOT NULL,
    tags                    JSONB NOT NULL,
    custom_fields           JSONB NOT NULL,
    require_password_change BOOLEAN NOT NULL,
    password_hash           TEXT,
    tokens_valid_after      TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL,
    last_seen_at            TIMESTAMPTZ,
    deactivated_at          TIMESTAMPTZ
);
CREATE INDEX users_account ON users (account_id, id);
CREATE UNIQUE INDEX users_custom_id ON users (account_id, custom_id) WHERE custom_id IS NOT NULL;
CREATE UNIQUE INDEX users_username ON users (account_id, username_norm) WHERE username_norm IS NOT NULL;
CREATE UNIQUE INDEX users_email ON users (account_id, email_norm) WHERE email_norm IS NOT NULL;
CREATE INDEX users_status ON users (account_id, status, id);

CREATE TABLE user_tags (
    account_id UUID NOT NULL,
    tag        TEXT NOT NULL,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, tag, user_id)
);
CREATE INDEX user_tags_user ON user_tags (user_id);

CREATE TABLE user_roles (
    account_id UUID NOT NULL,
    role       TEXT NOT NULL,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, role, user_id)
);
CREATE INDEX user_roles_user ON user_roles (user_id);

CREATE TABLE room_members (
    account_id UUID NOT NULL,
    room_id    UUID NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    joined_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);
CREATE INDEX room_members_account_room ON room_members (account_id, room_id, user_id);

CREATE TABLE tokens (
    id         UUID PRIMARY KEY NOT NULL,
    account_id UUID NOT NULL,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    room_id    UUID,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX tokens_user ON tokens (user_id, created_at);
