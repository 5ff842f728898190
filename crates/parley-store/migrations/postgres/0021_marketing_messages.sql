-- The Marketing Messages API (#14 part 5); see the SQLite migration.
ALTER TABLE platforms ADD COLUMN marketing_messages BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE campaigns ADD COLUMN marketing_ttl_seconds BIGINT;
ALTER TABLE messages ADD COLUMN sent_via TEXT;
