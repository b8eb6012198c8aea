-- The event log is append-only: no statement changes an event, and only the
-- retention job (which sets roster.prune for its own transaction) deletes.
CREATE FUNCTION roster_events_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('roster.prune', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'events are append-only (% refused)', TG_OP
        USING ERRCODE = 'RS002';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION roster_events_append_only();
-- The audit log's time filters and the retention job read by time.
CREATE INDEX events_account_at ON events (account_id, at);
