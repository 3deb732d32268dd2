//! The blob store: bundle objects and other large files, on local disk (the embedded default) or
//! in S3 (`s3://bucket[/prefix]`, with `AWS_ENDPOINT_URL` honoured for emulators), through the
//! `object_store` crate so both run the same code.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use object_store::path::Path as StorePath;
use object_store::signer::Signer as _;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload};
use tokio::io::AsyncWriteExt as _;

/// The marker the portal writes at start and reads in `/readyz`.
const READY_MARKER: &str = "consign/ready";

/// A blob store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    // The same store when it is S3, for presigned download URLs.
    s3: Option<Arc<object_store::aws::AmazonS3>>,
    // The folder when the store is local: downloads read it directly in 256 KiB reads
    // (object_store's local reads go through 8 KiB chunks, each on a blocking thread).
    local: Option<std::path::PathBuf>,
    prefix: String,
    /// The URL it was opened from, for logs.
    pub url: String,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blobs({})", self.url)
    }
}

impl Blobs {
    /// Opens `url`: `file:///abs/dir`, a plain directory path, or `s3://bucket[/prefix]`.
    pub fn open(url: &str) -> Result<Self> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("{url:?} names no bucket: use s3://BUCKET[/PREFIX]");
            }
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Ok(endpoint) =
                std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            {
                // Emulators and S3-compatible stores: path-style requests, plain HTTP allowed.
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false);
            }
            let store = builder
                .build()
                .with_context(|| format!("cannot configure the S3 blob store {url}"))?;
            let store = Arc::new(store);
            return Ok(Self {
                s3: Some(store.clone()),
                local: None,
                store,
                prefix: prefix.trim_matches('/').to_owned(),
                url: url.to_owned(),
            });
        }
        let dir = url.strip_prefix("file://").unwrap_or(url);
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the blob directory {dir}"))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("cannot open the blob directory {dir}"))?;
        Ok(Self {
            store: Arc::new(store),
            s3: None,
            local: Some(std::path::PathBuf::from(dir)),
            prefix: String::new(),
            url: url.to_owned(),
        })
    }

    fn path(&self, key: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(key)
        } else {
            StorePath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Stores `bytes` under `key`.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from_bytes(bytes))
            .await
            .with_context(|| format!("cannot write {key} to the blob store {}", self.url))?;
        Ok(())
    }

    /// Reads `key`, or `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(key)).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {key} from {}", self.url)),
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot reach the blob store {}", self.url)),
        }
    }

    /// Streams a sealed object's `body` into `key`: first under a temporary name while its sealed
    /// digest is computed, then, when that is `expected` and the length at most `max_len`, renamed
    /// into place. A body that is cut short, too long or not what it claims leaves nothing under
    /// `key`.
    pub async fn put_verified<S, E>(
        &self,
        key: &str,
        expected: &bundles::Digest,
        max_len: u64,
        body: S,
    ) -> Result<Result<u64, UploadRefused>>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.put_streamed(key, Some(expected), max_len, body).await
    }

    /// Streams `body` into `key` through a temporary name, so that `key` holds all of it or
    /// nothing; with `expected`, only a sealed object with that digest is kept.
    pub async fn put_streamed<S, E>(
        &self,
        key: &str,
        expected: Option<&bundles::Digest>,
        max_len: u64,
        mut body: S,
    ) -> Result<Result<u64, UploadRefused>>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let staging = self.path(&format!(
            "uploads/{}",
            crate::server::base::secrets::new_id("up").context("cannot name an upload")?
        ));
        let mut writer =
            object_store::buffered::BufWriter::new(self.store.clone(), staging.clone());
        let mut digester = bundles::seal::SealedDigester::new();
        let mut malformed = false;
        let mut len = 0u64;
        let refused = loop {
            match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(UploadRefused::Interrupted(e.to_string())),
                Some(Ok(chunk)) => {
                    len += chunk.len() as u64;
                    if len > max_len {
                        break Some(UploadRefused::TooLarge(max_len));
                    }
                    malformed = malformed || digester.update(&chunk).is_err();
                    if let Err(e) = writer.write_all(&chunk).await {
                        let _ = writer.abort().await;
                        return Err(e).with_context(|| {
                            format!("cannot write to the blob store {}", self.url)
                        });
                    }
                }
            }
        };
        if let Some(refused) = refused {
            let _ = writer.abort().await;
            return Ok(Err(refused));
        }
        writer
            .shutdown()
            .await
            .with_context(|| format!("cannot write to the blob store {}", self.url))?;
        let digest = (!malformed).then(|| digester.finish().ok()).flatten();
        if let Some(expected) = expected
            && digest.map(|d| d.sealed_digest) != Some(*expected)
        {
            let _ = self.store.delete(&staging).await;
            return Ok(Err(UploadRefused::DigestMismatch));
        }
        self.store
            .rename(&staging, &self.path(key))
            .await
            .with_context(|| format!("cannot move an upload into place in {}", self.url))?;
        Ok(Ok(len))
    }

    /// The keys under `prefix` (a folder, without the trailing `/`) and their sizes.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let base = self.path(prefix);
        let mut listing = self.store.list(Some(&base));
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.with_context(|| format!("cannot list {prefix} in {}", self.url))?;
            if let Some(name) = meta.location.filename() {
                out.push((name.to_owned(), meta.size));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes everything under `prefix` last written more than `age` ago; how many.
    pub async fn delete_older_than(&self, prefix: &str, age: std::time::Duration) -> Result<usize> {
        let cutoff = unix_seconds_ago(age);
        let mut listing = self.store.list(Some(&self.path(prefix)));
        let mut stale = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.with_context(|| format!("cannot list {prefix} in {}", self.url))?;
            if meta.last_modified.timestamp() < cutoff {
                stale.push(meta.location);
            }
        }
        drop(listing);
        for location in &stale {
            match self.store.delete(location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot delete {location} from {}", self.url));
                }
            }
        }
        Ok(stale.len())
    }

    /// Deletes `key` (nothing happens when it does not exist).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot delete {key} from {}", self.url)),
        }
    }

    /// The size of `key`, or `None` when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot reach the blob store {}", self.url)),
        }
    }

    /// Streams bytes `range` (or all) of `key`, never holding more than a chunk in memory.
    pub async fn stream(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>> {
        if let Some(dir) = &self.local {
            use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
            let path = dir.join(key);
            let mut file = tokio::fs::File::open(&path)
                .await
                .with_context(|| format!("cannot read {key} from {}", self.url))?;
            let range = match range {
                Some(r) => r,
                None => 0..file.metadata().await?.len(),
            };
            file.seek(std::io::SeekFrom::Start(range.start)).await?;
            let reader = file.take(range.end - range.start);
            return Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                reader,
                256 * 1024,
            )));
        }
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .with_context(|| format!("cannot read {key} from {}", self.url))?;
        Ok(Box::pin(
            result
                .into_stream()
                .map(|chunk| chunk.map_err(std::io::Error::other)),
        ))
    }

    /// A short-lived presigned GET URL for `key` when the store is S3 (`None` on local disk).
    pub async fn presigned_get(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let url = s3
            .signed_url(reqwest::Method::GET, &self.path(key), ttl)
            .await
            .with_context(|| format!("cannot presign {key} in {}", self.url))?;
        Ok(Some(url.to_string()))
    }

    /// Writes the readiness marker (at start: proves the store is writable).
    pub async fn mark_ready(&self) -> Result<()> {
        self.put(READY_MARKER, Bytes::from_static(b"ok\n")).await
    }

    /// Whether the store answers and holds the readiness marker.
    pub async fn ping(&self) -> Result<()> {
        if self.exists(READY_MARKER).await? {
            Ok(())
        } else {
            bail!("the blob store {} lost its readiness marker", self.url)
        }
    }
}

/// Why an upload was not stored.
#[derive(Debug)]
pub enum UploadRefused {
    /// The body is not a sealed object with the digest it was uploaded under.
    DigestMismatch,
    /// The body is over this many bytes.
    TooLarge(u64),
    /// The client stopped sending.
    Interrupted(String),
}

/// Unix seconds `age` ago.
fn unix_seconds_ago(age: std::time::Duration) -> i64 {
    crate::server::base::now() - i64::try_from(age.as_secs()).unwrap_or(i64::MAX)
}
