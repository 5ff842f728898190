-- Dashboards (#16 item 3): each number's quality rating, messaging-limit tier and throughput
-- over time. A trigger records every change of those columns on `phone_numbers`, whatever the
-- write path (webhooks, syncs, onboarding), in the same transaction, at the row's
-- `updated_at` (the engine's clock), with the values before and after. Inserts record
-- nothing: a number's first state is the first change's `was_*` (or its current state), and
-- copying `phone_numbers` (`migrate-store`) adds no row beside the copied history.
CREATE TABLE phone_number_history (
    phone_number_id TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL,
    application_id TEXT COLLATE "C" NOT NULL,
    quality_rating TEXT,
    messaging_limit TEXT,
    throughput_mps BIGINT NOT NULL,
    was_quality_rating TEXT,
    was_messaging_limit TEXT,
    was_throughput_mps BIGINT NOT NULL,
    PRIMARY KEY (phone_number_id, at)
);

CREATE FUNCTION phone_number_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF new.quality_rating IS DISTINCT FROM old.quality_rating
       OR new.messaging_limit IS DISTINCT FROM old.messaging_limit
       OR new.throughput_mps IS DISTINCT FROM old.throughput_mps THEN
        -- Two changes in one millisecond: the later one's values, the earlier one's `was_*`.
        INSERT INTO phone_number_history (phone_number_id, at, application_id, quality_rating, messaging_limit,
            throughput_mps, was_quality_rating, was_messaging_limit, was_throughput_mps)
        VALUES (new.phone_number_id, new.updated_at, new.application_id, new.quality_rating, new.messaging_limit,
            new.throughput_mps, old.quality_rating, old.messaging_limit, old.throughput_mps)
        ON CONFLICT (phone_number_id, at) DO UPDATE SET application_id = excluded.application_id,
            quality_rating = excluded.quality_rating, messaging_limit = excluded.messaging_limit,
            throughput_mps = excluded.throughput_mps;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER phone_number_history_update AFTER UPDATE OF quality_rating, messaging_limit, throughput_mps ON phone_numbers
    FOR EACH ROW EXECUTE FUNCTION phone_number_history_change();
