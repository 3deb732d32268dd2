//! A world for the license agent: a running portal with a vendor, the reference app's listing, a
//! customer and a license issued through the vendor's real CLI, and `license-agent serve`
//! processes started against it on free ports.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use license::SigningKey;
use license::checkin::{
    ACTIVATION, Activation, CHECKIN, Checkin, GENESIS, Placement, RecordBody, Signed, TamperReport,
    UsageRecord, fresh_nonce,
};
use serde_json::Value;

use crate::bin;
use crate::portal::{PortalProcess, PortalSetup, issue_license, seed_vendor};

/// The AWS account and region the agents report.
pub const ACCOUNT: &str = "123456789012";
/// See [`ACCOUNT`].
pub const REGION: &str = "eu-west-1";

/// A portal with a vendor and one license.
pub struct AgentWorld {
    /// The folder everything lives in.
    pub dir: tempfile::TempDir,
    /// The portal's setup (database, data folder).
    pub setup: PortalSetup,
    /// The running portal.
    pub portal: PortalProcess,
    /// The vendor's API token.
    pub token: String,
    /// The vendor's public keyset file.
    pub keyset: PathBuf,
    /// The license file.
    pub license: PathBuf,
    /// The license id.
    pub license_id: String,
}

impl AgentWorld {
    /// A portal on SQLite or PostgreSQL with a license for `posts` issued with `issue_args`.
    pub fn new(postgres: bool, issue_args: &[&str]) -> Self {
        Self::with_serve_args(postgres, issue_args, &[])
    }

    /// [`AgentWorld::new`] with extra `serve` arguments.
    pub fn with_serve_args(postgres: bool, issue_args: &[&str], serve_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut setup = PortalSetup::new(dir.path(), postgres);
        setup.extra = serve_args.iter().map(|a| (*a).to_owned()).collect();
        let token = setup.create_vendor("acme");
        let portal = setup.start();
        let keys = dir.path().join("keys");
        let keys_text = keys.to_str().unwrap().to_owned();
        seed_vendor(&setup, &portal.url, &token, &keys_text, &[]);
        let license = dir.path().join("globex.lic");
        let mut args = vec!["--features", "posts", "--expires", "+200d"];
        args.extend_from_slice(issue_args);
        let license_id = issue_license(&setup, &portal.url, &token, &license, &args);
        Self {
            keyset: keys.join("keyset.json"),
            dir,
            setup,
            portal,
            token,
            license,
            license_id,
        }
    }

    /// Runs a vendor command that must succeed; its stdout.
    pub fn vendor(&self, args: &[&str]) -> String {
        self.setup.client_ok(&self.portal.url, &self.token, args)
    }

    /// `vendor-portal usage show --license ID --output json`.
    pub fn usage(&self) -> Value {
        serde_json::from_str(&self.vendor(&[
            "usage",
            "show",
            "--license",
            &self.license_id,
            "--output",
            "json",
        ]))
        .unwrap()
    }

    /// `vendor-portal usage show --customer globex --output json`: every license of the customer.
    pub fn customer_usage(&self) -> Value {
        serde_json::from_str(&self.vendor(&[
            "usage",
            "show",
            "--customer",
            "globex",
            "--output",
            "json",
        ]))
        .unwrap()
    }

    /// Creates plan `metered` (`duration_days` long, `quota` on `api-calls`, as in a plan's
    /// entitlements, e.g. `{"amount": 10, "period": "month"}`) and issues a license on it to
    /// globex into `metered.lic`; the file and the license id.
    pub fn metered_license(&self, duration_days: u32, quota: &str) -> (PathBuf, String) {
        let entitlements = self.dir.path().join("metered.json");
        std::fs::write(
            &entitlements,
            format!(r#"{{"features": ["posts"], "quotas": {{"api-calls": {quota}}}}}"#),
        )
        .unwrap();
        self.vendor(&[
            "plan",
            "create",
            "--app",
            "serverless-blog",
            "--slug",
            "metered",
            "--name",
            "Metered",
            "--duration-days",
            &duration_days.to_string(),
            "--entitlements",
            entitlements.to_str().unwrap(),
        ]);
        let file = self.dir.path().join("metered.lic");
        let out = self.vendor(&[
            "license",
            "issue",
            "--customer",
            "globex",
            "--app",
            "serverless-blog",
            "--plan",
            "metered",
            "--output",
            "json",
            "-o",
            file.to_str().unwrap(),
        ]);
        let issued: Value = serde_json::from_str(&out).unwrap();
        let id = issued["license"]["id"].as_str().unwrap().to_owned();
        (file, id)
    }

    /// A state directory for an agent.
    pub fn state_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts an agent for `stack` with state in `state`, checking in every `interval` seconds.
    pub fn agent(&self, state: &Path, stack: &str, interval: u64) -> AgentProcess {
        AgentProcess::start(
            Command::new(bin("license-agent"))
                .env_remove("AWS_LAMBDA_RUNTIME_API")
                // No AWS here: the credential chain gives up at once instead of asking IMDS.
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("CONSIGN_NO_ACCOUNT_PROOF", "true")
                .args(["serve", "--listen", "127.0.0.1:0", "--license"])
                .arg(&self.license)
                .arg("--trust")
                .arg(&self.keyset)
                .args(["--portal", &self.portal.url])
                .args(["--checkin-interval", &interval.to_string()])
                .arg("--state-dir")
                .arg(state)
                .args(["--aws-account", ACCOUNT, "--region", REGION])
                .args(["--stack", stack, "--app-version", "1.0.0"]),
        )
    }
}

/// A running `license-agent serve`.
pub struct AgentProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Everything it wrote to stderr.
    pub log: Arc<Mutex<String>>,
}

impl AgentProcess {
    /// Starts `command` (a `license-agent serve` on port 0) and waits until it listens.
    pub fn start(command: &mut Command) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let mut url = None;
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            log.lock().unwrap().push_str(&line);
            if let Some(rest) = line.trim().strip_prefix("license-agent listening on ") {
                url = Some(rest.to_owned());
                break;
            }
            line.clear();
        }
        let Some(url) = url else {
            let _ = child.kill();
            panic!("the agent did not start:\n{}", log.lock().unwrap());
        };
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                }
                line.clear();
            }
        });
        Self { child, url, log }
    }

    /// GET `path` and its status and JSON body.
    pub fn get(&self, path: &str) -> (u16, Value) {
        http::get_json(&format!("{}{path}", self.url))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An agent of the test's own making, speaking the agent's protocol to the portal directly: it
/// holds its installation key and signs what it wants (a customer with root can do the same).
pub struct SignedAgent {
    /// The installation key.
    pub key: SigningKey,
    /// The agent's id.
    pub agent: String,
    /// The license.
    pub license: license::claims::LicenseId,
    /// The last record accepted.
    pub n: u64,
    /// Its hash.
    pub head: String,
    /// The check-in URL.
    pub url: String,
    /// The hour every record is in (fixed, so a test straddling an hour still fills one).
    /// The hour every record is in.
    pub hour: u64,
}

impl SignedAgent {
    /// Activates for stack `blog`.
    pub fn activate(world: &AgentWorld) -> Self {
        Self::activate_stack(world, "blog")
    }

    /// Activates for `stack`.
    pub fn activate_stack(world: &AgentWorld, stack: &str) -> Self {
        Self::activate_license(world, &world.license, stack)
    }

    /// Activates with the license in `license_file` for `stack`.
    pub fn activate_license(world: &AgentWorld, license_file: &Path, stack: &str) -> Self {
        let key = SigningKey::generate().unwrap();
        let text = std::fs::read_to_string(license_file).unwrap();
        let license_id = license::verify::decode_unverified(&text).unwrap().claims["jti"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let activation = Activation {
            account_proof: None,
            license: text,
            public_key: key.public_key(),
            placement: Placement {
                aws_account: "123456789012".into(),
                region: "eu-west-1".into(),
                stack: stack.into(),
                version: "1.0.0".into(),
            },
            nonce: fresh_nonce().unwrap(),
            time: license::UnixTime::now(),
        };
        let signed = Signed::sign(ACTIVATION, &activation, &key).unwrap();
        let (status, answer) = http::post_json(
            &format!("{}/api/v1/installations", world.portal.url),
            &serde_json::to_value(&signed).unwrap(),
        );
        assert_eq!(status, 200, "{answer}");
        Self {
            key,
            agent: answer["agent"].as_str().unwrap().to_owned(),
            license: license_id,
            n: 0,
            head: GENESIS.to_owned(),
            url: format!("{}/api/v1/installations/checkin", world.portal.url),
            hour: {
                let now = license::UnixTime::now().as_secs();
                now - now % 3600
            },
        }
    }

    /// Record `n` after `prev`: `quantity` units of api-calls in the agent's hour.
    pub fn record(&self, n: u64, prev: &str, quantity: u64) -> UsageRecord {
        UsageRecord::seal(
            RecordBody {
                id: format!("{}:{n}", self.agent),
                agent: self.agent.clone(),
                license: self.license.clone(),
                n,
                dimension: "api-calls".into(),
                hour: license::UnixTime::from_secs(self.hour).unwrap(),
                quantity,
                events: 1,
                prev: prev.to_owned(),
            },
            &self.key,
        )
        .unwrap()
    }

    /// Checks in `quantities` as the next records (the chain advances only when accepted).
    pub fn send(&mut self, quantities: &[u64]) -> (u16, Value) {
        self.send_with(quantities, "1.0.0", vec![])
    }

    /// Checks in `quantities` with `version` and tamper `reports`.
    pub fn send_with(
        &mut self,
        quantities: &[u64],
        version: &str,
        reports: Vec<TamperReport>,
    ) -> (u16, Value) {
        let (mut n, mut head) = (self.n, self.head.clone());
        let mut records = Vec::new();
        for q in quantities {
            n += 1;
            let record = self.record(n, &head, *q);
            head.clone_from(&record.hash);
            records.push(record);
        }
        let checkin = Checkin {
            account_proof: None,
            agent: self.agent.clone(),
            license: self.license.clone(),
            license_seq: 1,
            version: version.into(),
            nonce: fresh_nonce().unwrap(),
            time: license::UnixTime::now(),
            records,
            reports,
        };
        let (status, answer) = self.send_checkin(&checkin);
        if status == 200 {
            (self.n, self.head) = (n, head);
        }
        (status, answer)
    }

    /// Checks in `records` as they are (gaps, changes and all), without moving the chain.
    pub fn send_raw(&self, records: Vec<UsageRecord>) -> (u16, Value) {
        self.send_checkin(&Checkin {
            account_proof: None,
            agent: self.agent.clone(),
            license: self.license.clone(),
            license_seq: 1,
            version: "1.0.0".into(),
            nonce: fresh_nonce().unwrap(),
            time: license::UnixTime::now(),
            records,
            reports: vec![],
        })
    }

    fn send_checkin(&self, checkin: &Checkin) -> (u16, Value) {
        let signed = Signed::sign(CHECKIN, checkin, &self.key).unwrap();
        http::post_json(&self.url, &serde_json::to_value(&signed).unwrap())
    }
}

/// Blocking JSON over HTTP for tests that are not async.
pub mod http {
    use serde_json::Value;

    /// GET a JSON document: its status and body.
    pub fn get_json(url: &str) -> (u16, Value) {
        run(async {
            let response = reqwest::get(url).await.unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    /// POST a JSON document: the status and body.
    pub fn post_json(url: &str, body: &Value) -> (u16, Value) {
        run(async {
            let response = reqwest::Client::new()
                .post(url)
                .json(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    fn run<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `limit`; panics naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
