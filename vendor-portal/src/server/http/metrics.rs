//! Prometheus metrics for this process: requests by method, route and status, and a latency
//! histogram per route. Each portal process serves its own; Prometheus scrapes them all.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::server::state::AppState;

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// The process's request metrics.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
    counters: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            series: Mutex::new(BTreeMap::new()),
            counters: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let Ok(mut map) = self.series.lock() else {
            return;
        };
        let series = map
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        series.count += 1;
        series.sum += secs;
        for (slot, bound) in series.buckets.iter_mut().zip(BUCKETS) {
            if secs <= *bound {
                *slot += 1;
            }
        }
    }

    /// Adds `n` to the counter `name` (uploads, grants, bytes served).
    pub fn add(&self, name: &'static str, n: u64) {
        if let Ok(mut counters) = self.counters.lock() {
            *counters.entry(name).or_default() += n;
        }
    }

    /// Adds one to the counter `name`.
    pub fn count(&self, name: &'static str) {
        self.add(name, 1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(counters) = self.counters.lock() {
            for (name, value) in counters.iter() {
                let _ = writeln!(out, "# TYPE {name} counter\n{name} {value}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP consign_portal_uptime_seconds Seconds since this process started."
        );
        let _ = writeln!(out, "# TYPE consign_portal_uptime_seconds gauge");
        let _ = writeln!(
            out,
            "consign_portal_uptime_seconds {}",
            self.started.elapsed().as_secs()
        );
        let _ = writeln!(
            out,
            "# HELP consign_portal_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE consign_portal_requests_total counter");
        let Ok(map) = self.series.lock() else {
            return out;
        };
        for ((method, route, status), s) in map.iter() {
            let _ = writeln!(
                out,
                "consign_portal_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                s.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP consign_portal_request_seconds Time to answer HTTP requests."
        );
        let _ = writeln!(out, "# TYPE consign_portal_request_seconds histogram");
        for ((method, route, status), s) in map.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "consign_portal_request_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "consign_portal_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "consign_portal_request_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "consign_portal_request_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

/// The middleware that records every request.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    // The route template, never the raw path: ids would make the label set unbounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
