//! `vendor-portal serve`: run the portal.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};

use crate::server::{self, Config, DEFAULT_DATA_DIR, demo, state::Limits};

/// Where the portal keeps its data; shared by `serve` and `admin`.
#[derive(Debug, Args, Clone)]
pub struct StorageArgs {
    /// The folder for the embedded defaults: SQLite database, blobs and master key file.
    #[arg(long, env = "CONSIGN_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The database: sqlite://PATH or postgres://USER@HOST/DB (default: SQLite in --data-dir).
    #[arg(long, env = "CONSIGN_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The blob store: a folder or s3://BUCKET[/PREFIX] (AWS_ENDPOINT_URL honoured; default:
    /// --data-dir/blobs).
    #[arg(long, env = "CONSIGN_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// A file holding the master key (base64url, 32 bytes) that seals vendors' signing keys;
    /// else CONSIGN_MASTER_KEY; else, on SQLite, --data-dir/master.key (created on first start).
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
}

impl StorageArgs {
    /// The server configuration these give, with default limits.
    pub fn config(&self) -> Config {
        Config {
            database_url: self.database_url.clone(),
            blob_store: self.blob_store.clone(),
            master_key_file: self.master_key_file.clone(),
            ..Config::embedded(self.data_dir.clone())
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CONSIGN_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    #[command(flatten)]
    storage: StorageArgs,
    /// Seed a demo vendor, the reference app with plans, a customer and a license, and print
    /// how to try them.
    #[arg(long)]
    demo: bool,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// License issuances and changes per vendor per minute (0: unlimited).
    #[arg(long, default_value_t = Limits::default().license_writes_per_minute)]
    license_writes_per_minute: u64,
    /// Failed authentications per source address per minute (0: unlimited).
    #[arg(long, default_value_t = Limits::default().auth_failures_per_minute)]
    auth_failures_per_minute: u64,
    /// Failed logins per source address per minute (0: unlimited).
    #[arg(long, default_value_t = Limits::default().logins_per_minute)]
    logins_per_minute: u64,
    /// Marketplace sign-ups per source address per hour (0: unlimited).
    #[arg(long, default_value_t = Limits::default().signups_per_hour)]
    signups_per_hour: u64,
    /// Marketplace trials started per source address per hour (0: unlimited).
    #[arg(long, default_value_t = Limits::default().trials_per_hour)]
    trials_per_hour: u64,
    /// A reverse proxy (address or CIDR range) whose X-Forwarded-For names the client, for the
    /// per-address rate limits and the audit log (repeatable). Without it the header is ignored.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<server::http::proxy::Cidr>,
    /// Database connections per process.
    #[arg(long, default_value_t = 16)]
    max_connections: u32,
}

macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        let _ = writeln!($out, $($arg)*);
    };
}

/// Runs `serve`.
pub fn run(args: ServeArgs) -> Result<()> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let config = Config {
            limits: Limits {
                license_writes_per_minute: args.license_writes_per_minute,
                auth_failures_per_minute: args.auth_failures_per_minute,
                logins_per_minute: args.logins_per_minute,
                signups_per_hour: args.signups_per_hour,
                trials_per_hour: args.trials_per_hour,
                trusted_proxies: args.trusted_proxies,
            },
            max_connections: args.max_connections.max(1),
            ..args.storage.config()
        };
        let state = server::open(&config).await?;
        let listener = tokio::net::TcpListener::bind(&args.bind)
            .await
            .with_context(|| format!("cannot listen on {}: is another portal running there? choose another --bind", args.bind))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        // Startup lines go to stdout for people and scripts; a closed stdout must not stop the
        // server, so write errors are ignored.
        let mut out = std::io::stdout();
        say!(out, "Consign portal listening on {url}");
        say!(out, "  database: {}", server::base::db::redact(&config.database_url()));
        say!(out, "  blobs:    {}", state.blobs.url);
        say!(out, "  API:      {url}/api/v1/openapi.json");
        say!(out, "  pages:    {url}/ (marketplace), {url}/console (vendor console)");
        if args.demo {
            let demo = demo::seed(&state).await?;
            say!(out, "");
            say!(out, "Demo vendor {} ({}):", demo::VENDOR, demo::OWNER);
            if let Some(password) = &demo.password {
                say!(out, "  owner password (shown once): {password}");
                say!(out, "  console sign-in: {url}/console/login (vendor {}, {})", demo::VENDOR, demo::OWNER);
            }
            say!(out, "  export PORTAL_URL={url}");
            say!(out, "  export PORTAL_TOKEN={}", demo.token);
            say!(out, "  then try:  vendor-portal license list");
            say!(out, "             vendor-portal license issue --customer globex --app serverless-blog --plan trial -o trial.lic");
            say!(out, "  public keyset: {url}/api/v1/vendors/{}/keyset", demo::VENDOR);
            if let Some(release) = &demo.release {
                say!(out, "  published:      {release} on stable; TUF metadata at {url}/tuf/{}/serverless-blog/timestamp.json", demo::VENDOR);
            }
            if let Some(id) = &demo.license_id {
                say!(out, "  license status: {url}/api/v1/vendors/{}/licenses/{id}/status?nonce=0123456789abcdef", demo::VENDOR);
            }
        }
        let _ = out.flush();
        server::serve(listener, state).await
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONSIGN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
