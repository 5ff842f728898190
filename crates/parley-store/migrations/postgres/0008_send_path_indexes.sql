-- The sender claims `ORDER BY next_attempt_at, id`: a partial index of the queued messages
-- in that order lets the claim read its batch and stop (a whole campaign planned at one
-- instant shares one `next_attempt_at`), and a message leaves it once, when it is claimed.
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages(phone_number_id, next_attempt_at, id) WHERE state = 'queued';

-- The crash-recovery pass looks only at messages in `sending`.
CREATE INDEX messages_sending ON messages(lease_until) WHERE state = 'sending';
