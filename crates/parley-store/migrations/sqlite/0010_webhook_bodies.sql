-- Webhook bodies apart from their processing state: marking an event processed rewrote its
-- whole row, body included (Meta's bodies hold up to 1,000 statuses, ~400 KB), and sizing a
-- batch of pending events read every body.
CREATE TABLE webhook_bodies (
    id INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
INSERT INTO webhook_bodies (id, body) SELECT id, body FROM webhook_events;
ALTER TABLE webhook_events ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE webhook_events SET size = length(body);
ALTER TABLE webhook_events DROP COLUMN body;
