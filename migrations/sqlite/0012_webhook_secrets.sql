-- A rotated webhook secret keeps signing beside the new one for a while
-- (Standard Webhooks allows several signatures).
ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
ALTER TABLE webhooks ADD COLUMN previous_secret_until TEXT;
