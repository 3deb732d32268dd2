//! Sending an account proof to STS: only to the endpoint the proof was checked for (an allowed
//! STS endpoint, or the operator's emulator), with only the proof's own headers and body, no
//! redirects followed, a short timeout and a bounded answer.

use std::time::Duration;

use futures_util::StreamExt as _;
use license::proof::{self, CheckedProof, Identity};

/// Largest STS answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// The STS client for account proofs.
#[derive(Clone, Debug)]
pub struct Sts {
    /// An STS endpoint accepted besides AWS's own (an emulator in tests), `scheme://host:port`.
    pub emulator: Option<String>,
    http: reqwest::Client,
}

/// Why STS gave no identity.
#[derive(Debug)]
pub enum StsFailure {
    /// STS answered, and not with an identity: its status and message.
    Refused(u16, String),
    /// STS could not be reached.
    Unreachable(String),
}

impl Sts {
    /// A client accepting `emulator` as an STS endpoint besides AWS's.
    pub fn new(emulator: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("consign-portal/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            emulator: emulator.map(|e| e.trim_end_matches('/').to_owned()),
            http,
        })
    }

    /// Sends `checked` to its STS endpoint and reads the identity from the answer.
    pub async fn ask(&self, checked: &CheckedProof) -> Result<Identity, StsFailure> {
        let mut request = self.http.post(&checked.url).body(proof::BODY);
        for (name, value) in &checked.headers {
            request = request.header(name, value);
        }
        let unreachable = |e: reqwest::Error| StsFailure::Unreachable(e.to_string());
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(unreachable)?;
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(StsFailure::Refused(
                    status,
                    format!("an answer over {MAX_ANSWER} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        if status == 200
            && let Some(identity) = proof::parse_identity(&text)
        {
            return Ok(identity);
        }
        let message = ["Message", "message"]
            .iter()
            .find_map(|tag| {
                let open = format!("<{tag}>");
                let start = text.find(&open)? + open.len();
                let end = text[start..].find('<')? + start;
                Some(text[start..end].chars().take(300).collect::<String>())
            })
            .unwrap_or_else(|| format!("HTTP {status} without an identity"));
        Err(StsFailure::Refused(status, message))
    }
}
