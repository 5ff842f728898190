-- Crash recovery (#12 part 5); see the SQLite migration.
ALTER TABLE messages ADD COLUMN stale_since BIGINT;
ALTER TABLE import_jobs ADD COLUMN options TEXT;
ALTER TABLE import_jobs ADD COLUMN committed_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE import_jobs ADD COLUMN committed_sha256 TEXT;
