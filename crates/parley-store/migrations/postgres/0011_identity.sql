-- People (issue #12): a user's role per application, server-side console sessions, one-time
-- setup and invite links, the login throttle, and the optional TOTP second factor.

-- A user's role in an application: owner, admin, agent or viewer.
CREATE TABLE memberships (
    user_id TEXT NOT NULL REFERENCES users(id),
    application_id TEXT NOT NULL REFERENCES applications(id),
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, application_id)
);
CREATE INDEX memberships_app ON memberships(application_id);
-- Users from before roles existed own every application of their account.
INSERT INTO memberships (user_id, application_id, role, created_at)
    SELECT u.id, a.id, 'owner', u.created_at FROM users u JOIN applications a ON a.account_id = u.account_id;

-- TOTP secrets, AES-256-GCM (nonce || ciphertext) like platform tokens; `totp_pending` is a
-- secret shown for enrolment and not yet confirmed with a code.
ALTER TABLE users ADD COLUMN totp_secret BYTEA;
ALTER TABLE users ADD COLUMN totp_pending BYTEA;

-- Console sessions. The cookie carries a random token; only its SHA-256 is kept. `id` is the
-- public handle the "my sessions" list shows. `second_factor`: the password was right and
-- the TOTP code is still due (such a session opens no page).
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id),
    application_id TEXT REFERENCES applications(id),
    second_factor BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT,
    address TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);

-- One-time links: `setup` (the first owner of a fresh database) and `invite` (an email with a
-- role in an application). Only the token's SHA-256 is kept.
CREATE TABLE invites (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    application_id TEXT REFERENCES applications(id),
    email TEXT,
    role TEXT,
    invited_by TEXT REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX invites_app ON invites(application_id);

-- Failed-or-pending sign-in attempts per key (`email:…`, `addr:…`) and when the next one may run.
CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    next_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
