-- An account's usage version is bumped by triggers on its usage intervals, in the statement that
-- writes them, instead of by a separate statement after each write (two round trips less for a
-- create, and no writer can forget it). UPDATE and DELETE only update an existing version row:
-- every account with intervals has one (written by its first interval's insert).
CREATE TRIGGER usage_versions_insert AFTER INSERT ON usage_intervals
BEGIN
    INSERT INTO usage_versions (account_id, version) VALUES (NEW.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER usage_versions_update AFTER UPDATE ON usage_intervals
BEGIN
    UPDATE usage_versions SET version = version + 1 WHERE account_id = NEW.account_id;
END;

CREATE TRIGGER usage_versions_delete AFTER DELETE ON usage_intervals
BEGIN
    UPDATE usage_versions SET version = version + 1 WHERE account_id = OLD.account_id;
END;
