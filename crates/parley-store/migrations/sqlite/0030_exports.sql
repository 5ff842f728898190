-- Exports (#16): a campaign's per-recipient export reads its messages page by page in id
-- order (keyset), so the index leads with the campaign and then the id.
CREATE INDEX messages_campaign_id ON messages(campaign_id, id) WHERE campaign_id IS NOT NULL;
