-- Running `parley serve` processes (issue #17): each writes its row every few seconds while
-- it runs and deletes it when it stops cleanly. `parley migrate-store` refuses to copy a
-- database a node has been seen on recently; operators see who runs what. Not copied by
-- migrate-store (liveness belongs to one installation).
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,          -- 'api' | 'worker' | 'all'
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    workers TEXT NOT NULL,       -- the workers it runs, space-separated
    started_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
);
