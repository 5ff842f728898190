-- Event webhooks out (issue 15 part 3): endpoints an application registers, the outbox of
-- events (written as the change they report is applied), one delivery per (endpoint, event)
-- made when the worker fans an event out, and every attempt of each delivery.
CREATE TABLE event_endpoints (
    id TEXT PRIMARY KEY,                 -- ep_…
    application_id TEXT NOT NULL REFERENCES applications(id),
    url TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    event_types TEXT NOT NULL,           -- JSON array of event type names
    secret BLOB NOT NULL,                -- whsec_…, encrypted with the master key
    failing_since INTEGER,               -- first failed attempt since the last success
    disabled_at INTEGER,                 -- set by hand or after failing for `disable_after`
    disabled_reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX event_endpoints_application ON event_endpoints (application_id, id);

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- order of writing: per-contact order follows it
    id TEXT NOT NULL,                       -- ev_…, the `webhook-id` receivers see
    application_id TEXT NOT NULL REFERENCES applications(id),
    type TEXT NOT NULL,
    ordering_key TEXT,                      -- the contact (or resource) whose events stay in order
    dedup_key TEXT NOT NULL,                -- the same change reported twice is one event
    payload TEXT NOT NULL,                  -- the JSON body sent
    created_at INTEGER NOT NULL,
    fanned_out_at INTEGER                   -- deliveries made for the endpoints of the time
);
CREATE UNIQUE INDEX events_id ON events (id);
CREATE UNIQUE INDEX events_dedup ON events (application_id, dedup_key);
CREATE INDEX events_unfanned ON events (seq) WHERE fanned_out_at IS NULL;

CREATE TABLE event_deliveries (
    id TEXT PRIMARY KEY,                    -- dlv_…
    endpoint_id TEXT NOT NULL REFERENCES event_endpoints(id) ON DELETE CASCADE,
    event_seq INTEGER NOT NULL REFERENCES events(seq),
    ordering_key TEXT,
    state TEXT NOT NULL,                    -- 'pending' | 'delivered' | 'failed' (given up)
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until INTEGER,
    retry_from INTEGER NOT NULL,            -- retries stop `retry_period` after this
    last_attempt_at INTEGER,
    delivered_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX event_deliveries_once ON event_deliveries (endpoint_id, event_seq);
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX event_deliveries_order ON event_deliveries (endpoint_id, ordering_key, event_seq) WHERE state = 'pending';

CREATE TABLE event_attempts (
    delivery_id TEXT NOT NULL REFERENCES event_deliveries(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,                    -- NULL: no answer (refused, timed out, blocked)
    response TEXT,                          -- the answer's first bytes
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
