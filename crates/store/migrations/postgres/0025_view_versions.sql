-- A version of what each account's instance views show (the list and the detail), kept by
-- triggers on every table whose rows those views show: instances, the volumes attached to them,
-- and firewall attachments. Servers keep serialized pages keyed by it (docs/architecture.md,
-- "Instance page cache"): any process on the database sees a change as a new version. Versions
-- only grow: the table is outside the stand-in's state (never saved, restored or reset), and the
-- row '*' is the epoch that a reset or a restore moves on, so that no page read before one is
-- answered after it.
--
-- The triggers are deferred constraint triggers: they run at commit, after every row lock the
-- transaction takes, so the account's version row is locked last and briefly. (Bumped row by
-- row as the change goes, two transactions changing instances of one account could each hold
-- what the other waits for.)
CREATE TABLE view_versions (
    account_id TEXT COLLATE "C" PRIMARY KEY,
    v          BIGINT NOT NULL
);
INSERT INTO view_versions (account_id, v) VALUES ('*', 1);

CREATE FUNCTION view_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    acct TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        acct := OLD.account_id;
    ELSE
        acct := NEW.account_id;
    END IF;
    INSERT INTO view_versions (account_id, v) VALUES (acct, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = view_versions.v + 1;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER instances_view AFTER INSERT OR UPDATE OR DELETE ON instances
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION view_version_bump();

-- A volume shows on an instance only while it names one.
CREATE CONSTRAINT TRIGGER volumes_view_insert AFTER INSERT ON volumes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.instance_id IS NOT NULL)
    EXECUTE FUNCTION view_version_bump();
CREATE CONSTRAINT TRIGGER volumes_view_update AFTER UPDATE ON volumes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.instance_id IS NOT NULL OR OLD.instance_id IS NOT NULL)
    EXECUTE FUNCTION view_version_bump();
CREATE CONSTRAINT TRIGGER volumes_view_delete AFTER DELETE ON volumes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.instance_id IS NOT NULL)
    EXECUTE FUNCTION view_version_bump();

CREATE CONSTRAINT TRIGGER firewall_attachments_view AFTER INSERT OR UPDATE OR DELETE ON firewall_attachments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION view_version_bump();
