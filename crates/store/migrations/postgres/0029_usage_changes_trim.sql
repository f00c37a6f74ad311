-- The change list's trim (migration 0015) runs at every 64th version of an account instead of at
-- every version: one statement per usage write less, and on PostgreSQL no range scan through the
-- index entries of the rows the previous trims deleted (still there until vacuum) on every write
-- (0.16 ms of each create and delete under the mixed load at 10,000 instances; docs/perf.md). The
-- list keeps between 1,024 and 1,087 versions; readers use the last 1,024 as before.
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
        IF v % 64 = 0 THEN
            DELETE FROM usage_changes WHERE account_id = account AND version <= v - 1024;
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
