//! The release's artifacts in the customer's bucket: which objects a deploy needs decrypted,
//! uploading function code and static assets, and where CloudFormation reads the template.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use bundles::{ObjectEntry, Role};
use futures_util::StreamExt as _;
use license::process::Progress;

use crate::aws::Aws;
use crate::bucket::{self, artifact_key};
use crate::release::Release;
use crate::stack::TemplateRef;

/// Templates larger than this go through S3 (CloudFormation's limit for a template body).
pub(crate) const MAX_TEMPLATE_BODY: usize = 51_200;

/// Parallel uploads.
pub(crate) const UPLOADS: usize = 4;

/// The objects a deploy needs decrypted: the template, the functions not in the bucket yet,
/// and the static assets.
pub(crate) async fn needed_objects(
    aws: &Aws,
    release: &Release,
    bucket: &str,
    bucket_exists: bool,
) -> Result<(Vec<ObjectEntry>, usize)> {
    let m = &release.manifest;
    let mut wanted = Vec::new();
    let mut skipped = 0;
    for entry in &m.objects {
        match entry.role {
            Role::Template | Role::Asset => wanted.push(entry.clone()),
            Role::Function | Role::Layer => {
                if bucket_exists
                    && bucket::is_proven(aws, bucket, &artifact_key(entry), &entry.digest).await?
                {
                    skipped += 1;
                } else if !wanted
                    .iter()
                    .any(|w: &ObjectEntry| w.digest == entry.digest)
                {
                    wanted.push(entry.clone());
                }
            }
        }
    }
    Ok((wanted, skipped))
}

/// Uploads the decrypted function zips the bucket lacks, in parallel.
pub(crate) async fn upload_functions(
    aws: &Aws,
    release: &Release,
    bucket: &str,
    files: &BTreeMap<String, PathBuf>,
) -> Result<Vec<String>> {
    let mut jobs = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in &release.manifest.objects {
        if matches!(entry.role, Role::Function | Role::Layer)
            && let Some(file) = files.get(entry.path.as_str())
            && seen.insert(artifact_key(entry))
        {
            jobs.push((artifact_key(entry), file.clone(), entry.size, &entry.digest));
        }
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let total = jobs.iter().map(|j| j.2).sum();
    let progress = Progress::new(&format!("uploading {} functions", jobs.len()), total);
    let tick = progress.tick();
    let mut tasks =
        futures_util::stream::iter(jobs.into_iter().map(|(key, file, size, digest)| {
            let tick = &tick;
            async move {
                bucket::upload(aws, bucket, &key, &file, "application/zip", digest).await?;
                tick(size);
                Ok::<_, anyhow::Error>(key)
            }
        }))
        .buffer_unordered(UPLOADS);
    let mut uploaded = Vec::new();
    while let Some(result) = tasks.next().await {
        uploaded.push(result?);
    }
    progress.finish();
    uploaded.sort();
    Ok(uploaded)
}

pub(crate) fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Uploads each asset set into the bucket its stack output names; unchanged files are skipped.
pub(crate) async fn upload_assets(
    aws: &Aws,
    release: &Release,
    outputs: &BTreeMap<String, String>,
    files: &BTreeMap<String, PathBuf>,
) -> Result<(usize, Vec<String>)> {
    let mut count = 0;
    let mut buckets = Vec::new();
    for set in &release.manifest.assets {
        let bucket = outputs.get(&set.bucket_output).ok_or_else(|| {
            anyhow!(
                "the stack has no output {} naming the bucket for the {} assets: the release is broken; tell the vendor",
                set.bucket_output,
                set.name
            )
        })?;
        buckets.push(bucket.clone());
        let prefix = format!("assets/{}/", set.name);
        for path in &set.files {
            let key = path.as_str().strip_prefix(&prefix).unwrap_or(path.as_str());
            let entry = release
                .manifest
                .object(path)
                .ok_or_else(|| anyhow!("the manifest has no object {path}"))?;
            if bucket::is_proven(aws, bucket, key, &entry.digest).await? {
                continue;
            }
            let file = files
                .get(path.as_str())
                .ok_or_else(|| anyhow!("asset {path} was not decrypted"))?;
            bucket::upload(aws, bucket, key, file, content_type(key), &entry.digest).await?;
            count += 1;
        }
    }
    Ok((count, buckets))
}

/// The template as a body, or (over CloudFormation's body limit) uploaded to the bucket.
pub(crate) async fn template_ref(
    aws: &Aws,
    bucket: &str,
    entry: &ObjectEntry,
    file: &Path,
    may_upload: bool,
) -> Result<TemplateRef> {
    let body = std::fs::read_to_string(file).context("the template is not UTF-8")?;
    if body.len() <= MAX_TEMPLATE_BODY {
        return Ok(TemplateRef::Body(body));
    }
    let key = format!("templates/{}.json", entry.digest.hex());
    if !bucket::is_proven(aws, bucket, &key, &entry.digest).await? {
        if !may_upload {
            bail!(
                "the template is over {MAX_TEMPLATE_BODY} bytes and must be read from the artifact bucket, which has no copy yet: run `installer install` (plan works once the bucket has it)"
            );
        }
        bucket::upload(aws, bucket, &key, file, "application/json", &entry.digest).await?;
    }
    Ok(TemplateRef::Url(format!(
        "https://{bucket}.s3.{}.amazonaws.com/{key}",
        aws.region
    )))
}
