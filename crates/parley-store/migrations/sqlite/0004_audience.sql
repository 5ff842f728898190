-- Audience: contact details, marketing subscription with history, the tag index that segment
-- filters read, saved segments and import jobs.

ALTER TABLE contacts ADD COLUMN locale TEXT;
ALTER TABLE contacts ADD COLUMN timezone TEXT;
-- Marketing subscription: 'unknown' (never stated), 'opted_in' or 'opted_out'.
ALTER TABLE contacts ADD COLUMN subscription TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE contacts ADD COLUMN subscription_source TEXT;
ALTER TABLE contacts ADD COLUMN subscription_at INTEGER;
-- Derived from `tags` on every write (see tag_index.rs): keys are ASCII-lower-cased, escaped tag
-- names; values hold the type, the Unicode-folded text, numbers as f64 and dates, so the
-- segment compiler needs neither a Unicode lower() nor a date parser in SQL. Stored as JSONB.
ALTER TABLE contacts ADD COLUMN tag_index BLOB NOT NULL DEFAULT '{}';

CREATE TABLE contact_subscription_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    state TEXT NOT NULL,
    source TEXT NOT NULL,
    note TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX contact_subscription_events_contact ON contact_subscription_events(contact_id, id);

CREATE INDEX messages_contact ON messages(contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX messages_to_phone ON messages(application_id, to_phone);

CREATE TABLE segments (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    name TEXT NOT NULL,
    filter TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (application_id, name)
);

CREATE TABLE import_jobs (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    format TEXT NOT NULL,
    state TEXT NOT NULL,            -- 'running' | 'done' | 'failed'
    rows_read INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);

CREATE TABLE import_rejects (
    job_id TEXT NOT NULL REFERENCES import_jobs(id) ON DELETE CASCADE,
    line INTEGER NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    PRIMARY KEY (job_id, line)
);
