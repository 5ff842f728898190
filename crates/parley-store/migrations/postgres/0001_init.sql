-- The PostgreSQL twin of migrations/sqlite/0001_init.sql: same tables, columns and meaning.
-- Times are unix milliseconds (BIGINT). Ids are prefixed strings made by parley-domain.
-- JSON documents are JSONB (tags are queried by segments); the encrypted token is BYTEA.
-- Ids and template names sort bytewise (COLLATE "C"), as in SQLite, whatever the database's
-- locale: cursor pages (`id < $after`) and listings come out in the same order on both.
CREATE TABLE accounts (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE applications (
    id TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE platforms (
    id TEXT COLLATE "C" PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    business_id TEXT NOT NULL,
    waba_id TEXT NOT NULL,
    waba_name TEXT,
    status TEXT NOT NULL,
    access_token BYTEA NOT NULL, -- AES-256-GCM, nonce || ciphertext
    details JSONB NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (application_id, waba_id)
);

CREATE TABLE phone_numbers (
    phone_number_id TEXT COLLATE "C" PRIMARY KEY,
    platform_id TEXT NOT NULL REFERENCES platforms(id),
    application_id TEXT NOT NULL REFERENCES applications(id),
    display_phone_number TEXT NOT NULL,
    verified_name TEXT,
    quality_rating TEXT,
    messaging_limit TEXT,
    throughput_mps BIGINT NOT NULL,
    status TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX phone_numbers_app ON phone_numbers(application_id);

CREATE TABLE templates (
    id TEXT COLLATE "C" PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    platform_id TEXT NOT NULL REFERENCES platforms(id),
    meta_id TEXT,
    name TEXT COLLATE "C" NOT NULL,
    language TEXT COLLATE "C" NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    model JSONB NOT NULL,   -- parley_domain::Template
    raw JSONB NOT NULL,     -- Meta's JSON as received
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT,
    UNIQUE (platform_id, name, language)
);
CREATE INDEX templates_lookup ON templates(application_id, name, language);

CREATE TABLE contacts (
    id TEXT COLLATE "C" PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    phone TEXT NOT NULL,
    wa_id TEXT,
    name TEXT,
    tags JSONB NOT NULL DEFAULT '{}',
    last_inbound_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (application_id, phone)
);
-- Segments filter on tags (`tags ? 'vip'`, `tags @> '{"city": "Berlin"}'`).
CREATE INDEX contacts_tags ON contacts USING GIN (tags);

CREATE TABLE messages (
    id TEXT COLLATE "C" PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    phone_number_id TEXT NOT NULL,
    contact_id TEXT,
    to_phone TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'template' | 'text'
    template_name TEXT,
    template_language TEXT,
    content JSONB NOT NULL,        -- MessageContent
    reply_to TEXT,
    idempotency_key TEXT,
    state TEXT NOT NULL,
    wamid TEXT,
    error_code BIGINT,
    error_message TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    queued_at BIGINT NOT NULL,
    sending_at BIGINT,
    accepted_at BIGINT,
    sent_at BIGINT,
    delivered_at BIGINT,
    read_at BIGINT,
    failed_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX messages_due ON messages(phone_number_id, state, next_attempt_at);
CREATE UNIQUE INDEX messages_wamid ON messages(wamid) WHERE wamid IS NOT NULL;
CREATE UNIQUE INDEX messages_idempotency ON messages(application_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_app_created ON messages(application_id, id);

-- Status updates that named no known message yet (a webhook can outrun the send's commit).
CREATE TABLE orphan_statuses (
    wamid TEXT NOT NULL,
    state TEXT NOT NULL,
    at BIGINT NOT NULL,
    error_code BIGINT,
    error_message TEXT,
    PRIMARY KEY (wamid, state)
);

CREATE TABLE webhook_events (
    id BIGSERIAL PRIMARY KEY,
    received_at BIGINT NOT NULL,
    body BYTEA NOT NULL,
    processed_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX webhook_events_pending ON webhook_events(id) WHERE processed_at IS NULL;

CREATE TABLE inbound_messages (
    wamid TEXT PRIMARY KEY,
    application_id TEXT NOT NULL,
    phone_number_id TEXT NOT NULL,
    contact_id TEXT,
    from_phone TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT,
    raw JSONB NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX inbound_by_app ON inbound_messages(application_id, received_at);
