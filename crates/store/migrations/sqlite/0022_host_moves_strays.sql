-- Evacuation and full-report reconciliation (issue 18, docs/hosts.md). Kept equivalent to the
-- PostgreSQL migration of the same number.

-- An instance being moved to another host (`admin hosts evacuate`): the target's reservation,
-- held beside the instance's placement on its source until the move switches the placement
-- over. `export` is the source agent's answer to the export call (what the target imports).
CREATE TABLE placement_moves (
    instance_id     TEXT PRIMARY KEY,
    host_id         TEXT NOT NULL,
    source_host_id  TEXT NOT NULL,
    operation_id    TEXT NOT NULL,
    vcpus           BIGINT NOT NULL,
    memory_mb       BIGINT NOT NULL,
    disk_gb         BIGINT NOT NULL,
    export          TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX placement_moves_host ON placement_moves(host_id);

-- Everything reserved on hosts: placements and the targets of moves (`moving` = 1). A host's
-- load is the sum of its rows here.
CREATE VIEW host_reservations AS
    SELECT instance_id, host_id, vcpus, memory_mb, disk_gb, 0 AS moving FROM placements
    UNION ALL
    SELECT instance_id, host_id, vcpus, memory_mb, disk_gb, 1 AS moving FROM placement_moves;

-- Machines an agent reported in its last full report that no placement on its host names.
-- Reported to the operator, destroyed only by `admin hosts destroy-stray`.
CREATE TABLE host_strays (
    host_id      TEXT NOT NULL,
    instance_id  TEXT NOT NULL,
    state        TEXT NOT NULL,
    reported_at  BIGINT NOT NULL,
    PRIMARY KEY (host_id, instance_id)
);

-- Whatever path deletes an instance releases the target reservation of its move.
CREATE TRIGGER instances_release_move AFTER DELETE ON instances
BEGIN
    DELETE FROM placement_moves WHERE instance_id = OLD.instance_id;
END;
