-- The inbox (issue #15 item 2): one conversation per application and contact, kept by the
-- store as inbound messages are recorded and single sends (API, inbox replies) are queued.
-- Campaign sends appear in a contact's thread but neither create a conversation nor move it.
--
-- `last_*`: what the list shows and sorts by (newest activity first). `last_inbound_wamid`:
-- the message a read receipt or typing indicator names. `read_until`: inbound messages
-- received after it are unread. `assignee_id`: the console user answering it (or none).
CREATE TABLE conversations (
    application_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    last_direction TEXT NOT NULL,
    last_kind TEXT NOT NULL,
    last_text TEXT,
    last_inbound_wamid TEXT,
    last_inbound_at BIGINT,
    read_until BIGINT NOT NULL DEFAULT 0,
    assignee_id TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (application_id, contact_id)
);
CREATE INDEX conversations_activity ON conversations(application_id, last_activity_at, contact_id);
CREATE INDEX messages_contact_queued ON messages(contact_id, queued_at, id) WHERE contact_id IS NOT NULL;

-- Existing inbound messages become conversations, read up to their latest message.
INSERT INTO conversations (application_id, contact_id, last_activity_at, last_direction, last_kind,
    last_text, last_inbound_wamid, last_inbound_at, read_until, updated_at)
SELECT i.application_id, i.contact_id, i.received_at, 'inbound', i.kind, i.text, i.wamid,
    i.received_at, i.received_at, i.received_at
FROM inbound_messages i
WHERE i.contact_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM inbound_messages j WHERE j.contact_id = i.contact_id
      AND (j.received_at > i.received_at OR (j.received_at = i.received_at AND j.wamid > i.wamid)));
