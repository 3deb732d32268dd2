-- Proven AWS accounts. A proof is a signed sts:GetCallerIdentity request carrying one of these
-- nonces; a nonce is used once, within five minutes of its issue.
CREATE TABLE proof_nonces (
    nonce TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX proof_nonces_by_age ON proof_nonces (created_at);
-- Whether grants and activations of a license must prove their account: 'default' (when the
-- license names accounts or is a trial), 'required' or 'optional'. A plan's setting is its
-- licenses' default.
ALTER TABLE licenses ADD COLUMN account_proof TEXT NOT NULL DEFAULT 'default';
ALTER TABLE plans ADD COLUMN account_proof TEXT NOT NULL DEFAULT 'default';
-- The account a license was bound to by its first proven grant or activation (trials).
ALTER TABLE licenses ADD COLUMN proven_account TEXT;
-- Who STS said made a proven grant or activation.
ALTER TABLE grants ADD COLUMN proven_arn TEXT;
ALTER TABLE installations ADD COLUMN proven_arn TEXT;
-- One trial per app and *proven* account: written at the trial license's first proof.
CREATE TABLE trial_accounts (
    app_id TEXT NOT NULL REFERENCES apps (id),
    aws_account TEXT NOT NULL,
    license_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, aws_account)
);
-- The account a buyer types is a hint: trials are now one per app and buyer.
CREATE TABLE trials_by_buyer (
    app_id TEXT NOT NULL REFERENCES apps (id),
    buyer_id TEXT NOT NULL REFERENCES buyers (id),
    aws_account TEXT NOT NULL,
    license_id TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, buyer_id)
);
INSERT INTO trials_by_buyer (app_id, buyer_id, aws_account, license_id, created_at)
    -- (SQLite needs a WHERE before ON CONFLICT in an INSERT ... SELECT.)
    SELECT app_id, buyer_id, aws_account, license_id, created_at FROM trials WHERE 1 = 1
    ON CONFLICT DO NOTHING;
DROP TABLE trials;
ALTER TABLE trials_by_buyer RENAME TO trials;
