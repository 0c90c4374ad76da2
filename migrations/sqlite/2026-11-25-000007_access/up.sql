-- Who may do what: users with a role, their API tokens, browser sessions.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    -- admin or member
    role TEXT NOT NULL,
    -- argon2id, in the PHC string format
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- A token is shown once; only its sha256 is kept (it is 256 random bits: a slow hash
-- adds nothing).
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);
-- A signed-in browser: the cookie carries the id, signed with the secret key.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX sessions_user_name ON sessions (user_name);
CREATE INDEX api_tokens_user_name ON api_tokens (user_name);
-- Values generated once and shared by every process (the session key when
-- ROSTER_SECRET_KEY is unset).
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE INDEX jobs_created_by ON jobs (created_by, created_at);
