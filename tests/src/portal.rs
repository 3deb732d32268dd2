//! Running `vendor-portal serve` processes for end-to-end tests: on SQLite in a temporary folder
//! or on a fresh PostgreSQL database, started on free loopback ports, killed with SIGKILL when a
//! test says so (or dropped).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::bin;

/// Where a portal keeps its data.
pub enum Storage {
    /// SQLite in this folder.
    Sqlite(PathBuf),
    /// This PostgreSQL database.
    Postgres(String),
}

/// The PostgreSQL server tests use: `DATABASE_URL`, else the machine's default.
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Runs SQL on the test PostgreSQL's admin database, on a thread and runtime of its own so that
/// it works from sync code, from async code and from `Drop`.
fn admin_sql(sql: String) -> Result<(), String> {
    std::thread::spawn(move || {
        let admin = postgres_admin_url();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(|e| {
                format!("PostgreSQL at {admin} does not answer ({e}); scripts/test starts one")
            })?;
            sqlx::Executor::execute(&mut conn, sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the admin SQL thread panicked".into()))
}

/// Creates a database of its own on the test PostgreSQL and returns its URL.
pub fn create_postgres_database() -> String {
    let admin = postgres_admin_url();
    let mut raw = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).unwrap();
    let name = format!(
        "consign_e2e_{}",
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    admin_sql(format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("{e}"));
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(b, _)| b)
        .to_owned();
    format!("{base}/{name}")
}

/// Drops a database made by [`create_postgres_database`] (connections and all).
pub fn drop_postgres_database(url: &str) {
    if let Some((_, name)) = url.rsplit_once('/') {
        let _ = admin_sql(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

/// A fresh master key in base64url, for `CONSIGN_MASTER_KEY`.
pub fn master_key() -> String {
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// How to start portals that share one database.
pub struct PortalSetup {
    /// The data folder (SQLite, blobs).
    pub data: PathBuf,
    /// The database URL, for PostgreSQL.
    pub database_url: Option<String>,
    /// The master key every process uses.
    pub master_key: String,
    /// Extra `serve` arguments.
    pub extra: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl PortalSetup {
    /// A setup on SQLite in `dir` or on a new PostgreSQL database.
    pub fn new(dir: &Path, postgres: bool) -> Self {
        Self {
            data: dir.join("data"),
            database_url: postgres.then(create_postgres_database),
            master_key: master_key(),
            extra: vec![],
            env: vec![],
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("vendor-portal"));
        cmd.args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .env("CONSIGN_MASTER_KEY", &self.master_key)
            .env_remove("PORTAL_URL")
            .env_remove("PORTAL_TOKEN");
        match &self.database_url {
            Some(url) => cmd.env("CONSIGN_DATABASE_URL", url),
            None => cmd.env_remove("CONSIGN_DATABASE_URL"),
        };
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Creates a vendor with `admin create-vendor` and returns its token.
    pub fn create_vendor(&self, slug: &str) -> String {
        let out = self
            .command(&[
                "admin",
                "create-vendor",
                "--slug",
                slug,
                "--name",
                slug,
                "--output",
                "json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        created["token"].as_str().unwrap().to_owned()
    }

    /// Spawns `serve` on a free port with `more` and the extra arguments; the process and its
    /// stdout.
    fn spawn_serve(&self, more: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        args.extend_from_slice(more);
        args.extend(self.extra.iter().map(String::as_str));
        let mut child = self
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        (child, reader)
    }

    /// Starts a portal process on a free port.
    pub fn start(&self) -> PortalProcess {
        let (child, mut reader) = self.spawn_serve(&[]);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            url.starts_with("http://"),
            "the portal did not start: {line:?}"
        );
        PortalProcess { child, url }
    }

    /// Starts `serve --demo` on a free port; the process and the demo owner's password.
    pub fn start_demo(&self) -> (PortalProcess, String) {
        let (child, mut reader) = self.spawn_serve(&["--demo"]);
        let mut printed = String::new();
        let mut line = String::new();
        // The demo's last line points at the marketplace.
        while !line.starts_with("The marketplace is ") {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("serve --demo stopped before seeding:\n{printed}");
            }
            printed.push_str(&line);
        }
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let field = |label: &str| {
            printed
                .lines()
                .find_map(|l| l.split_once(label).map(|(_, rest)| rest.trim().to_owned()))
                .unwrap_or_else(|| panic!("serve --demo printed no {label:?}:\n{printed}"))
        };
        let url = field("listening on ");
        let password = field("password: ")
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        (PortalProcess { child, url }, password)
    }

    /// Runs a `vendor-portal` client command that must succeed; its stdout.
    pub fn client_ok(&self, url: &str, token: &str, args: &[&str]) -> String {
        let out = self.client(url, token, args);
        assert!(
            out.status.success(),
            "vendor-portal {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a `vendor-portal` client command against `url` with `token`.
    pub fn client(&self, url: &str, token: &str, args: &[&str]) -> std::process::Output {
        Command::new(bin("vendor-portal"))
            .args(args)
            .env("PORTAL_URL", url)
            .env("PORTAL_TOKEN", token)
            .env("PATH", crate::moto::path_with_venv())
            // Copies of the order-workflow example build its Rust function in one target
            // folder per setup: versions built one after another compile incrementally, and no
            // two copies of other tests share cargo's records of what is fresh.
            .env(
                "CARGO_TARGET_DIR",
                self.data
                    .parent()
                    .unwrap_or(&self.data)
                    .join("cargo-target"),
            )
            .output()
            .unwrap()
    }
}

impl Drop for PortalSetup {
    fn drop(&mut self) {
        if let Some(url) = &self.database_url {
            drop_postgres_database(url);
        }
    }
}

/// A running portal process.
pub struct PortalProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl PortalProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PortalProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Creates the app `blog` with plan `standard` and customer `globex` through the API.
pub async fn seed_catalog(http: &reqwest::Client, url: &str, token: &str) {
    for (path, body) in [
        ("/api/v1/apps", json!({"slug": "blog", "name": "Blog"})),
        (
            "/api/v1/apps/blog/plans",
            json!({"slug": "standard", "name": "Standard", "duration_days": 30, "entitlements": {"features": ["posts"]}}),
        ),
        (
            "/api/v1/customers",
            json!({"slug": "globex", "name": "Globex"}),
        ),
    ] {
        let r = http
            .post(format!("{url}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "{path}: {}",
            r.text().await.unwrap_or_default()
        );
    }
}

/// A process's resident memory and its peak (`VmRSS`, `VmHWM` in `/proc/PID/status`), in bytes.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A published release with one large object, for download tests and the benchmark.
pub struct BigRelease {
    /// The license, compact, for `Authorization: License`.
    pub license: String,
    /// The large object's sealed digest.
    pub digest: String,
    /// Its sealed size in bytes.
    pub size: u64,
    /// Its file in the portal's local blob store (`None` when the store is S3).
    pub blob: Option<PathBuf>,
}

/// Through the vendor's real CLI: creates keys in `keys` and registers them, creates the
/// reference app and the customer `globex` (with `customer` as extra `customer create`
/// arguments); returns the root key's fingerprint.
pub fn seed_vendor(
    setup: &PortalSetup,
    url: &str,
    token: &str,
    keys: &str,
    customer: &[&str],
) -> String {
    let run = |args: &[&str]| setup.client_ok(url, token, args);
    run(&["keys", "init", "--out", keys]);
    run(&["keys", "register", "--keys", keys]);
    run(&[
        "app",
        "create",
        "--slug",
        "serverless-blog",
        "--name",
        "Serverless Blog",
    ]);
    let mut args = vec!["customer", "create", "--slug", "globex", "--name", "Globex"];
    args.extend_from_slice(customer);
    run(&args);
    run(&["keys", "fingerprint", "--keys", keys])
        .trim()
        .to_owned()
}

/// Through the vendor's real CLI: issues a license for the reference app to `globex` into
/// `out`, with `extra` arguments to `license issue`; returns the license id.
pub fn issue_license(
    setup: &PortalSetup,
    url: &str,
    token: &str,
    out: &Path,
    extra: &[&str],
) -> String {
    issue_license_for(setup, (url, token), "serverless-blog", out, extra)
}

/// [`issue_license`] for the app `app`.
pub fn issue_license_for(
    setup: &PortalSetup,
    (url, token): (&str, &str),
    app: &str,
    out: &Path,
    extra: &[&str],
) -> String {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "license",
        "issue",
        "--customer",
        "globex",
        "--app",
        app,
        "--output",
        "json",
        "-o",
        out,
    ];
    args.extend_from_slice(extra);
    let printed: Value = serde_json::from_str(&setup.client_ok(url, token, &args)).unwrap();
    printed["license"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no license id in {printed}"))
        .to_owned()
}

/// On a running portal (local blobs in `setup.data`), publishes the reference app with a
/// `size`-byte static asset of pseudo-random bytes, through the vendor's real CLI, and issues a
/// license for it. `dir` holds the keys, app folder and bundle.
pub fn publish_big_release(
    setup: &PortalSetup,
    url: &str,
    token: &str,
    dir: &Path,
    size: u64,
) -> BigRelease {
    use std::io::Write as _;
    let run = |args: &[&str]| setup.client_ok(url, token, args);
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    seed_vendor(setup, url, token, &p("keys"), &[]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/serverless-blog");
    copy_tree(&example, &dir.join("blog"));
    let mut big =
        std::io::BufWriter::new(std::fs::File::create(dir.join("blog/static/big.bin")).unwrap());
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        big.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    big.flush().unwrap();
    drop(big);
    run(&[
        "release",
        "build",
        &p("blog"),
        "--keys",
        &p("keys"),
        "-o",
        &p("big.bundle"),
    ]);
    std::fs::remove_file(dir.join("blog/static/big.bin")).unwrap();
    run(&["release", "push", &p("big.bundle"), "--keys", &p("keys")]);
    issue_license(setup, url, token, &dir.join("globex.lic"), &[]);
    let armored = std::fs::read_to_string(dir.join("globex.lic")).unwrap();
    let mut file = BufReader::new(std::fs::File::open(dir.join("big.bundle")).unwrap());
    let head = bundles::container::read_head(&mut file, &bundles::Limits::default()).unwrap();
    let manifest: bundles::BundleManifest = serde_json::from_slice(&head.manifest_bytes).unwrap();
    let object = manifest
        .objects
        .iter()
        .find(|o| o.path.as_str().ends_with("big.bin"))
        .unwrap();
    std::fs::remove_file(dir.join("big.bundle")).unwrap();
    let hex = object.sealed_digest.hex();
    let blob = std::fs::read_dir(setup.data.join("blobs/objects"))
        .ok()
        .and_then(|vendors| {
            vendors
                .map(|vendor| vendor.unwrap().path().join(&hex))
                .find(|path| path.is_file())
        });
    BigRelease {
        license: license::armor::dearmor(&armored).unwrap(),
        digest: object.sealed_digest.to_string(),
        size: object.sealed_size,
        blob,
    }
}

/// Copies a folder recursively (an example app into a test's temporary folder).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            // A compiled function's build output and cargo's target folder are not the app:
            // a copy builds its own.
            if matches!(entry.file_name().to_str(), Some("target" | "dist")) {
                continue;
            }
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Signs a new member of the token's vendor in to the web console (through the sign-in form,
/// with its CSRF token) and returns the HTML of the console page at `path`.
pub fn console_page(url: &str, token: &str, path: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // One viewer per call: a test may look at several pages.
        static VIEWERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = VIEWERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let email = format!("viewer-{}-{n}@acme.example", std::process::id());
        let member: Value = http
            .post(format!("{url}/api/v1/members"))
            .bearer_auth(token)
            .json(&serde_json::json!({"email": email, "role": "support"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let password = member["password"].as_str().unwrap().to_owned();
        let cookie_of = |response: &reqwest::Response, name: &str| -> Option<String> {
            response
                .headers()
                .get_all(reqwest::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| {
                    v.split(';')
                        .next()?
                        .strip_prefix(&format!("{name}="))
                        .map(str::to_owned)
                })
        };
        let form = http
            .get(format!("{url}/console/login"))
            .send()
            .await
            .unwrap();
        let csrf = cookie_of(&form, "__Host-consign_csrf").unwrap();
        let vendor = token_vendor(&http, url, token).await;
        let signed_in = http
            .post(format!("{url}/console/login"))
            .header(
                reqwest::header::COOKIE,
                format!("__Host-consign_csrf={csrf}"),
            )
            .form(&[
                ("csrf", csrf.as_str()),
                ("vendor", vendor.as_str()),
                ("email", email.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status(), 303, "the console sign-in failed");
        let session = cookie_of(&signed_in, "__Host-consign_session").unwrap();
        let page = http
            .get(format!("{url}{path}"))
            .header(
                reqwest::header::COOKIE,
                format!("__Host-consign_csrf={csrf}; __Host-consign_session={session}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{path}");
        page.text().await.unwrap()
    })
}

async fn token_vendor(http: &reqwest::Client, url: &str, token: &str) -> String {
    let vendor: Value = http
        .get(format!("{url}/api/v1/vendor"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    vendor["slug"].as_str().unwrap().to_owned()
}
