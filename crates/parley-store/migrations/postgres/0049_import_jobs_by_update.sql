-- The retention sweep (`Store::prune_import_jobs`) finds imports last written before its
-- cutoff: with this index it reads only those, not every import ever made.
CREATE INDEX import_jobs_updated ON import_jobs (updated_at);
