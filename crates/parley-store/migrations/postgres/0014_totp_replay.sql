-- TOTP replay (#12); see the SQLite migration.
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;
