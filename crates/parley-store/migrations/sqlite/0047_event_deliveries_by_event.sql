-- The retention sweep (`Store::prune_events`) deletes an old event's deliveries by the
-- event, and deleting an event checks that no delivery still names it: without this index
-- each of those read every delivery.
CREATE INDEX event_deliveries_event ON event_deliveries (event_seq);
