//! Building and signing an app's TUF metadata, shared by the vendor's `release` commands (root and
//! targets, signed on the vendor's machine) and the portal (snapshot and timestamp, signed with
//! its online key). The types and the verification are `tough`'s; signing is Ed25519 over tough's
//! canonical form of the `signed` object, with the vendor's own keys.
//!
//! Roles, one repository per app, consistent snapshots on:
//!
//! | role      | key                                   | expires | signed where            |
//! |-----------|---------------------------------------|---------|-------------------------|
//! | root      | the vendor's root key                 | 1 year  | vendor's machine        |
//! | targets   | the vendor's release key(s)           | 1 year  | vendor's machine        |
//! | snapshot  | the portal's online key for the vendor| 7 days  | portal, on every change |
//! | timestamp | the portal's online key for the vendor| 1 day   | portal, refreshed       |

use std::collections::HashMap;
use std::num::NonZeroU64;

use anyhow::{Context as _, Result, anyhow, bail};
use bundles::release::ReleaseTarget;
use license::{PublicKey, SigningKey};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::{Ed25519Key, Ed25519Scheme, Key};
use tough::schema::{
    Hashes, Metafile, Role, RoleKeys, RoleType, Root, Signature, Signed, Snapshot, Target, Targets,
    Timestamp,
};

/// The TUF specification version we write.
pub const SPEC_VERSION: &str = "1.0.0";
/// How long a root stays valid; `release push` re-signs it when less than [`ROOT_RENEW`] is left.
pub const ROOT_LIFETIME: i64 = 365 * 86_400;
/// Re-sign the root when it expires within this.
pub const ROOT_RENEW: i64 = 60 * 86_400;
/// How long targets metadata stays valid (re-signed by every push, promote and yank).
pub const TARGETS_LIFETIME: i64 = 365 * 86_400;
/// Snapshot lifetime, and when the portal refreshes it.
pub const SNAPSHOT_LIFETIME: i64 = 7 * 86_400;
/// Refresh the snapshot when it expires within this.
pub const SNAPSHOT_RENEW: i64 = 3 * 86_400;
/// Timestamp lifetime.
pub const TIMESTAMP_LIFETIME: i64 = 86_400;
/// Refresh the timestamp when it expires within this.
pub const TIMESTAMP_RENEW: i64 = 12 * 3600;
/// Largest metadata document the portal accepts or serves, in bytes.
pub const MAX_METADATA_LEN: usize = 8 * 1024 * 1024;

/// The TUF form of an Ed25519 public key.
pub fn tuf_key(public: &PublicKey) -> Key {
    Key::Ed25519 {
        keyval: Ed25519Key {
            public: Decoded::from(public.as_bytes().to_vec()),
            _extra: HashMap::new(),
        },
        scheme: Ed25519Scheme::Ed25519,
        _extra: HashMap::new(),
    }
}

/// The TUF key id of an Ed25519 public key (SHA-256 of the key's canonical JSON).
pub fn key_id(public: &PublicKey) -> Result<Decoded<Hex>> {
    tuf_key(public)
        .key_id()
        .map_err(|e| anyhow!("cannot compute a TUF key id: {e}"))
}

/// Signs `role` with each of `keys`.
pub fn sign<T: Role>(role: T, keys: &[&SigningKey]) -> Result<Signed<T>> {
    let signatures = sign_bytes(&role, keys)?;
    Ok(Signed {
        signed: role,
        signatures,
    })
}

fn sign_bytes<T: Role>(role: &T, keys: &[&SigningKey]) -> Result<Vec<Signature>> {
    let message = role
        .canonical_form()
        .map_err(|e| anyhow!("cannot serialize the {} role: {e}", T::TYPE))?;
    keys.iter()
        .map(|key| {
            Ok(Signature {
                keyid: key_id(&key.public_key())?,
                sig: Decoded::from(key.sign(&message).to_vec()),
            })
        })
        .collect()
}

/// A role's metadata as served: JSON bytes.
pub fn to_bytes<T: serde::Serialize>(signed: &Signed<T>) -> Result<Vec<u8>> {
    serde_json::to_vec(signed).context("cannot serialize TUF metadata")
}

/// Parses served metadata, bounded by [`MAX_METADATA_LEN`].
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<Signed<T>> {
    if bytes.len() > MAX_METADATA_LEN {
        bail!(
            "the {what} metadata is {} bytes, over the {MAX_METADATA_LEN}-byte limit",
            bytes.len()
        );
    }
    serde_json::from_slice(bytes).map_err(|e| anyhow!("the {what} metadata is not valid: {e}"))
}

/// A Unix time as a TUF expiry.
pub fn timestamp(secs: i64) -> Result<jiff::Timestamp> {
    jiff::Timestamp::from_second(secs).map_err(|e| anyhow!("{secs} is not a valid time: {e}"))
}

fn version(v: u64) -> Result<NonZeroU64> {
    NonZeroU64::new(v).ok_or_else(|| anyhow!("TUF versions start at 1"))
}

/// The keys an app's root names.
pub struct RootKeys<'a> {
    /// The vendor's root key(s): sign the root.
    pub root: Vec<&'a PublicKey>,
    /// The vendor's release keys: sign targets.
    pub targets: Vec<&'a PublicKey>,
    /// The portal's online key: signs snapshot and timestamp.
    pub online: &'a PublicKey,
}

/// An unsigned root, version `version`, expiring at `expires`.
pub fn root(version_number: u64, expires: i64, keys: &RootKeys<'_>) -> Result<Root> {
    let mut all = HashMap::new();
    let mut ids = |list: &[&PublicKey]| -> Result<RoleKeys> {
        let mut keyids = Vec::new();
        for key in list {
            let id = key_id(key)?;
            all.insert(id.clone(), tuf_key(key));
            if !keyids.contains(&id) {
                keyids.push(id);
            }
        }
        Ok(RoleKeys {
            keyids,
            threshold: version(1)?,
            _extra: HashMap::new(),
        })
    };
    let mut roles = HashMap::new();
    roles.insert(RoleType::Root, ids(&keys.root)?);
    roles.insert(RoleType::Targets, ids(&keys.targets)?);
    roles.insert(RoleType::Snapshot, ids(&[keys.online])?);
    roles.insert(RoleType::Timestamp, ids(&[keys.online])?);
    Ok(Root {
        spec_version: SPEC_VERSION.into(),
        consistent_snapshot: true,
        version: version(version_number)?,
        expires: timestamp(expires)?,
        keys: all,
        roles,
        _extra: HashMap::new(),
    })
}

/// Does `root` name exactly these keys for its roles (so no new root is needed)?
pub fn root_matches(root: &Root, keys: &RootKeys<'_>) -> bool {
    let want = |list: &[&PublicKey]| -> Option<Vec<Decoded<Hex>>> {
        let mut ids = list
            .iter()
            .map(|k| key_id(k).ok())
            .collect::<Option<Vec<_>>>()?;
        ids.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        ids.dedup();
        Some(ids)
    };
    let have = |role: RoleType| -> Option<Vec<Decoded<Hex>>> {
        let mut ids = root.roles.get(&role)?.keyids.clone();
        ids.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        Some(ids)
    };
    [
        (RoleType::Root, want(&keys.root)),
        (RoleType::Targets, want(&keys.targets)),
        (RoleType::Snapshot, want(&[keys.online])),
        (RoleType::Timestamp, want(&[keys.online])),
    ]
    .into_iter()
    .all(|(role, ids)| ids.is_some() && have(role) == ids)
}

/// The TUF target for a release: the signed manifest's length and SHA-256, and the release's
/// signed description in `custom`.
pub fn target(manifest_len: u64, info: &ReleaseTarget) -> Result<Target> {
    let custom = match serde_json::to_value(info)? {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        _ => bail!("a release target must serialize to an object"),
    };
    Ok(Target {
        length: manifest_len,
        hashes: Hashes {
            sha256: Decoded::from(info.manifest.bytes().to_vec()),
            _extra: HashMap::new(),
        },
        custom,
        _extra: HashMap::new(),
    })
}

/// The release a target describes.
pub fn release_of(target: &Target) -> Result<ReleaseTarget> {
    ReleaseTarget::from_custom(&target.custom)
        .map_err(|e| anyhow!("a target does not describe a Consign release: {e}"))
}

/// Unsigned targets metadata: `previous`' targets (if any) with `change` applied, one version up.
pub fn next_targets(
    previous: Option<&Targets>,
    now: i64,
    change: impl FnOnce(&mut Targets) -> Result<()>,
) -> Result<Targets> {
    let next_version = previous.map_or(1, |t| t.version.get() + 1);
    let mut targets = Targets::new(
        SPEC_VERSION.into(),
        version(next_version)?,
        timestamp(now + TARGETS_LIFETIME)?,
    );
    if let Some(previous) = previous {
        targets.targets = previous.targets.clone();
    }
    change(&mut targets)?;
    Ok(targets)
}

/// Unsigned snapshot `version` naming targets version `targets_version`.
pub fn snapshot(version_number: u64, expires: i64, targets_version: u64) -> Result<Snapshot> {
    let mut snapshot = Snapshot::new(
        SPEC_VERSION.into(),
        version(version_number)?,
        timestamp(expires)?,
    );
    snapshot.meta.insert(
        "targets.json".into(),
        Metafile {
            length: None,
            hashes: None,
            version: version(targets_version)?,
            _extra: HashMap::new(),
        },
    );
    Ok(snapshot)
}

/// Unsigned timestamp `version` naming the snapshot `snapshot_bytes` (its version, length and
/// SHA-256).
pub fn timestamp_role(
    version_number: u64,
    expires: i64,
    snapshot_version: u64,
    snapshot_bytes: &[u8],
) -> Result<Timestamp> {
    let mut ts = Timestamp::new(
        SPEC_VERSION.into(),
        version(version_number)?,
        timestamp(expires)?,
    );
    ts.meta.insert(
        "snapshot.json".into(),
        Metafile {
            length: Some(snapshot_bytes.len() as u64),
            hashes: Some(Hashes {
                sha256: Decoded::from(
                    ring::digest::digest(&ring::digest::SHA256, snapshot_bytes)
                        .as_ref()
                        .to_vec(),
                ),
                _extra: HashMap::new(),
            }),
            version: version(snapshot_version)?,
            _extra: HashMap::new(),
        },
    );
    Ok(ts)
}

/// Checks that `signed` carries a threshold of valid signatures from the keys `root` names for
/// its role.
pub fn verify<T: Role + serde::Serialize>(root: &Root, signed: &Signed<T>) -> Result<()> {
    root.verify_role(signed).map_err(|e| {
        anyhow!(
            "the {} metadata is not signed by its role's keys: {e}",
            T::TYPE
        )
    })
}

/// The root key's fingerprint (`sha256:<hex>`, as `keys fingerprint` prints) of every key the
/// root role names.
pub fn root_fingerprints(root: &Root) -> Vec<String> {
    root.keys(RoleType::Root)
        .filter_map(|key| match key {
            Key::Ed25519 { keyval, .. } => PublicKey::from_bytes(keyval.public.as_ref())
                .ok()
                .map(|k| k.fingerprint()),
            _ => None,
        })
        .collect()
}

/// The signed description of a new release built from `manifest` (whose exact bytes are
/// `manifest_bytes`), published now on `channel`.
pub fn new_release(
    manifest: &bundles::BundleManifest,
    manifest_bytes: &[u8],
    channel: &str,
    required: bool,
) -> Result<ReleaseTarget> {
    Ok(ReleaseTarget {
        app: manifest.app.clone(),
        version: manifest.version.clone(),
        channels: vec![license::claims::Slug::new(channel.to_owned()).map_err(anyhow::Error::msg)?],
        min_installer_version: manifest.min_installer_version.clone(),
        entitlement: manifest.release_entitlement().cloned(),
        required,
        yanked: None,
        manifest: bundles::Digest::of(manifest_bytes),
        published_at: license::UnixTime::now().as_secs(),
    })
}

/// Adds `info`'s target (the manifest of `length` bytes) to `targets`, refusing a version that
/// is there already.
pub fn add_release(targets: &mut Targets, length: u64, info: &ReleaseTarget) -> Result<()> {
    let name = tough::TargetName::new(bundles::release::target_name(
        info.app.as_str(),
        &info.version,
    ))
    .map_err(|e| anyhow!("{e}"))?;
    if targets.targets.contains_key(&name) {
        bail!(
            "{} {} is published already; versions are immutable: bump the version",
            info.app,
            info.version
        );
    }
    targets.targets.insert(name, target(length, info)?);
    Ok(())
}
