-- Mail to buyers and customers.
--
-- When a buyer proved they read their address (the link in the verification mail).
ALTER TABLE buyers ADD COLUMN email_verified_at BIGINT;
-- The outbox: one mail per cause, written in the transaction that caused it. `cause` is unique,
-- so a cause noticed twice (a retried request, a sweep run by two processes) queues one mail.
-- A portal process claims a due mail with a lease (locked_until), as webhook deliveries are.
CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY,
    cause TEXT NOT NULL UNIQUE,
    to_addr TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    locked_until BIGINT,
    sent_at BIGINT,
    failed_at BIGINT,
    last_error TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (sent_at, failed_at, next_attempt_at);
-- Single-use links mailed to buyers (address verification, password reset), stored hashed.
CREATE TABLE mail_tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    buyer_id TEXT NOT NULL REFERENCES buyers (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX mail_tokens_by_buyer ON mail_tokens (buyer_id, kind);
