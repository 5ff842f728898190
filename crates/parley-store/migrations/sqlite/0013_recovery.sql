-- Crash recovery (#12 part 5).
-- `stale_since`: when a running Parley first saw this `sending` row past its lease. The crash
-- grace counts from then, so after an outage Meta's retried status webhooks get the whole
-- grace to reach the restarted Parley, and a restart does not start the grace again.
ALTER TABLE messages ADD COLUMN stale_since INTEGER;
-- Imports resume where they stopped: the upload's options, and the bytes (and their SHA-256)
-- up to the last row committed, so a resumed upload skips them and must begin with them.
ALTER TABLE import_jobs ADD COLUMN options TEXT;
ALTER TABLE import_jobs ADD COLUMN committed_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE import_jobs ADD COLUMN committed_sha256 TEXT;
