-- The rows every write of an account updates (its kept instance and operation counts, its usage
-- version and change list) are now written by deferred constraint triggers: at commit, after every
-- other row lock the transaction takes, as the page cache's view versions already were (0025).
-- Before, the first statement of a transaction that inserted or deleted an instance, an operation
-- or a usage interval locked the account's count or version row until commit, so every write of
-- the account queued behind the slowest transaction holding one, and more so as the tables grew
-- (issue 14, item 12; docs/perf.md). Deferred, each row is held for the commit alone.
--
-- Nothing reads these rows inside the transaction that changes their sources (a create computes
-- its quota from the counts read before its inserts); a reset or a restore, which writes the
-- derived tables itself, sets its constraints IMMEDIATE so the triggers run row by row as before.
DROP TRIGGER instances_count ON instances;
DROP TRIGGER instances_count_vcpu ON instances;
CREATE CONSTRAINT TRIGGER instances_count AFTER INSERT OR DELETE ON instances
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION instances_count();
CREATE CONSTRAINT TRIGGER instances_count_vcpu AFTER UPDATE OF vcpu ON instances
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.vcpu <> OLD.vcpu) EXECUTE FUNCTION instances_count();

DROP TRIGGER operations_count ON operations;
CREATE CONSTRAINT TRIGGER operations_count AFTER INSERT OR DELETE ON operations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION operations_count();

DROP TRIGGER usage_versions_bump ON usage_intervals;
CREATE CONSTRAINT TRIGGER usage_versions_bump AFTER INSERT OR UPDATE OR DELETE ON usage_intervals
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION usage_versions_bump();
