//! For the command-line programs (feature `cli`): a closed standard output (`… | head`) ends the
//! program quietly, and any other panic prints one `error:` line instead of a backtrace, as the
//! command contract asks. Used by `license-agent`, `installer` and `vendor-portal`.

use std::process::ExitCode;

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
