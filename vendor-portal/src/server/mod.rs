//! The portal server: configuration, the middleware stack around the routes, start-up (database,
//! blob store, master key) and graceful shutdown. Handlers live in [`routes`], by domain.

pub mod base;
pub mod demo;
pub mod domain;
pub mod http;
pub mod routes;
pub mod state;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request, StatusCode};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use self::base::db::{Backend, Database};
use self::base::secrets::{self, MASTER_KEY_ENV, MasterKey};
use self::base::{blobs, db, now};
use self::domain::error::{DomainError, Kind};
use self::domain::keys as vendor_keys;
use self::domain::tuf as tuf_repo;
use self::http::{idempotency, metrics, proxy};
use self::state::{AppState, Limits};

/// Where the embedded defaults keep everything.
pub const DEFAULT_DATA_DIR: &str = "consign-data";

/// How to run the portal.
#[derive(Clone, Debug)]
pub struct Config {
    /// The folder for the embedded defaults (SQLite file, blobs, master key file).
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; SQLite in `data_dir` by default.
    pub database_url: Option<String>,
    /// A directory or `s3://bucket[/prefix]`; `data_dir/blobs` by default.
    pub blob_store: Option<String>,
    /// A file holding the master key; else `CONSIGN_MASTER_KEY`, else (SQLite only)
    /// `data_dir/master.key`, created on first start.
    pub master_key_file: Option<PathBuf>,
    /// Rate limits.
    pub limits: Limits,
    /// Database connections per process.
    pub max_connections: u32,
    /// An STS endpoint that account proofs may be sent to besides AWS's own (an emulator).
    pub sts_endpoint: Option<String>,
    /// How often the webhook sender looks for events nobody reports (expiring licenses, silent
    /// installations).
    pub sweep_interval: Duration,
}

impl Config {
    /// The embedded defaults under `data_dir`.
    pub fn embedded(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            database_url: None,
            blob_store: None,
            master_key_file: None,
            limits: Limits::default(),
            max_connections: 16,
            sts_endpoint: None,
            sweep_interval: Duration::from_secs(60),
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("portal.db").display()))
    }
}

/// Opens the database and blob store and checks the master key: everything a portal process or
/// an admin command needs.
pub async fn open(config: &Config) -> Result<AppState> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data folder {}",
            config.data_dir.display()
        )
    })?;
    let db = Database::connect(&config.database_url(), config.max_connections).await?;
    let master = master_key(config, &db).await?;
    let blob_url = config
        .blob_store
        .clone()
        .unwrap_or_else(|| config.data_dir.join("blobs").display().to_string());
    let blobs = blobs::Blobs::open(&blob_url)?;
    blobs
        .mark_ready()
        .await
        .with_context(|| format!("the blob store {blob_url} is not writable"))?;
    let sts = base::sts::Sts::new(config.sts_endpoint.clone())
        .context("cannot build the HTTP client for account proofs")?;
    AppState::new(db, blobs, master, config.limits.clone(), sts)
}

async fn master_key(config: &Config, db: &Database) -> Result<MasterKey> {
    let key = if let Some(path) = &config.master_key_file {
        MasterKey::from_file(path, false)?
    } else if let Ok(text) = std::env::var(MASTER_KEY_ENV) {
        MasterKey::from_text(&text)
            .with_context(|| format!("{MASTER_KEY_ENV} holds no usable master key"))?
    } else if db.backend == Backend::Sqlite {
        MasterKey::from_file(&config.data_dir.join("master.key"), true)?
    } else {
        bail!(
            "a portal on PostgreSQL needs the master key that seals vendors' signing keys, the same in every process: set {MASTER_KEY_ENV} (32 random bytes, base64url; e.g. `head -c32 /dev/urandom | basenc --base64url`) or pass --master-key-file"
        );
    };
    let check = key.check_value()?;
    let stored = db.setting_init("master_key_check", &check).await?;
    if !key.matches_check_value(&stored) {
        bail!(
            "the master key is not the one this database was created with: vendors' signing keys could not be opened; start with the original key ({MASTER_KEY_ENV} or --master-key-file)"
        );
    }
    Ok(key)
}

#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = secrets::new_id("req").ok()?;
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// The application: routes and middleware.
pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let streaming = routes::streaming_router().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        metrics::layer,
    ));
    routes::router()
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::layer))
        .fallback(|State(state): State<AppState>, uri: axum::http::Uri, headers: axum::http::HeaderMap| async move {
            if web::is_page_path(uri.path()) {
                web::not_found_page(&state, uri, headers).await
            } else {
                axum::response::IntoResponse::into_response(DomainError::new(Kind::NotFound, "not_found", "no such endpoint; the API is described at /api/v1/openapi.json"))
            }
        })
        .method_not_allowed_fallback(|| async {
            DomainError::new(Kind::MethodNotAllowed, "method_not_allowed", "this endpoint does not take that method; see /api/v1/openapi.json")
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::layer))
        .layer(DefaultBodyLimit::max(idempotency::MAX_BODY))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .merge(streaming)
        .merge(
            web::router()
                .layer(axum::middleware::from_fn_with_state(state.clone(), web::layer))
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::layer))
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30))),
        )
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(DomainError::internal("a handler panicked"))
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, RandomRequestId))
        .layer(axum::middleware::from_fn_with_state(state.clone(), proxy::layer))
        .with_state(state)
}

/// Parts of an interrupted upload are kept this many days for the push to resume.
pub const UPLOAD_DAYS: u64 = 7;

/// Idempotency records are kept this long (as Stripe does): a key reused later is a new request.
pub const IDEMPOTENCY_SECONDS: i64 = 24 * 3600;

/// Deletes what has served its purpose: rate-limit windows older than an hour, idempotency
/// records older than [`IDEMPOTENCY_SECONDS`], expired sessions, webhook deliveries settled
/// more than [`domain::webhooks::KEEP_DELIVERIES`] ago; refreshes SQLite's query
/// statistics; re-signs TUF timestamps and snapshots that expire soon; and deletes uploads
/// abandoned for [`UPLOAD_DAYS`] days. Every process runs it; the deletes are idempotent, so
/// running it twice at once is harmless.
pub async fn housekeeping(state: &AppState) -> Result<()> {
    let now = now();
    let turn = state.write_turn().await;
    sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
        .bind(now - 3600)
        .execute(&state.db.pool)
        .await?;
    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(now - IDEMPOTENCY_SECONDS)
        .execute(&state.db.pool)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
        .bind(now)
        .execute(&state.db.pool)
        .await?;
    domain::webhooks::forget_old(&state.db.pool, now).await?;
    domain::mail::forget_old(&state.db.pool, now).await?;
    sqlx::query("DELETE FROM sso_attempts WHERE expires_at < $1")
        .bind(now)
        .execute(&state.db.pool)
        .await?;
    // It may write SQLite's statistics, so it takes the writers' turn too.
    state.db.optimize(false).await?;
    drop(turn);
    // Parts and staging files of uploads that never completed.
    let stale = state
        .blobs
        .delete_older_than("uploads", Duration::from_secs(UPLOAD_DAYS * 86_400))
        .await?;
    if stale > 0 {
        tracing::info!(files = stale, "deleted abandoned uploads");
    }
    let refreshed = tuf_repo::refresh(state).await?;
    if refreshed > 0 {
        tracing::info!(apps = refreshed, "re-signed TUF timestamps and snapshots");
    }
    Ok(())
}

/// Serves `state` on `listener` until SIGINT or SIGTERM, then finishes in-flight requests;
/// meanwhile housekeeping runs every five minutes and webhook deliveries are sent.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    sweep_interval: Duration,
    mailer: base::mail::Mailer,
) -> Result<()> {
    let mail = tokio::spawn(domain::mail::send::run(state.clone(), mailer));
    let sender = domain::webhooks::deliver::Sender::new(state.limits.webhook_allow_private)
        .context("cannot build the HTTP client for webhooks")?;
    let webhooks = tokio::spawn(domain::webhooks::deliver::run(
        state.clone(),
        sender,
        sweep_interval,
    ));
    let sweeper = state.clone();
    let housekeeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(300));
        loop {
            every.tick().await;
            if let Err(e) = housekeeping(&sweeper).await {
                tracing::warn!(error = %format!("{e:#}"), "housekeeping failed; retrying in 5 minutes");
            }
        }
    });
    let served = serve_until_signal(listener, state).await;
    housekeeper.abort();
    webhooks.abort();
    mail.abort();
    served
}

async fn serve_until_signal(listener: tokio::net::TcpListener, state: AppState) -> Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("the server failed")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// A vendor created by the admin command.
#[derive(Debug, serde::Serialize)]
pub struct NewVendor {
    /// Id.
    pub id: String,
    /// Slug.
    pub slug: String,
    /// The first owner's email.
    pub owner_email: String,
    /// The owner's password, shown once.
    pub owner_password: String,
    /// The owner's first API token, shown once.
    pub token: String,
    /// The root fingerprint of the portal-held keyset.
    pub root_fingerprint: String,
}

/// Creates a vendor with portal-held keys, an owner and a first API token.
pub async fn create_vendor(
    state: &AppState,
    slug: &str,
    name: &str,
    owner_email: &str,
) -> Result<NewVendor, DomainError> {
    domain::catalog::check_slug("vendor", slug)?;
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(DomainError::invalid(
            "the vendor name must be 1 to 100 characters",
        ));
    }
    let vendor_id = secrets::new_id("ven")?;
    let member_id = secrets::new_id("mem")?;
    let password = secrets::new_password()?;
    let hash = domain::members::hash_in_background(password.to_string()).await?;
    let turn = state.write_turn().await;
    let mut tx = state.db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO vendors (id, slug, name, key_custody, audit_seq, audit_hash, created_at) VALUES ($1, $2, $3, $4, 0, $5, $6)",
    )
    .bind(&vendor_id)
    .bind(slug)
    .bind(name)
    .bind(vendor_keys::CUSTODY_PORTAL)
    .bind(crate::audit_chain::GENESIS)
    .bind(now())
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if db::is_unique_violation(&e) => {
            return Err(DomainError::conflict(format!(
                "a vendor {slug:?} exists already"
            )));
        }
        other => other?,
    };
    let mut vtx = domain::tx::VendorTx::lock(tx, &vendor_id, turn).await?;
    sqlx::query("INSERT INTO members (id, vendor_id, email, role, password_hash, created_at) VALUES ($1, $2, $3, 'owner', $4, $5)")
        .bind(&member_id)
        .bind(&vendor_id)
        .bind(owner_email)
        .bind(&hash)
        .bind(now())
        .execute(vtx.conn())
        .await?;
    let keyset =
        vendor_keys::create_portal_keys(vtx.conn(), &state.master, &vendor_id, slug).await?;
    let token =
        domain::vendors::insert_token(vtx.conn(), &vendor_id, &member_id, "first token", None)
            .await?;
    let actor = serde_json::json!({"admin": whoami()});
    vtx.audit_as(
        actor.clone(),
        "localhost",
        "-",
        "vendor.create",
        &vendor_id,
        serde_json::json!({"slug": slug, "name": name, "owner": owner_email}),
    )
    .await?;
    vtx.audit_as(
        actor,
        "localhost",
        "-",
        "token.create",
        &token.info.id,
        serde_json::json!({"name": "first token"}),
    )
    .await?;
    vtx.commit_all(&[]).await?;
    Ok(NewVendor {
        id: vendor_id,
        slug: slug.to_owned(),
        owner_email: owner_email.to_owned(),
        owner_password: password.to_string(),
        token: token.token,
        root_fingerprint: keyset.root.fingerprint(),
    })
}

/// Who runs an `admin` command, for the audit log: `$USER`, else `admin`.
pub fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "admin".to_owned())
}
