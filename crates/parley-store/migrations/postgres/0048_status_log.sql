-- Statuses readable before they are merged (#15). The webhook processor first copies each
-- stored delivery's statuses here (`Store::project_statuses`, a narrow append: a few µs a
-- status), then merges them into `messages` with their counters, events and consent rules as
-- before, and deletes them when it marks the delivery processed. A reader of a message's
-- status merges the rows still here that name it through the same lattice
-- (`lattice::overlay`), so a status is on its message once it is here; the merge is
-- idempotent, so a row the processor has already merged changes nothing. Only statuses that
-- name our message id (`biz_opaque_callback_data`, on every send of Parley's) come here, and
-- readers find them by it: message ids grow with time (UUIDv7), so the index takes a burst's
-- rows near its end, where wamids would land all over it.
CREATE TABLE status_log (
    event_id BIGINT NOT NULL,
    n INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    wamid TEXT NOT NULL,
    state TEXT NOT NULL,
    at BIGINT NOT NULL,
    error_code BIGINT,
    error_message TEXT,
    PRIMARY KEY (event_id, n)
);
CREATE INDEX status_log_message ON status_log (message_id);
-- 1 once the delivery's statuses are in `status_log` (or it has none).
ALTER TABLE webhook_events ADD COLUMN projected SMALLINT NOT NULL DEFAULT 0;
