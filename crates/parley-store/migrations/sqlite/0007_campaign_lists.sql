-- Uploaded-list audiences: the numbers of a campaign's list in upload order. `phone` is E.164
-- when valid (the contact it names was created at upload if missing), else the text as given
-- (truncated); `skip` is 'invalid_number' or 'duplicate' (a later copy of a number), NULL to
-- send. The planner reads it in keyset pages by position. Written before the campaign row, so
-- no foreign key: a failed creation leaves entries no campaign reads.
CREATE TABLE campaign_list_entries (
    campaign_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    phone TEXT NOT NULL,
    skip TEXT,
    PRIMARY KEY (campaign_id, position)
);
