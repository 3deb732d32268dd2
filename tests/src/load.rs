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

/// When a client sends its requests.
#[derive(Clone, Copy)]
enum Pace {
    /// Each as soon as the last one answered, until `deadline`.
    BackToBack { deadline: Instant },
    /// `count` of them, the n-th due at `first + n × every`.
    Scheduled {
        first: Instant,
        every: Duration,
        count: u64,
    },
}

/// One client's loop: its latencies and its failures.
async fn client_loop(
    http: reqwest::Client,
    make: MakeRequest,
    worker: usize,
    pace: Pace,
) -> (Vec<Duration>, usize) {
    let (mut latencies, mut errors) = (Vec::new(), 0usize);
    for n in 0u64.. {
        let from = match pace {
            Pace::BackToBack { deadline } => {
                if Instant::now() >= deadline {
                    break;
                }
                Instant::now()
            }
            Pace::Scheduled {
                first,
                every,
                count,
            } => {
                if n >= count {
                    break;
                }
                let due = first + every * u32::try_from(n).unwrap_or(u32::MAX);
                // Behind schedule: the wait since `due` is the server's doing and counts.
                // Ahead: the timer's own lateness (tokio's 1 ms tick) is the generator's, and
                // does not.
                if Instant::now() >= due {
                    due
                } else {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                }
            }
        };
        if send(make(&http, worker, n)).await {
            latencies.push(from.elapsed());
        } else {
            errors += 1;
        }
    }
    (latencies, errors)
}

/// Runs `concurrency` clients, client `w` at `pace(w)`, and gathers what they measured.
async fn run_clients(make: MakeRequest, concurrency: usize, pace: impl Fn(usize) -> Pace) -> Run {
    let http = client(concurrency);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            tokio::spawn(client_loop(
                http.clone(),
                Arc::clone(&make),
                worker,
                pace(worker),
            ))
        })
        .collect();
    let mut parts = Vec::new();
    for task in tasks {
        parts.push(task.await.unwrap());
    }
    Run::collect(parts, started.elapsed())
}

/// `concurrency` clients send requests back to back for `seconds`.
pub async fn drive(make: MakeRequest, concurrency: usize, seconds: u64) -> Run {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    run_clients(make, concurrency, |_| Pace::BackToBack { deadline }).await
}

/// `rate` requests per second for `seconds`, spread over `concurrency` clients on a fixed
/// schedule; a client that falls behind sends its late requests at once, and their latency
/// includes the wait since they were due.
pub async fn paced(make: MakeRequest, concurrency: usize, rate: u64, seconds: u64) -> Run {
    let started = Instant::now();
    let every = Duration::from_secs_f64(concurrency as f64 / rate as f64);
    let count = rate * seconds / concurrency as u64;
    run_clients(make, concurrency, |worker| Pace::Scheduled {
        // Stagger the clients across one interval.
        first: started + every.mul_f64(worker as f64 / concurrency as f64),
        every,
        count,
    })
    .await
}
