-- The stand-in's saved snapshots (issue 13), kept in the database rather than in one server's
-- data directory, so that every server process on the database lists, restores and deletes the
-- same snapshots. The table is outside the state: a snapshot never contains it, a restore never
-- replaces it and a reset keeps it.
CREATE TABLE saved_snapshots (
    name       TEXT PRIMARY KEY,
    saved_at   BIGINT NOT NULL,
    row_count  BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    -- The snapshot document (JSON); it holds the keys' sealed secrets, as the database does.
    body       TEXT NOT NULL
);
