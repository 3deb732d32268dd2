//! Lambda on loopback: a server that speaks the Lambda Extensions API (register, event/next) as
//! the Lambda runtime does, and execution environments made of it, a `/tmp` of their own and a
//! license agent started the way Lambda starts an extension from a layer (no arguments, its
//! settings in the environment).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::agent::{ACCOUNT, AgentProcess, REGION};
use crate::bin;

/// What the Extensions API saw.
#[derive(Default)]
pub struct Seen {
    /// Each registration: the extension's name and the events it asked for.
    pub registered: Vec<(String, Value)>,
    /// How many times `event/next` was called.
    pub polls: usize,
}

/// The Lambda Extensions API of one execution environment: one INVOKE, then SHUTDOWN once
/// [`ExtensionsApi::shutdown`] is called.
pub struct ExtensionsApi {
    /// `127.0.0.1:PORT`, for `AWS_LAMBDA_RUNTIME_API`.
    pub addr: String,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
    shutdown: Arc<Notify>,
}

impl ExtensionsApi {
    /// Starts one on a free port.
    pub fn start() -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shutdown = Arc::new(Notify::new());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (seen_by_api, shutdown_by_api) = (Arc::clone(&seen), Arc::clone(&shutdown));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(listener, seen_by_api, shutdown_by_api));
        });
        Self {
            addr,
            seen,
            shutdown,
        }
    }

    /// Lambda spins the environment down: the next `event/next` answers SHUTDOWN.
    pub fn shutdown(&self) {
        self.shutdown.notify_one();
    }
}

async fn serve(listener: std::net::TcpListener, seen: Arc<Mutex<Seen>>, shutdown: Arc<Notify>) {
    let register_seen = Arc::clone(&seen);
    let app = Router::new()
        .route(
            "/2020-01-01/extension/register",
            post(move |headers: HeaderMap, body: String| {
                let seen = Arc::clone(&register_seen);
                async move {
                    let name = headers
                        .get("Lambda-Extension-Name")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let events: Value = serde_json::from_str(&body).unwrap_or_default();
                    seen.lock().unwrap().registered.push((name, events));
                    (
                        [("Lambda-Extension-Identifier", "ext-0001")],
                        axum::Json(json!({"functionName": "blog-posts", "functionVersion": "$LATEST", "handler": "app.handler"})),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/2020-01-01/extension/event/next",
            get(move |headers: HeaderMap| {
                let (seen, shutdown) = (Arc::clone(&seen), Arc::clone(&shutdown));
                async move {
                    if headers
                        .get("Lambda-Extension-Identifier")
                        .and_then(|v| v.to_str().ok())
                        != Some("ext-0001")
                    {
                        return StatusCode::FORBIDDEN.into_response();
                    }
                    let poll = {
                        let mut seen = seen.lock().unwrap();
                        seen.polls += 1;
                        seen.polls
                    };
                    if poll == 1 {
                        return axum::Json(
                            json!({"eventType": "INVOKE", "deadlineMs": 0, "requestId": "r-1"}),
                        )
                        .into_response();
                    }
                    shutdown.notified().await;
                    axum::Json(
                        json!({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0}),
                    )
                    .into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    axum::serve(listener, app).await.unwrap();
}

/// What every execution environment of one function shares: the license, the keyset, the
/// portal, the stack, and (when the stack declares one) the agent's state table in moto.
#[derive(Clone)]
pub struct Function {
    /// The license file (Lambda reads it from SSM; a file is the same bytes).
    pub license: PathBuf,
    /// The vendor's keyset (the layer's `/opt/consign/keyset.json`).
    pub keyset: PathBuf,
    /// `CONSIGN_PORTAL_URL`.
    pub portal: String,
    /// `CONSIGN_STACK`.
    pub stack: String,
    /// `CONSIGN_AGENT_STATE_TABLE` and the moto endpoint that holds it.
    pub table: Option<(String, String)>,
    /// Seconds between check-ins.
    pub interval: u64,
}

/// One execution environment: its Extensions API, its own `/tmp` and the agent in it.
pub struct Environment {
    /// The Extensions API.
    pub api: ExtensionsApi,
    /// The agent.
    pub agent: AgentProcess,
    /// Its `/tmp`.
    pub tmp: PathBuf,
}

impl Function {
    /// Cold-starts an environment whose `/tmp` is `tmp` (a fresh folder: a new environment
    /// keeps nothing of the ones before).
    pub fn cold_start(&self, tmp: &Path) -> Environment {
        let api = ExtensionsApi::start();
        std::fs::create_dir_all(tmp).unwrap();
        let mut command = Command::new(bin("license-agent"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
            .env("CONSIGN_LICENSE_FILE", &self.license)
            .env("CONSIGN_TRUST", &self.keyset)
            .env("CONSIGN_PORTAL_URL", &self.portal)
            .env("CONSIGN_AGENT_STATE_DIR", tmp.join("consign-license-agent"))
            .env("CONSIGN_AGENT_LISTEN", "127.0.0.1:0")
            .env("CONSIGN_AWS_ACCOUNT", ACCOUNT)
            .env("AWS_REGION", REGION)
            .env("CONSIGN_STACK", &self.stack)
            .env("CONSIGN_APP_VERSION", "1.0.0")
            .env("CONSIGN_CHECKIN_INTERVAL", self.interval.to_string())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            // These portals have no STS to send proofs to (their licenses require none).
            .env("CONSIGN_NO_ACCOUNT_PROOF", "true");
        if let Some((table, endpoint)) = &self.table {
            command
                .env("CONSIGN_AGENT_STATE_TABLE", table)
                .env("AWS_ENDPOINT_URL", endpoint);
        }
        let agent = AgentProcess::start(&mut command);
        Environment {
            api,
            agent,
            tmp: tmp.to_owned(),
        }
    }
}
