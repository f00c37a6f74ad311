-- The web console (issue 17): people who sign in to an account, their sessions, and the failed
-- sign-ins counted for throttling. Shared through the database, so every server process accepts
-- the same sessions and counts the same failures.

-- A login is unique over the whole server, so the sign-in form needs no account name.
CREATE TABLE users (
    user_id       TEXT COLLATE "C" PRIMARY KEY,
    account_id    TEXT COLLATE "C" NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    login         TEXT COLLATE "C" NOT NULL UNIQUE,
    -- PHC string (argon2id); never the password.
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX users_account ON users (account_id, login);

-- A session is found by the SHA-256 of its cookie value: the database never holds a usable
-- cookie. Times are on the server clock; a session unused for the idle limit is expired.
CREATE TABLE web_sessions (
    session_hash TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

-- Failed sign-ins per key (`login:<login>` or `addr:<address>`) within a window that starts at
-- the first failure.
CREATE TABLE signin_failures (
    throttle_key TEXT COLLATE "C" PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
