-- Event webhooks out (issue 15 part 3); see the SQLite migration.
CREATE TABLE event_endpoints (
    id TEXT COLLATE "C" PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications(id),
    url TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    event_types JSONB NOT NULL,
    secret BYTEA NOT NULL,
    failing_since BIGINT,
    disabled_at BIGINT,
    disabled_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX event_endpoints_application ON event_endpoints (application_id, id);

CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL,
    application_id TEXT NOT NULL REFERENCES applications(id),
    type TEXT NOT NULL,
    ordering_key TEXT,
    dedup_key TEXT NOT NULL,
    payload JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    fanned_out_at BIGINT
);
CREATE UNIQUE INDEX events_id ON events (id);
CREATE UNIQUE INDEX events_dedup ON events (application_id, dedup_key);
CREATE INDEX events_unfanned ON events (seq) WHERE fanned_out_at IS NULL;

CREATE TABLE event_deliveries (
    id TEXT COLLATE "C" PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES event_endpoints(id) ON DELETE CASCADE,
    event_seq BIGINT NOT NULL REFERENCES events(seq),
    ordering_key TEXT,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    retry_from BIGINT NOT NULL,
    last_attempt_at BIGINT,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX event_deliveries_once ON event_deliveries (endpoint_id, event_seq);
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX event_deliveries_order ON event_deliveries (endpoint_id, ordering_key, event_seq) WHERE state = 'pending';

CREATE TABLE event_attempts (
    delivery_id TEXT NOT NULL REFERENCES event_deliveries(id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code BIGINT,
    response TEXT,
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
