-- Business-initiated reaches (#16 item 1): one row per template Meta accepted for a contact
-- outside its 24 h service window (what counts against the messaging limit), written by the
-- store in the transaction that records the acceptance, keyed by the message so a repeated
-- acceptance adds nothing. The statistics metrics `conversation_business`, `limit_reach` (a
-- contact starts counting in the moving 24 h) and `limit_release` (it stops counting, 24 h
-- after its last reach) are kept from these rows in the same transaction, and
-- `parley stats recount` recomputes them from here. `scope_key` is the quota ledger's
-- (`bp:<business>` or `pn:<number>`), `contact` its key (the contact id, or the address).
CREATE TABLE limit_reaches (
    message_id TEXT NOT NULL PRIMARY KEY,
    application_id TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    contact TEXT NOT NULL,
    at INTEGER NOT NULL,
    phone_number_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    template TEXT NOT NULL,
    country TEXT NOT NULL
);
CREATE INDEX limit_reaches_contact ON limit_reaches(scope_key, contact, at);
CREATE INDEX limit_reaches_application ON limit_reaches(application_id, at);
