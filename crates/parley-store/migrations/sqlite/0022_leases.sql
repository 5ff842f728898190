-- Leases (issue #17): which node owns a phone number's sender loop, the campaign planner, a
-- periodic job, or is alive as a worker (`node:<id>`). `token` (the fencing token) grows by
-- one with every new owner and never goes back: a row is never deleted, a release only sets
-- `expires_at` to 0. Times are the database's clock (Unix ms), never a node's. A claim of
-- messages carries (owner, token) and is refused unless the row still names that owner and
-- token and has not expired; `refused` counts such refused writes, `taken_after_ms` how long
-- the lease had lapsed when its last owner took it (0 when it was free or released).
CREATE TABLE leases (
    resource TEXT PRIMARY KEY,     -- 'sender:<phone_number_id>' | 'planner' | 'job:<name>' | 'node:<id>'
    owner TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    taken_after_ms INTEGER NOT NULL DEFAULT 0,
    refused INTEGER NOT NULL DEFAULT 0
);
