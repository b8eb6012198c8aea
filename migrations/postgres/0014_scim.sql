-- SCIM: a Group's externalId (the identity provider's id of the group a
-- space mirrors), and the front door each event came through (`scim`,
-- `rocketchat`, `cometchat`; NULL for the native API and the server
-- itself). Kept in step with migrations/sqlite/0014_scim.sql.
ALTER TABLE spaces ADD COLUMN external_id TEXT;
ALTER TABLE events ADD COLUMN surface TEXT;
