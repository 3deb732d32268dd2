//! The artifact bucket, where decrypted function and layer zips (and templates too large for a
//! template body) wait for CloudFormation, and every S3 call the installer makes.
//!
//! Nothing the installer writes or reads in S3 may belong to someone else. Bucket names are
//! global, so a predictable name can be taken by any AWS account first. Hence:
//! - the bucket is named `consign-artifacts-<account>-<region>-<random>` at first install, and the
//!   name is recorded in the account (the SSM parameter [`RECORD`]); a bucket of the older, fixed
//!   name is adopted only when this account owns it;
//! - before a bucket is used, its owner is checked ([`owner`]): S3 enforces the
//!   `ExpectedBucketOwner` every call here passes, and the bucket must also be in the account's
//!   own bucket list (which emulators without that check still honour);
//! - an object already in the bucket is reused only when S3's SHA-256 checksum of it is the
//!   digest the vendor's manifest signs ([`is_proven`]); otherwise it is uploaded again, with
//!   the checksum S3 verifies on arrival.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bundles::{Digest, ObjectEntry};

use crate::aws::{Aws, is_not_found};
use crate::record;
use crate::ui::Ui;

/// The SSM parameter that records the account's artifact bucket in this region.
pub const RECORD: &str = "/consign/artifact-bucket";

/// The prefix of every artifact bucket's name.
const PREFIX: &str = "consign-artifacts-";

/// The fixed name installers before the random suffix used (adopted only when owned).
pub fn legacy_name(account: &str, region: &str) -> String {
    format!("{PREFIX}{account}-{region}")
}

/// A fresh name for this account and region: the legacy name plus 8 random hex digits (at most
/// 18 + 12 + 1 + 14 + 1 + 8 = 54 characters, within S3's 63).
pub fn new_name(account: &str, region: &str) -> Result<String> {
    let mut raw = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| anyhow!("the system's random number generator failed"))?;
    let suffix: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}-{suffix}", legacy_name(account, region)))
}

/// A function or layer artifact's key: its plaintext digest.
pub fn artifact_key(entry: &ObjectEntry) -> String {
    format!("functions/{}.zip", entry.digest.hex())
}

/// Who owns a bucket, as far as this account can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This account.
    Us,
    /// No such bucket.
    Nobody,
    /// Another AWS account.
    Someone,
}

/// Who owns `bucket`: HeadBucket with this account as the expected owner (AWS answers 403 for
/// a bucket of another account), confirmed by the account's own bucket list.
pub async fn owner(aws: &Aws, bucket: &str) -> Result<Owner> {
    let head = aws
        .s3
        .head_bucket()
        .bucket(bucket)
        .expected_bucket_owner(&aws.account)
        .send()
        .await;
    let denied = match head {
        Ok(_) => None,
        Err(e) if is_not_found(&e) => return Ok(Owner::Nobody),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => Some(e),
        Err(e) => return Err(aws.explain(e, "s3:ListBucket", &format!("arn:aws:s3:::{bucket}"))),
    };
    let listed = aws
        .s3
        .list_buckets()
        .prefix(bucket)
        .send()
        .await
        .map_err(|e| aws.explain(e, "s3:ListAllMyBuckets", "*"))?;
    let ours = listed.buckets().iter().any(|b| b.name() == Some(bucket));
    match (ours, denied) {
        (true, None) => Ok(Owner::Us),
        // Ours, but the role may not read it: say which permission is missing.
        (true, Some(e)) => Err(aws.explain(e, "s3:ListBucket", &format!("arn:aws:s3:::{bucket}"))),
        (false, _) => Ok(Owner::Someone),
    }
}

fn foreign(bucket: &str, account: &str) -> anyhow::Error {
    crate::error::refused(
        crate::error::Code::BucketNotOwned,
        format!(
            "the S3 bucket {bucket} belongs to another AWS account, not to {account}: refusing to read or write it. Nothing was changed; if {RECORD} names it, delete that parameter and run the command again to create a bucket of your own"
        ),
    )
}

/// The artifact bucket of this account and region, if it has one: the recorded name, or (for
/// installations made before names were recorded) the legacy name when this account owns it.
/// `Ok(Some((name, exists)))`; a recorded bucket another account owns is an error.
pub async fn find(aws: &Aws) -> Result<Option<(String, bool)>> {
    if let Some(name) = record::get(aws, RECORD).await? {
        if !name.starts_with(PREFIX) || name.len() > 63 {
            crate::refuse!(
                BucketNotOwned,
                "the parameter {RECORD} names {name:?}, which is not an artifact bucket: delete the parameter and run the command again"
            );
        }
        return match owner(aws, &name).await? {
            Owner::Us => Ok(Some((name, true))),
            Owner::Nobody => Ok(Some((name, false))),
            Owner::Someone => Err(foreign(&name, &aws.account)),
        };
    }
    let legacy = legacy_name(&aws.account, &aws.region);
    Ok(match owner(aws, &legacy).await? {
        Owner::Us => Some((legacy, true)),
        // A legacy-named bucket of another account is simply not ours: never touched.
        Owner::Nobody | Owner::Someone => None,
    })
}

/// The bucket a deploy uses and whether it exists: [`find`]'s, else a fresh name (recorded only
/// when [`ensure`] creates it).
pub async fn for_deploy(aws: &Aws) -> Result<(String, bool)> {
    match find(aws).await? {
        Some(found) => Ok(found),
        None => Ok((new_name(&aws.account, &aws.region)?, false)),
    }
}

/// Makes sure `bucket` exists and is recorded: creates it (encrypted, public access blocked) when
/// it does not exist; returns the name to use (another installer that recorded first wins).
/// `proven_ours` is [`for_deploy`]'s answer that the bucket exists and is this account's: then
/// only the record is made sure of.
pub async fn ensure(aws: &Aws, bucket: &str, proven_ours: bool, ui: Ui) -> Result<String> {
    // Record first, then create: two installers racing agree on the first recorded name.
    let bucket = match record::put_once(aws, RECORD, bucket, RECORD_DESCRIPTION).await? {
        Some(recorded) => recorded,
        None => bucket.to_owned(),
    };
    if proven_ours {
        return Ok(bucket);
    }
    match owner(aws, &bucket).await? {
        Owner::Us => return Ok(bucket),
        Owner::Someone => return Err(foreign(&bucket, &aws.account)),
        Owner::Nobody => {}
    }
    create(aws, &bucket).await?;
    ui.say(format!(
        "created the artifact bucket {bucket} (encrypted, public access blocked; recorded in {RECORD})"
    ));
    Ok(bucket)
}

const RECORD_DESCRIPTION: &str =
    "Consign: this account's artifact bucket in this region (the installer creates and checks it)";

async fn create(aws: &Aws, bucket: &str) -> Result<()> {
    use aws_sdk_s3::types::{
        BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule,
    };
    let arn = format!("arn:aws:s3:::{bucket}");
    // New buckets have ACLs disabled (bucket owner enforced) by AWS's default; setting it
    // here would need one more permission.
    let mut create = aws.s3.create_bucket().bucket(bucket);
    if aws.region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(aws.region.as_str()))
                .build(),
        );
    }
    if let Err(e) = create.send().await {
        if e.as_service_error()
            .is_some_and(|s| s.is_bucket_already_exists())
        {
            return Err(foreign(bucket, &aws.account));
        }
        return Err(aws.explain(e, "s3:CreateBucket", &arn));
    }
    aws.s3
        .put_public_access_block()
        .bucket(bucket)
        .expected_bucket_owner(&aws.account)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws.explain(e, "s3:PutBucketPublicAccessBlock", &arn))?;
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    aws.s3
        .put_bucket_encryption()
        .bucket(bucket)
        .expected_bucket_owner(&aws.account)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(default)
                        .build(),
                )
                .build()
                .map_err(|e| anyhow!("{e}"))?,
        )
        .send()
        .await
        .map_err(|e| aws.explain(e, "s3:PutEncryptionConfiguration", &arn))?;
    Ok(())
}

/// Whether `bucket` holds `key` with exactly the bytes whose SHA-256 is `digest`, by S3's own
/// checksum of the object. An object without a SHA-256 checksum, or with another, is not proven
/// (and is uploaded again).
pub async fn is_proven(aws: &Aws, bucket: &str, key: &str, digest: &Digest) -> Result<bool> {
    match aws
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .expected_bucket_owner(&aws.account)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
    {
        Ok(head) => Ok(head.checksum_sha256() == Some(STANDARD.encode(digest.bytes()).as_str())),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(aws.explain(e, "s3:GetObject", &format!("s3://{bucket}/{key}"))),
    }
}

/// Uploads `file` (whose SHA-256 is `digest`) as `key`, with that SHA-256 as the checksum S3
/// verifies on arrival and keeps for [`is_proven`].
pub async fn upload(
    aws: &Aws,
    bucket: &str,
    key: &str,
    file: &Path,
    content_type: &str,
    digest: &Digest,
) -> Result<()> {
    let body = aws_sdk_s3::primitives::ByteStream::from_path(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    aws.s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .expected_bucket_owner(&aws.account)
        .content_type(content_type)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(STANDARD.encode(digest.bytes()))
        .body(body)
        .send()
        .await
        .map_err(|e| aws.explain(e, "s3:PutObject", &format!("s3://{bucket}/{key}")))?;
    Ok(())
}

/// Deletes `key` from `bucket` (a missing one is fine); whether it was there to delete.
pub async fn delete_object(aws: &Aws, bucket: &str, key: &str) -> Result<bool> {
    match aws
        .s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .expected_bucket_owner(&aws.account)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(aws.explain(e, "s3:DeleteObject", &format!("s3://{bucket}/{key}"))),
    }
}

/// Deletes every object in `bucket`; how many.
pub async fn empty(aws: &Aws, bucket: &str) -> Result<usize> {
    let mut removed = 0;
    loop {
        let listed = match aws
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .expected_bucket_owner(&aws.account)
            .send()
            .await
        {
            Ok(listed) => listed,
            Err(e) if is_not_found(&e) => return Ok(removed),
            Err(e) => return Err(aws.explain(e, "s3:ListBucket", bucket)),
        };
        if listed.contents().is_empty() {
            return Ok(removed);
        }
        for key in listed.contents().iter().filter_map(|o| o.key()) {
            if delete_object(aws, bucket, key).await? {
                removed += 1;
            }
        }
    }
}

/// Deletes the (empty) artifact bucket and its record.
pub async fn delete(aws: &Aws, bucket: &str) -> Result<()> {
    aws.s3
        .delete_bucket()
        .bucket(bucket)
        .expected_bucket_owner(&aws.account)
        .send()
        .await
        .map_err(|e| aws.explain(e, "s3:DeleteBucket", bucket))?;
    record::delete(aws, RECORD).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_names_are_valid_and_unpredictable() {
        let region = "ap-southeast-3";
        let (a, b) = (
            new_name("123456789012", region).unwrap_or_default(),
            new_name("123456789012", region).unwrap_or_default(),
        );
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.starts_with("consign-artifacts-123456789012-ap-southeast-3-"));
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            );
        }
    }
}
