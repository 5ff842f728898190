-- Campaigns: one template sent to an audience, planned into `messages` rows in chunks, and the
-- quota ledger of business-initiated conversations (Meta's messaging limit).

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    name TEXT NOT NULL,
    phone_number_id TEXT NOT NULL,
    template_name TEXT NOT NULL,
    template_language TEXT NOT NULL,
    variables TEXT NOT NULL,          -- VariableInput as JSON: one expression per slot
    audience TEXT NOT NULL,           -- {"filter": "…"} | {"segment_id": "seg_…"} as given
    audience_filter TEXT NOT NULL,    -- the filter the planner expands (a segment's, read at creation)
    kind TEXT NOT NULL,               -- 'marketing' | 'transactional'
    scheduled_at INTEGER,             -- NULL: when started
    send_window TEXT,                 -- optional JSON {"start","end","timezone"}
    state TEXT NOT NULL,              -- draft | scheduled | running | paused | completed | cancelled
    state_reason TEXT,
    planner_cursor TEXT,              -- last contact phone expanded (keyset)
    planned INTEGER NOT NULL DEFAULT 0, -- 1 once the whole audience is expanded
    recipients INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX campaigns_app ON campaigns(application_id, id);
CREATE INDEX campaigns_state ON campaigns(state);

ALTER TABLE messages ADD COLUMN campaign_id TEXT;
-- Why a skipped message was skipped (opted_out, missing_tag, …), or why a queued one waits
-- ('quota': no messaging-limit slot until next_attempt_at).
ALTER TABLE messages ADD COLUMN hold_reason TEXT;
CREATE INDEX messages_campaign ON messages(campaign_id, state) WHERE campaign_id IS NOT NULL;
CREATE INDEX inbound_by_sender ON inbound_messages(application_id, from_phone, received_at);

-- One row per contact reached business-initiated in a limit scope ('bp:<business>' or
-- 'pn:<phone number id>'): the last instant it was reached. `reserved_by` is the message
-- holding a new slot while its send is in flight (cleared on acceptance, deleted on failure).
CREATE TABLE quota_reach (
    scope_key TEXT NOT NULL,
    contact TEXT NOT NULL,
    last_at INTEGER NOT NULL,
    reserved_by TEXT,
    PRIMARY KEY (scope_key, contact)
);
CREATE INDEX quota_reach_window ON quota_reach(scope_key, last_at);
