-- When a user's email address last changed: a password reset is not mailed
-- to an address changed within the last hour (an account-takeover guard).
ALTER TABLE users ADD COLUMN email_changed_at TEXT;
