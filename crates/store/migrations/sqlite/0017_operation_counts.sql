-- How many operations each account has, kept by triggers (as instance_counts, migration 0003), so
-- that the unfiltered operations list reads its `total` from one row instead of counting the
-- account's operations on every request, a cost that grew with every create, action and delete
-- (issue 14, item 12).
CREATE TABLE operation_counts (
    account_id TEXT PRIMARY KEY,
    n          BIGINT NOT NULL
);
INSERT INTO operation_counts (account_id, n) SELECT account_id, COUNT(*) FROM operations GROUP BY account_id;

CREATE TRIGGER operations_count_insert AFTER INSERT ON operations
BEGIN
    INSERT INTO operation_counts (account_id, n) VALUES (NEW.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER operations_count_delete AFTER DELETE ON operations
BEGIN
    UPDATE operation_counts SET n = n - 1 WHERE account_id = OLD.account_id;
END;
