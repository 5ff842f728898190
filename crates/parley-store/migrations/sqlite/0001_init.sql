-- Times are unix milliseconds (INTEGER). Ids are prefixed strings made by parley-domain.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE applications (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE platforms (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    business_id TEXT NOT NULL,
    waba_id TEXT NOT NULL,
    waba_name TEXT,
    status TEXT NOT NULL,
    access_token BLOB NOT NULL, -- AES-256-GCM, nonce || ciphertext
    details TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (application_id, waba_id)
);

CREATE TABLE phone_numbers (
    phone_number_id TEXT PRIMARY KEY,
    platform_id TEXT NOT NULL REFERENCES platforms(id),
    application_id TEXT NOT NULL REFERENCES applications(id),
    display_phone_number TEXT NOT NULL,
    verified_name TEXT,
    quality_rating TEXT,
    messaging_limit TEXT,
    throughput_mps INTEGER NOT NULL,
    status TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX phone_numbers_app ON phone_numbers(application_id);

CREATE TABLE templates (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    platform_id TEXT NOT NULL REFERENCES platforms(id),
    meta_id TEXT,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    model TEXT NOT NULL,   -- parley_domain::Template as JSON
    raw TEXT NOT NULL,     -- Meta's JSON as received
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER,
    UNIQUE (platform_id, name, language)
);
CREATE INDEX templates_lookup ON templates(application_id, name, language);

CREATE TABLE contacts (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    phone TEXT NOT NULL,
    wa_id TEXT,
    name TEXT,
    tags TEXT NOT NULL DEFAULT '{}',
    last_inbound_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (application_id, phone)
);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    phone_number_id TEXT NOT NULL,
    contact_id TEXT,
    to_phone TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'template' | 'text'
    template_name TEXT,
    template_language TEXT,
    content TEXT NOT NULL,         -- RenderedTemplate or {"text": …} as JSON
    reply_to TEXT,
    idempotency_key TEXT,
    state TEXT NOT NULL,
    wamid TEXT,
    error_code INTEGER,
    error_message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    queued_at INTEGER NOT NULL,
    sending_at INTEGER,
    accepted_at INTEGER,
    sent_at INTEGER,
    delivered_at INTEGER,
    read_at INTEGER,
    failed_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX messages_due ON messages(phone_number_id, state, next_attempt_at);
CREATE UNIQUE INDEX messages_wamid ON messages(wamid) WHERE wamid IS NOT NULL;
CREATE UNIQUE INDEX messages_idempotency ON messages(application_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_app_created ON messages(application_id, id);

-- Status updates that named no known message yet (a webhook can outrun the send's commit).
CREATE TABLE orphan_statuses (
    wamid TEXT NOT NULL,
    state TEXT NOT NULL,
    at INTEGER NOT NULL,
    error_code INTEGER,
    error_message TEXT,
    PRIMARY KEY (wamid, state)
);

CREATE TABLE webhook_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    body BLOB NOT NULL,
    processed_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX webhook_events_pending ON webhook_events(processed_at, id);

CREATE TABLE inbound_messages (
    wamid TEXT PRIMARY KEY,
    application_id TEXT NOT NULL,
    phone_number_id TEXT NOT NULL,
    contact_id TEXT,
    from_phone TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT,
    raw TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX inbound_by_app ON inbound_messages(application_id, received_at);
