-- Networks across hosts (issue 18, docs/network.md "Across hosts"): one row per (account, zone)
-- private network, made with the network's first address. `vni` is the network's VXLAN id on
-- every host, unique cloud-wide (4097 upwards, never reused: rows are not deleted).
CREATE TABLE networks (
    account_id  TEXT NOT NULL,
    zone_id     TEXT NOT NULL,
    vni         BIGINT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, zone_id)
);

-- A host's address on the underlay between hosts (`openwinv agent --underlay`; NULL: its
-- announced `address`), where the other hosts send its networks' VXLAN packets.
ALTER TABLE hosts ADD COLUMN underlay TEXT;

-- instance.create gained a step, `set_peers`, after `allocate_addresses` (index 2). As in 0021,
-- the saved position of every create still running moves one step on from there, so a create
-- resumed forward does not run a step again and one being undone does not skip an undo.
UPDATE operations SET step = step + 1 WHERE kind = 'instance.create' AND status = 'running' AND step >= 2;
UPDATE operations SET waited_step = waited_step + 1
    WHERE kind = 'instance.create' AND status = 'running' AND waited_step >= 2;
