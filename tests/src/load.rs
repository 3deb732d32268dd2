//! The load generator the loopback benchmarks share: closed-loop runs (each of N keep-alive
//! clients sends its next request when the last one answered) and paced runs (requests start on
//! a fixed schedule, and a request sent late because the one before it was slow counts from when
//! it was due, so a slow answer is not hidden by the requests it delayed).

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Makes request number `n` of client `worker`.
pub type MakeRequest =
    Arc<dyn Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync>;

/// What a run measured.
pub struct Run {
    /// Successful requests.
    pub requests: usize,
    /// Failed requests (errors and non-2xx).
    pub errors: usize,
    /// The run's length.
    pub elapsed: Duration,
    /// The latency of every successful request.
    pub latencies: Vec<Duration>,
}

impl Run {
    /// Successful requests per second.
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile (0..1) of the latencies.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    fn collect(parts: Vec<(Vec<Duration>, usize)>, elapsed: Duration) -> Run {
        let mut run = Run {
            requests: 0,
            errors: 0,
            elapsed,
            latencies: Vec::new(),
        };
        for (latencies, errors) in parts {
            run.requests += latencies.len();
            run.errors += errors;
            run.latencies.extend(latencies);
        }
        run
    }
}

fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap()
}

async fn send(request: reqwest::RequestBuilder) -> bool {
    match request.send().await {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}

/// `concurrency` clients send requests back to back for `seconds`.
pub async fn drive(make: MakeRequest, concurrency: usize, seconds: u64) -> Run {
    let http = client(concurrency);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (http, make) = (http.clone(), Arc::clone(&make));
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut n) = (Vec::new(), 0usize, 0u64);
            while Instant::now() < deadline {
                n += 1;
                let t = Instant::now();
                if send(make(&http, worker, n)).await {
                    latencies.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut parts = Vec::new();
    for task in tasks {
        parts.push(task.await.unwrap());
    }
    Run::collect(parts, started.elapsed())
}

/// `rate` requests per second for `seconds`, spread over `concurrency` clients on a fixed
/// schedule; a client that falls behind sends its late requests at once, and their latency
/// includes the wait since they were due.
pub async fn paced(make: MakeRequest, concurrency: usize, rate: u64, seconds: u64) -> Run {
    let http = client(concurrency);
    let started = Instant::now();
    let per_client = Duration::from_secs_f64(concurrency as f64 / rate as f64);
    let each = rate * seconds / concurrency as u64;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (http, make) = (http.clone(), Arc::clone(&make));
        // Stagger the clients across one interval.
        let offset = per_client.mul_f64(worker as f64 / concurrency as f64);
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            for n in 0..each {
                let due = started + offset + per_client * u32::try_from(n).unwrap_or(u32::MAX);
                // Behind schedule: the wait since `due` is the server's doing and counts. Ahead:
                // the timer's own lateness (tokio's 1 ms tick) is the generator's, and does not.
                let from = if Instant::now() >= due {
                    due
                } else {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                };
                if send(make(&http, worker, n)).await {
                    latencies.push(from.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut parts = Vec::new();
    for task in tasks {
        parts.push(task.await.unwrap());
    }
    Run::collect(parts, started.elapsed())
}

/// The number after `name` on the command line, or `default`.
pub fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
}
