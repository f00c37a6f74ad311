-- How many operations each account has, kept by triggers (as instance_counts, migration 0003), so
-- that the unfiltered operations list reads its `total` from one row instead of counting the
-- account's operations on every request, a cost that grew with every create, action and delete
-- (issue 14, item 12).
CREATE TABLE operation_counts (
    account_id TEXT PRIMARY KEY,
    n          BIGINT NOT NULL
);
INSERT INTO operation_counts (account_id, n) SELECT account_id, COUNT(*) FROM operations GROUP BY account_id;

CREATE FUNCTION operations_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO operation_counts (account_id, n) VALUES (NEW.account_id, 1)
            ON CONFLICT (account_id) DO UPDATE SET n = operation_counts.n + 1;
        RETURN NEW;
    END IF;
    UPDATE operation_counts SET n = n - 1 WHERE account_id = OLD.account_id;
    RETURN OLD;
END;
$$;

CREATE TRIGGER operations_count AFTER INSERT OR DELETE ON operations
    FOR EACH ROW EXECUTE FUNCTION operations_count();
