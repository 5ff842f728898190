-- Per-contact FIFO for single sends (issue 15: a burst of replies reached Meta out of order).
-- Every message `insert_message` stores (API sends, inbox replies, opt-out confirmations) is
-- in a lane: its number and its contact (the address when it has no contact). `lane_seq` is
-- its place in the lane, drawn from `send_lanes` in the insert's transaction (the lane's row
-- is locked until the commit, so the places follow the order of the commits). The sender
-- claims only a lane's head: a message with no earlier message of its lane still queued or
-- in flight. Campaign messages have no lane (NULL): their claim is unchanged.
ALTER TABLE messages ADD COLUMN lane TEXT;
ALTER TABLE messages ADD COLUMN lane_seq INTEGER;
CREATE TABLE send_lanes (
    phone_number_id TEXT NOT NULL,
    lane TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (phone_number_id, lane)
);
-- What the claim asks per lane message: is an earlier message of my lane still waiting?
CREATE INDEX messages_lane_open ON messages(phone_number_id, lane, lane_seq)
    WHERE lane IS NOT NULL AND state IN ('queued', 'sending');

-- Single sends waiting now join their lanes in the order they were queued, so those queued
-- after the upgrade go behind them. Messages Meta capped (131049, a day's wait) stay out.
UPDATE messages SET lane = COALESCE(contact_id, to_phone)
 WHERE campaign_id IS NULL AND state IN ('queued', 'sending')
   AND (hold_reason IS NULL OR hold_reason <> 'capped_by_meta');
UPDATE messages SET lane_seq = (
    SELECT COUNT(*) FROM messages e
     WHERE e.lane IS NOT NULL AND e.phone_number_id = messages.phone_number_id AND e.lane = messages.lane
       AND (e.queued_at < messages.queued_at OR (e.queued_at = messages.queued_at AND e.id <= messages.id)))
 WHERE lane IS NOT NULL;
INSERT INTO send_lanes (phone_number_id, lane, last_seq)
SELECT phone_number_id, lane, MAX(lane_seq) FROM messages WHERE lane IS NOT NULL
 GROUP BY phone_number_id, lane;
