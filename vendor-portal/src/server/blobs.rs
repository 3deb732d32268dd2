//! The blob store: bundle objects and other large files, on local disk (the embedded default) or
//! in S3 (`s3://bucket[/prefix]`, with `AWS_ENDPOINT_URL` honoured for emulators), through the
//! `object_store` crate so both run the same code.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutPayload};

/// The marker the portal writes at start and reads in `/readyz`.
const READY_MARKER: &str = "consign/ready";

/// A blob store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
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
            return Ok(Self {
                store: Arc::new(store),
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
