-- A username's TR39 confusable skeleton (of its PRECIS case-mapped form):
-- two usernames that look alike (`alice`, `аlice` with a Cyrillic а) have
-- one skeleton, and this index keeps a second out of the account. Rows
-- written before the column existed get theirs at start-up.
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
CREATE UNIQUE INDEX users_username_skeleton ON users (account_id, username_skeleton)
    WHERE username_skeleton IS NOT NULL;
