-- Indexes of the send path that only hold the rows the queries look for: a message leaves
-- them once, when it stops being `queued` (or `sending`), instead of being re-filed at each
-- status Meta reports afterwards.
--
-- The sender claims `ORDER BY next_attempt_at, id`: with `id` in the index the claim reads
-- its batch in order and stops, instead of sorting every queued message of the number (a
-- whole campaign planned at one instant shares one `next_attempt_at`).
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages(phone_number_id, next_attempt_at, id) WHERE state = 'queued';

-- A campaign's queued messages (hold, release, cancel, the next quota slot or window opening);
-- its counts come from `campaign_counts` (0009).
DROP INDEX messages_campaign;
CREATE INDEX messages_campaign_queued ON messages(campaign_id, hold_reason, next_attempt_at) WHERE state = 'queued';

-- The crash-recovery pass looks only at messages in `sending`.
CREATE INDEX messages_sending ON messages(lease_until) WHERE state = 'sending';
