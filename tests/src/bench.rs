//! What every benchmark binary shares: `--help`, numeric options with a short `--smoke` value,
//! and failures told in one sentence instead of a panic. `scripts/test` runs each benchmark
//! once with `--smoke` so that none of them rots; the figures in the docs come from full runs.

use std::process::ExitCode;

/// A benchmark's command line.
pub struct BenchArgs {
    args: Vec<String>,
    /// A short run that only shows the benchmark still works (`--smoke`).
    pub smoke: bool,
}

impl BenchArgs {
    /// `--name N`, else `default`, or `smoke` in a smoke run. A value that is not a number ends
    /// the run with one sentence.
    pub fn number(&self, name: &str, default: u64, smoke: u64) -> u64 {
        match self.args.iter().position(|a| a == name) {
            Some(i) => match self.args.get(i + 1).map(|v| v.parse::<u64>()) {
                Some(Ok(n)) => n,
                _ => fail(&format!("{name} takes a whole number, as in `{name} 5`")),
            },
            None if self.smoke => smoke,
            None => default,
        }
    }
}

/// Prints `error: <sentence>` and ends the process with status 1.
pub fn fail(sentence: &str) -> ! {
    eprintln!("error: {sentence}");
    std::process::exit(1)
}

/// Runs benchmark `name`: answers `--help` with `usage`, refuses options that are not in
/// `options`, then runs `bench`. A panic inside (a missing moto, a portal that did not start)
/// is reported as `error: <name>: <what went wrong>`, one sentence, and exit status 1.
pub fn main(
    name: &str,
    usage: &str,
    options: &[&str],
    bench: impl FnOnce(&BenchArgs) + std::panic::UnwindSafe,
) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "{name}: {usage}\n\nOptions:\n  --smoke    one short round, to check the benchmark runs"
        );
        for option in options {
            println!("  {option}");
        }
        return ExitCode::SUCCESS;
    }
    let known: Vec<&str> = options
        .iter()
        .filter_map(|o| o.split_whitespace().next())
        .chain(["--smoke"])
        .collect();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if !known.contains(&arg) {
            fail(&format!("{name} has no option {arg:?}: see {name} --help"));
        }
        i += if arg == "--smoke" { 1 } else { 2 };
    }
    let parsed = BenchArgs {
        smoke: args.iter().any(|a| a == "--smoke"),
        args,
    };
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(|| bench(&parsed)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("it stopped unexpectedly");
            let sentence = what.lines().next().unwrap_or(what);
            eprintln!("error: {name}: {sentence}");
            ExitCode::FAILURE
        }
    }
}

/// Ends the run with one sentence when the moto server the benchmark needs is not installed.
pub fn require_moto() {
    let moto = crate::moto::moto_server_path();
    if !moto.is_file() {
        fail(&format!(
            "this benchmark needs the moto server at {} (or CONSIGN_MOTO_SERVER): run scripts/test once to install it",
            moto.display()
        ));
    }
}
