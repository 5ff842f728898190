-- Marketing consent, pacing and pricing (#14 parts 2-4); see the SQLite migration.
ALTER TABLE messages ADD COLUMN meta_status TEXT;
ALTER TABLE messages ADD COLUMN pricing TEXT;
ALTER TABLE messages ADD COLUMN pricing_category TEXT;
ALTER TABLE messages ADD COLUMN capped_times BIGINT NOT NULL DEFAULT 0;
ALTER TABLE applications ADD COLUMN opt_out_keywords TEXT;
ALTER TABLE applications ADD COLUMN opt_out_reply TEXT;
