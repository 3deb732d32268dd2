//! What the license benchmarks share: timing a closure and taking the median of rounds.

use std::time::{Duration, Instant};

/// The mean time of one call of `f` over `iterations` calls.
pub fn time_per_op(iterations: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

/// The median of `v`.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
