-- A replay of an endpoint's events over a time range (`replay_event_range`) reads the
-- application's events in [since, until) a page at a time by (created_at, seq): without this
-- index each page scanned every event of every application.
CREATE INDEX events_application_time ON events (application_id, created_at, seq);
