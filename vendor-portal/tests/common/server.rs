//! A real portal for tests: the server started in-process on a free loopback port, on SQLite in a
//! temporary folder or on a fresh PostgreSQL database of its own (dropped afterwards), with a
//! vendor created by the admin path.

use std::net::SocketAddr;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vendor_portal::server::state::Limits;
use vendor_portal::server::{self, Config};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    /// SQLite in a temporary folder.
    Sqlite,
    /// A new database on the PostgreSQL at `DATABASE_URL`.
    Postgres,
}

/// A database of its own on the test PostgreSQL (`tests::portal`), dropped when this is dropped.
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
}

impl PgDatabase {
    /// Creates one.
    pub fn create() -> Self {
        Self {
            url: tests::portal::create_postgres_database(),
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        tests::portal::drop_postgres_database(&self.url);
    }
}

/// A running portal.
pub struct TestPortal {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The first vendor's token.
    pub token: String,
    /// The first vendor's slug.
    pub vendor: String,
    /// The shared state (for creating more vendors).
    pub state: server::state::AppState,
    /// An HTTP client.
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestPortal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a portal on `db` with `limits`.
pub async fn start_with(db: Db, limits: Limits) -> TestPortal {
    let dir = tempfile::tempdir().unwrap();
    let pg = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(PgDatabase::create()),
    };
    let config = Config {
        database_url: pg.as_ref().map(|p| p.url.clone()),
        master_key_file: Some(master_key_file(dir.path())),
        limits,
        ..Config::embedded(dir.path().join("data"))
    };
    let state = server::open(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let serving = state.clone();
    let task = tokio::spawn(async move {
        // No SMTP server: mail goes to the log.
        let mailer = server::base::mail::Mailer::new(
            None,
            "Consign <consign@portal.example>",
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let _ = server::serve(
            listener,
            serving,
            std::time::Duration::from_secs(60),
            mailer,
        )
        .await;
    });
    let vendor = server::create_vendor(&state, "acme", "Acme", "owner@acme.example")
        .await
        .unwrap();
    TestPortal {
        url: format!("http://{addr}"),
        token: vendor.token,
        vendor: "acme".into(),
        state,
        http: reqwest::Client::new(),
        _dir: dir,
        _pg: pg,
        task,
    }
}

/// Starts a portal on `db` with default limits.
pub async fn start(db: Db) -> TestPortal {
    start_with(db, Limits::default()).await
}

/// Writes a fresh master key file in `dir`.
pub fn master_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("master.key");
    if !path.exists() {
        server::base::secrets::MasterKey::from_file(&path, true).unwrap();
    }
    path
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body text.
    pub text: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts `status` and returns the JSON body.
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts a problem document with `status` and returns its detail.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "body: {}",
            self.text
        );
        let body = self.json();
        assert_eq!(body["status"], json!(status));
        body["detail"].as_str().unwrap().to_owned()
    }
}

impl TestPortal {
    /// Sends a request with `token` (or none) and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    /// GET with the vendor's token.
    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.token), None).await
    }

    /// POST with the vendor's token.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(&self.token), Some(body))
            .await
    }

    /// Creates another vendor and returns its token.
    pub async fn other_vendor(&self, slug: &str) -> String {
        server::create_vendor(&self.state, slug, "Other", &format!("owner@{slug}.example"))
            .await
            .unwrap()
            .token
    }

    /// Creates an app with a plan and a customer, for tests that need something to license.
    pub async fn seed_catalog(&self, token: &str) {
        let app = self
            .call(
                Method::POST,
                "/api/v1/apps",
                Some(token),
                Some(json!({"slug": "blog", "name": "Blog"})),
            )
            .await;
        app.expect(201);
        self.call(
            Method::POST,
            "/api/v1/apps/blog/plans",
            Some(token),
            Some(
                json!({"slug": "standard", "name": "Standard", "duration_days": 30,
                        "entitlements": {"features": ["posts"], "limits": {"users": {"max": 10}}}}),
            ),
        )
        .await
        .expect(201);
        self.call(
            Method::POST,
            "/api/v1/customers",
            Some(token),
            Some(json!({"slug": "globex", "name": "Globex", "aws_accounts": ["123456789012"]})),
        )
        .await
        .expect(201);
    }

    /// Issues a license for globex on blog/standard and returns it.
    pub async fn issue(&self, token: &str) -> Value {
        self.call(
            Method::POST,
            "/api/v1/licenses",
            Some(token),
            Some(json!({"customer": "globex", "app": "blog", "plan": "standard"})),
        )
        .await
        .expect(201)
    }
}

/// Declares a test that runs `$body(Db)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::server::Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::server::Db::Postgres).await;
            }
        }
    };
}
