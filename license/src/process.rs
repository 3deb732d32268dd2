//! For the command-line programs (feature `cli`): a closed standard output (`… | head`) ends the
//! program quietly, and any other panic prints one `error:` line instead of a backtrace, as the
//! command contract asks. Used by `license-agent`, `installer` and `vendor-portal`.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs `body` as a program's `main`. A panic becomes exit status 1; a panic from writing to a
/// closed pipe prints nothing (the reader went away on purpose).
pub fn guarded_main(body: impl FnOnce() -> ExitCode + std::panic::UnwindSafe) -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        if message.contains("Broken pipe") {
            return;
        }
        eprintln!(
            "error: internal error ({message}); this is a bug, please report it with the command you ran"
        );
    }));
    std::panic::catch_unwind(body).unwrap_or(ExitCode::FAILURE)
}

/// An error and its causes as one sentence, outermost first: what the programs print after
/// `error: `.
pub fn error_sentence(err: &anyhow::Error) -> String {
    err.chain()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub struct Progress {
    total: u64,
    done: Arc<AtomicU64>,
    label: String,
    draw: bool,
}

impl Progress {
    /// A bar for `total` bytes.
    pub fn new(label: &str, total: u64) -> Self {
        Self {
            total,
            done: Arc::new(AtomicU64::new(0)),
            label: label.to_owned(),
            draw: std::io::stderr().is_terminal(),
        }
    }

    /// A callback that advances the bar.
    pub fn tick(&self) -> impl Fn(u64) + Send + Sync + 'static {
        let (done, total, label, draw) =
            (self.done.clone(), self.total, self.label.clone(), self.draw);
        move |n| {
            let now = done.fetch_add(n, Ordering::Relaxed) + n;
            if draw {
                let pct = (now * 100).checked_div(total).unwrap_or(100).min(100);
                let filled = (pct / 4) as usize;
                eprint!(
                    "\r{label} [{}{}] {pct:>3}% {}/{}",
                    "#".repeat(filled),
                    " ".repeat(25 - filled),
                    human_size(now),
                    human_size(total)
                );
            }
        }
    }

    /// Ends the bar's line.
    pub fn finish(&self) {
        if self.draw {
            eprintln!();
        }
    }
}

/// Bytes for people: `512 bytes`, then KiB below a MiB, MiB below a GiB, GiB, with one decimal.
pub fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if bytes == 1 {
        "1 byte".to_owned()
    } else if b < KIB {
        format!("{bytes} bytes")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    }
}

/// `n` and the noun that agrees with it: `count(1, "file", "files")` is `1 file`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts_read_right() {
        assert_eq!(human_size(1), "1 byte");
        assert_eq!(human_size(900), "900 bytes");
        assert_eq!(human_size(1474), "1.4 KiB");
        assert_eq!(human_size(16_154_545), "15.4 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
        assert_eq!(count(1, "release", "releases"), "1 release");
        assert_eq!(count(0, "release", "releases"), "0 releases");
        assert_eq!(count(2, "file", "files"), "2 files");
    }
}
