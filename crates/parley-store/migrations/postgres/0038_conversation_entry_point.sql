-- Free entry points (issue #15 item 2, META_2026 §5.1): a customer who came from a
-- click-to-WhatsApp ad or a Facebook Page button writes with a `referral` object; for 72 h
-- from that message everything the number they wrote to sends them is free. Kept on the
-- conversation at intake (`record_inbound`): when the latest such message arrived and on
-- which of the application's numbers. The inbox, the conversations API and the campaign
-- estimate all read these two columns.
ALTER TABLE conversations ADD COLUMN entry_point_at BIGINT;
ALTER TABLE conversations ADD COLUMN entry_point_phone_number_id TEXT;
CREATE INDEX conversations_entry_point ON conversations(application_id, entry_point_at)
    WHERE entry_point_at IS NOT NULL;

-- Conversations from before: their latest inbound message with a referral.
UPDATE conversations SET
    entry_point_at = (SELECT i.received_at FROM inbound_messages i
        WHERE i.application_id = conversations.application_id
          AND i.contact_id = conversations.contact_id
          AND jsonb_typeof(COALESCE(i.body, i.raw) -> 'referral') = 'object'
        ORDER BY i.received_at DESC, i.wamid DESC LIMIT 1),
    entry_point_phone_number_id = (SELECT i.phone_number_id FROM inbound_messages i
        WHERE i.application_id = conversations.application_id
          AND i.contact_id = conversations.contact_id
          AND jsonb_typeof(COALESCE(i.body, i.raw) -> 'referral') = 'object'
        ORDER BY i.received_at DESC, i.wamid DESC LIMIT 1);
