-- Contact identity (META_2026 §3.8): a contact is known by its phone, its business-scoped user
-- id (BSUID), its parent BSUID, or several of them; one person is one contact.
--
-- `contacts.phone` stays the contact's address, the key every page, lock and ledger uses: the
-- E.164 number when Parley knows it, else the BSUID (which always has a dot and never a `+`,
-- so the two cannot be confused). The API shows `phone` only when it is a number. Existing
-- rows keep their phone and have no BSUID until a webhook names it.
ALTER TABLE contacts ADD COLUMN bsuid TEXT;
ALTER TABLE contacts ADD COLUMN parent_bsuid TEXT;
ALTER TABLE contacts ADD COLUMN username TEXT;
CREATE UNIQUE INDEX contacts_app_bsuid ON contacts(application_id, bsuid) WHERE bsuid IS NOT NULL;
CREATE INDEX contacts_app_parent_bsuid ON contacts(application_id, parent_bsuid) WHERE parent_bsuid IS NOT NULL;
-- Which BSUID an inbound message came from (its phone may be withheld).
ALTER TABLE inbound_messages ADD COLUMN from_user_id TEXT;
