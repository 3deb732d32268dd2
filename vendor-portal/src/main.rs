//! `vendor-portal`: the Consign portal server and the vendor's command line.
//!
//! A thin shell over the library: parse the command line, run, print one error line.

use vendor_portal::cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    license::process::guarded_main(|| {
        // Parse errors exit 2 with clap's usage message; everything else is ours.
        let cli = cli::Cli::parse();
        match cli.run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {}", license::process::error_sentence(&err));
                ExitCode::FAILURE
            }
        }
    })
}
