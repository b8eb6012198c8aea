-- Since when an endpoint has failed without a success in between (the
-- worker disables it after webhook_disable_after); deliveries in hand, per
-- endpoint (the per-endpoint concurrency bound counts them); due deliveries
-- in the order they go out. Kept in step with
-- migrations/sqlite/0013_webhook_health.sql.
ALTER TABLE webhooks ADD COLUMN failing_since TIMESTAMPTZ;
CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries (webhook_id)
    WHERE claimed_until IS NOT NULL;
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, event_seq)
    WHERE state = 'pending';
