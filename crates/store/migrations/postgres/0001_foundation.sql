-- Foundation: meta, accounts, access keys, catalog, SSH keys, user scripts.
-- Times are BIGINT Unix seconds; booleans are BIGINT 0/1; ids are TEXT.
-- Ids use the "C" collation so that they sort bytewise, as in SQLite: ids begin with their
-- creation time in base62, and lists order by them.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    account_id TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    enabled    BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

CREATE TABLE access_keys (
    access_key    TEXT COLLATE "C" PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    secret_sealed TEXT NOT NULL,
    enabled       BIGINT NOT NULL DEFAULT 1,
    rate_limit    BIGINT NOT NULL,
    allow         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX access_keys_account ON access_keys(account_id);

CREATE TABLE catalog_entries (
    kind     TEXT NOT NULL,
    id       TEXT COLLATE "C" NOT NULL,
    position BIGINT NOT NULL,
    body     TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE ssh_keys (
    ssh_key_id  TEXT COLLATE "C" PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX ssh_keys_account ON ssh_keys(account_id, created_at, ssh_key_id);

CREATE TABLE user_scripts (
    user_script_id TEXT COLLATE "C" PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    content        TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX user_scripts_account ON user_scripts(account_id, created_at, user_script_id);
