-- One rate-limit bucket per access key, shared by every server process on this database (spec §2:
-- the limit is per key, not per process). GCRA: `tat_us` is the theoretical arrival time of the next
-- request on the server clock, in microseconds; `granted` is the last decision (1 allowed, 0 refused),
-- written by the same statement that moves `tat_us`, so that one round trip both decides and answers.
CREATE TABLE rate_limit_buckets (
    access_key TEXT COLLATE "C" PRIMARY KEY REFERENCES access_keys(access_key) ON DELETE CASCADE,
    tat_us     BIGINT NOT NULL,
    granted    BIGINT NOT NULL
);
