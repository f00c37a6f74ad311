-- Evacuation and full-report reconciliation (issue 18, docs/hosts.md). Kept equivalent to the
-- SQLite migration of the same number.

-- An instance being moved to another host (`admin hosts evacuate`): the target's reservation,
-- held beside the instance's placement on its source until the move switches the placement
-- over. `export` is the source agent's answer to the export call (what the target imports).
CREATE TABLE placement_moves (
    instance_id     TEXT COLLATE "C" PRIMARY KEY,
    host_id         TEXT COLLATE "C" NOT NULL,
    source_host_id  TEXT COLLATE "C" NOT NULL,
    operation_id    TEXT COLLATE "C" NOT NULL,
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
    host_id      TEXT COLLATE "C" NOT NULL,
    instance_id  TEXT COLLATE "C" NOT NULL,
    state        TEXT NOT NULL,
    reported_at  BIGINT NOT NULL,
    PRIMARY KEY (host_id, instance_id)
);

-- Whatever path deletes an instance releases the target reservation of its move.
CREATE FUNCTION instances_release_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM placement_moves WHERE instance_id = OLD.instance_id;
    RETURN OLD;
END;
$$;

CREATE TRIGGER instances_release_move AFTER DELETE ON instances
    FOR EACH ROW EXECUTE FUNCTION instances_release_move();
