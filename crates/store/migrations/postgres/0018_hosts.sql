-- Hypervisor hosts (issue 18): the machines `openwinv agent` runs on, where each instance is
-- placed, and what the agents last reported about their machines. Kept equivalent to the
-- SQLite migration of the same number.

CREATE TABLE hosts (
    host_id            TEXT COLLATE "C" PRIMARY KEY,
    name               TEXT COLLATE "C" NOT NULL UNIQUE,
    zone_id            TEXT COLLATE "C" NOT NULL,
    state              TEXT NOT NULL,
    token_sha256       TEXT NOT NULL UNIQUE,
    address            TEXT,
    vcpus              BIGINT NOT NULL DEFAULT 0,
    memory_mb          BIGINT NOT NULL DEFAULT 0,
    disk_gb            BIGINT NOT NULL DEFAULT 0,
    driver             TEXT,
    capabilities       TEXT NOT NULL DEFAULT '[]',
    agent_version      TEXT,
    registered_at      BIGINT,
    last_heartbeat_at  BIGINT,
    generation         BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL
);
CREATE INDEX hosts_zone ON hosts(zone_id, state);

CREATE TABLE placements (
    instance_id  TEXT COLLATE "C" PRIMARY KEY,
    host_id      TEXT COLLATE "C" NOT NULL REFERENCES hosts(host_id),
    vcpus        BIGINT NOT NULL,
    memory_mb    BIGINT NOT NULL,
    disk_gb      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX placements_host ON placements(host_id);

CREATE TABLE instance_runtime (
    instance_id  TEXT COLLATE "C" PRIMARY KEY,
    host_id      TEXT COLLATE "C" NOT NULL,
    state        TEXT NOT NULL,
    generation   BIGINT NOT NULL,
    reported_at  BIGINT NOT NULL
);

CREATE VIEW instance_hosts AS
    SELECT p.instance_id, p.host_id, h.name AS host_name, h.state AS host_state, h.last_heartbeat_at
    FROM placements p JOIN hosts h ON h.host_id = p.host_id;

CREATE FUNCTION instances_release_placement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM placements WHERE instance_id = OLD.instance_id;
    DELETE FROM instance_runtime WHERE instance_id = OLD.instance_id;
    RETURN OLD;
END;
$$;

CREATE TRIGGER instances_release_placement AFTER DELETE ON instances
    FOR EACH ROW EXECUTE FUNCTION instances_release_placement();
