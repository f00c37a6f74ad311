-- How many instances and vCPUs each account has, kept by triggers so that every path that
-- inserts, resizes or deletes an instance keeps them right. The list's `total` and the quota check
-- read them instead of scanning the account's rows (100,000 of them, in the benchmark).
CREATE TABLE instance_counts (
    account_id TEXT PRIMARY KEY,
    n          BIGINT NOT NULL,
    vcpu       BIGINT NOT NULL
);
INSERT INTO instance_counts (account_id, n, vcpu)
    SELECT account_id, COUNT(*), COALESCE(SUM(vcpu), 0) FROM instances GROUP BY account_id;

CREATE TRIGGER instances_count_insert AFTER INSERT ON instances
BEGIN
    INSERT INTO instance_counts (account_id, n, vcpu) VALUES (NEW.account_id, 1, NEW.vcpu)
        ON CONFLICT (account_id) DO UPDATE SET n = n + 1, vcpu = vcpu + excluded.vcpu;
END;

CREATE TRIGGER instances_count_delete AFTER DELETE ON instances
BEGIN
    UPDATE instance_counts SET n = n - 1, vcpu = vcpu - OLD.vcpu WHERE account_id = OLD.account_id;
END;

CREATE TRIGGER instances_count_vcpu AFTER UPDATE OF vcpu ON instances WHEN NEW.vcpu <> OLD.vcpu
BEGIN
    UPDATE instance_counts SET vcpu = vcpu + NEW.vcpu - OLD.vcpu WHERE account_id = NEW.account_id;
END;
