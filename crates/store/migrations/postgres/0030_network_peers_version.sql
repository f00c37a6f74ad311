-- The order of the peer lists a network's hosts are told (`set_peers`, docs/hosts.md "Peers"): each
-- list is read under the network's row, whose `peers_version` it bumps, and carries the number. An
-- agent runs items concurrently, so two lists of one network could land in either order; it now
-- keeps the highest version it applied and answers an older list without applying it. A list read
-- later has a higher version and sees every placement committed before it.
ALTER TABLE networks ADD COLUMN peers_version BIGINT NOT NULL DEFAULT 0;
