-- How many instances and vCPUs each account has, kept by triggers so that every path that
-- inserts, resizes or deletes an instance keeps them right. The list's `total` and the quota check
-- read them instead of scanning the account's rows (100,000 of them, in the benchmark).
CREATE TABLE instance_counts (
    account_id TEXT COLLATE "C" PRIMARY KEY,
    n          BIGINT NOT NULL,
    vcpu       BIGINT NOT NULL
);
INSERT INTO instance_counts (account_id, n, vcpu)
    SELECT account_id, COUNT(*), COALESCE(SUM(vcpu), 0) FROM instances GROUP BY account_id;

CREATE FUNCTION instances_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO instance_counts (account_id, n, vcpu) VALUES (NEW.account_id, 1, NEW.vcpu)
            ON CONFLICT (account_id) DO UPDATE
            SET n = instance_counts.n + 1, vcpu = instance_counts.vcpu + EXCLUDED.vcpu;
        RETURN NEW;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE instance_counts SET n = n - 1, vcpu = vcpu - OLD.vcpu WHERE account_id = OLD.account_id;
        RETURN OLD;
    ELSE
        UPDATE instance_counts SET vcpu = vcpu + NEW.vcpu - OLD.vcpu WHERE account_id = NEW.account_id;
        RETURN NEW;
    END IF;
END;
$$;

CREATE TRIGGER instances_count AFTER INSERT OR DELETE ON instances
    FOR EACH ROW EXECUTE FUNCTION instances_count();
CREATE TRIGGER instances_count_vcpu AFTER UPDATE OF vcpu ON instances
    FOR EACH ROW WHEN (NEW.vcpu <> OLD.vcpu) EXECUTE FUNCTION instances_count();
