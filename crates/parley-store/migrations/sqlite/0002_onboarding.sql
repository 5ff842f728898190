-- Platform setup (Embedded Signup): the platform's status reason and portfolio name, per-number
-- facts Meta reports, and onboarding sessions with their recorded steps. Secrets (business
-- token, registration PIN) are AES-256-GCM blobs, nonce || ciphertext.
ALTER TABLE platforms ADD COLUMN status_reason TEXT;
ALTER TABLE platforms ADD COLUMN company_name TEXT;
ALTER TABLE platforms ADD COLUMN connected_at INTEGER;
ALTER TABLE platforms ADD COLUMN disconnected_at INTEGER;

ALTER TABLE phone_numbers ADD COLUMN name_status TEXT;
ALTER TABLE phone_numbers ADD COLUMN messaging_limit_scope TEXT;
ALTER TABLE phone_numbers ADD COLUMN throughput_level TEXT;
CREATE INDEX phone_numbers_platform ON phone_numbers(platform_id);
CREATE INDEX platforms_waba ON platforms(waba_id);

CREATE TABLE onboarding_sessions (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    platform_id TEXT REFERENCES platforms(id),
    event TEXT,
    business_id TEXT,
    waba_id TEXT,
    phone_number_id TEXT,
    state TEXT NOT NULL,          -- 'running' | 'failed' | 'done'
    failed_step TEXT,
    access_token BLOB,            -- encrypted; the platform keeps its own copy once it exists
    pin BLOB,                     -- encrypted 6-digit registration PIN
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX onboarding_by_platform ON onboarding_sessions(platform_id, created_at);

CREATE TABLE onboarding_steps (
    session_id TEXT NOT NULL REFERENCES onboarding_sessions(id),
    step TEXT NOT NULL,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,          -- 'done' | 'failed' | 'skipped'
    error_code INTEGER,
    error_message TEXT,
    at INTEGER NOT NULL,
    PRIMARY KEY (session_id, step)
);
