-- An account's view version (0025) moves once per transaction, not once per row it changed. A
-- version only says "what the account's instance views show changed": readers outside the
-- transaction see all of its rows at once, at commit, so one new version covers them all. Bumped
-- per row, a create of ten instances, its progress saves and a delete each wrote the account's
-- version row many times over in one commit (11,320 upserts in a 10 s measured phase of the mixed
-- load of docs/perf.md, about one per changed row).
--
-- The accounts already bumped in this transaction are kept in a transaction-local setting
-- (`set_config(…, true)`), which PostgreSQL resets at commit or rollback, and at the rollback of a
-- savepoint that set it.
CREATE OR REPLACE FUNCTION view_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    acct TEXT;
    bumped TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        acct := OLD.account_id;
    ELSE
        acct := NEW.account_id;
    END IF;
    bumped := COALESCE(NULLIF(current_setting('openwinv.view_bumped', true), ''), E'\n');
    IF position(E'\n' || acct || E'\n' IN bumped) > 0 THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('openwinv.view_bumped', bumped || acct || E'\n', true);
    INSERT INTO view_versions (account_id, v) VALUES (acct, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = view_versions.v + 1;
    RETURN NULL;
END;
$$;
