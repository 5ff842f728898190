-- The campaign view's reads that the statistics counters do not keep (held by Meta, charged
-- categories, sends through the Marketing Messages API) read only the rows these partial
-- indexes hold, instead of every message (SQLite has no index of a campaign's messages since
-- 0008; every poll of a 100,000-message campaign scanned the table three times). The columns
-- are set on few rows (`meta_status`, `sent_via`) or once per message, at a campaign's end of
-- the key (`pricing_category`), so the send path's writes barely change.
CREATE INDEX messages_campaign_meta ON messages(campaign_id, meta_status) WHERE meta_status IS NOT NULL;
CREATE INDEX messages_campaign_category ON messages(campaign_id, pricing_category) WHERE pricing_category IS NOT NULL;
CREATE INDEX messages_campaign_via ON messages(campaign_id, sent_via) WHERE sent_via IS NOT NULL;
