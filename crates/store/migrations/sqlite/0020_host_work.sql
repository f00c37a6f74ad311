-- Work for hypervisor hosts (issue 18): every driver call a saga step makes on a placed
-- instance is a row here, keyed by the step's call key (`{operation}/{step}/{run|undo}/{n}`),
-- so a step retried after a lost answer finds its first attempt's row instead of queueing the
-- call again. The host's agent pulls `pending` rows (they become `delivered`), runs them and
-- posts the result (`done`: `result` is the driver's answer as JSON, or `error` with
-- `error_kind` transient|permanent). A transient error is queued again by the next attempt.
CREATE TABLE host_work (
    work_key      TEXT PRIMARY KEY,
    host_id       TEXT NOT NULL,
    instance_id   TEXT,
    call          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    state         TEXT NOT NULL,
    result        TEXT,
    error         TEXT,
    error_kind    TEXT,
    deliveries    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    delivered_at  BIGINT,
    done_at       BIGINT
);
CREATE INDEX host_work_host_state ON host_work(host_id, state);
