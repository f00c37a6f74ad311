-- A version of what each account's instance views show (the list and the detail), kept by
-- triggers on every table whose rows those views show: instances, the volumes attached to them,
-- and firewall attachments. Servers keep serialized pages keyed by it (docs/architecture.md,
-- "Instance page cache"): any process on the database sees a change as a new version. Versions
-- only grow: the table is outside the stand-in's state (never saved, restored or reset), and the
-- row '*' is the epoch that a reset or a restore moves on, so that no page read before one is
-- answered after it.
CREATE TABLE view_versions (
    account_id TEXT PRIMARY KEY,
    v          BIGINT NOT NULL
);
INSERT INTO view_versions (account_id, v) VALUES ('*', 1);

CREATE TRIGGER instances_view_insert AFTER INSERT ON instances
BEGIN
    INSERT INTO view_versions (account_id, v) VALUES (NEW.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = v + 1;
END;

CREATE TRIGGER instances_view_update AFTER UPDATE ON instances
BEGIN
    INSERT INTO view_versions (account_id, v) VALUES (NEW.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = v + 1;
END;

CREATE TRIGGER instances_view_delete AFTER DELETE ON instances
BEGIN
    INSERT INTO view_versions (account_id, v) VALUES (OLD.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = v + 1;
END;

-- A volume shows on an instance only while it names one.
CREATE TRIGGER volumes_view_insert AFTER INSERT ON volumes WHEN NEW.instance_id IS NOT NULL
BEGIN
    INSERT INTO view_versions (account_id, v) VALUES (NEW.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = v + 1;
END;

CREATE TRIGGER volumes_view_update AFTER UPDATE ON volumes
    WHEN NEW.instance_id IS NOT NULL OR OLD.instance_id IS NOT NULL
BEGIN
    INSERT INTO view_versions (account_id, v) VALUES (NEW.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = v + 1;
END;

CREATE TRIGGER volumes_view_delete AFTER DELETE ON volumes WHEN OLD.instance_id IS NOT NULL
BEGIN
    INSERT INTO view_versions (account_id, v) VALUES (OLD.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = v + 1;
END;

CREATE TRIGGER firewall_attachments_view_insert AFTER INSERT ON firewall_attachments
BEGIN
    INSERT INTO view_versions (account_id, v) VALUES (NEW.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = v + 1;
END;

CREATE TRIGGER firewall_attachments_view_update AFTER UPDATE ON firewall_attachments
BEGIN
    INSERT INTO view_versions (account_id, v) VALUES (NEW.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = v + 1;
END;

CREATE TRIGGER firewall_attachments_view_delete AFTER DELETE ON firewall_attachments
BEGIN
    INSERT INTO view_versions (account_id, v) VALUES (OLD.account_id, 1)
        ON CONFLICT (account_id) DO UPDATE SET v = v + 1;
END;
