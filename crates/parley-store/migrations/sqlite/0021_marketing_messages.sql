-- The Marketing Messages API (#14 part 5; META_2026.md §7).
-- `marketing_messages`: the platform sends marketing templates through
-- `POST /<PHONE_NUMBER_ID>/marketing_messages` (set only while Meta says its WABA is
-- `ONBOARDED`).
ALTER TABLE platforms ADD COLUMN marketing_messages INTEGER NOT NULL DEFAULT 0;
-- A marketing campaign's time-to-live on the Marketing Messages API, in seconds
-- (43200..=2592000); NULL = Meta's default (30 days).
ALTER TABLE campaigns ADD COLUMN marketing_ttl_seconds INTEGER;
-- Which API a send went through: `marketing_messages` (NULL: the Cloud API `/messages`).
-- With a `pricing_category` of `marketing` it fell back to the Cloud API at Meta.
ALTER TABLE messages ADD COLUMN sent_via TEXT;
