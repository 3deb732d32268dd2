//! Support bundles: the customer's installer seals a redacted bundle to the vendor's support key
//! (X25519, the wrapping key grants use) and uploads it with its license; the portal checks the
//! license, stores the sealed bytes and lists them for the vendor, who opens them on its own
//! machine with the key's secret half (`vendor-portal support open`). The portal never holds
//! that secret, so it stores what it cannot read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use utoipa::ToSchema;

use crate::server::base::now;
use crate::server::base::secrets::{new_id, sha256_hex};
use crate::server::domain::access::{Caller, RequestMeta, Role};
use crate::server::domain::error::{DomainError, DomainResult};
use crate::server::domain::licenses::verify_license;
use crate::server::domain::ratelimit;
use crate::server::domain::tx::VendorTx;
use crate::server::state::AppState;

/// The largest sealed bundle the portal stores.
pub const MAX_SEALED: usize = 32 * 1024 * 1024;
/// The largest upload request (the sealed bundle in base64, and the rest).
pub const MAX_UPLOAD_BODY: usize = MAX_SEALED / 3 * 4 + 64 * 1024;
/// Uploads per license per hour.
const UPLOADS_PER_HOUR: u64 = 20;

/// A vendor's support key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SupportKey {
    /// The X25519 public key (base64, 32 bytes).
    pub public_key: String,
    /// `sha256:` and the first 16 hex digits of its SHA-256: what installers pin (ignored when
    /// setting the key).
    #[serde(default)]
    pub fingerprint: String,
}

/// The fingerprint of a support key.
pub fn fingerprint(key: &[u8]) -> String {
    format!("sha256:{}", &sha256_hex(key)[..16])
}

/// Sets the vendor's support key (owners only).
pub async fn set_key(
    state: &AppState,
    caller: &Caller,
    body: SupportKey,
) -> DomainResult<SupportKey> {
    caller.require(Role::Owner)?;
    let key = STANDARD
        .decode(body.public_key.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| {
            DomainError::invalid(
                "public_key must be a 32-byte X25519 public key in base64 (`vendor-portal support keygen` makes one)",
            )
        })?;
    let print = fingerprint(&key);
    let encoded = STANDARD.encode(&key);
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    sqlx::query("DELETE FROM support_keys WHERE vendor_id = $1")
        .bind(&caller.vendor_id)
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "INSERT INTO support_keys (vendor_id, public_key, fingerprint, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&caller.vendor_id)
    .bind(&encoded)
    .bind(&print)
    .bind(now())
    .execute(tx.conn())
    .await?;
    tx.audit(caller, "support.key", &print, serde_json::json!({}))
        .await?;
    tx.commit_all(&[]).await?;
    Ok(SupportKey {
        public_key: encoded,
        fingerprint: print,
    })
}

/// Vendor `slug`'s support key (public).
pub async fn public_key(state: &AppState, slug: &str) -> DomainResult<SupportKey> {
    let row = sqlx::query(
        "SELECT k.public_key, k.fingerprint FROM support_keys k JOIN vendors v ON v.id = k.vendor_id WHERE v.slug = $1",
    )
    .bind(slug)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or_else(|| DomainError::not_found("support key of vendor", slug))?;
    Ok(SupportKey {
        public_key: row.try_get("public_key")?,
        fingerprint: row.try_get("fingerprint")?,
    })
}

/// A sealed bundle from an installer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// The license of the installation, armoured or compact.
    pub license: String,
    /// The stack.
    pub stack: String,
    /// The AWS account it was collected in.
    pub aws_account: String,
    /// The region.
    pub region: String,
    /// The bundle sealed to the vendor's support key (base64).
    pub sealed: String,
}

/// A stored bundle as the vendor sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StoredBundle {
    /// Its id (`sup_...`).
    pub id: String,
    /// The customer's slug.
    pub customer: String,
    /// The license it came with.
    pub license: String,
    /// The AWS account, region and stack it was collected from.
    pub aws_account: String,
    /// The region.
    pub region: String,
    /// The stack.
    pub stack: String,
    /// Sealed bytes.
    pub size: i64,
    /// SHA-256 of the sealed bytes.
    pub sha256: String,
    /// When it arrived.
    pub created_at: i64,
}

/// Stores a sealed bundle sent with a genuine license of this portal.
pub async fn upload(
    state: &AppState,
    meta: &RequestMeta,
    body: Upload,
) -> DomainResult<StoredBundle> {
    let mut conn = state.db.pool.acquire().await?;
    let license = verify_license(&mut conn, &body.license).await?;
    let license_id = license.claims.jti.as_str().to_owned();
    let customer = sqlx::query(
        "SELECT l.customer_id, c.slug FROM licenses l JOIN customers c ON c.id = l.customer_id WHERE l.id = $1 AND l.vendor_id = $2",
    )
    .bind(&license_id)
    .bind(&license.vendor_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| DomainError::not_found("license", &license_id))?;
    drop(conn);
    let ok_stack = (1..=128).contains(&body.stack.len())
        && body
            .stack
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let ok_account =
        body.aws_account.len() == 12 && body.aws_account.bytes().all(|b| b.is_ascii_digit());
    if !ok_stack || !ok_account || body.region.len() > 32 {
        return Err(DomainError::invalid(
            "stack must be a CloudFormation stack name, aws_account 12 digits and region an AWS region",
        ));
    }
    let sealed = STANDARD
        .decode(body.sealed.trim())
        .map_err(|_| DomainError::invalid("sealed must be base64"))?;
    if sealed.len() > MAX_SEALED {
        return Err(DomainError::new(
            crate::server::domain::error::Kind::TooLarge,
            "too_large",
            format!(
                "a support bundle is at most {MAX_SEALED} bytes sealed: collect a shorter --since"
            ),
        ));
    }
    if !sealed.starts_with(b"consign-wrap-v1\0") {
        return Err(DomainError::invalid(
            "sealed is not a bundle sealed to a support key: the portal stores only what it cannot read",
        ));
    }
    {
        let _turn = state.write_turn().await;
        ratelimit::hit(
            &state.db.pool,
            &format!("support:{license_id}"),
            3600,
            UPLOADS_PER_HOUR,
            "support bundles sent with this license",
        )
        .await?;
    }
    let id = new_id("sup")?;
    let blob_key = format!("support/{}/{id}", license.vendor_id);
    let sha256 = sha256_hex(&sealed);
    let size = i64::try_from(sealed.len()).map_err(DomainError::internal)?;
    state
        .blobs
        .put(&blob_key, Bytes::from(sealed))
        .await
        .map_err(|e| {
            DomainError::unavailable(format!("the blob store did not take the bundle: {e:#}"))
        })?;
    let at = now();
    let customer_id: String = customer.try_get("customer_id")?;
    let slug: String = customer.try_get("slug")?;
    let mut tx = VendorTx::begin(state, &license.vendor_id).await?;
    sqlx::query(
        "INSERT INTO support_bundles (id, vendor_id, license_id, customer_id, aws_account, region, stack, size, sha256, blob_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&id)
    .bind(&license.vendor_id)
    .bind(&license_id)
    .bind(&customer_id)
    .bind(&body.aws_account)
    .bind(&body.region)
    .bind(&body.stack)
    .bind(size)
    .bind(&sha256)
    .bind(&blob_key)
    .bind(at)
    .execute(tx.conn())
    .await?;
    tx.audit_as(
        serde_json::json!({"license": license_id, "customer": slug}),
        &meta.ip,
        &meta.request_id,
        "support.upload",
        &id,
        serde_json::json!({"stack": body.stack, "aws_account": body.aws_account, "region": body.region, "size": size}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    Ok(StoredBundle {
        id,
        customer: slug,
        license: license_id,
        aws_account: body.aws_account,
        region: body.region,
        stack: body.stack,
        size,
        sha256,
        created_at: at,
    })
}

/// The vendor's bundles, newest first (one customer's with `customer`).
pub async fn list(
    state: &AppState,
    caller: &Caller,
    customer: Option<&str>,
) -> DomainResult<Vec<StoredBundle>> {
    let rows = sqlx::query(
        "SELECT s.id, c.slug, s.license_id, s.aws_account, s.region, s.stack, s.size, s.sha256, s.created_at \
         FROM support_bundles s JOIN customers c ON c.id = s.customer_id \
         WHERE s.vendor_id = $1 AND ($2 = '' OR c.slug = $2) ORDER BY s.created_at DESC, s.id LIMIT 500",
    )
    .bind(&caller.vendor_id)
    .bind(customer.unwrap_or(""))
    .fetch_all(&state.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredBundle {
                id: r.try_get("id")?,
                customer: r.try_get("slug")?,
                license: r.try_get("license_id")?,
                aws_account: r.try_get("aws_account")?,
                region: r.try_get("region")?,
                stack: r.try_get("stack")?,
                size: r.try_get("size")?,
                sha256: r.try_get("sha256")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// The sealed bytes of bundle `id`.
pub async fn sealed(state: &AppState, caller: &Caller, id: &str) -> DomainResult<Bytes> {
    let row = sqlx::query("SELECT blob_key FROM support_bundles WHERE id = $1 AND vendor_id = $2")
        .bind(id)
        .bind(&caller.vendor_id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| DomainError::not_found("support bundle", id))?;
    let key: String = row.try_get("blob_key")?;
    state
        .blobs
        .get(&key)
        .await
        .map_err(|e| DomainError::unavailable(format!("the blob store did not answer: {e:#}")))?
        .ok_or_else(|| DomainError::not_found("support bundle", id))
}
