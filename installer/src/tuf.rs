//! The installer's side of TUF: loading an app's metadata from a portal (or a kit's folder) with
//! `tough`, starting from a root pinned by the vendor's root key fingerprint, with a persistent
//! datastore so that metadata older than what this machine has seen is refused.
//!
//! What tough refuses, and so the installer: a rollback to older metadata, an expired (frozen)
//! timestamp, snapshot or targets, a snapshot and targets that do not belong together, metadata
//! larger than [`limits`] (endless data), and any role not signed by the keys the root names (a
//! portal that re-signs targets with its own key).

use std::future::Future;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use bundles::release::ReleaseTarget;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tough::schema::key::Key;
use tough::schema::{Role as _, RoleType, Root, Signed};
use tough::{
    IntoVec as _, Repository, RepositoryLoader, TargetName, Transport, TransportError,
    TransportErrorKind, TransportStream,
};
use url::Url;

/// Size limits on metadata: an app's targets list grows by about 1 KiB per release.
pub fn limits() -> tough::Limits {
    tough::Limits {
        max_root_size: 512 * 1024,
        max_targets_size: 8 * 1024 * 1024,
        max_timestamp_size: 64 * 1024,
        max_snapshot_size: 64 * 1024,
        max_root_updates: 1024,
    }
}

/// Fetches over HTTP(S) with reqwest, streaming (tough stops reading at its size limits).
#[derive(Clone, Debug)]
pub struct HttpTransport {
    http: reqwest::Client,
}

impl HttpTransport {
    /// A transport with connect and read timeouts.
    pub fn new() -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("consign-installer/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http })
    }
}

#[tough::async_trait]
impl Transport for HttpTransport {
    async fn fetch(&self, url: Url) -> std::result::Result<TransportStream, TransportError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        }
        let response = self.http.get(url.clone()).send().await.map_err(|e| {
            TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), e)
        })?;
        match response.status() {
            s if s.is_success() => {}
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::FORBIDDEN => {
                return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
            }
            s => {
                return Err(TransportError::new_with_cause(
                    TransportErrorKind::Other,
                    url,
                    std::io::Error::other(format!("the server answered {s}")),
                ));
            }
        }
        let stream = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| {
                TransportError::new_with_cause(TransportErrorKind::Other, url.clone(), e)
            })
        });
        Ok(Box::pin(stream))
    }
}

/// The file in an app's datastore that records which pinned root key anchored it.
const ANCHOR_FILE: &str = "consign-anchor.json";

/// Checks an app's anchor root (the first one a machine trusts) against the vendor's root key
/// fingerprint `pin`: the one trust decision TUF leaves to the client.
///
/// Listing the pinned key is not enough (an attacker's root can list it beside a key of its own,
/// with threshold 1, signed only by the attacker). The root is accepted only when its root role
/// is the pinned key alone, with threshold 1, and the pinned key's own signature over it
/// verifies: then the threshold is met by pinned keys and by nothing else.
pub fn check_pinned_root(root: &[u8], pin: &str) -> Result<()> {
    match pinned_root(root, pin) {
        Ok(()) => Ok(()),
        Err(PinRefusal::NotRooted(e) | PinRefusal::Refused(e)) => Err(e),
    }
}

/// Why a root is not an anchor for a pin.
enum PinRefusal {
    /// Its root role does not name the pinned key at all (a root of another key: an older
    /// root of an app that was re-anchored since, another vendor's, or the wrong pin).
    NotRooted(anyhow::Error),
    /// It names the pinned key but is not rooted in it alone, or does not verify: an attack.
    Refused(anyhow::Error),
}

fn pinned_root(root: &[u8], pin: &str) -> std::result::Result<(), PinRefusal> {
    let sentence = |why: String| {
        anyhow!(
            "the app's first root metadata is refused: {why}. Only a root whose root role is the pinned vendor key {pin} alone, signed by that key, is trusted; check --trust-root with the vendor"
        )
    };
    let refuse = |why: String| PinRefusal::Refused(sentence(why));
    let signed: Signed<Root> = serde_json::from_slice(root)
        .map_err(|e| refuse(format!("it is not valid root metadata ({e})")))?;
    let role = signed
        .signed
        .roles
        .get(&RoleType::Root)
        .ok_or_else(|| refuse("it has no root role".into()))?;
    let mut pinned = None;
    let mut others = Vec::new();
    for id in &role.keyids {
        let key = signed
            .signed
            .keys
            .get(id)
            .ok_or_else(|| refuse("its root role names a key it does not list".into()))?;
        if key.key_id().ok().as_ref() != Some(id) {
            return Err(refuse(
                "its root role names a key under another key's id".into(),
            ));
        }
        let Key::Ed25519 { keyval, .. } = key else {
            return Err(refuse(
                "its root role names a key that is not Ed25519".into(),
            ));
        };
        let public = license::PublicKey::from_bytes(keyval.public.as_ref())
            .map_err(|_| refuse("its root role names a malformed Ed25519 key".into()))?;
        let fingerprint = public.fingerprint();
        if fingerprint == pin {
            pinned = Some((id.clone(), public));
        } else {
            others.push(fingerprint);
        }
    }
    let Some((pinned_id, public)) = pinned else {
        return Err(PinRefusal::NotRooted(sentence(format!(
            "it is not rooted in the vendor key {pin} (another vendor's root, or the wrong --trust-root)"
        ))));
    };
    if !others.is_empty() {
        return Err(refuse(format!(
            "its root role also trusts {}, which the pin does not name",
            others.join(", ")
        )));
    }
    if role.keyids.len() != 1 || role.threshold.get() != 1 {
        return Err(refuse(format!(
            "its root role asks for {} signatures from {} keys, which the pinned key alone cannot give",
            role.threshold,
            role.keyids.len()
        )));
    }
    let message = signed
        .signed
        .canonical_form()
        .map_err(|e| refuse(format!("it cannot be put in canonical form ({e})")))?;
    let signed_by_pin = signed
        .signatures
        .iter()
        .any(|s| s.keyid == pinned_id && public.verify(&message, s.sig.as_ref()));
    if !signed_by_pin {
        return Err(refuse(
            "the pinned key's signature over it does not verify".into(),
        ));
    }
    // 5.2: tough checks the same root again when it loads it; refusing here first keeps a bad
    // root from ever reaching the datastore.
    signed
        .signed
        .verify_role(&signed)
        .map_err(|e| refuse(format!("its signatures do not verify ({e})")))?;
    Ok(())
}

/// What anchored an app's datastore: the pin the first root was checked against.
#[derive(Debug, Serialize, Deserialize)]
struct AnchorRecord {
    pin: String,
}

/// The root a load starts from.
enum Anchor {
    /// The newest root this machine verified on an earlier run, anchored under the same pin.
    Stored(Vec<u8>),
    /// The app's first root, fetched now and checked against the pin; the datastore is reset
    /// when it was anchored under another pin.
    First { root: Vec<u8>, reset: bool },
}

/// The root to start from: the datastore's own `root.json` when an earlier run anchored it under
/// `pin`; otherwise the oldest root that `fetch_root(n)` returns (`1.root.json`, `2.root.json`,
/// ...) that passes [`check_pinned_root`]. Roots that do not name the pinned key at all are
/// skipped (an app re-anchored in a new root key keeps its older roots); one that names it
/// but fails any other check is an attack and refused at once. A root is never fetched as an
/// anchor again once the datastore is anchored, so a portal (or a kit) that serves another
/// `1.root.json` later is not even read.
async fn anchor<F, Fut>(datastore: &Path, pin: &str, fetch_root: F) -> Result<Anchor>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Vec<u8>>>,
{
    let recorded = std::fs::read(datastore.join(ANCHOR_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<AnchorRecord>(&bytes).ok());
    if let Some(record) = &recorded
        && record.pin == pin
        && let Ok(stored) = std::fs::read(datastore.join("root.json"))
    {
        return Ok(Anchor::Stored(stored));
    }
    // A datastore anchored under another pin holds metadata from another root of trust: start
    // again. One with no record (written by an older installer) keeps its metadata, so its
    // rollback protection stays.
    let reset = recorded.is_some_and(|record| record.pin != pin);
    let mut first_refusal = None;
    for version in 1..=limits().max_root_updates {
        let root = match fetch_root(version).await {
            Ok(root) => root,
            // No more roots: the first one's refusal says what is wrong.
            Err(e) => return Err(first_refusal.unwrap_or(e)),
        };
        match pinned_root(&root, pin) {
            Ok(()) => return Ok(Anchor::First { root, reset }),
            Err(PinRefusal::NotRooted(e)) => {
                first_refusal.get_or_insert(e);
            }
            Err(PinRefusal::Refused(e)) => return Err(e),
        }
    }
    Err(first_refusal.unwrap_or_else(|| anyhow!("the app has no root metadata")))
}

/// Loads and verifies an app's repository, starting from the root this machine trusts for
/// `pin` (see [`anchor`]); newer roots are walked one by one under TUF's rules, and the newest
/// is kept in `datastore` for the next run.
pub async fn load_pinned<F, Fut>(
    pin: &str,
    fetch_root: F,
    metadata: Url,
    targets: Url,
    datastore: &Path,
    transport: impl Transport + 'static,
) -> Result<Repository>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Vec<u8>>>,
{
    let (root, first) = match anchor(datastore, pin, fetch_root).await? {
        Anchor::Stored(root) => (root, false),
        Anchor::First { root, reset } => {
            if reset {
                std::fs::remove_dir_all(datastore)
                    .with_context(|| format!("cannot reset {}", datastore.display()))?;
            }
            (root, true)
        }
    };
    let repo = load(&root, metadata, targets, datastore, transport).await?;
    if first {
        let record = serde_json::to_vec(&AnchorRecord {
            pin: pin.to_owned(),
        })?;
        std::fs::write(datastore.join(ANCHOR_FILE), record)
            .with_context(|| format!("cannot record the pinned root in {}", datastore.display()))?;
    }
    Ok(repo)
}

/// Loads and verifies an app's repository from `root`, a root already trusted (use
/// [`load_pinned`] to start from a pin); newer roots are walked one by one.
pub async fn load(
    root: &[u8],
    metadata: Url,
    targets: Url,
    datastore: &Path,
    transport: impl Transport + 'static,
) -> Result<Repository> {
    std::fs::create_dir_all(datastore)
        .with_context(|| format!("cannot create {}", datastore.display()))?;
    RepositoryLoader::new(&root, metadata.clone(), targets)
        .transport(transport)
        .limits(limits())
        .datastore(datastore)
        .load()
        .await
        .map_err(|e| refused_metadata(&metadata, &e))
}

/// Metadata the TUF client refused: the sentence, and which of the refusals a customer meets in
/// ordinary use it was, for callers that know what to advise (a kit: export a new one).
#[derive(Debug)]
pub struct MetadataRefused {
    /// What was refused and why.
    pub message: String,
    /// What kind of refusal.
    pub kind: Refusal,
}

/// The kinds of [`MetadataRefused`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Older than metadata this machine has seen: `role`, the version seen, the version offered.
    Older(String, u64, u64),
    /// Expired: `role`.
    Expired(String),
    /// Anything else.
    Other,
}

impl std::fmt::Display for MetadataRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MetadataRefused {}

fn refused_metadata(metadata: &Url, e: &tough::error::Error) -> anyhow::Error {
    use tough::error::Error as Tough;
    let kind = match e {
        Tough::OlderMetadata {
            role,
            current_version,
            new_version,
            ..
        } => Refusal::Older(role.to_string(), *current_version, *new_version),
        Tough::ExpiredMetadata { role, .. } => Refusal::Expired(role.to_string()),
        _ => Refusal::Other,
    };
    anyhow::Error::new(MetadataRefused {
        message: format!(
            "the release metadata at {metadata} is refused: {}",
            describe(e)
        ),
        kind,
    })
}

/// Loads an app's repository from a portal: `base` is the app's TUF folder
/// (`https://portal/tuf/{vendor}/{app}/`), with the targets under `targets/`. The first root is
/// fetched (`fetch_root(n)` for `n.root.json`) only while this machine has no root anchored
/// under `pin`.
pub async fn load_over_http<F, Fut>(
    base: &str,
    pin: &str,
    fetch_root: F,
    datastore: &Path,
) -> Result<Repository>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Vec<u8>>>,
{
    let base = if base.ends_with('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    };
    let metadata = Url::parse(&base).map_err(|e| anyhow!("{base} is not a URL: {e}"))?;
    let targets = metadata
        .join("targets/")
        .map_err(|e| anyhow!("{base}: {e}"))?;
    load_pinned(
        pin,
        fetch_root,
        metadata,
        targets,
        datastore,
        HttpTransport::new()?,
    )
    .await
}

/// tough's error and its causes, as one sentence.
pub fn describe(error: &tough::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Every release the verified targets describe, newest version first.
pub fn releases(repo: &Repository) -> Result<Vec<ReleaseTarget>> {
    let mut out = Vec::new();
    for (name, target) in repo.targets().signed.targets_iter() {
        let release = ReleaseTarget::from_custom(&target.custom)
            .map_err(|e| anyhow!("target {} does not describe a release: {e}", name.raw()))?;
        out.push(release);
    }
    out.sort_by(|a, b| b.version.cmp(&a.version));
    Ok(out)
}

/// Reads a release's signed manifest through TUF (length and SHA-256 checked against the signed
/// target before anything is returned).
pub async fn read_manifest(repo: &Repository, release: &ReleaseTarget) -> Result<Vec<u8>> {
    let name = TargetName::new(bundles::release::target_name(
        release.app.as_str(),
        &release.version,
    ))
    .map_err(|e| anyhow!("{e}"))?;
    let stream = repo
        .read_target(&name)
        .await
        .map_err(|e| anyhow!("cannot read {}: {}", name.raw(), describe(&e)))?
        .ok_or_else(|| anyhow!("{} is not in the signed targets", name.raw()))?;
    stream.into_vec().await.map_err(|e| {
        anyhow!(
            "the manifest of {} is refused: {}",
            release.version,
            describe(&e)
        )
    })
}
