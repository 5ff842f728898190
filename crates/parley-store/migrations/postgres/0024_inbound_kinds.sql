-- Inbound messages of every kind (issue #15): the normalized body beside Meta's raw message,
-- the message a reply, reaction, edit or revoke refers to, edits kept as history, revokes
-- marked; inbound media fetched from Meta and kept on disk by content hash.
--
-- `body` is `parley_domain::InboundBody` as JSON (`kind` plus the kind's fields, `context`,
-- `referral`, `errors`); NULL on rows from before this migration (read from `raw` instead).
ALTER TABLE inbound_messages ADD COLUMN body JSONB;
ALTER TABLE inbound_messages ADD COLUMN refers_to TEXT;
-- The previous versions of an edited message, oldest first: [{"text", "body", "edited_at"}].
ALTER TABLE inbound_messages ADD COLUMN edits JSONB;
ALTER TABLE inbound_messages ADD COLUMN edited_at BIGINT;
ALTER TABLE inbound_messages ADD COLUMN revoked_at BIGINT;
CREATE INDEX inbound_refers_to ON inbound_messages(refers_to) WHERE refers_to IS NOT NULL;
CREATE INDEX inbound_by_contact ON inbound_messages(contact_id, received_at, wamid);

-- One media object of an inbound message. `state`: `pending` (to fetch; `next_attempt_at`
-- says when), `stored` (`sha256` names the file `<data dir>/media/<sha256[0..2]>/<sha256>`),
-- `refused` (too large, or not the type Meta declared: `error` says why), `failed` (gave up
-- after retries), `expired` (the file was removed by the retention setting).
CREATE TABLE inbound_media (
    wamid TEXT PRIMARY KEY,
    application_id TEXT NOT NULL,
    phone_number_id TEXT NOT NULL,
    media_id TEXT NOT NULL,
    declared_mime TEXT,
    declared_sha256 TEXT,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    sha256 TEXT,
    size_bytes BIGINT,
    mime_type TEXT,
    error TEXT,
    created_at BIGINT NOT NULL,
    stored_at BIGINT
);
CREATE INDEX inbound_media_due ON inbound_media(state, next_attempt_at);
CREATE INDEX inbound_media_sha ON inbound_media(sha256) WHERE sha256 IS NOT NULL;
