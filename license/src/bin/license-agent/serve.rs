//! `license-agent serve`: the license agent as a localhost service for functions in any language.
//!
//! - `GET /v1/entitlements/{name}`: 200 when the feature, limit (`?in_use=N`) or quota
//!   (`?quantity=N`, counted against the metered dimension of the same name) allows it, with what
//!   is left; 403 with the code and the reason when not.
//! - `GET /v1/license`: the verified claims and the agent's state.
//! - `POST /v1/usage` `{"dimension": …, "quantity": …, "id": …}`: answered once the event is on
//!   disk; an `id` the agent already holds is answered as a duplicate and not counted again.
//! - `GET /v1/outbox`: every request sent to the vendor and what waits to be sent.
//! - `GET /healthz`: a trivial route (the baseline the benchmarks compare with).
//!
//! Check-ins run on the interval (the license's, or `--checkin-interval`); each one first re-reads
//! the license file or parameter, so a renewed license placed there is picked up without a
//! restart, and a renewal the portal sends is kept in the state directory.

use license::status::LicenseState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use license::checkin::{
    ACTIVATION, Activation, ActivationAnswer, CHECKIN, Checkin, CheckinAnswer,
    MAX_RECORDS_PER_CHECKIN, Placement, Signed, agent_key_id, fresh_nonce, valid_dimension,
};
use license::entitlements::period_bounds;
use license::{Agent, Denial, Keyset, SigningKey, TrustPin, UnixTime, VerifyOptions, Window};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;

use crate::home::{Home, Saved};
use crate::meter::{Meter, Recorded, valid_event_id};
use crate::portal::{Failure, PortalClient};
use crate::read_limited;
use crate::table::{Snapshot, Stored, Table};

/// The most units one usage event may carry.
const MAX_QUANTITY: u64 = 1_000_000_000_000;

/// `serve`'s arguments. Every one can come from the environment too, which is how the Lambda
/// extension (started with no arguments) is configured.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The armoured license file.
    #[arg(
        long,
        env = "CONSIGN_LICENSE_FILE",
        required_unless_present = "license_parameter",
        conflicts_with = "license_parameter"
    )]
    pub license: Option<PathBuf>,
    /// An SSM parameter holding the license (what `installer install` stores:
    /// /consign/STACK/license).
    #[arg(long, env = "CONSIGN_LICENSE_PARAMETER")]
    pub license_parameter: Option<String>,
    /// The vendor's keyset.json.
    #[arg(long, env = "CONSIGN_TRUST")]
    pub trust: PathBuf,
    /// Pin the vendor's root key (sha256:<hex>); else the first keyset's root is pinned.
    #[arg(long, env = "CONSIGN_TRUST_ROOT")]
    pub trust_root: Option<String>,
    /// Where to answer.
    #[arg(long, env = "CONSIGN_AGENT_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// The vendor's portal; without it the agent never calls home (the license must allow
    /// that, or the agent goes to GRACE and then RESTRICTED).
    #[arg(long, env = "CONSIGN_PORTAL_URL")]
    pub portal: Option<String>,
    /// Seconds between check-ins (the license's interval by default). The offline grace still
    /// follows the license's policy.
    #[arg(long, env = "CONSIGN_CHECKIN_INTERVAL", value_parser = clap::value_parser!(u64).range(1..))]
    pub checkin_interval: Option<u64>,
    /// The state directory (installation key, journal, ledger, memory; with --state-table only
    /// the outbox log).
    #[arg(long, env = "CONSIGN_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep the agent's state in this DynamoDB table instead (partition key `pk`, sort key
    /// `sk`, both strings): what a Lambda stack declares, so that every execution environment
    /// of the installation shares one memory, one installation key and one usage journal, and
    /// none of it dies with an environment. Empty means none.
    #[arg(long, env = "CONSIGN_AGENT_STATE_TABLE")]
    pub state_table: Option<String>,
    /// The AWS account the app runs in (asked of STS when not given).
    #[arg(long, env = "CONSIGN_AWS_ACCOUNT")]
    pub aws_account: Option<String>,
    /// Send no proof of the AWS account with activation and check-ins (where STS cannot be
    /// reached; a license that requires proofs is then refused by the portal, which says so).
    #[arg(long, env = "CONSIGN_NO_ACCOUNT_PROOF")]
    pub no_account_proof: bool,
    /// The AWS region the app runs in.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// The CloudFormation stack of the installation.
    #[arg(long, env = "CONSIGN_STACK")]
    pub stack: Option<String>,
    /// The app version installed.
    #[arg(long, env = "CONSIGN_APP_VERSION")]
    pub app_version: Option<String>,
}

enum Source {
    File(PathBuf),
    Parameter(String),
}

impl Source {
    async fn read(&self) -> Result<String> {
        match self {
            Source::File(path) => String::from_utf8(read_limited(path, "license")?)
                .with_context(|| format!("the license {} is not text", path.display())),
            Source::Parameter(name) => {
                let config = aws_config::load_from_env().await;
                let ssm = aws_sdk_ssm::Client::new(&config);
                let out = ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| parameter_error(name, e))?;
                out.parameter
                    .and_then(|p| p.value)
                    .with_context(|| format!("SSM parameter {name} holds no value"))
            }
        }
    }
}

/// One sentence for a failed read of the license parameter: missing (the stack was probably
/// uninstalled, or never installed here), access denied (what the role needs), or unreachable;
/// never the SDK's debug dump.
fn parameter_error(
    name: &str,
    e: aws_sdk_ssm::error::SdkError<aws_sdk_ssm::operation::get_parameter::GetParameterError>,
) -> anyhow::Error {
    use aws_sdk_ssm::error::ProvideErrorMetadata as _;
    let said = crate::aws_phrase(&e);
    match e.as_service_error() {
        Some(service) if service.is_parameter_not_found() => anyhow::anyhow!(
            "the SSM parameter {name} holding the license does not exist in this account and region: the stack may have been uninstalled (`installer uninstall` deletes it) or installed elsewhere; install it again with `installer install`, or start the agent with --license FILE"
        ),
        Some(_) if e.code().is_some_and(|code| code.contains("AccessDenied")) => anyhow::anyhow!(
            "AWS denied ssm:GetParameter on {name} ({said}): the agent's role needs ssm:GetParameter on it, and kms:Decrypt for its key"
        ),
        Some(_) => anyhow::anyhow!(
            "cannot read the license from SSM parameter {name} ({said}): check the parameter and the agent's role"
        ),
        None => anyhow::anyhow!(
            "cannot reach SSM to read the license parameter {name} ({said}): check the network and the region (AWS_REGION), then start the agent again"
        ),
    }
}

/// Everything the handlers and the check-in loop share.
struct Shared {
    agent: Agent,
    meter: Meter,
    home: Home,
    /// The state table, when the state lives there rather than in `home`.
    table: Option<Arc<Table>>,
    saved: Mutex<Saved>,
    /// The newest record number the portal said it holds (with a state table, the next state
    /// write deletes the records up to it).
    acknowledged: Mutex<u64>,
    portal: Option<PortalClient>,
    key: SigningKey,
    agent_id: String,
    placement: Option<Placement>,
    source: Source,
    interval: u64,
    last_error: Mutex<Option<String>>,
    /// The last complaint about the license source, so that it is reported once, not every round.
    source_complaint: Mutex<Option<String>>,
    /// Starts a check-in now (the Lambda extension rings it on an invoke after a long freeze).
    wake: Arc<Notify>,
    /// The AWS configuration whose credentials prove the account to the portal, while they
    /// can (`None` once they could not be found).
    prover: Mutex<Option<aws_config::SdkConfig>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the agent until SIGTERM, Ctrl-C or the Lambda SHUTDOWN event.
pub fn run(args: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

fn default_state_dir() -> PathBuf {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        PathBuf::from("/tmp/consign-license-agent")
    } else {
        PathBuf::from("license-agent-state")
    }
}

async fn account_from_sts() -> Result<String> {
    let config = aws_config::load_from_env().await;
    let out = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot learn the AWS account from STS ({}): pass --aws-account (CONSIGN_AWS_ACCOUNT), or give the agent credentials that may call sts:GetCallerIdentity",
                crate::aws_phrase(&e)
            )
        })?;
    out.account.context("STS named no account")
}

async fn serve(mut args: ServeArgs) -> Result<()> {
    // A template passes an empty portal URL to mean "no check-ins".
    args.portal = args.portal.take().filter(|url| !url.trim().is_empty());
    args.state_table = args.state_table.take().filter(|t| !t.trim().is_empty());
    let home = Home::open(&args.state_dir.clone().unwrap_or_else(default_state_dir))?;
    // The journal and records in the state directory have one writer: this agent.
    let _lock = match &args.state_table {
        None => Some(home.lock()?),
        Some(_) => None,
    };
    let (table, snapshot) = match &args.state_table {
        Some(name) => {
            let stack = args.stack.as_deref().unwrap_or("default");
            let region = args
                .region
                .clone()
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
            let table = Arc::new(Table::open(name, region.as_deref(), stack).await?);
            let snapshot = first_snapshot(&table).await?;
            (Some(table), Some(snapshot))
        }
        None => (None, None),
    };
    let stored = snapshot.as_ref().and_then(|s| s.state.as_ref());
    let mut saved = match stored {
        Some(stored) => stored.saved.clone(),
        None => home.load()?,
    };
    let keyset_bytes = read_limited(&args.trust, "keyset")?;
    if let (Some(pin), Some(pinned)) = (&args.trust_root, &saved.root_fingerprint) {
        anyhow::ensure!(
            pin == pinned,
            "--trust-root {pin} differs from the root {pinned} pinned in the state directory"
        );
    }
    let keyset = Keyset::verify(
        &keyset_bytes,
        &TrustPin {
            root_fingerprint: args.trust_root.clone().or(saved.root_fingerprint.clone()),
            min_seq: saved.keyset_seq,
        },
    )
    .with_context(|| format!("the keyset {} is not trusted", args.trust.display()))?;
    saved.root_fingerprint = Some(keyset.root_fingerprint());
    saved.keyset_seq = keyset.keyset().seq;

    let source = match (&args.license, &args.license_parameter) {
        (Some(path), _) => Source::File(path.clone()),
        (None, Some(name)) => Source::Parameter(name.clone()),
        (None, None) => bail!("give --license FILE or --license-parameter NAME"),
    };
    let now = UnixTime::now();
    let from_source = source.read().await?;
    // The renewal kept from an earlier run wins when it is a newer revision.
    let mut options = VerifyOptions::at(now);
    options.window = Window::Report;
    let seq_of = |text: &str| {
        keyset
            .verify_license(text, &options)
            .map(|v| (v.claims().jti.clone(), v.claims().seq))
    };
    let offered = seq_of(&from_source).context("the license is not valid")?;
    let kept = match stored {
        Some(stored) => stored.license.clone(),
        None => home.license(),
    };
    let armored = match kept {
        // Only a newer revision of the same license: a new contract in the source wins.
        Some(kept) if seq_of(&kept).is_ok_and(|(jti, seq)| jti == offered.0 && seq > offered.1) => {
            kept
        }
        _ => from_source,
    };
    let agent = Agent::new(keyset, &armored, std::mem::take(&mut saved.memory), now)
        .context("the license cannot be used")?;
    let claims = agent.license().claims().clone();

    let region = args
        .region
        .clone()
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
    let account = match (&args.aws_account, &args.portal) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(_)) => Some(account_from_sts().await?),
        (None, None) => None,
    };
    if let (Some(account), Some(region)) = (&account, &region) {
        agent
            .license()
            .check_placement(account, region)
            .map_err(|d| anyhow::anyhow!("the license may not run here: {d}"))?;
    }
    let placement = match &args.portal {
        None => None,
        Some(_) => Some(Placement {
            aws_account: account.context("the AWS account is unknown")?,
            region: region.context("the AWS region is unknown: pass --region (AWS_REGION)")?,
            stack: args
                .stack
                .clone()
                .context("check-ins name the installation's stack: pass --stack (CONSIGN_STACK)")?,
            version: args.app_version.clone().context(
                "check-ins name the installed version: pass --app-version (CONSIGN_APP_VERSION)",
            )?,
        }),
    };
    let key = match stored {
        Some(stored) => SigningKey::from_pem(&stored.key).with_context(|| {
            format!(
                "the installation key in DynamoDB table {} is damaged",
                args.state_table.as_deref().unwrap_or_default()
            )
        })?,
        None => home.installation_key()?,
    };
    let agent_id = agent_key_id(&key.public_key());
    let meter = match (&table, &snapshot) {
        (Some(table), Some(snapshot)) => Meter::open_table(Arc::clone(table), snapshot)?,
        _ => Meter::open(home.dir())?,
    };
    let prover = match &args.portal {
        Some(_) if !args.no_account_proof => {
            let config = aws_config::load_from_env().await;
            config.credentials_provider().is_some().then_some(config)
        }
        _ => None,
    };
    let portal = match &args.portal {
        Some(url) => Some(PortalClient::new(url, home.dir().join("outbox.jsonl"))?),
        None => {
            if claims.policy.checkin_required {
                tracing::warn!(
                    "check-ins are off but license {} requires them: the agent goes to GRACE {} s after it started and to RESTRICTED {} s later; give --portal to stay ACTIVE",
                    claims.jti,
                    claims.policy.checkin_interval,
                    claims.policy.offline_grace
                );
            }
            None
        }
    };
    let shared = Arc::new(Shared {
        interval: args
            .checkin_interval
            .unwrap_or(claims.policy.checkin_interval)
            .max(1),
        agent,
        meter,
        home,
        table,
        saved: Mutex::new(saved),
        acknowledged: Mutex::new(0),
        portal,
        key,
        agent_id,
        placement,
        source,
        last_error: Mutex::new(None),
        source_complaint: Mutex::new(None),
        wake: Arc::new(Notify::new()),
        prover: Mutex::new(prover),
    });
    save(&shared).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, agent = %shared.agent_id, license = %claims.jti, "license agent ready");
    eprintln!("license-agent listening on http://{bound}");

    tokio::spawn(checkin_loop(Arc::clone(&shared)));
    let stop = Arc::new(Notify::new());
    let extension = std::env::var_os("AWS_LAMBDA_RUNTIME_API")
        .is_some()
        .then(|| {
            tokio::spawn(crate::extension::run(
                Arc::clone(&stop),
                Arc::clone(&shared.wake),
                shared.interval,
            ))
        });
    let app = router(Arc::clone(&shared), bound);
    let stopped = Arc::clone(&stop);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = stopped.notified() => {}
            }
        })
        .await
        .context("the HTTP server failed")?;
    finish(&shared).await;
    if let Some(extension) = extension
        && extension.is_finished()
        && let Ok(Err(e)) = extension.await
    {
        bail!("the Lambda Extensions API failed ({e}); check AWS_LAMBDA_RUNTIME_API");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// On the way out: seal what was acknowledged, try one last check-in, save.
async fn finish(shared: &Shared) {
    if shared.portal.is_some() {
        let _ = tokio::time::timeout(Duration::from_secs(2), checkin_once(shared)).await;
    } else if let Err(e) = seal(shared).await {
        tracing::warn!(error = %e, "usage could not be sealed at shutdown; it stays in the journal");
    }
    if let Err(e) = save(shared).await {
        tracing::warn!(error = %e, "the agent's state could not be saved");
    }
}

/// How often a state-table write lost to another environment's is tried again.
const TABLE_RETRIES: usize = 8;

/// The first read of the state table; the first environment of an installation creates the
/// state with a fresh installation key (a conditional put: of two at once, one wins and the
/// other takes its key).
async fn first_snapshot(table: &Table) -> Result<Snapshot> {
    let snapshot = table.snapshot().await?;
    if snapshot.state.is_some() {
        return Ok(snapshot);
    }
    let mut stored = Stored {
        key: SigningKey::generate()?.to_pem().to_string(),
        ..Stored::default()
    };
    stored.ledger = crate::meter::Ledger::default();
    if table.commit(0, &mut stored, &[], &[]).await?.is_err() {
        tracing::info!("another environment created the agent's state first; this one joins it");
    }
    let snapshot = table.snapshot().await?;
    anyhow::ensure!(
        snapshot.state.is_some(),
        "the agent's state in DynamoDB table {} could not be created",
        table.name()
    );
    Ok(snapshot)
}

/// Takes in what the table holds: a newer license revision, another environment's memory
/// (a revocation it saw applies here at once), the installation.
fn absorb(shared: &Shared, snapshot: &Snapshot) {
    let Some(stored) = &snapshot.state else {
        return;
    };
    if let Some(license) = &stored.license
        && let Ok(true) = shared.agent.offer_license(license, UnixTime::now())
    {
        tracing::info!("a renewed license another environment took is in force here too");
    }
    shared.agent.absorb(&stored.saved.memory);
    let mut saved = lock(&shared.saved);
    if saved.installation.is_none() {
        saved.installation.clone_from(&stored.saved.installation);
    }
    saved.keyset_seq = saved.keyset_seq.max(stored.saved.keyset_seq);
}

/// The state item to write over `snapshot`, with the sealed side `ledger` and the sealed
/// batches `sealed` not deleted yet.
fn compose(
    shared: &Shared,
    snapshot: &Snapshot,
    ledger: crate::meter::Ledger,
    sealed: Vec<String>,
) -> Stored {
    let mut saved = lock(&shared.saved);
    saved.memory = shared.agent.memory();
    Stored {
        saved: saved.clone(),
        key: snapshot
            .state
            .as_ref()
            .map(|s| s.key.clone())
            .unwrap_or_else(|| shared.key.to_pem().to_string()),
        license: Some(shared.agent.armored().to_string()),
        ledger,
        sealed,
    }
}

/// Saves the agent's state: the state directory, or the table (merged with what other
/// environments wrote, and deleting the records the portal acknowledged).
async fn save(shared: &Shared) -> Result<()> {
    let Some(table) = &shared.table else {
        let mut saved = lock(&shared.saved);
        saved.memory = shared.agent.memory();
        return shared.home.save(&saved);
    };
    let acknowledged = *lock(&shared.acknowledged);
    for _ in 0..TABLE_RETRIES {
        let snapshot = table.snapshot().await?;
        absorb(shared, &snapshot);
        let ledger = snapshot
            .state
            .as_ref()
            .map_or_else(crate::meter::Ledger::default, |s| s.ledger.clone());
        let mut delete: Vec<String> = snapshot
            .record_items
            .iter()
            .filter(|(_, last)| *last <= acknowledged)
            .map(|(sk, _)| sk.clone())
            .collect();
        let mut stored = compose(shared, &snapshot, ledger, snapshot.stale.clone());
        if table
            .commit(snapshot.version, &mut stored, &[], &[])
            .await?
            .is_ok()
        {
            delete.extend(snapshot.stale);
            return table.delete(&delete).await;
        }
    }
    bail!(
        "the agent's state in DynamoDB table {} kept changing under this write; it is tried again next round",
        table.name()
    )
}

/// Seals acknowledged usage into records: from the journal file, or from every environment's
/// batches in the table (each seal one transaction that moves the chain head it read and names
/// the batches it took, so that no batch is sealed twice).
async fn seal(shared: &Shared) -> Result<usize> {
    let license = shared.agent.license();
    let jti = &license.claims().jti;
    let Some(table) = &shared.table else {
        return shared.meter.seal(&shared.agent_id, jti, &shared.key);
    };
    let mut sealed = 0;
    let mut conflicts = 0;
    loop {
        let written = shared.meter.written();
        let snapshot = table.snapshot().await?;
        absorb(shared, &snapshot);
        shared.meter.refresh(&snapshot, &written);
        if snapshot.batches.is_empty() {
            return Ok(sealed);
        }
        let plan = shared
            .meter
            .plan(&snapshot, &shared.agent_id, jti, &shared.key)?;
        let mut sealed_side = plan.ledger.clone();
        sealed_side.pending.clear();
        let mut tombstones = snapshot.stale.clone();
        tombstones.extend(plan.sealed.iter().cloned());
        let mut stored = compose(shared, &snapshot, sealed_side, tombstones.clone());
        match table
            .commit(
                snapshot.version,
                &mut stored,
                &plan.records,
                &plan.ledger.recent_ids,
            )
            .await?
        {
            Ok(()) => {
                sealed += plan.records.len();
                if let Err(e) = table.delete(&tombstones).await {
                    tracing::warn!(error = %e, "sealed usage batches could not be deleted yet; the next round does");
                }
                // The table as this transaction left it.
                let mut records = snapshot.records;
                records.extend(plan.records);
                let after = Snapshot {
                    version: snapshot.version + 1,
                    state: Some(stored),
                    records,
                    record_items: Vec::new(),
                    batches: snapshot
                        .batches
                        .into_iter()
                        .filter(|b| !plan.sealed.contains(&b.sk))
                        .collect(),
                    stale: Vec::new(),
                    ids: plan.ledger.recent_ids.clone(),
                };
                shared.meter.refresh(&after, &written);
                if !plan.more {
                    return Ok(sealed);
                }
            }
            Err(crate::table::Conflict) => {
                conflicts += 1;
                if conflicts >= TABLE_RETRIES {
                    bail!(
                        "the agent's state in DynamoDB table {} kept changing under this seal; it is tried again next round",
                        table.name()
                    );
                }
            }
        }
    }
}

/// Keeps a renewed license so that a restart runs it (with a state table the next state
/// write keeps it).
fn keep_license(shared: &Shared, armored: &str) {
    if shared.table.is_none()
        && let Err(e) = shared.home.save_license(armored)
    {
        tracing::warn!(error = %e, "the renewed license could not be kept");
    }
}

async fn checkin_loop(shared: Arc<Shared>) {
    loop {
        checkin_once(&shared).await;
        let wait = Duration::from_secs(shared.interval);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.wake.notified() => {}
        }
    }
}

fn set_error(shared: &Shared, error: Option<String>) {
    if let Some(e) = &error {
        tracing::warn!(error = %e, "check-in failed");
    }
    *lock(&shared.last_error) = error;
}

/// One round: re-read the license source, seal usage, activate if needed, check in, save.
async fn checkin_once(shared: &Shared) {
    let now = UnixTime::now();
    // Saved below with the rest: a clock set back later never reopens a grace that ran out.
    shared.agent.observe(now);
    let complaint = match shared.source.read().await {
        Ok(text) => match shared.agent.offer_license(&text, now) {
            Ok(true) => {
                tracing::info!("a renewed license was picked up from the license source");
                keep_license(shared, &text);
                None
            }
            // Older than a renewal the portal sent: the agent runs the newer one.
            Ok(false) | Err(license::Error::Rollback { .. }) => None,
            Err(e) => Some(format!(
                "the license source holds a license the agent refuses, and keeps running the one it has: {e}"
            )),
        },
        Err(e) => {
            tracing::warn!(error = %e, "the license source could not be read");
            None
        }
    };
    {
        let mut last = lock(&shared.source_complaint);
        if let Some(c) = &complaint
            && last.as_ref() != Some(c)
        {
            tracing::warn!(complaint = %c, "license source");
            shared.agent.report(now, "license_source", c.clone());
        }
        *last = complaint;
    }
    if let Err(e) = seal(shared).await {
        tracing::warn!(error = %e, "usage could not be sealed; it stays in the journal");
    }
    let Some(portal) = &shared.portal else {
        if let Err(e) = save(shared).await {
            tracing::warn!(error = %e, "the agent's state could not be saved");
        }
        return;
    };
    set_error(shared, round(shared, portal).await.err());
    if let Err(e) = save(shared).await {
        tracing::warn!(error = %e, "the agent's state could not be saved");
    }
}

/// Applies the portal's signed answer to the request made with `nonce`, keeping a renewal.
fn accept(
    shared: &Shared,
    status: &str,
    renewed: Option<&str>,
    nonce: &str,
) -> std::result::Result<(), String> {
    let before = shared.agent.memory().portal_state;
    let accepted = shared
        .agent
        .accept(status, renewed, nonce, UnixTime::now())
        .map_err(|t| format!("tampering ({}): {}", t.code, t.detail))?;
    let license = shared.agent.license();
    let id = license.claims().jti.to_string();
    if accepted.renewed {
        tracing::info!(
            license = %id,
            seq = license.claims().seq,
            "license renewed by the vendor: revision {} runs now, valid until {}",
            license.claims().seq,
            license.claims().exp
        );
        keep_license(shared, &shared.agent.armored());
    }
    let now = accepted.status.state;
    if before != Some(now) {
        match (before, now) {
            (_, LicenseState::Revoked) => tracing::warn!(
                license = %id,
                "license revoked by the vendor: entitlement checks are refused from now on"
            ),
            (_, LicenseState::Suspended) => tracing::warn!(
                license = %id,
                "license suspended by the vendor: entitlement checks are refused until it is reinstated"
            ),
            (Some(_), LicenseState::Active) => tracing::info!(
                license = %id,
                "license reinstated by the vendor: entitlement checks are answered again"
            ),
            (_, state) => {
                tracing::info!(license = %id, state = state.as_str(), "license {} on the vendor's portal", state.as_str())
            }
        }
    }
    Ok(())
}

/// A proof of the account the agent runs in, signed with its own credentials (the Lambda
/// role's) over a portal nonce; `None` when it has no credentials (it stops trying: a license
/// that requires proofs is then refused by the portal, which says so).
async fn prove(
    shared: &Shared,
    portal: &PortalClient,
    region: &str,
) -> std::result::Result<Option<license::proof::AccountProof>, String> {
    use aws_credential_types::provider::ProvideCredentials as _;
    let Some(config) = lock(&shared.prover).clone() else {
        return Ok(None);
    };
    let Some(provider) = config.credentials_provider() else {
        return Ok(None);
    };
    let credentials = match provider.provide_credentials().await {
        Ok(credentials) => credentials,
        Err(e) => {
            tracing::warn!(error = %e, "no AWS credentials to prove the account with: check-ins go without a proof");
            *lock(&shared.prover) = None;
            return Ok(None);
        }
    };
    let nonce = match portal.proof_nonce().await {
        Ok(nonce) => nonce,
        // A portal older than account proofs takes none.
        Err(Failure::Refused { status: 404, .. }) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let url = license::proof::endpoint_for(region, config.endpoint_url());
    license::proof::sign(
        credentials,
        region,
        &url,
        Some(&nonce),
        std::time::SystemTime::now(),
    )
    .map(Some)
    .map_err(|e| e.to_string())
}

async fn round(shared: &Shared, portal: &PortalClient) -> std::result::Result<(), String> {
    let placement = shared.placement.clone().ok_or("the placement is unknown")?;
    for _ in 0..2 {
        let installation = lock(&shared.saved).installation.clone();
        if installation.is_none() {
            let nonce = fresh_nonce().map_err(|e| e.to_string())?;
            let account_proof = prove(shared, portal, &placement.region).await?;
            let activation = Activation {
                account_proof,
                license: shared.agent.armored().to_string(),
                public_key: shared.key.public_key(),
                placement: placement.clone(),
                nonce: nonce.clone(),
                time: UnixTime::now(),
            };
            let signed =
                Signed::sign(ACTIVATION, &activation, &shared.key).map_err(|e| e.to_string())?;
            let answer: ActivationAnswer = portal
                .post("/api/v1/installations", &signed)
                .await
                .map_err(|e| e.to_string())?;
            accept(shared, &answer.status, answer.license.as_deref(), &nonce)?;
            lock(&shared.saved).installation = Some(answer.installation);
            tracing::info!(agent = %shared.agent_id, "activated with the portal");
        }
        let nonce = fresh_nonce().map_err(|e| e.to_string())?;
        let records = shared.meter.pending(MAX_RECORDS_PER_CHECKIN);
        let reports = shared.agent.memory().reports;
        let license = shared.agent.license();
        let account_proof = prove(shared, portal, &placement.region).await?;
        let checkin = Checkin {
            account_proof,
            agent: shared.agent_id.clone(),
            license: license.claims().jti.clone(),
            license_seq: license.claims().seq,
            version: placement.version.clone(),
            nonce: nonce.clone(),
            time: UnixTime::now(),
            records,
            reports: reports.clone(),
        };
        let signed = Signed::sign(CHECKIN, &checkin, &shared.key).map_err(|e| e.to_string())?;
        let answer: CheckinAnswer = match portal
            .post("/api/v1/installations/checkin", &signed)
            .await
        {
            Ok(a) => a,
            Err(Failure::Refused { code, .. })
                if code == "unknown_agent" || code == "uninstalled" || code == "wrong_license" =>
            {
                // The portal no longer knows this agent here: activate again, once.
                lock(&shared.saved).installation = None;
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        accept(shared, &answer.status, answer.license.as_deref(), &nonce)?;
        shared.agent.reports_delivered(reports.len());
        shared
            .meter
            .acknowledged(answer.records_through)
            .map_err(|e| e.to_string())?;
        let mut acknowledged = lock(&shared.acknowledged);
        *acknowledged = (*acknowledged).max(answer.records_through);
        return Ok(());
    }
    Err("the portal keeps forgetting this agent".into())
}

fn router(shared: Arc<Shared>, bound: SocketAddr) -> Router {
    let door = Arc::new(Door::for_address(bound));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/entitlements/{name}", get(entitlement))
        .route("/v1/license", get(license_info))
        .route("/v1/usage", axum::routing::post(usage))
        .route("/v1/outbox", get(outbox))
        .fallback(|| async {
            answer(
                StatusCode::NOT_FOUND,
                json!({"error": "no such route: the agent answers /v1/entitlements/{name}, /v1/license, /v1/usage, /v1/outbox and /healthz"}),
            )
        })
        .layer(axum::middleware::from_fn_with_state(door, Door::check))
        .with_state(shared)
}

/// The localhost service's door. A web page in a browser on the same machine can send requests
/// to 127.0.0.1 too (directly, or through a name of its own that it rebinds to 127.0.0.1), but
/// it cannot choose the `Host` header the browser sends, nor send `application/json` to another
/// origin without a CORS preflight, which the agent never answers. So the agent answers only
/// requests whose `Host` names the address it listens on (or `localhost`) with its port, and
/// takes writes only as `application/json`: no page can meter usage or read the license.
#[derive(Debug)]
struct Door {
    hosts: Vec<String>,
    shown: String,
}

impl Door {
    fn for_address(bound: SocketAddr) -> Self {
        let port = bound.port();
        let mut names = vec!["localhost".to_owned()];
        let ip = bound.ip();
        if ip.is_unspecified() {
            names.extend(["127.0.0.1".to_owned(), "[::1]".to_owned()]);
        } else if ip.is_ipv6() {
            names.push(format!("[{ip}]"));
        } else {
            names.push(ip.to_string());
        }
        let mut hosts: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
        if port == 80 {
            hosts.extend(names);
        }
        Self {
            hosts,
            shown: format!("http://{bound}"),
        }
    }

    async fn check(
        State(door): State<Arc<Door>>,
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> Response {
        let headers = request.headers();
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !door.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return answer(
                StatusCode::MISDIRECTED_REQUEST,
                json!({"error": format!(
                    "the agent answers only requests for {} (Host {host:?} is refused): call it at that address",
                    door.shown
                )}),
            );
        }
        let json_body = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if request.method() != axum::http::Method::GET
            && request.method() != axum::http::Method::HEAD
            && !json_body
        {
            return answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "send the request body as JSON with Content-Type: application/json"}),
            );
        }
        next.run(request).await
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitlementQuery {
    in_use: Option<u64>,
    quantity: Option<u64>,
}

async fn entitlement(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    query: Result<Query<EntitlementQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "the query takes in_use=N (limits) and quantity=N (quotas), both whole numbers"}),
        );
    };
    let now = UnixTime::now();
    let agent = &shared.agent;
    let outcome = match agent.check(&name, now) {
        Ok(()) => Ok(json!({"feature": name, "allowed": true, "kind": "feature"})),
        Err(Denial::NotEntitled { .. }) => {
            let license = agent.license();
            let e = &license.claims().entitlements;
            if e.limits.keys().any(|k| k.as_str() == name) {
                agent
                    .limit(&name, query.in_use.unwrap_or(0), now)
                    .map(|l| json!({"feature": name, "allowed": true, "kind": "limit", "limit": l}))
            } else if let Some((_, quota)) = e.quotas.iter().find(|(k, _)| k.as_str() == name) {
                let (start, _) = period_bounds(quota.period, now);
                let used = shared
                    .meter
                    .used_since(&name, start)
                    .saturating_add(query.quantity.unwrap_or(0));
                agent
                    .quota(&name, used, now)
                    .map(|q| json!({"feature": name, "allowed": true, "kind": "quota", "quota": q}))
            } else {
                Err(Denial::NotEntitled { name: name.clone() })
            }
        }
        Err(d) => Err(d),
    };
    let lifecycle = agent.lifecycle(now);
    match outcome {
        Ok(mut body) => {
            body["state"] = json!(lifecycle.state);
            if let Some(w) = lifecycle.warning.or(lifecycle.reason) {
                body["warning"] = json!(w);
            }
            if let Some(until) = lifecycle.until {
                body["until"] = json!(until);
            }
            answer(StatusCode::OK, body)
        }
        Err(denial) => answer(
            StatusCode::FORBIDDEN,
            json!({"feature": name, "allowed": false, "code": denial.code(),
                   "reason": denial.to_string(), "state": lifecycle.state}),
        ),
    }
}

async fn license_info(State(shared): State<Arc<Shared>>) -> Response {
    let now = UnixTime::now();
    let license = shared.agent.license();
    let memory = shared.agent.memory();
    let installation = lock(&shared.saved).installation.clone();
    answer(
        StatusCode::OK,
        json!({
            "license": license.claims().jti,
            "claims": license.claims(),
            "kid": license.kid(),
            "lifecycle": shared.agent.lifecycle(now),
            "agent": shared.agent_id,
            "installation": installation,
            "checkins": if shared.portal.is_some() { "on" } else { "off" },
            "checkin_interval": shared.interval,
            "started_at": memory.started_at,
            "last_checkin": memory.last_checkin,
            "status_time": memory.status_time,
            "portal_state": memory.portal_state,
            "last_error": *lock(&shared.last_error),
            "reports": memory.reports,
            "agent_version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageEvent {
    dimension: String,
    quantity: u64,
    /// The caller's id for the event: a retry with the same id is not counted again.
    #[serde(default)]
    id: Option<String>,
}

async fn usage(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let event: UsageEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("send {{\"dimension\": NAME, \"quantity\": N}}: {e}")}),
            );
        }
    };
    if !valid_dimension(&event.dimension) {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "dimension must be 1-64 of a-z 0-9 _ - . : starting with a letter or digit"}),
        );
    }
    if event.id.as_deref().is_some_and(|id| !valid_event_id(id)) {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "id must be 1-128 of A-Z a-z 0-9 _ - . :"}),
        );
    }
    if event.quantity == 0 || event.quantity > MAX_QUANTITY {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("quantity must be 1 to {MAX_QUANTITY}")}),
        );
    }
    match shared
        .meter
        .record(event.dimension, event.quantity, UnixTime::now(), event.id)
        .await
    {
        Ok(Recorded::New(seq)) => answer(StatusCode::OK, json!({"accepted": true, "seq": seq})),
        Ok(Recorded::Duplicate) => {
            answer(StatusCode::OK, json!({"accepted": true, "duplicate": true}))
        }
        Err(e) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"accepted": false, "error": format!("{e}; the event was NOT recorded: retry")}),
        ),
    }
}

async fn outbox(State(shared): State<Arc<Shared>>) -> Response {
    let sent = shared
        .portal
        .as_ref()
        .map(PortalClient::sent)
        .unwrap_or_default();
    answer(
        StatusCode::OK,
        json!({
            "checkins": if shared.portal.is_some() { "on" } else { "off" },
            "sent": sent,
            "pending": {
                "records": shared.meter.pending(usize::MAX),
                "unsealed_events": shared.meter.unsealed(),
                "reports": shared.agent.memory().reports,
            },
        }),
    )
}
