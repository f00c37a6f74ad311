-- Volumes on hypervisor hosts (docs/hosts.md "Volumes"): the host that keeps a volume's
-- storage. Set when the volume is first attached to an instance placed on a host (the storage
-- is made there) and changed when it is attached to an instance on another host (the storage
-- moves there). NULL: no host keeps it (never attached in hosts mode, or one process runs every
-- machine itself).
ALTER TABLE volumes ADD COLUMN host_id TEXT;
