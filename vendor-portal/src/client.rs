//! The HTTP client the vendor's commands use to talk to a portal. Every POST carries a fresh
//! `Idempotency-Key`, so a request that timed out or met a 503 is retried safely with the same
//! key; errors are the portal's problem `detail`, one sentence.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How many times a request is sent before giving up on transient failures.
const ATTEMPTS: u32 = 3;

/// A portal and the credentials to use it.
pub struct Portal {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Portal {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) with an optional vendor token.
    pub fn new(base: Option<String>, token: Option<String>) -> Result<Self> {
        let base = base.ok_or_else(|| {
            anyhow!(
                "no portal given: pass --portal URL or set PORTAL_URL (e.g. http://127.0.0.1:8080)"
            )
        })?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--portal {base:?} is not an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("vendor-portal/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
            runtime,
        })
    }

    fn require_token(&self) -> Result<&str> {
        self.token.as_deref().ok_or_else(|| {
            anyhow!("no vendor token given: pass --token or set PORTAL_TOKEN (`vendor-portal admin create-vendor` prints the first one)")
        })
    }

    /// GET `path` with the token; the JSON answer.
    pub fn get(&self, path: &str) -> Result<Value> {
        let text = self.send(Method::GET, path, None, true)?;
        serde_json::from_str(&text)
            .with_context(|| format!("the portal's answer to GET {path} is not JSON"))
    }

    /// GET `path` without credentials; the body text.
    pub fn get_public(&self, path: &str) -> Result<String> {
        self.send(Method::GET, path, None, false)
    }

    /// GET `path` with the token; the body text.
    pub fn get_text(&self, path: &str) -> Result<String> {
        self.send(Method::GET, path, None, true)
    }

    /// POST `body` to `path` with the token and a fresh idempotency key; the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let text = self.send(Method::POST, path, Some(body), true)?;
        serde_json::from_str(&text)
            .with_context(|| format!("the portal's answer to POST {path} is not JSON"))
    }

    /// PATCH `body` to `path` with the token; the JSON answer.
    pub fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        let text = self.send(Method::PATCH, path, Some(body), true)?;
        serde_json::from_str(&text)
            .with_context(|| format!("the portal's answer to PATCH {path} is not JSON"))
    }

    /// DELETE `path` with the token; the JSON answer.
    pub fn delete(&self, path: &str) -> Result<Value> {
        let text = self.send(Method::DELETE, path, None, true)?;
        serde_json::from_str(&text)
            .with_context(|| format!("the portal's answer to DELETE {path} is not JSON"))
    }

    /// PUT `body` (JSON) to `path` with the token; the JSON answer.
    pub fn put(&self, path: &str, body: &Value) -> Result<Value> {
        let text = self.send(Method::PUT, path, Some(body), true)?;
        serde_json::from_str(&text)
            .with_context(|| format!("the portal's answer to PUT {path} is not JSON"))
    }

    /// PUT exact JSON bytes (signed metadata, which must arrive byte for byte) to `path`.
    pub fn put_raw(&self, path: &str, bytes: Vec<u8>) -> Result<Value> {
        self.once(Method::PUT, path, bytes, None)
    }

    /// POST `body` once (no retries, no overall timeout): for requests that do long work, such
    /// as assembling a large upload, and are idempotent by themselves.
    pub fn post_slow(&self, path: &str, body: &Value) -> Result<Value> {
        self.once(
            Method::POST,
            path,
            serde_json::to_vec(body)?,
            Some(Duration::from_secs(24 * 3600)),
        )
    }

    fn once(
        &self,
        method: Method,
        path: &str,
        bytes: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let token = self.require_token()?.to_owned();
        let text = self.runtime.block_on(async {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(bytes);
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            let response = request.send().await.map_err(|e| self.transport_error(e))?;
            answer(response).await
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("the portal's answer to {method} {path} is not JSON"))
    }

    /// Streams `len` bytes of `file` from `offset` to `path` with PUT, calling `progress` with
    /// each chunk's size. No overall timeout: large objects take as long as they take.
    pub fn upload(
        &self,
        path: &str,
        file: &std::path::Path,
        offset: u64,
        len: u64,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<Value> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let url = format!("{}{path}", self.base);
        let token = self.require_token()?.to_owned();
        let file = file.to_owned();
        let text = self.runtime.block_on(async {
            let mut handle = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot open {}", file.display()))?;
            handle
                .seek(std::io::SeekFrom::Start(offset))
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(handle.take(len), 256 * 1024)
                .inspect(move |chunk| {
                    if let Ok(bytes) = chunk {
                        progress(bytes.len() as u64);
                    }
                });
            let response = self
                .http
                .put(&url)
                .bearer_auth(token)
                .header("content-type", "application/octet-stream")
                .header("content-length", len)
                .timeout(Duration::from_secs(24 * 3600))
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .map_err(|e| self.transport_error(e))?;
            answer(response).await
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("the portal's answer to PUT {path} is not JSON"))
    }

    /// Streams GET `path` (with the token, or without when `auth` is false) into `out`, calling
    /// `progress` with each chunk's size; the number of bytes written.
    pub fn download(
        &self,
        path: &str,
        auth: bool,
        out: &mut dyn std::io::Write,
        progress: &dyn Fn(u64),
    ) -> Result<u64> {
        let url = format!("{}{path}", self.base);
        let token = if auth {
            Some(self.require_token()?.to_owned())
        } else {
            None
        };
        self.runtime.block_on(async {
            let mut request = self.http.get(&url).timeout(Duration::from_secs(24 * 3600));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| self.transport_error(e))?;
            if !response.status().is_success() {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                bail!(
                    "{}",
                    problem_detail(&text).unwrap_or_else(|| format!("{status}"))
                );
            }
            let mut stream = response.bytes_stream();
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| anyhow!("the download of {path} broke off: {e}"))?;
                out.write_all(&chunk).context("cannot write the download")?;
                written += chunk.len() as u64;
                progress(chunk.len() as u64);
            }
            Ok(written)
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow!(
                "cannot reach the portal at {}: is it running, and is --portal/PORTAL_URL right?",
                self.base
            )
        } else if e.is_timeout() {
            anyhow!("the portal at {} did not answer in time", self.base)
        } else {
            anyhow::Error::new(e).context(format!("cannot talk to the portal at {}", self.base))
        }
    }

    fn send(&self, method: Method, path: &str, body: Option<&Value>, auth: bool) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let token = if auth {
            Some(self.require_token()?.to_owned())
        } else {
            None
        };
        let key = crate::server::base::secrets::new_id("idem")?;
        self.runtime.block_on(async {
            let mut last_error = None;
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
                let mut request = self.http.request(method.clone(), &url);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                if let Some(body) = body {
                    request = request.json(body).header("idempotency-key", &key);
                }
                let response = match request.send().await {
                    Ok(r) => r,
                    Err(e) if e.is_connect() => {
                        last_error = Some(anyhow!("cannot reach the portal at {}: is it running, and is --portal/PORTAL_URL right?", self.base));
                        continue;
                    }
                    Err(e) if e.is_timeout() => {
                        last_error = Some(anyhow!("the portal at {} did not answer in time", self.base));
                        continue;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(format!("cannot talk to the portal at {}", self.base)));
                    }
                };
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let text = response.text().await.unwrap_or_default();
                if status.is_success() {
                    return Ok(text);
                }
                let detail = problem_detail(&text).unwrap_or_else(|| format!("{status}"));
                if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::BAD_GATEWAY {
                    last_error = Some(anyhow!("the portal is unavailable: {detail}"));
                    continue;
                }
                return Err(match (status, retry_after) {
                    (StatusCode::TOO_MANY_REQUESTS, Some(secs)) => anyhow!("{detail} (retry after {secs} s)"),
                    _ => anyhow!("{detail}"),
                });
            }
            Err(last_error.unwrap_or_else(|| anyhow!("the portal did not answer")))
        })
    }
}

async fn answer(response: reqwest::Response) -> Result<String> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(text)
    } else {
        bail!(
            "{}",
            problem_detail(&text).unwrap_or_else(|| format!("{status}"))
        )
    }
}

fn problem_detail(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("detail")?.as_str().map(str::to_owned)
}
