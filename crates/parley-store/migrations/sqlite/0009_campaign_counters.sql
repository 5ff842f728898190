-- A campaign's statistics kept as counters by triggers, so reading them costs the same for
-- ten messages or a million (the console and the API poll them while the campaign runs).
-- `reason` is the breakdown of the state: Meta's error code for `failed`, the reason for
-- `skipped`, the hold (`quota`, `window`) for `queued`, '' otherwise.
CREATE TABLE campaign_counts (
    campaign_id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, state, reason)
) WITHOUT ROWID;

-- Messages by the hour they were first known sent (sent, delivered or read, the earliest).
CREATE TABLE campaign_hours (
    campaign_id TEXT NOT NULL,
    hour INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, hour)
) WITHOUT ROWID;

INSERT INTO campaign_counts (campaign_id, state, reason, n)
SELECT campaign_id, state,
       CASE state WHEN 'failed' THEN COALESCE(CAST(error_code AS TEXT), 'unknown')
                  WHEN 'skipped' THEN COALESCE(hold_reason, 'unknown')
                  WHEN 'queued' THEN COALESCE(hold_reason, '') ELSE '' END,
       COUNT(*)
FROM messages WHERE campaign_id IS NOT NULL GROUP BY 1, 2, 3;

INSERT INTO campaign_hours (campaign_id, hour, n)
SELECT campaign_id, (COALESCE(sent_at, delivered_at, read_at) / 3600000) * 3600000, COUNT(*)
FROM messages WHERE campaign_id IS NOT NULL AND COALESCE(sent_at, delivered_at, read_at) IS NOT NULL
GROUP BY 1, 2;

CREATE TRIGGER campaign_counts_insert AFTER INSERT ON messages
WHEN new.campaign_id IS NOT NULL
BEGIN
    INSERT INTO campaign_counts (campaign_id, state, reason, n)
    VALUES (new.campaign_id, new.state,
            CASE new.state WHEN 'failed' THEN COALESCE(CAST(new.error_code AS TEXT), 'unknown')
                           WHEN 'skipped' THEN COALESCE(new.hold_reason, 'unknown')
                           WHEN 'queued' THEN COALESCE(new.hold_reason, '') ELSE '' END, 1)
    ON CONFLICT (campaign_id, state, reason) DO UPDATE SET n = n + 1;
    INSERT INTO campaign_hours (campaign_id, hour, n)
    SELECT new.campaign_id, (COALESCE(new.sent_at, new.delivered_at, new.read_at) / 3600000) * 3600000, 1
    WHERE COALESCE(new.sent_at, new.delivered_at, new.read_at) IS NOT NULL
    ON CONFLICT (campaign_id, hour) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER campaign_counts_update AFTER UPDATE OF state, hold_reason, error_code ON messages
WHEN new.campaign_id IS NOT NULL AND (old.state IS NOT new.state
    OR (CASE old.state WHEN 'failed' THEN COALESCE(CAST(old.error_code AS TEXT), 'unknown')
                       WHEN 'skipped' THEN COALESCE(old.hold_reason, 'unknown')
                       WHEN 'queued' THEN COALESCE(old.hold_reason, '') ELSE '' END)
       IS NOT
       (CASE new.state WHEN 'failed' THEN COALESCE(CAST(new.error_code AS TEXT), 'unknown')
                       WHEN 'skipped' THEN COALESCE(new.hold_reason, 'unknown')
                       WHEN 'queued' THEN COALESCE(new.hold_reason, '') ELSE '' END))
BEGIN
    UPDATE campaign_counts SET n = n - 1
    WHERE campaign_id = old.campaign_id AND state = old.state
      AND reason = CASE old.state WHEN 'failed' THEN COALESCE(CAST(old.error_code AS TEXT), 'unknown')
                                  WHEN 'skipped' THEN COALESCE(old.hold_reason, 'unknown')
                                  WHEN 'queued' THEN COALESCE(old.hold_reason, '') ELSE '' END;
    INSERT INTO campaign_counts (campaign_id, state, reason, n)
    VALUES (new.campaign_id, new.state,
            CASE new.state WHEN 'failed' THEN COALESCE(CAST(new.error_code AS TEXT), 'unknown')
                           WHEN 'skipped' THEN COALESCE(new.hold_reason, 'unknown')
                           WHEN 'queued' THEN COALESCE(new.hold_reason, '') ELSE '' END, 1)
    ON CONFLICT (campaign_id, state, reason) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER campaign_hours_update AFTER UPDATE OF sent_at, delivered_at, read_at ON messages
WHEN new.campaign_id IS NOT NULL
  AND COALESCE(old.sent_at, old.delivered_at, old.read_at) / 3600000
      IS NOT COALESCE(new.sent_at, new.delivered_at, new.read_at) / 3600000
BEGIN
    UPDATE campaign_hours SET n = n - 1
    WHERE campaign_id = old.campaign_id
      AND hour = (COALESCE(old.sent_at, old.delivered_at, old.read_at) / 3600000) * 3600000;
    INSERT INTO campaign_hours (campaign_id, hour, n)
    SELECT new.campaign_id, (COALESCE(new.sent_at, new.delivered_at, new.read_at) / 3600000) * 3600000, 1
    WHERE COALESCE(new.sent_at, new.delivered_at, new.read_at) IS NOT NULL
    ON CONFLICT (campaign_id, hour) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER campaign_counts_delete AFTER DELETE ON messages
WHEN old.campaign_id IS NOT NULL
BEGIN
    UPDATE campaign_counts SET n = n - 1
    WHERE campaign_id = old.campaign_id AND state = old.state
      AND reason = CASE old.state WHEN 'failed' THEN COALESCE(CAST(old.error_code AS TEXT), 'unknown')
                                  WHEN 'skipped' THEN COALESCE(old.hold_reason, 'unknown')
                                  WHEN 'queued' THEN COALESCE(old.hold_reason, '') ELSE '' END;
    UPDATE campaign_hours SET n = n - 1
    WHERE campaign_id = old.campaign_id
      AND hour = (COALESCE(old.sent_at, old.delivered_at, old.read_at) / 3600000) * 3600000;
END;
