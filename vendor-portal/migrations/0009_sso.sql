-- Single sign-on for vendor members (OpenID Connect).
--
-- One identity provider per vendor. The client secret is sealed with the master key, as
-- webhook secrets are: the portal must read it to redeem authorization codes.
CREATE TABLE sso_providers (
    vendor_id TEXT PRIMARY KEY REFERENCES vendors (id),
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret_sealed TEXT NOT NULL,
    -- Space-separated lowercase e-mail domains whose members may sign in.
    allowed_domains TEXT NOT NULL,
    -- The ID token claim that names roles, and a JSON object from its values to roles.
    role_claim TEXT,
    role_map TEXT NOT NULL,
    -- Space-separated scopes asked for besides `openid email`.
    extra_scopes TEXT NOT NULL,
    -- 1: members sign in only through the provider (API tokens still work).
    require_sso BIGINT NOT NULL,
    -- The role of a member created at their first sign-in; NULL: no just-in-time membership.
    jit_role TEXT,
    -- When a sign-in through this issuer and client last succeeded: requiring SSO needs one.
    verified_at BIGINT,
    updated_at BIGINT NOT NULL
);
-- A sign-in under way: the browser holds the secret whose hash is id_hash (a cookie), and the
-- provider sends back state; both must match, once, within ten minutes.
CREATE TABLE sso_attempts (
    id_hash TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    state TEXT NOT NULL,
    nonce TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sso_attempts_by_expiry ON sso_attempts (expires_at);
