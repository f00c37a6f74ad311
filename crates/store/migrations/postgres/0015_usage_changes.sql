-- Which resource each usage version changed, so that the live bill, holding an account's intervals
-- at some version, reloads only the resources changed since instead of every interval of the month
-- (issue 14, item 12: under a mixed load every create or delete changed the version, and each live
-- bill then reread 10,000 intervals). Written by the trigger that bumps the version, one row per
-- version; the last 1,024 versions of each account are kept (a reader further behind reloads all).
-- `ON CONFLICT`: a restored snapshot can bring an account's version back below rows kept here.
CREATE TABLE usage_changes (
    account_id  TEXT NOT NULL,
    version     BIGINT NOT NULL,
    resource_id TEXT NOT NULL,
    PRIMARY KEY (account_id, version)
);

CREATE OR REPLACE FUNCTION usage_versions_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    account TEXT;
    resource TEXT;
    v BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO usage_versions (account_id, version) VALUES (NEW.account_id, 1)
            ON CONFLICT (account_id) DO UPDATE SET version = usage_versions.version + 1
            RETURNING version INTO v;
        account := NEW.account_id;
        resource := NEW.resource_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE usage_versions SET version = version + 1 WHERE account_id = OLD.account_id RETURNING version INTO v;
        account := OLD.account_id;
        resource := OLD.resource_id;
    ELSE
        UPDATE usage_versions SET version = version + 1 WHERE account_id = NEW.account_id RETURNING version INTO v;
        account := NEW.account_id;
        resource := NEW.resource_id;
    END IF;
    IF v IS NOT NULL THEN
        INSERT INTO usage_changes (account_id, version, resource_id) VALUES (account, v, resource)
            ON CONFLICT (account_id, version) DO UPDATE SET resource_id = EXCLUDED.resource_id;
        DELETE FROM usage_changes WHERE account_id = account AND version <= v - 1024;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
