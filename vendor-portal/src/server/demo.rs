//! `serve --demo`: a vendor with portal-held keys, the reference app with trial, standard and
//! enterprise plans, a customer, a license and a published release (1.0.0 on stable, built from
//! `examples/serverless-blog` and signed with the portal-held release and root keys), so that a
//! first run has something to show. The data goes through the same API handlers as everything
//! else. Starting again on the same
//! database seeds nothing twice; it only prints a fresh token.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::server::base::now;
use crate::server::domain;
use crate::server::domain::keys as vendor_keys;
use crate::server::state::AppState;
use crate::server::{app, create_vendor};
use anyhow::{Context as _, Result, bail};

/// The demo vendor's slug.
pub const VENDOR: &str = "acme";
/// The demo owner's email.
pub const OWNER: &str = "owner@acme.example";

/// What the demo seeded, to print.
#[derive(Debug)]
pub struct Demo {
    /// The owner's password, when the vendor was created now.
    pub password: Option<String>,
    /// A fresh API token.
    pub token: String,
    /// The demo license id.
    pub license_id: Option<String>,
    /// The published release (`app version`), when the reference app was found.
    pub release: Option<String>,
    /// The fingerprint of the demo vendor's root key, for `--trust-root`.
    pub root_fingerprint: String,
}

async fn call(
    state: &AppState,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> Result<Value> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))?;
    let mut request = request;
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            0,
        ))));
    let response = app(state.clone()).oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    if !status.is_success() {
        bail!(
            "seeding {path} failed ({status}): {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Seeds the demo data (once) and returns what to print.
pub async fn seed(state: &AppState) -> Result<Demo> {
    let existing = sqlx::query("SELECT v.id AS vendor_id, m.id AS member_id FROM vendors v JOIN members m ON m.vendor_id = v.id WHERE v.slug = $1 AND m.email = $2")
        .bind(VENDOR)
        .bind(OWNER)
        .fetch_optional(&state.db.pool)
        .await?;
    if let Some(row) = existing {
        use sqlx::Row as _;
        let vendor_id: String = row.try_get("vendor_id")?;
        let member_id: String = row.try_get("member_id")?;
        return fresh_token(state, &vendor_id, &member_id).await;
    }
    let vendor = create_vendor(state, VENDOR, "Acme Serverless", OWNER)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))
        .context("cannot create the demo vendor")?;
    let t = vendor.token.clone();
    call(state, &t, Method::POST, "/api/v1/apps", json!({
        "slug": "serverless-blog",
        "name": "Serverless Blog",
        "summary": "A blog on Lambda, API Gateway, DynamoDB and S3 that runs in your own AWS account.",
        "description": "Posts by user, a user list and a static front page. Every function checks its entitlement with the local license agent; nothing leaves your account.",
        "categories": ["content", "web"],
        "listed": true,
    })).await?;
    seed_plans(state, &t).await?;
    call(state, &t, Method::POST, "/api/v1/customers", json!({
        "slug": "globex", "name": "Globex Corporation", "email": "cloud-team@globex.example", "aws_accounts": ["123456789012"],
    })).await?;
    let license = call(
        state,
        &t,
        Method::POST,
        "/api/v1/licenses",
        json!({
            "customer": "globex", "app": "serverless-blog", "plan": "standard",
        }),
    )
    .await?;
    let release = publish_reference_app(state, &t, &vendor.id).await?;
    seed_other_listings(state).await?;
    Ok(Demo {
        password: Some(vendor.owner_password),
        token: vendor.token,
        license_id: license.get("id").and_then(Value::as_str).map(str::to_owned),
        release,
        root_fingerprint: vendor.root_fingerprint,
    })
}

/// A new API token for the demo owner, when the demo was seeded before.
async fn fresh_token(state: &AppState, vendor_id: &str, member_id: &str) -> Result<Demo> {
    let mut tx = domain::tx::VendorTx::begin(state, vendor_id)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    let name = format!("demo {}", now());
    let token = domain::vendors::insert_token(tx.conn(), vendor_id, member_id, &name, None)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    tx.audit_as(
        json!({"admin": "serve --demo"}),
        "localhost",
        "-",
        "token.create",
        &token.info.id,
        json!({"name": name}),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e.detail))?;
    let (keyset, _) = vendor_keys::current_keyset(tx.conn(), vendor_id)
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    tx.commit_all(&[])
        .await
        .map_err(|e| anyhow::anyhow!(e.detail))?;
    Ok(Demo {
        password: None,
        token: token.token,
        license_id: None,
        release: None,
        root_fingerprint: keyset.root.fingerprint(),
    })
}

/// The reference app's trial, standard and enterprise plans.
async fn seed_plans(state: &AppState, t: &str) -> Result<()> {
    let policies = json!({"checkin_interval": 86400, "offline_grace": 604800});
    for (slug, name, trial, days, features, extra) in [
        (
            "trial",
            "14-day trial",
            true,
            14,
            json!(["posts", "users"]),
            json!({"limits": {"users": {"max": 5}}, "max_installations": 1}),
        ),
        (
            "standard",
            "Standard",
            false,
            365,
            json!(["posts", "users"]),
            json!({"limits": {"users": {"max": 100}}, "max_installations": 3}),
        ),
        (
            "enterprise",
            "Enterprise",
            false,
            365,
            json!(["posts", "users", "sso"]),
            json!({"limits": {"users": {"max": 10000, "overage": 1000}}, "quotas": {"posts": {"amount": 100000, "period": "month"}}}),
        ),
    ] {
        let mut entitlements = extra;
        if let (Some(map), Some(p)) = (entitlements.as_object_mut(), policies.as_object()) {
            map.insert("features".into(), features);
            map.extend(p.clone());
        }
        call(state, t, Method::POST, "/api/v1/apps/serverless-blog/plans", json!({
            "slug": slug, "name": name, "trial": trial, "duration_days": days, "entitlements": entitlements,
        })).await?;
    }
    Ok(())
}

/// Two more vendors with listed apps and plans (no releases), so the catalogue has something to
/// search, filter and sort.
async fn seed_other_listings(state: &AppState) -> Result<()> {
    let vendors = [
        (
            "northwind",
            "Northwind Labs",
            "owner@northwind.example",
            vec![
                (
                    "invoice-flow",
                    "Invoice Flow",
                    "Turns purchase orders into invoices with Lambda and Step Functions, inside your account.",
                    vec!["finance", "automation"],
                ),
                (
                    "ledger-sync",
                    "Ledger Sync",
                    "Keeps your ERP ledger and a DynamoDB copy in step, without data leaving your account.",
                    vec!["finance", "data"],
                ),
            ],
        ),
        (
            "initech",
            "Initech Cloud",
            "owner@initech.example",
            vec![
                (
                    "log-lens",
                    "Log Lens",
                    "Searches CloudWatch logs across accounts with a serverless index you own.",
                    vec!["observability", "data"],
                ),
                (
                    "cost-radar",
                    "Cost Radar",
                    "Daily AWS cost anomalies, explained, from Cost Explorer data that stays with you.",
                    vec!["finance", "observability"],
                ),
                (
                    "form-relay",
                    "Form Relay",
                    "Website forms to email and Slack through API Gateway and SQS.",
                    vec!["web", "automation"],
                ),
            ],
        ),
    ];
    for (slug, name, owner, apps) in vendors {
        let vendor = create_vendor(state, slug, name, owner)
            .await
            .map_err(|e| anyhow::anyhow!(e.detail))
            .with_context(|| format!("cannot create the demo vendor {slug}"))?;
        for (app, app_name, summary, categories) in apps {
            call(state, &vendor.token, Method::POST, "/api/v1/apps", json!({
                "slug": app, "name": app_name, "summary": summary,
                "description": format!("{summary}\n\nDeployed with CloudFormation by the Consign installer; licensed per installation."),
                "categories": categories, "listed": true,
            })).await?;
            for (plan, plan_name, trial, days) in [
                ("trial", "30-day trial", true, 30),
                ("business", "Business", false, 365),
            ] {
                call(state, &vendor.token, Method::POST, &format!("/api/v1/apps/{app}/plans"), json!({
                    "slug": plan, "name": plan_name, "trial": trial, "duration_days": days,
                    "entitlements": {"features": ["core"], "max_installations": if trial { 1 } else { 5 }},
                })).await?;
            }
        }
    }
    Ok(())
}

/// The reference app's folder: `examples/serverless-blog` under the working folder, else beside
/// the source this binary was built from.
fn reference_app() -> Option<std::path::PathBuf> {
    [
        std::path::PathBuf::from("examples/serverless-blog"),
        std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/serverless-blog"
        )),
    ]
    .into_iter()
    .find(|p| p.join("consign.toml").is_file())
}

/// Builds the reference app and publishes it on stable as the demo vendor would, except that
/// the portal holds this vendor's release and root keys and signs with them.
async fn publish_reference_app(
    state: &AppState,
    token: &str,
    vendor_id: &str,
) -> Result<Option<String>> {
    let Some(dir) = reference_app() else {
        tracing::warn!("examples/serverless-blog not found: the demo has no published release");
        return Ok(None);
    };
    publish_folder(state, token, vendor_id, dir).await.map(Some)
}

/// Builds the app folder `dir` and publishes it on stable as the app's first release, signed
/// with the release and root keys the portal holds for `vendor_id` (the demo's way; also how
/// the web tests give an app a release). Returns `app version`.
pub async fn publish_folder(
    state: &AppState,
    token: &str,
    vendor_id: &str,
    dir: std::path::PathBuf,
) -> Result<String> {
    use base64::Engine as _;
    let detail = |e: domain::error::DomainError| anyhow::anyhow!(e.detail);
    let mut conn = state.db.pool.acquire().await?;
    let (kid, release_key) =
        vendor_keys::private_key(&mut conn, &state.master, vendor_id, "release", None)
            .await
            .map_err(detail)?;
    let (_, root_key) = vendor_keys::private_key(&mut conn, &state.master, vendor_id, "root", None)
        .await
        .map_err(detail)?;
    let (keyset, _) = vendor_keys::current_keyset(&mut conn, vendor_id)
        .await
        .map_err(detail)?;
    drop(conn);
    let signer = release_key.clone();
    let (bundle, keys) =
        tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, bundles::KeysFile)> {
            let mut bundle = Vec::new();
            let built = crate::appdir::load(&dir)?.build(
                &kid,
                &signer,
                license::UnixTime::now(),
                &mut bundle,
            )?;
            Ok((bundle, built.keys))
        })
        .await??;
    let reader = bundles::BundleReader::open_pinned(
        bundle.as_slice(),
        &keys.manifest,
        &bundles::Limits::default(),
    )?;
    let manifest = reader.manifest().clone();
    let manifest_bytes = reader.manifest_bytes().to_vec();
    let signature = reader.signature().clone();
    upload_objects(state, vendor_id, reader).await?;
    let app = manifest.app.as_str().to_owned();
    call(state, token, Method::PUT, &format!("/api/v1/apps/{app}/releases/{}", manifest.version), json!({
        "manifest": String::from_utf8(manifest_bytes.clone())?,
        "signature": {"kid": signature.kid, "signature": base64::engine::general_purpose::STANDARD.encode(signature.signature)},
        "keys": &*keys.to_json()?,
    })).await?;
    publish_signed(
        state,
        token,
        &app,
        (&manifest, &manifest_bytes),
        &keyset,
        (&root_key, &release_key),
    )
    .await?;
    Ok(format!("{app} {}", manifest.version))
}

/// Stores the demo bundle's sealed objects in the blob store, each checked against its digest.
async fn upload_objects(
    state: &AppState,
    vendor_id: &str,
    mut reader: bundles::BundleReader<&[u8]>,
) -> Result<()> {
    while let Some((entry, mut sealed)) = reader.next_object()? {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut sealed, &mut bytes)?;
        let chunk =
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes))]);
        state
            .blobs
            .put_verified(
                &domain::releases::object_key(vendor_id, &entry.sealed_digest),
                &entry.sealed_digest,
                u64::MAX,
                chunk,
            )
            .await?
            .map_err(|refused| {
                anyhow::anyhow!(
                    "the demo bundle's object {} was refused: {refused:?}",
                    entry.path
                )
            })?;
    }
    Ok(())
}

/// Signs and publishes the app's first TUF root (with the portal's online key) and targets
/// naming the release on `stable`, as `release push` does with a vendor's keys.
async fn publish_signed(
    state: &AppState,
    token: &str,
    app: &str,
    (manifest, manifest_bytes): (&bundles::BundleManifest, &[u8]),
    keyset: &license::Keyset,
    (root_key, release_key): (&license::SigningKey, &license::SigningKey),
) -> Result<()> {
    let tuf_state = call(
        state,
        token,
        Method::GET,
        &format!("/api/v1/apps/{app}/tuf"),
        Value::Null,
    )
    .await?;
    let online = tuf_state
        .get("online_key")
        .and_then(Value::as_str)
        .and_then(crate::server::base::secrets::unhex)
        .and_then(|b| license::PublicKey::from_bytes(&b).ok())
        .context("the portal's online key is not an Ed25519 key")?;
    let at = now();
    let release_keys: Vec<license::PublicKey> =
        keyset.release_keys.iter().map(|k| k.public_key).collect();
    let root = crate::tuf::root(
        1,
        at + crate::tuf::ROOT_LIFETIME,
        &crate::tuf::RootKeys {
            root: vec![&keyset.root],
            targets: release_keys.iter().collect(),
            online: &online,
        },
    )?;
    let root = crate::tuf::sign(root, &[root_key])?;
    call(
        state,
        token,
        Method::PUT,
        &format!("/api/v1/apps/{app}/tuf/root"),
        serde_json::to_value(&root)?,
    )
    .await?;
    let info = crate::tuf::new_release(manifest, manifest_bytes, "stable", false)?;
    let targets = crate::tuf::next_targets(None, at, |t| {
        crate::tuf::add_release(t, manifest_bytes.len() as u64, &info)
    })?;
    let targets = crate::tuf::sign(targets, &[release_key])?;
    call(
        state,
        token,
        Method::PUT,
        &format!("/api/v1/apps/{app}/tuf/targets"),
        serde_json::to_value(&targets)?,
    )
    .await?;
    Ok(())
}
