-- An account's usage version is bumped by triggers on its usage intervals, in the statement that
-- writes them, instead of by a separate statement after each write (two round trips less for a
-- create, and no writer can forget it). UPDATE and DELETE only update an existing version row:
-- every account with intervals has one (written by its first interval's insert).
CREATE FUNCTION usage_versions_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO usage_versions (account_id, version) VALUES (NEW.account_id, 1)
            ON CONFLICT (account_id) DO UPDATE SET version = usage_versions.version + 1;
        RETURN NEW;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE usage_versions SET version = version + 1 WHERE account_id = OLD.account_id;
        RETURN OLD;
    ELSE
        UPDATE usage_versions SET version = version + 1 WHERE account_id = NEW.account_id;
        RETURN NEW;
    END IF;
END;
$$;

CREATE TRIGGER usage_versions_bump AFTER INSERT OR UPDATE OR DELETE ON usage_intervals
    FOR EACH ROW EXECUTE FUNCTION usage_versions_bump();
