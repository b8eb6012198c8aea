-- The start-up pass that gives older usernames their skeleton reads the
-- rows still without one: this index holds only those (none, once done),
-- so the pass costs nothing at later starts however many users there are.
CREATE INDEX users_without_skeleton ON users (id)
    WHERE username IS NOT NULL AND username_skeleton IS NULL;
