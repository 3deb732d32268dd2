-- Installations, the license agents that check in for them, and the usage they report.

-- One seat of a license: an (AWS account, region, stack) where the app runs. Every agent of that
-- stack (one per Lambda execution environment) shares it. An uninstalled stack frees its seat
-- (removed_at), and a later install there takes a new one.
CREATE TABLE installations (
    id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    license_id TEXT NOT NULL REFERENCES licenses (id),
    aws_account TEXT NOT NULL,
    region TEXT NOT NULL,
    stack TEXT NOT NULL,
    version TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    removed_at BIGINT
);
CREATE UNIQUE INDEX installations_seat ON installations (license_id, aws_account, region, stack)
    WHERE removed_at IS NULL;
CREATE INDEX installations_by_license ON installations (license_id, created_at);

-- An agent: one installation key. records_through and chain_hash are the head of its chain of
-- usage records.
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    installation_id TEXT NOT NULL REFERENCES installations (id),
    license_id TEXT NOT NULL REFERENCES licenses (id),
    public_key TEXT NOT NULL,
    version TEXT NOT NULL,
    records_through BIGINT NOT NULL,
    chain_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_checkin_at BIGINT NOT NULL
);
CREATE INDEX agents_by_installation ON agents (installation_id);

-- A usage record exactly as the agent signed it (record), with the fields totals are built from.
CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    license_id TEXT NOT NULL REFERENCES licenses (id),
    installation_id TEXT NOT NULL REFERENCES installations (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    n BIGINT NOT NULL,
    dimension TEXT NOT NULL,
    hour BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    hash TEXT NOT NULL,
    record TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX usage_by_license ON usage_records (license_id, dimension, hour);
