-- Spaces, space memberships, custom roles, invites and guest access links.
-- Kept in step with migrations/postgres/0002_access.sql.

CREATE TABLE spaces (
    id         BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    visibility TEXT NOT NULL,
    created_by BLOB,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX spaces_account ON spaces (account_id, id);

CREATE TABLE space_members (
    account_id BLOB NOT NULL,
    space_id   BLOB NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    joined_at  TEXT NOT NULL,
    PRIMARY KEY (space_id, user_id)
);
CREATE INDEX space_members_user ON space_members (user_id);

CREATE INDEX rooms_space ON rooms (account_id, space_id);

CREATE TABLE roles (
    id          BLOB PRIMARY KEY NOT NULL,
    account_id  BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    name_norm   TEXT NOT NULL,
    description TEXT,
    permissions TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX roles_name ON roles (account_id, name_norm);

CREATE TABLE invites (
    id         BLOB PRIMARY KEY NOT NULL,
    account_id BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    space_id   BLOB NOT NULL REFERENCES spaces(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    max_uses   INTEGER NOT NULL,
    uses       INTEGER NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    created_by BLOB,
    created_at TEXT NOT NULL
);
CREATE INDEX invites_space ON invites (space_id, id);

CREATE TABLE access_links (
    id               BLOB PRIMARY KEY NOT NULL,
    account_id       BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    room_id          BLOB NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    username         TEXT NOT NULL,
    role             TEXT NOT NULL,
    external_user_id TEXT,
    is_permanent     INTEGER NOT NULL,
    expires_at       TEXT NOT NULL,
    used_at          TEXT,
    revoked_at       TEXT,
    created_by       BLOB,
    created_at       TEXT NOT NULL
);
CREATE INDEX access_links_room ON access_links (room_id, id);
