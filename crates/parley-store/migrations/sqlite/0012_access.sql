-- API tokens get an id (to list and revoke them by), scopes, an optional expiry, the time of
-- last use (written at most once a minute) and a revocation time. Tokens made before scopes
-- existed keep doing everything: they get all three.
ALTER TABLE api_tokens ADD COLUMN id TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'send read manage';
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN revoked_at INTEGER;
-- An id for each existing token that sorts by creation like new ones (`tok_` + the creation
-- time in 12 hex digits + 20 random hex digits).
UPDATE api_tokens
SET id = 'tok_' || printf('%012x', created_at) || lower(substr(hex(randomblob(10)), 1, 20))
WHERE id = '';
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
CREATE INDEX api_tokens_application ON api_tokens (application_id, id);

-- Who changed what: one row per successful change made through the API or the console.
-- Rows older than the retention (`audit.retention_days`) are deleted.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,                 -- aud_…, sorts by time
    application_id TEXT NOT NULL REFERENCES applications(id),
    at INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,            -- user | token
    actor_id TEXT NOT NULL,              -- usr_… or tok_…
    actor_label TEXT NOT NULL,           -- the user's email or the token's label, as it was then
    action TEXT NOT NULL,                -- e.g. campaign.start
    target TEXT,                         -- the id the change was about, when there is one
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    address TEXT                         -- the client's address as Parley saw it
);
CREATE INDEX audit_log_application ON audit_log (application_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
