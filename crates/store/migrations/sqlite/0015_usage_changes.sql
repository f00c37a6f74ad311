-- Which resource each usage version changed, so that the live bill, holding an account's intervals
-- at some version, reloads only the resources changed since instead of every interval of the month
-- (issue 14, item 12: under a mixed load every create or delete changed the version, and each live
-- bill then reread 10,000 intervals). Written by the triggers that bump the version, one row per
-- version; the last 1,024 versions of each account are kept (a reader further behind reloads all).
-- `ON CONFLICT`: a restored snapshot can bring an account's version back below rows kept here.
CREATE TABLE usage_changes (
    account_id  TEXT NOT NULL,
    version     BIGINT NOT NULL,
    resource_id TEXT NOT NULL,
    PRIMARY KEY (account_id, version)
);

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
    DELETE FROM usage_changes WHERE account_id = NEW.account_id
        AND version <= (SELECT version FROM usage_versions WHERE account_id = NEW.account_id) - 1024;
END;

CREATE TRIGGER usage_versions_update AFTER UPDATE ON usage_intervals
BEGIN
    UPDATE usage_versions SET version = version + 1 WHERE account_id = NEW.account_id;
    INSERT INTO usage_changes (account_id, version, resource_id)
        SELECT account_id, version, NEW.resource_id FROM usage_versions WHERE account_id = NEW.account_id
        ON CONFLICT (account_id, version) DO UPDATE SET resource_id = excluded.resource_id;
    DELETE FROM usage_changes WHERE account_id = NEW.account_id
        AND version <= (SELECT version FROM usage_versions WHERE account_id = NEW.account_id) - 1024;
END;

CREATE TRIGGER usage_versions_delete AFTER DELETE ON usage_intervals
BEGIN
    UPDATE usage_versions SET version = version + 1 WHERE account_id = OLD.account_id;
    INSERT INTO usage_changes (account_id, version, resource_id)
        SELECT account_id, version, OLD.resource_id FROM usage_versions WHERE account_id = OLD.account_id
        ON CONFLICT (account_id, version) DO UPDATE SET resource_id = excluded.resource_id;
    DELETE FROM usage_changes WHERE account_id = OLD.account_id
        AND version <= (SELECT version FROM usage_versions WHERE account_id = OLD.account_id) - 1024;
END;
