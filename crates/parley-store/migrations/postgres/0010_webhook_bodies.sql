-- Webhook bodies apart from their processing state (see the SQLite migration): the events
-- table stays small and the size of a pending batch is read without the bodies.
CREATE TABLE webhook_bodies (
    id BIGINT PRIMARY KEY,
    body BYTEA NOT NULL
);
INSERT INTO webhook_bodies (id, body) SELECT id, body FROM webhook_events;
ALTER TABLE webhook_events ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
UPDATE webhook_events SET size = length(body);
ALTER TABLE webhook_events DROP COLUMN body;
