-- Operating a fleet the vendor cannot reach: webhooks and air-gapped usage returns.
--
-- A vendor's webhook endpoints. The secret signs every delivery (Standard Webhooks); it is
-- sealed with the master key, as signing keys are, because the portal must read it to sign.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    url TEXT NOT NULL,
    -- Space-separated event types, or '*' for every type.
    events TEXT NOT NULL,
    description TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    removed_at BIGINT
);
CREATE INDEX webhook_endpoints_by_vendor ON webhook_endpoints (vendor_id);
-- The outbox: one event, written in the transaction that made it happen (with its audit
-- entry); its id is the webhook-id of every delivery of it.
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- One event to one endpoint. A portal process claims a due delivery by setting locked_until
-- (a lease) and claimed_by in one conditional update, so each is sent by one process at a time.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    event_id TEXT NOT NULL REFERENCES webhook_events (id),
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id),
    -- pending, delivered, failed (every retry used) or cancelled (the endpoint was removed).
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    claimed_by TEXT,
    last_status BIGINT,
    last_error TEXT,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at);
-- Every attempt of a delivery, for the delivery log.
CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id),
    at BIGINT NOT NULL,
    status BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, at);
-- Events the portal notices rather than is told (a license about to expire, an installation
-- gone silent, a quota passed): each raised once per subject and occasion.
CREATE TABLE raised_events (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    occasion TEXT NOT NULL,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    at BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, occasion)
);
-- Usage files brought back from air-gapped installations, by the digest of their records.
CREATE TABLE usage_imports (
    id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    license_id TEXT NOT NULL REFERENCES licenses (id),
    agent_id TEXT NOT NULL REFERENCES agents (id),
    records BIGINT NOT NULL,
    new_records BIGINT NOT NULL,
    records_through BIGINT NOT NULL,
    digest TEXT NOT NULL,
    imported_at BIGINT NOT NULL
);
-- The vendor's support key: support bundles are sealed to it on the customer's side (X25519),
-- and only the vendor holds its secret half, so the portal stores bundles it cannot read.
CREATE TABLE support_keys (
    vendor_id TEXT PRIMARY KEY REFERENCES vendors (id),
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Sealed support bundles, stored in the blob store under blob_key.
CREATE TABLE support_bundles (
    id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    license_id TEXT NOT NULL REFERENCES licenses (id),
    customer_id TEXT NOT NULL REFERENCES customers (id),
    aws_account TEXT NOT NULL,
    region TEXT NOT NULL,
    stack TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX support_bundles_by_customer ON support_bundles (vendor_id, customer_id, created_at);
