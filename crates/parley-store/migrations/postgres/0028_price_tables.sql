-- Price tables (#16, cost): one per application, the JSON the API shows (`GET/PUT
-- /api/v1/pricing/rates`); no row = Parley's default table (Meta's rates of 2026-10-01).
CREATE TABLE price_tables (
    application_id TEXT PRIMARY KEY REFERENCES applications(id),
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
