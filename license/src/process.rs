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
                    mib(now),
                    mib(total)
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

/// Bytes as MiB with one decimal, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}
