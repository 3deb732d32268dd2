//! The installer's side of TUF: loading an app's metadata from a portal (or a kit's folder) with
//! `tough`, starting from a root pinned by the vendor's root key fingerprint, with a persistent
//! datastore so that metadata older than what this machine has seen is refused.
//!
//! What tough refuses, and so the installer: a rollback to older metadata, an expired (frozen)
//! timestamp, snapshot or targets, a snapshot and targets that do not belong together, metadata
//! larger than [`limits`] (endless data), and any role not signed by the keys the root names (a
//! portal that re-signs targets with its own key).

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use bundles::release::ReleaseTarget;
use futures_util::StreamExt as _;
use tough::schema::{Root, Signed};
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

/// Checks that `root` (an app's first root, as fetched) is signed by the vendor's root key with
/// fingerprint `pin`: the one trust decision TUF leaves to the client.
pub fn check_pinned_root(root: &[u8], pin: &str) -> Result<()> {
    let signed: Signed<Root> = serde_json::from_slice(root)
        .map_err(|e| anyhow!("the app's root metadata is not valid: {e}"))?;
    let pinned = signed
        .signed
        .keys(tough::schema::RoleType::Root)
        .any(|key| match key {
            tough::schema::key::Key::Ed25519 { keyval, .. } => {
                license::PublicKey::from_bytes(keyval.public.as_ref())
                    .is_ok_and(|k| k.fingerprint() == pin)
            }
            _ => false,
        });
    if !pinned {
        bail!(
            "the app's root metadata is not rooted in the vendor key {pin}: refusing it (check --trust-root with the vendor)"
        );
    }
    signed
        .signed
        .verify_role(&signed)
        .map_err(|e| anyhow!("the app's root metadata is not signed by its root key: {e}"))?;
    Ok(())
}

/// Loads and verifies an app's repository: `root` is the trusted root to start from (checked
/// with [`check_pinned_root`] when first fetched); newer roots are walked one by one.
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
        .map_err(|e| {
            anyhow!(
                "the release metadata at {metadata} is refused: {}",
                describe(&e)
            )
        })
}

/// Loads an app's repository from a portal: `base` is the app's TUF folder
/// (`https://portal/tuf/{vendor}/{app}/`), with the targets under `targets/`.
pub async fn load_over_http(base: &str, root: &[u8], datastore: &Path) -> Result<Repository> {
    let base = if base.ends_with('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    };
    let metadata = Url::parse(&base).map_err(|e| anyhow!("{base} is not a URL: {e}"))?;
    let targets = metadata
        .join("targets/")
        .map_err(|e| anyhow!("{base}: {e}"))?;
    load(root, metadata, targets, datastore, HttpTransport::new()?).await
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
        let custom = serde_json::Value::Object(
            target
                .custom
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        let release: ReleaseTarget = serde_json::from_value(custom)
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
