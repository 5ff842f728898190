-- Coexistence (issue 13): WhatsApp Business app numbers on the Cloud API. One row per such
-- number: when Parley first saw it onboarded (the 24 h sync window counts from there), where
-- its two one-shot sync calls stand, the history sync's progress, and the offboarding Meta
-- reported (the number stays, its sends wait, until ACCOUNT_RECONNECTED).
CREATE TABLE coexistence_numbers (
    phone_number_id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    platform_id TEXT NOT NULL REFERENCES platforms(id),
    onboarded_at INTEGER NOT NULL,
    contacts_sync TEXT NOT NULL,      -- 'pending' | 'requested' | 'failed'
    contacts_request_id TEXT,
    history_sync TEXT NOT NULL,       -- 'pending' | 'requested' | 'in_progress' | 'done' | 'declined' | 'failed'
    history_request_id TEXT,
    history_progress INTEGER NOT NULL DEFAULT 0,
    sync_error TEXT,
    offboarded_at INTEGER,
    disconnection_reason TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX coexistence_numbers_platform ON coexistence_numbers(platform_id);

-- Messages that did not go through Parley's send path: the app's history (imported, both
-- directions) and what the business typed in the app (echoes). Kept apart from `messages`
-- (Parley's sends, which the sender, the quota and the costs read) and from
-- `inbound_messages` (which open the 24 h window): neither may see these.
CREATE TABLE app_messages (
    wamid TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    phone_number_id TEXT NOT NULL,
    contact_id TEXT,
    contact_phone TEXT NOT NULL,
    direction TEXT NOT NULL,          -- 'inbound' | 'outbound'
    source TEXT NOT NULL,             -- 'history' (imported) | 'business_app' (echo)
    kind TEXT NOT NULL,
    text TEXT,
    history_status TEXT,              -- history_context.status, never a delivery status
    raw TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX app_messages_contact ON app_messages(application_id, contact_phone, sent_at);
