//! A man in the middle between a client (the installer) and a portal, on a free loopback port:
//! it forwards every request to the real portal, except the paths under a prefix it was told to
//! answer itself (a compromised portal's metadata, say), and it can rewrite the body of the
//! replies to given paths. The attack tests point the installer at it instead of the portal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};

/// Rewrites a forwarded reply's body.
pub type Rewrite = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

#[derive(Default)]
struct Rules {
    /// A path prefix answered from `files` (by the rest of the path), 404 for anything else.
    prefix: Option<String>,
    files: BTreeMap<String, Vec<u8>>,
    rewrites: BTreeMap<String, Rewrite>,
    /// Answer every request 503, as a gateway in front of a portal that is down does.
    down: bool,
    /// Requests seen, by AWS operation (`X-Amz-Target`) or else by path.
    counts: BTreeMap<String, usize>,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    rules: Arc<Mutex<Rules>>,
    /// Held around each forwarded request when requests go upstream one at a time.
    serial: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// A running man in the middle.
pub struct Mitm {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    rules: Arc<Mutex<Rules>>,
    _runtime: tokio::runtime::Runtime,
}

impl Mitm {
    /// Starts one in front of `upstream` (a base URL), forwarding everything.
    pub fn start(upstream: &str) -> Self {
        Self::begin(upstream, false)
    }

    /// Starts one that forwards one request at a time. moto's DynamoDB runs requests on
    /// concurrent threads with no lock on a table, so two writes conditional on the same
    /// version can both succeed there, which DynamoDB never allows; one at a time, moto keeps
    /// that promise.
    pub fn serial(upstream: &str) -> Self {
        Self::begin(upstream, true)
    }

    fn begin(upstream: &str, serial: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let rules = Arc::new(Mutex::new(Rules::default()));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            rules: rules.clone(),
            serial: serial.then(|| Arc::new(tokio::sync::Mutex::new(()))),
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(handle).with_state(shared);
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            rules,
            _runtime: runtime,
        }
    }

    /// From now on, answers every path under `prefix` from `files` (keyed by the rest of the
    /// path) and 404 for the others there.
    pub fn answer_under(&self, prefix: &str, files: BTreeMap<String, Vec<u8>>) {
        let mut rules = self.rules.lock().unwrap();
        rules.prefix = Some(prefix.to_owned());
        rules.files = files;
    }

    /// The requests it saw, by AWS operation (`X-Amz-Target`, for an AWS JSON API behind it)
    /// or else by path.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.rules.lock().unwrap().counts.clone()
    }

    /// Takes the portal behind it down (every request answered 503) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.rules.lock().unwrap().down = down;
    }

    /// From now on, rewrites the body of the replies to `path`.
    pub fn rewrite(&self, path: &str, rewrite: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) {
        self.rules
            .lock()
            .unwrap()
            .rewrites
            .insert(path.to_owned(), Arc::new(rewrite));
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let (answer, rewrite) = {
        let mut rules = shared.rules.lock().unwrap();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map_or_else(
                || path.clone(),
                |t| t.rsplit('.').next().unwrap_or(t).to_owned(),
            );
        *rules.counts.entry(operation).or_default() += 1;
        if rules.down {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let answer = rules
            .prefix
            .as_deref()
            .and_then(|prefix| path.strip_prefix(prefix))
            .map(|rest| rules.files.get(rest).cloned());
        (answer, rules.rewrites.get(&path).cloned())
    };
    if let Some(answer) = answer {
        return match answer {
            Some(bytes) => (StatusCode::OK, bytes).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let target = format!(
        "{}{}",
        shared.upstream,
        request
            .uri()
            .path_and_query()
            .map_or(path.as_str(), |p| p.as_str())
    );
    let method = request.method().clone();
    let mut headers = request.headers().clone();
    headers.remove(axum::http::header::HOST);
    let Ok(body) = axum::body::to_bytes(request.into_body(), 64 * 1024 * 1024).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let _turn = match &shared.serial {
        Some(serial) => Some(serial.lock().await),
        None => None,
    };
    let upstream = match shared
        .http
        .request(method, target)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(upstream) => upstream,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if name != axum::http::header::CONTENT_LENGTH
            && name != axum::http::header::TRANSFER_ENCODING
        {
            headers.append(name.clone(), value.clone());
        }
    }
    let Ok(bytes) = upstream.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let bytes = match rewrite {
        Some(rewrite) => rewrite(&bytes),
        None => bytes.to_vec(),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
