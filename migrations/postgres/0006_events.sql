-- The event log: every change, written in the change's own transaction.
-- `seq` comes from one sequence: it grows with every event, with gaps where
-- a transaction rolled back. Concurrent transactions may commit out of seq
-- order; readers only read up to a high-water mark below which every seq is
-- settled (see store::postgres::events_after).
CREATE SEQUENCE events_seq;
CREATE TABLE events (
    seq          BIGINT PRIMARY KEY DEFAULT nextval('events_seq'),
    id           UUID NOT NULL UNIQUE,
    account_id   UUID,
    type         TEXT NOT NULL,
    actor_kind   TEXT NOT NULL,
    actor_id     UUID,
    subject_kind TEXT NOT NULL,
    subject_id   TEXT NOT NULL,
    data         JSONB NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    request_id   TEXT
);
ALTER SEQUENCE events_seq OWNED BY events.seq;
CREATE INDEX events_account ON events (account_id, seq);
