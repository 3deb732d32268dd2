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

/// How much the portal logs.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Also the portal's own events and one line per request.
    Info,
    /// Everything useful to a developer.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
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
    /// Log level; `info` adds one line per request. Without it, RUST_LOG or CONSIGN_LOG (an
    /// env-filter such as `info,sqlx=warn`) decide, else the portal logs its own events and
    /// warnings but not each request.
    #[arg(long, value_enum)]
    log_level: Option<LogLevel>,
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
    /// Account-proof nonces per source address per minute (0: unlimited).
    #[arg(long, default_value_t = Limits::default().proof_nonces_per_minute)]
    proof_nonces_per_minute: u64,
    /// A reverse proxy (address or CIDR range) whose X-Forwarded-For names the client, for the
    /// per-address rate limits and the audit log (repeatable). Without it the header is ignored.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<server::http::proxy::Cidr>,
    /// Database connections per process.
    #[arg(long, default_value_t = 16)]
    max_connections: u32,
    /// An STS endpoint (scheme://host:port) that account proofs may be sent to besides AWS's own
    /// https://sts[.REGION].amazonaws.com: an emulator's, for tests. Never a public address.
    #[arg(long, env = "CONSIGN_STS_ENDPOINT", value_name = "URL")]
    sts_endpoint: Option<String>,
    /// Let webhook endpoints be on private, loopback and link-local addresses, and plain http
    /// (tests, private networks). Off by default: a vendor's endpoint could otherwise reach
    /// the portal's own network.
    #[arg(long)]
    webhook_allow_private: bool,
    /// Let vendors' identity providers be on private, loopback and link-local addresses, and
    /// plain http (tests, a provider inside the company network). Off by default, for the same
    /// reason as --webhook-allow-private.
    #[arg(long)]
    sso_allow_private: bool,
    /// The portal's address as browsers reach it (https://portal.example.com), used for the
    /// single sign-on redirect URI and links in mail; default: http:// and the --bind address.
    #[arg(long, env = "CONSIGN_PUBLIC_URL", value_name = "URL")]
    public_url: Option<url::Url>,
    /// Send mail (buyer e-mail verification, password resets, license and release notices)
    /// through this SMTP server: smtp://host:port, smtps://user:password@host (TLS), or
    /// smtp://user:password@host?tls=required (STARTTLS). Without it no mail is sent, buyers'
    /// addresses are not verified, and each mail's text goes to the log instead.
    #[arg(
        long,
        env = "CONSIGN_SMTP_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    smtp_url: Option<String>,
    /// The sender of the portal's mail (default: Consign <consign@HOST of --public-url>).
    #[arg(long, env = "CONSIGN_MAIL_FROM", value_name = "ADDRESS")]
    mail_from: Option<String>,
    /// How long one mail may take to send, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    mail_timeout: u64,
    /// Raise `installation.silent` once a live installation has not checked in for this many
    /// seconds (default: twice its license's check-in interval, at least an hour).
    #[arg(long, value_name = "SECONDS")]
    silent_after: Option<u64>,
    /// How often to look for licenses entering their expiry warning and silent installations.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    sweep_interval: u64,
}

macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        let _ = writeln!($out, $($arg)*);
    };
}

/// Runs `serve`.
pub fn run(args: ServeArgs) -> Result<()> {
    init_logging(args.log_format, args.log_level);
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
                proof_nonces_per_minute: args.proof_nonces_per_minute,
                trusted_proxies: args.trusted_proxies,
                webhook_allow_private: args.webhook_allow_private,
                sso_allow_private: args.sso_allow_private,
                verify_buyer_email: args.smtp_url.is_some(),
                silent_after: args.silent_after,
            },
            sweep_interval: std::time::Duration::from_secs(args.sweep_interval.max(1)),
            max_connections: args.max_connections.max(1),
            sts_endpoint: args.sts_endpoint,
            ..args.storage.config()
        };
        let state = server::open(&config).await?;
        let listener = tokio::net::TcpListener::bind(&args.bind)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is another portal running there? choose another --bind",
                    args.bind
                )
            })?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let public = args.public_url.as_ref().map_or_else(
            || url.clone(),
            |u| u.as_str().trim_end_matches('/').to_owned(),
        );
        server::base::set_public_url(public.clone());
        let host = url::Url::parse(&public)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .filter(|h| h.contains('.') && h.parse::<std::net::IpAddr>().is_err())
            .unwrap_or_else(|| "localhost.localdomain".to_owned());
        let from = args
            .mail_from
            .clone()
            .unwrap_or_else(|| format!("Consign <consign@{host}>"));
        let mailer = server::base::mail::Mailer::new(
            args.smtp_url.as_deref(),
            &from,
            std::time::Duration::from_secs(args.mail_timeout.max(1)),
        )?;
        // Startup lines go to stdout for people and scripts; a closed stdout must not stop the
        // server, so write errors are ignored.
        let mut out = std::io::stdout();
        say!(out, "Consign portal listening on {url}");
        say!(
            out,
            "  database: {}",
            server::base::db::redact(&config.database_url())
        );
        say!(out, "  blobs:    {}", state.blobs.url);
        if public != url {
            say!(out, "  public:   {public}");
        }
        match &mailer.server {
            Some(server) => {
                say!(out, "  mail:     {server}, from {from}");
            }
            None => {
                say!(
                    out,
                    "  mail:     none will be sent (no --smtp-url): each mail's text, links included, goes to the log"
                );
            }
        }
        say!(out, "  API:      {url}/api/v1/openapi.json");
        say!(
            out,
            "  pages:    {url}/ (marketplace), {url}/console (vendor console)"
        );
        if args.demo {
            let demo = demo::seed(&state).await?;
            print_demo(&mut out, &url, &demo);
        }
        let _ = out.flush();
        server::serve(listener, state, config.sweep_interval, mailer).await
    })
}

/// What the demo seeded, printed last so it is what a newcomer sees: how to sign in, the API
/// token, the root fingerprint to pin, and the next commands.
fn print_demo(out: &mut impl std::io::Write, url: &str, demo: &demo::Demo) {
    let vendor = demo::VENDOR;
    let owner = demo::OWNER;
    say!(out, "");
    say!(
        out,
        "Demo vendor {vendor}, signing keys held by the portal (root {})",
        demo.root_fingerprint
    );
    say!(
        out,
        "  console:  {url}/console/login  (vendor {vendor}, {owner})"
    );
    match &demo.password {
        Some(password) => {
            say!(out, "  password: {password}  (shown once)");
        }
        None => {
            say!(
                out,
                "  password: shown on the first start only; to set a new one, run"
            );
            say!(
                out,
                "            vendor-portal admin reset-password --vendor {vendor} --email {owner}"
            );
        }
    }
    if let Some(release) = &demo.release {
        say!(out, "  released: {release} on stable");
    }
    say!(out, "");
    say!(out, "Try it from another terminal:");
    say!(out, "  export PORTAL_URL={url}");
    say!(out, "  export PORTAL_TOKEN={}", demo.token);
    say!(out, "  vendor-portal license list");
    say!(
        out,
        "  vendor-portal license issue --customer globex --app serverless-blog --plan trial -o trial.lic"
    );
    say!(
        out,
        "  vendor-portal release promote serverless-blog 1.0.0 --channel beta   # the portal signs for a demo vendor"
    );
    say!(
        out,
        "  curl -s $PORTAL_URL/api/v1/vendors/{vendor}/keyset > {vendor}-keyset.json"
    );
    say!(
        out,
        "  license-agent verify --license trial.lic --trust {vendor}-keyset.json --trust-root {}",
        demo.root_fingerprint
    );
    say!(
        out,
        "The marketplace is {url}/ ; the README walks a vendor, a buyer and an admin through the rest."
    );
}

fn init_logging(format: LogFormat, level: Option<LogLevel>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(level) => EnvFilter::new(format!("{},sqlx=warn", level.directive())),
        None => EnvFilter::try_from_env("CONSIGN_LOG")
            .or_else(|_| EnvFilter::try_from_default_env())
            // Request lines come from tower_http at info: shown only when asked for.
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn")),
    };
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
