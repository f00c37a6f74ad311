-- The change list's trim (migration 0015) runs at every 64th version of an account instead of at
-- every version: one statement per usage write less, and on PostgreSQL no range scan through the
-- index entries of the rows the previous trims deleted (still there until vacuum) on every write
-- (0.16 ms of each create and delete under the mixed load at 10,000 instances; docs/perf.md). The
-- list keeps between 1,024 and 1,087 versions; readers use the last 1,024 as before.
DROP TRIGGER usage_versions_insert;
DROP TRIGGER usage_versions_update;
DROP TRIGGER usage_versions_delete;

CREATE TRIGGER usage_versions_insert AFTER INSERT ON usage_intervals
BEGIN
    INSERT INTO usage_versions (account_id, version) VALUES (NEW.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET version = version + 1;
    INSERT INTO usage_changes (account_id, version, resource_id)
        SELECT account_id, version, NEW.resource_id FROM usage_versions WHERE account_id = NEW.account_id
        ON CONFLICT (account_id, version) DO UPDATE SET resource_id = excluded.resource_id;
    DELETE FROM usage_changes WHERE (SELECT version FROM usage_versions WHERE account_id = NEW.account_id) % 64 = 0
        AND account_id = NEW.account_id
        AND version <= (SELECT version FROM usage_versions WHERE account_id = NEW.account_id) - 1024;
END;

CREATE TRIGGER usage_versions_update AFTER UPDATE ON usage_intervals
BEGIN
    UPDATE usage_versions SET version = version + 1 WHERE account_id = NEW.account_id;
    INSERT INTO usage_changes (account_id, version, resource_id)
        SELECT account_id, version, NEW.resource_id FROM usage_versions WHERE account_id = NEW.account_id
        ON CONFLICT (account_id, version) DO UPDATE SET resource_id = excluded.resource_id;
    DELETE FROM usage_changes WHERE (SELECT version FROM usage_versions WHERE account_id = NEW.account_id) % 64 = 0
        AND account_id = NEW.account_id
        AND version <= (SELECT version FROM usage_versions WHERE account_id = NEW.account_id) - 1024;
END;

CREATE TRIGGER usage_versions_delete AFTER DELETE ON usage_intervals
BEGIN
    UPDATE usage_versions SET version = version + 1 WHERE account_id = OLD.account_id;
    INSERT INTO usage_changes (account_id, version, resource_id)
        SELECT account_id, version, OLD.resource_id FROM usage_versions WHERE account_id = OLD.account_id
        ON CONFLICT (account_id, version) DO UPDATE SET resource_id = excluded.resource_id;
    DELETE FROM usage_changes WHERE (SELECT version FROM usage_versions WHERE account_id = OLD.account_id) % 64 = 0
        AND account_id = OLD.account_id
        AND version <= (SELECT version FROM usage_versions WHERE account_id = OLD.account_id) - 1024;
END;
