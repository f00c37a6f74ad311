-- Hypervisor hosts (issue 18): the machines `openwinv agent` runs on, where each instance is
-- placed, and what the agents last reported about their machines.

-- One row per host the operator added (`openwinv admin hosts add`). The agent fills the
-- description (address, capacity, driver, capabilities) when it registers, and
-- `last_heartbeat_at` (server clock, Unix seconds) every 2 s. `state` is the operator's:
-- enabled | disabled | draining. The host's token is kept as the hex SHA-256 of the token.
CREATE TABLE hosts (
    host_id            TEXT PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    zone_id            TEXT NOT NULL,
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

-- Where an instance runs: one row per placed instance, written by the placement transaction.
-- The sizes are the ones reserved (the flavor's at placement); a host's load is the sum of its
-- rows.
CREATE TABLE placements (
    instance_id  TEXT PRIMARY KEY,
    host_id      TEXT NOT NULL REFERENCES hosts(host_id),
    vcpus        BIGINT NOT NULL,
    memory_mb    BIGINT NOT NULL,
    disk_gb      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX placements_host ON placements(host_id);

-- What an agent last reported about a machine. `generation` is the agent's counter for that
-- machine: a report only replaces one with a lower generation, so a late report cannot roll
-- the state back.
CREATE TABLE instance_runtime (
    instance_id  TEXT PRIMARY KEY,
    host_id      TEXT NOT NULL,
    state        TEXT NOT NULL,
    generation   BIGINT NOT NULL,
    reported_at  BIGINT NOT NULL
);

-- An instance's host in one join: `instances LEFT JOIN instance_hosts USING (instance_id)`.
CREATE VIEW instance_hosts AS
    SELECT p.instance_id, p.host_id, h.name AS host_name, h.state AS host_state, h.last_heartbeat_at
    FROM placements p JOIN hosts h ON h.host_id = p.host_id;

-- Whatever path deletes an instance releases its reservation.
CREATE TRIGGER instances_release_placement AFTER DELETE ON instances
BEGIN
    DELETE FROM placements WHERE instance_id = OLD.instance_id;
    DELETE FROM instance_runtime WHERE instance_id = OLD.instance_id;
END;
