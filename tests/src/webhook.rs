//! A webhook receiver for the tests: a real HTTP server on a free loopback port that records
//! every request and answers from a script (then 200), and the receiver's side of the Standard
//! Webhooks convention, written from the specification rather than from the portal's code.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use serde_json::Value;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The body.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
    /// What the receiver answered.
    pub answered: u16,
}

#[derive(Default)]
struct Inner {
    seen: Vec<Received>,
    script: VecDeque<u16>,
}

/// A running receiver.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// Starts a receiver that answers the first requests with `script`'s statuses, then 200.
    pub fn start(script: &[u16]) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            seen: Vec::new(),
            script: script.iter().copied().collect(),
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, port) = std::sync::mpsc::channel();
        let shared = inner.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap().port()).unwrap();
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(move |headers: HeaderMap, body: String| {
                        let shared = shared.clone();
                        async move { record(&shared, &headers, body) }
                    }),
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let port = port.recv().unwrap();
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            inner,
            stop: Some(stop),
        }
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// Waits until `done` holds of the requests so far, for at most `limit`; the requests.
    pub fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let seen = self.received();
            if done(&seen) {
                return seen;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; received: {:#?}",
                seen.iter()
                    .map(|r| (&r.id, r.answered, &r.body))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn record(inner: &Mutex<Inner>, headers: &HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut inner = inner.lock().unwrap();
    let answered = inner.script.pop_front().unwrap_or(200);
    inner.seen.push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
        at: Instant::now(),
        answered,
    });
    StatusCode::from_u16(answered).unwrap_or(StatusCode::OK)
}

/// Verifies a delivery as a receiver following the Standard Webhooks specification does: the
/// secret is `whsec_` and base64; the signed content is `id.timestamp.body`; the header holds
/// space-separated `v1,<base64 HMAC-SHA256>` signatures, one of which must match; the timestamp
/// must be within five minutes. The event on success.
pub fn verify(secret: &str, r: &Received) -> Result<Value, String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").ok_or("no whsec_ prefix")?)
        .map_err(|e| e.to_string())?;
    let timestamp: i64 = r.timestamp.parse().map_err(|_| "bad webhook-timestamp")?;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    if (now - timestamp).abs() > 300 {
        return Err(format!("timestamp {timestamp} is not within five minutes"));
    }
    let content = format!("{}.{}.{}", r.id, r.timestamp, r.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let matched = r.signature.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|tag| ring::hmac::verify(&key, content.as_bytes(), &tag).is_ok())
    });
    if !matched {
        return Err(format!("no signature matches in {:?}", r.signature));
    }
    serde_json::from_str(&r.body).map_err(|e| e.to_string())
}
