//! `installer uninstall`: delete the stack, free the license seat, say what stays.

use anyhow::Result;
use installer::aws::{Aws, AwsOptions};
use installer::deploy::{self, Ui};
use installer::home::Login;
use installer::portal::Portal;
use license::process::count;

use super::{Output, POLL, print_json};

/// Deletes `stack` and everything it created (its artifacts too with `purge_artifacts`).
pub async fn run(
    stack: String,
    yes: bool,
    purge_artifacts: bool,
    options: &AwsOptions,
    ui: Ui,
    output: Output,
) -> Result<()> {
    deploy::require_yes_or_terminal("uninstall", yes)?;
    let aws = Aws::connect(options).await?;
    deploy::confirm(
        &format!("delete stack {stack} and everything it created?"),
        yes,
        "stopped: nothing was deleted",
    )?;
    let mut done = installer::inventory::uninstall(&aws, &stack, purge_artifacts, POLL, ui).await?;
    // The stack is gone; its seat on the vendor's portal is freed when the portal can be
    // reached (air-gapped installs have none to free).
    if let (Some(license), Ok(login)) = (&done.license, Login::read()) {
        let freed = async {
            Portal::new(&login.portal)?
                .free_seat(license, &aws.account, &aws.region, &stack)
                .await
        };
        match freed.await {
            Ok(seat) => done.seat_freed = seat,
            Err(e) => done.left.push(format!(
                "the installation's seat on the vendor's portal ({}): it could not be freed ({}); ask the vendor to free it",
                login.portal,
                license::process::error_sentence(&e)
            )),
        }
    }
    match output {
        Output::Json => print_json(&done),
        Output::Text => {
            println!(
                "Uninstalled {}: stack {}; {} and {} removed.",
                done.stack,
                if done.deleted {
                    "deleted"
                } else {
                    "was already gone"
                },
                count(done.assets_removed as u64, "static file", "static files"),
                count(done.artifacts_removed as u64, "artifact", "artifacts")
            );
            if let Some(seat) = &done.seat_freed {
                println!("Freed the license seat of installation {seat} on the vendor's portal.");
            }
            for left in &done.left {
                println!("Left in the account: {left}");
            }
            Ok(())
        }
    }
}
