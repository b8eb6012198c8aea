-- The event log is append-only: no statement changes an event. (Deletes are
-- the retention job's; SQLite has no session setting to tell it apart, so
-- only updates are refused here.)
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
-- The audit log's time filters and the retention job read by time.
CREATE INDEX events_account_at ON events (account_id, at);
