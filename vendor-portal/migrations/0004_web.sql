-- The web pages: listings vendors publish on the marketplace, buyers who sign up there, their
-- browser sessions, and the trials they started.

-- 1 when the vendor published the app's listing on the marketplace.
ALTER TABLE apps ADD COLUMN listed BIGINT NOT NULL DEFAULT 0;
CREATE INDEX apps_listed ON apps (listed, updated_at);

CREATE TABLE buyers (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    company TEXT NOT NULL,
    aws_account TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE buyer_sessions (
    id_hash TEXT PRIMARY KEY,
    buyer_id TEXT NOT NULL REFERENCES buyers (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The marketplace buyer a customer was created for (by a trial), if any.
ALTER TABLE customers ADD COLUMN buyer_id TEXT REFERENCES buyers (id);
CREATE INDEX customers_by_buyer ON customers (buyer_id);

-- One trial per app and AWS account, whoever asks: the row is written before the license.
CREATE TABLE trials (
    app_id TEXT NOT NULL REFERENCES apps (id),
    aws_account TEXT NOT NULL,
    buyer_id TEXT NOT NULL REFERENCES buyers (id),
    license_id TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, aws_account)
);
