-- The event log: every change, written in the change's own transaction.
-- `seq` is the rowid (AUTOINCREMENT: never reused, even when retention
-- empties the table); the single writer makes commit order seq order.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           BLOB NOT NULL UNIQUE,
    account_id   BLOB,
    type         TEXT NOT NULL,
    actor_kind   TEXT NOT NULL,
    actor_id     BLOB,
    subject_kind TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    data         TEXT NOT NULL,
    at           TEXT NOT NULL,
    request_id   TEXT
);
CREATE INDEX events_account ON events (account_id, seq);
