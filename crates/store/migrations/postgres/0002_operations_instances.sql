-- Durable operations (sagas), fault injection, idempotency, instances and their addresses.

-- Per-account quotas; NULL means the server default.
ALTER TABLE accounts ADD COLUMN quota_instances BIGINT;
ALTER TABLE accounts ADD COLUMN quota_vcpu BIGINT;
ALTER TABLE accounts ADD COLUMN quota_storage_gb BIGINT;

-- One row per asynchronous operation. Workers claim a row by writing lease_owner and
-- lease_until (host time, ms); progress is written after every step.
CREATE TABLE operations (
    operation_id  TEXT COLLATE "C" PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    resource_id   TEXT COLLATE "C" NOT NULL,
    -- running | succeeded | failed
    status        TEXT NOT NULL,
    -- forward: index of the next step to run; undoing: index of the next step to undo (-1 = done)
    step          BIGINT NOT NULL DEFAULT 0,
    undoing       BIGINT NOT NULL DEFAULT 0,
    -- the saga's input and whatever its steps recorded (JSON object)
    params        TEXT NOT NULL,
    error         TEXT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    -- simulated driver: the step whose delay has been waited for (-1 = none)
    waited_step   BIGINT NOT NULL DEFAULT -1,
    -- simulated driver, explicit mode: steps the operator allowed and not yet used
    permits       BIGINT NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_until   BIGINT,
    -- server clock, ms: not before this time
    next_run_at   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    finished_at   BIGINT
);
CREATE INDEX operations_due ON operations(status, next_run_at);
CREATE INDEX operations_resource ON operations(resource_id, created_at);

-- Fault injection for the simulated driver: fail step `step` of operations of kind `kind`.
CREATE TABLE faults (
    fault_id    TEXT COLLATE "C" PRIMARY KEY,
    kind        TEXT NOT NULL,
    step        TEXT NOT NULL,
    -- once | count | sticky | random
    mode        TEXT NOT NULL,
    -- count: failures left; random: per-mille probability
    remaining   BIGINT NOT NULL,
    -- permanent | transient
    effect      TEXT NOT NULL,
    seed        BIGINT NOT NULL DEFAULT 0,
    hits        BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

-- Idempotency-Key: the first answer, replayed for 24 h.
CREATE TABLE idempotency_keys (
    account_id    TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        BIGINT NOT NULL,
    headers       TEXT NOT NULL,
    body          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, key)
);
-- Expired entries are purged by age.
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);

CREATE TABLE instances (
    instance_id      TEXT COLLATE "C" PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    description      TEXT,
    -- pending | active | off | work | error
    status           TEXT NOT NULL,
    -- the power state to return to after rebuild/resize, and the last one reached: on | off
    power            TEXT NOT NULL,
    zone_id          TEXT NOT NULL,
    flavor_id        TEXT NOT NULL,
    image_id         TEXT NOT NULL,
    username         TEXT NOT NULL,
    password_sealed  TEXT NOT NULL,
    user_script_id   TEXT,
    -- JSON array of {ssh_key_id, name, fingerprint, public_key} copied at create
    ssh_keys         TEXT NOT NULL,
    attach_public_ip BIGINT NOT NULL,
    public_ip        TEXT,
    private_ip       TEXT,
    -- the addresses as integers, for CIDR filters
    public_ip_num    BIGINT,
    private_ip_num   BIGINT,
    operation_id     TEXT,
    error_reason     TEXT,
    generation       BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    stop_date        BIGINT,
    vcpu             BIGINT NOT NULL
);
CREATE INDEX instances_account ON instances(account_id, created_at, instance_id);

-- Addresses in use. Public: unique per zone pool; private: unique per account subnet.
CREATE TABLE ip_addresses (
    scope        TEXT NOT NULL,
    address      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    instance_id  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (scope, address)
);
CREATE INDEX ip_addresses_instance ON ip_addresses(instance_id);

-- One-time remote-console links.
CREATE TABLE console_tokens (
    token TEXT COLLATE "C" PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);

-- Block storage (spec §8). A volume belongs to one zone; instance_id names the instance it is
-- attached to, or is being attached to or detached from.
CREATE TABLE volumes (
    block_storage_id TEXT COLLATE "C" PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    description      TEXT,
    type             TEXT NOT NULL,
    -- GB
    size             BIGINT NOT NULL,
    -- creating | available | attaching | in-use | detaching | deleting | error
    status           TEXT NOT NULL,
    zone_id          TEXT NOT NULL,
    instance_id      TEXT,
    -- the running operation that owns the volume's state
    operation_id     TEXT,
    error_reason     TEXT,
    -- server clock, ms, when the current attachment began: the order of an instance's volumes
    attached_at      BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX volumes_account ON volumes(account_id, created_at, block_storage_id);
CREATE INDEX volumes_instance ON volumes(instance_id);
CREATE INDEX volumes_operation ON volumes(operation_id);

-- Firewalls (spec §9): one store for both path families. Rule ids come from the per-firewall
-- counter next_rule_id and are never reused within a firewall.
CREATE TABLE firewalls (
    firewall_id   TEXT COLLATE "C" PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    title         TEXT NOT NULL,
    -- as given; HTML-escaped on output
    content       TEXT NOT NULL,
    -- Y | N
    icmp          TEXT NOT NULL,
    next_rule_id  BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL
);
CREATE INDEX firewalls_account ON firewalls(account_id, created_at, firewall_id);

CREATE TABLE firewall_rules (
    firewall_id  TEXT COLLATE "C" NOT NULL REFERENCES firewalls(firewall_id) ON DELETE CASCADE,
    rule_id      BIGINT NOT NULL,
    -- IN | OUT
    bound        TEXT NOT NULL,
    -- TCP | UDP
    protocol     TEXT NOT NULL,
    -- "N" or "A-B", verbatim
    port         TEXT NOT NULL,
    -- IPv4 CIDR, verbatim (host bits allowed)
    ip           TEXT NOT NULL,
    title        TEXT NOT NULL,
    content      TEXT,
    position     BIGINT NOT NULL,
    PRIMARY KEY (firewall_id, rule_id)
);

-- Which firewalls apply to which instances. Removing an instance row removes its attachments.
CREATE TABLE firewall_attachments (
    firewall_id  TEXT COLLATE "C" NOT NULL REFERENCES firewalls(firewall_id) ON DELETE CASCADE,
    instance_id  TEXT COLLATE "C" NOT NULL REFERENCES instances(instance_id) ON DELETE CASCADE,
    account_id   TEXT NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (firewall_id, instance_id)
);
CREATE INDEX firewall_attachments_instance ON firewall_attachments(instance_id);

-- Metering (spec §10): one row per stretch of time a resource was charged at one rate, written in
-- the same transaction as the change that opened or closed it. Charged seconds are
-- [start_at, end_at) in Unix seconds; end_at is NULL while the interval is open.
CREATE TABLE usage_intervals (
    interval_id  TEXT COLLATE "C" PRIMARY KEY,
    account_id   TEXT COLLATE "C" NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    resource_id  TEXT COLLATE "C" NOT NULL,
    -- server | volume
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    -- flavor id (server) or block-storage type (volume)
    product      TEXT NOT NULL,
    -- GB (volume); 0 for servers
    size         BIGINT NOT NULL,
    -- won per hour (server); 0 for volumes
    hourly       BIGINT NOT NULL,
    -- won per month: the cap (server) or the price, per-GB price × size (volume)
    monthly      BIGINT NOT NULL,
    start_at     BIGINT NOT NULL,
    end_at       BIGINT
);
CREATE INDEX usage_intervals_account ON usage_intervals(account_id, resource_id, start_at);
CREATE INDEX usage_intervals_resource ON usage_intervals(resource_id, end_at);

-- Bumped by every transaction that writes an account's usage intervals, so that a process may
-- keep an account's intervals in memory and check with one read that they are still current.
CREATE TABLE usage_versions (
    account_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES accounts(account_id) ON DELETE CASCADE,
    version     BIGINT NOT NULL
);

-- Regular bills: one per account and calendar month (billing time zone), issued when the month
-- closes. Dates are YYYY-MM-DD in the billing time zone; money is integer won, VAT excluded in
-- price.
CREATE TABLE bills (
    bill_id        TEXT COLLATE "C" PRIMARY KEY,
    account_id     TEXT COLLATE "C" NOT NULL REFERENCES accounts(account_id) ON DELETE CASCADE,
    -- YYYY-MM
    month          TEXT COLLATE "C" NOT NULL,
    usage_start    TEXT COLLATE "C" NOT NULL,
    usage_end      TEXT COLLATE "C" NOT NULL,
    bill_date      TEXT COLLATE "C" NOT NULL,
    name           TEXT NOT NULL,
    price          BIGINT NOT NULL,
    vat            BIGINT NOT NULL,
    payment_price  BIGINT NOT NULL,
    -- NULL while unpaid
    date_paid      TEXT COLLATE "C",
    paid_at        BIGINT,
    created_at     BIGINT NOT NULL,
    UNIQUE (account_id, month)
);
CREATE INDEX bills_account ON bills(account_id, bill_date, bill_id);

-- One line per resource of a bill.
CREATE TABLE bill_items (
    bill_id      TEXT COLLATE "C" NOT NULL REFERENCES bills(bill_id) ON DELETE CASCADE,
    position     BIGINT NOT NULL,
    -- server | volume
    kind         TEXT NOT NULL,
    service_id   TEXT COLLATE "C" NOT NULL,
    name         TEXT NOT NULL,
    -- won per hour (server) or per month (volume), of the resource's latest rate in the month
    rate         BIGINT NOT NULL,
    seconds      BIGINT NOT NULL,
    price        BIGINT NOT NULL,
    usage_start  TEXT COLLATE "C" NOT NULL,
    usage_end    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (bill_id, position)
);

-- Months whose close ran to the end: every account with usage in it has its bill.
CREATE TABLE billing_months (
    month      TEXT COLLATE "C" PRIMARY KEY,
    closed_at  BIGINT NOT NULL
);
