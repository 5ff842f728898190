-- An account's applications are read by account, oldest first (`account_applications`, the
-- API's `GET /api/v1/applications` pages, a new application's owners): without this index
-- each read scanned every tenant's applications.
CREATE INDEX applications_account ON applications(account_id, created_at, id);
