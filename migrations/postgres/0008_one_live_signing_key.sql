-- One live (unretired) signing key at a time, kept by the database: two
-- nodes that start at once on an empty database race to create the first
-- key, and the loser takes the winner's instead of signing with its own.
-- An install that already ran that race keeps its newest live key; the
-- others are retired now (retired keys still verify for 90 days).
UPDATE signing_keys SET retired_at = (SELECT max(created_at) FROM signing_keys)
WHERE retired_at IS NULL
  AND kid <> (SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT 1);
CREATE UNIQUE INDEX signing_keys_one_live ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
