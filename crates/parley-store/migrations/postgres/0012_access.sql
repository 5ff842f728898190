-- The PostgreSQL twin of migrations/sqlite/0012_access.sql.
ALTER TABLE api_tokens ADD COLUMN id TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'send read manage';
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
UPDATE api_tokens
SET id = 'tok_' || lpad(to_hex(created_at), 12, '0')
    || substr(md5(random()::text || token_hash), 1, 20)
WHERE id = '';
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
CREATE INDEX api_tokens_application ON api_tokens (application_id, id);

CREATE TABLE audit_log (
    id TEXT COLLATE "C" PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    at BIGINT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_label TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    address TEXT
);
CREATE INDEX audit_log_application ON audit_log (application_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
