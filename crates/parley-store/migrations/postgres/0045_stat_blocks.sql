-- PostgreSQL's statistics counters packed along time (#16): one row per key of
-- `stat_counters` without its bucket's place in a block, the counts of the block's buckets in an
-- array. An hour row holds the 24 hours of its UTC day, a day row 32 days (blocks of 32 days
-- from the epoch). A statistics read of 41 days by hour scanned and handed over ~69,000
-- counter rows (one per hour, metric and dimension combination): ~50 ms of the statement
-- alone; the same counters are ~2,900 rows here. The metrics and details stay in the key, so
-- every breakdown is kept as it was.
--
-- The triggers are unchanged: they append to `stat_deltas`, and the fold (`postgres.rs`)
-- packs the deltas into these rows. `stat_counters` becomes a view with the old table's
-- columns and rows (the non-zero counters, one per bucket), writable through its `INSTEAD OF`
-- trigger, so the recount and any query written for the old table read it unchanged.

-- The length of one bucket of a span, and of the block of buckets one row holds.
CREATE FUNCTION stat_slot_len(span TEXT) RETURNS BIGINT LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE span WHEN 'h' THEN CAST(3600000 AS BIGINT) ELSE CAST(86400000 AS BIGINT) END
$$;
CREATE FUNCTION stat_slot_count(span TEXT) RETURNS INT LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE span WHEN 'h' THEN 24 ELSE 32 END
$$;
CREATE FUNCTION stat_block(span TEXT, bucket BIGINT) RETURNS BIGINT LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT bucket - bucket % (stat_slot_len(span) * stat_slot_count(span))
$$;

-- Adds `n` at `bucket`'s place in the block `a` (a block of zeros when NULL).
CREATE FUNCTION stat_pack_step(a BIGINT[], span TEXT, bucket BIGINT, n BIGINT) RETURNS BIGINT[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    i INT := CAST((bucket - stat_block(span, bucket)) / stat_slot_len(span) AS INT) + 1;
BEGIN
    IF a IS NULL THEN
        a := array_fill(CAST(0 AS BIGINT), ARRAY[stat_slot_count(span)]);
    END IF;
    a[i] := a[i] + n;
    RETURN a;
END
$$;

-- The counters `(span, bucket, n)` of one key and block as that block's array.
CREATE AGGREGATE stat_pack(TEXT, BIGINT, BIGINT) (SFUNC = stat_pack_step, STYPE = BIGINT[]);

-- Two blocks of the same span added place by place.
CREATE FUNCTION stat_add(a BIGINT[], b BIGINT[]) RETURNS BIGINT[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF array_length(a, 1) IS DISTINCT FROM array_length(b, 1) THEN
        RAISE EXCEPTION 'statistics blocks of different lengths: % and %',
            array_length(a, 1), array_length(b, 1);
    END IF;
    FOR i IN 1 .. array_length(a, 1) LOOP
        a[i] := a[i] + b[i];
    END LOOP;
    RETURN a;
END
$$;

CREATE TABLE stat_blocks (
    application_id TEXT NOT NULL,
    span TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    metric TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    template TEXT NOT NULL,
    phone_number_id TEXT NOT NULL,
    category TEXT NOT NULL,
    country TEXT NOT NULL,
    origin TEXT NOT NULL,
    detail TEXT NOT NULL,
    n BIGINT[] NOT NULL,
    PRIMARY KEY (application_id, span, bucket, metric, campaign_id, template, phone_number_id, category, country, origin, detail)
);

-- The counters as they were, and the deltas not folded yet, packed.
INSERT INTO stat_blocks (application_id, span, bucket, metric, campaign_id, template,
    phone_number_id, category, country, origin, detail, n)
SELECT application_id, span, stat_block(span, bucket), metric, campaign_id, template,
    phone_number_id, category, country, origin, detail, stat_pack(span, bucket, n)
FROM (SELECT application_id, span, bucket, metric, campaign_id, template, phone_number_id, category, country, origin, detail, n FROM stat_counters
    UNION ALL SELECT application_id, span, bucket, metric, campaign_id, template, phone_number_id, category, country, origin, detail, n FROM stat_deltas) c
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11;

DELETE FROM stat_deltas;
DROP TABLE stat_counters;

-- The old table's rows: one per non-zero counter.
CREATE VIEW stat_counters AS
SELECT b.application_id, b.span, b.bucket + (u.i - 1) * stat_slot_len(b.span) AS bucket,
    b.metric, b.campaign_id, b.template, b.phone_number_id, b.category, b.country, b.origin,
    b.detail, u.n
FROM stat_blocks b CROSS JOIN LATERAL unnest(b.n) WITH ORDINALITY AS u(n, i)
WHERE u.n <> 0;

-- Adds `n` to one counter.
CREATE FUNCTION stat_counter_add(c stat_counters, n BIGINT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO stat_blocks (application_id, span, bucket, metric, campaign_id, template,
        phone_number_id, category, country, origin, detail, n)
    VALUES (c.application_id, c.span, stat_block(c.span, c.bucket), c.metric, c.campaign_id,
        c.template, c.phone_number_id, c.category, c.country, c.origin, c.detail,
        stat_pack_step(NULL, c.span, c.bucket, n))
    ON CONFLICT (application_id, span, bucket, metric, campaign_id, template, phone_number_id,
        category, country, origin, detail) DO UPDATE SET n = stat_add(stat_blocks.n, excluded.n)
$$;

-- Writes through the view: what a row held is taken off, what it holds after is added.
CREATE FUNCTION stat_counters_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM stat_counter_add(OLD, -OLD.n);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.span NOT IN ('h', 'd') OR NEW.bucket % stat_slot_len(NEW.span) <> 0 THEN
            RAISE EXCEPTION 'a statistics counter''s bucket is the start of its hour (span h) or UTC day (span d): span %, bucket %',
                NEW.span, NEW.bucket;
        END IF;
        PERFORM stat_counter_add(NEW, NEW.n);
        RETURN NEW;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER stat_counters_write INSTEAD OF INSERT OR UPDATE OR DELETE ON stat_counters
    FOR EACH ROW EXECUTE FUNCTION stat_counters_write();
