//! Talking to the vendor's portal: activation and check-ins, every byte of which is kept in the
//! outbox for the customer to read (`GET /v1/outbox`): the last 100 requests in memory and all
//! of them in `outbox.jsonl` in the state directory (rotated at 4 MiB).

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use license::UnixTime;
use license::checkin::Signed;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Requests kept in memory for `GET /v1/outbox`.
const KEEP_SENT: usize = 100;
/// The outbox log is rotated beyond this size.
const MAX_LOG: u64 = 4 * 1024 * 1024;

/// One request as sent.
#[derive(Clone, Debug, Serialize)]
pub struct Sent {
    /// When.
    pub at: UnixTime,
    /// Where.
    pub url: String,
    /// The exact body.
    pub body: String,
    /// The payload inside it, decoded (the same bytes, for reading).
    pub payload: serde_json::Value,
    /// The HTTP status, when an answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a request to the portal did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The portal could not be reached or did not answer in time.
    Unreachable(String),
    /// The portal answered with an error.
    Refused {
        /// HTTP status.
        status: u16,
        /// The problem's code.
        code: String,
        /// The problem's detail.
        detail: String,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(e) => write!(f, "the portal is unreachable: {e}"),
            Failure::Refused {
                status,
                code,
                detail,
            } => write!(f, "the portal refused ({status} {code}): {detail}"),
        }
    }
}

/// The portal client and the outbox.
pub struct PortalClient {
    base: String,
    http: reqwest::Client,
    sent: Mutex<VecDeque<Sent>>,
    log: PathBuf,
}

impl PortalClient {
    /// A client for the portal at `base`, logging to `log`.
    pub fn new(base: &str, log: PathBuf) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("license-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            sent: Mutex::new(VecDeque::new()),
            log,
        })
    }

    /// The requests sent, newest last.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remember(&self, entry: Sent) {
        if let Ok(line) = serde_json::to_vec(&entry) {
            let rotate = std::fs::metadata(&self.log).is_ok_and(|m| m.len() > MAX_LOG);
            if rotate {
                let _ = std::fs::rename(&self.log, self.log.with_extension("jsonl.1"));
            }
            let written = crate::home::open_private_append(&self.log)
                .and_then(|mut f| f.write_all(&[line.as_slice(), b"\n"].concat()));
            if let Err(e) = written {
                tracing::warn!(error = %e, "the outbox log could not be written");
            }
        }
        if let Ok(mut sent) = self.sent.lock() {
            if sent.len() >= KEEP_SENT {
                sent.pop_front();
            }
            sent.push_back(entry);
        }
    }

    /// A single-use nonce for an account proof (`POST /api/v1/proofs/nonce`).
    pub async fn proof_nonce(&self) -> Result<String, Failure> {
        let url = format!("{}/api/v1/proofs/nonce", self.base);
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .map_err(|e| Failure::Unreachable(describe(&e)))?;
        let status = response.status().as_u16();
        if status == 404 {
            return Err(Failure::Refused {
                status,
                code: "not_found".into(),
                detail: "the portal takes no account proofs".into(),
            });
        }
        let answer: serde_json::Value = response
            .json()
            .await
            .map_err(|e| Failure::Unreachable(describe(&e)))?;
        let text = |k: &str| answer.get(k).and_then(|v| v.as_str()).unwrap_or("");
        match text("nonce") {
            nonce if status == 200 && license::proof::valid_nonce(nonce) => Ok(nonce.to_owned()),
            _ => Err(Failure::Refused {
                status,
                code: text("code").to_owned(),
                detail: format!("no proof nonce: {}", text("detail")),
            }),
        }
    }

    /// Posts a signed request to `path` and parses the answer.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        signed: &Signed,
    ) -> Result<T, Failure> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::to_string(signed).unwrap_or_default();
        let payload = signed
            .payload_bytes()
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        let mut entry = Sent {
            at: UnixTime::now(),
            url: url.clone(),
            body: body.clone(),
            payload,
            status: None,
            error: None,
        };
        let result = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let reason = describe(&e);
                entry.error = Some(reason.clone());
                self.remember(entry);
                return Err(Failure::Unreachable(reason));
            }
        };
        let status = response.status().as_u16();
        entry.status = Some(status);
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let reason = describe(&e);
                entry.error = Some(reason.clone());
                self.remember(entry);
                return Err(Failure::Unreachable(reason));
            }
        };
        if !(200..300).contains(&status) {
            let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let text = |k: &str| {
                problem
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let failure = Failure::Refused {
                status,
                code: text("code"),
                detail: text("detail"),
            };
            entry.error = Some(failure.to_string());
            self.remember(entry);
            // A gateway in front of a portal that is down is the same as no portal.
            if matches!(status, 502..=504) {
                return Err(Failure::Unreachable(format!("HTTP {status}")));
            }
            return Err(failure);
        }
        self.remember(entry);
        serde_json::from_slice(&bytes).map_err(|e| Failure::Refused {
            status,
            code: "bad_answer".into(),
            detail: format!("the portal's answer is not what an agent expects: {e}"),
        })
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        e.to_string()
    }
}
