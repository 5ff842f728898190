-- Inbound media claims name their node (hostile cases, 2026-12-06): a fetch claimed by a node
-- that was killed mid-download is taken again as soon as that node's `node:<id>` lease has
-- lapsed (seconds), not when the claim's five-minute lease ends. NULL: claimed by a node
-- that held no node lease yet (the claim's own lease then applies), or not claimed.
ALTER TABLE inbound_media ADD COLUMN claimed_by TEXT;
