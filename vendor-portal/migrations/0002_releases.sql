-- Releases, their objects, TUF metadata and key grants (issue 5).

-- One row per pushed version. A release is 'staged' from its upload until signed targets
-- metadata names it, then 'published'; installers see only published releases, so an interrupted
-- push leaves nothing half-visible. Channels, required and yanked mirror the signed targets (the
-- signed metadata is the authority; these columns serve listings).
CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    app_id TEXT NOT NULL REFERENCES apps (id),
    version TEXT NOT NULL,
    state TEXT NOT NULL,
    -- The signed manifest exactly as the release key signed it, and its signature block.
    manifest TEXT NOT NULL,
    manifest_digest TEXT NOT NULL,
    -- Its length in bytes (the TUF target's length).
    manifest_size BIGINT NOT NULL,
    signature_kid TEXT NOT NULL,
    signature TEXT NOT NULL,
    -- The release's data keys (the bundle's keys file), sealed under the master key.
    keys_sealed TEXT NOT NULL,
    release_notes TEXT NOT NULL,
    -- JSON: functions, resources, permissions, capabilities, parameters, for the marketplace.
    summary TEXT NOT NULL,
    min_installer_version TEXT NOT NULL,
    object_count BIGINT NOT NULL,
    total_size BIGINT NOT NULL,
    channels TEXT NOT NULL,
    required BIGINT NOT NULL,
    yanked_reason TEXT,
    entitlement TEXT,
    created_at BIGINT NOT NULL,
    published_at BIGINT,
    UNIQUE (app_id, version)
);

-- Which sealed objects (by ciphertext digest) a release uses: downloads are allowed only for
-- objects of a published release of the license's app.
CREATE TABLE release_objects (
    release_id TEXT NOT NULL REFERENCES releases (id),
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (release_id, digest)
);
CREATE INDEX release_objects_by_digest ON release_objects (vendor_id, digest);

-- The portal's online TUF key per vendor (signs snapshot and timestamp), sealed under the
-- master key.
CREATE TABLE tuf_keys (
    vendor_id TEXT PRIMARY KEY REFERENCES vendors (id),
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    sealed_private TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Every version of every TUF role per app, as served. Versions are never reused (the primary
-- key), so two portal processes publishing at once cannot both win.
CREATE TABLE tuf_metadata (
    app_id TEXT NOT NULL REFERENCES apps (id),
    role TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, role, version)
);

-- Key grants: one per fresh installer key. A reused public key is a replayed request.
CREATE TABLE grants (
    public_key TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL REFERENCES vendors (id),
    license_id TEXT NOT NULL REFERENCES licenses (id),
    release_id TEXT NOT NULL REFERENCES releases (id),
    aws_account TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX grants_by_license ON grants (license_id);
