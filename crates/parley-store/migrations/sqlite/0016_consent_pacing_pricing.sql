-- Marketing consent, pacing and pricing (#14 parts 2-4; META_2026.md §5, §6).
-- `meta_status`: what Meta's send answer said beyond the wamid, when it is not the normal
-- `accepted`: `held_for_quality_assessment` (template or portfolio pacing). A held message
-- stays `accepted` (no `sent` until Meta releases it), is counted "held by Meta", and is never
-- put back in the queue by crash recovery.
ALTER TABLE messages ADD COLUMN meta_status TEXT;
-- The `pricing` object of the latest status that carried one, as received (JSON), and its
-- `category` (what Meta charged: marketing, marketing_lite, utility, service, …).
ALTER TABLE messages ADD COLUMN pricing TEXT;
ALTER TABLE messages ADD COLUMN pricing_category TEXT;
-- How many times Meta's per-user marketing limit (131049) sent this message back for later.
ALTER TABLE messages ADD COLUMN capped_times INTEGER NOT NULL DEFAULT 0;
-- Opt-out keywords of the application: a JSON array of folded keywords; NULL = the defaults.
ALTER TABLE applications ADD COLUMN opt_out_keywords TEXT;
-- Text sent back (inside the window the keyword opened) when a keyword opts a contact out.
ALTER TABLE applications ADD COLUMN opt_out_reply TEXT;
