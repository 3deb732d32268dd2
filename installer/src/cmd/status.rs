//! `installer status`: what is installed in a stack, read from the account.

use anyhow::Result;
use installer::aws::{Aws, AwsOptions};

use super::{Output, print_json};

/// Shows `stack`'s installation.
pub async fn run(stack: String, options: &AwsOptions, output: Output) -> Result<()> {
    let aws = Aws::connect(options).await?;
    let status = installer::inventory::status(&aws, &stack).await?;
    match output {
        Output::Json => print_json(&status),
        Output::Text => {
            if !status.installed {
                println!(
                    "Stack {stack} is not installed in account {} {}{}",
                    aws.account,
                    aws.region,
                    status
                        .stack_status
                        .as_ref()
                        .map(|s| format!(" (a stack by that name is {s})"))
                        .unwrap_or_default()
                );
                return Ok(());
            }
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            println!("Stack:     {stack} ({})", dash(&status.stack_status));
            println!("App:       {} {}", dash(&status.app), dash(&status.version));
            println!("Bundle:    {}", dash(&status.manifest));
            println!(
                "License:   {} (expires {})",
                dash(&status.license),
                dash(&status.license_expires)
            );
            println!(
                "Installed: {} by {}",
                dash(&status.installed_at),
                dash(&status.installed_by)
            );
            if !status.outputs.is_empty() {
                println!("Outputs:");
                for (k, v) in &status.outputs {
                    println!("  {k} = {v}");
                }
            }
            println!("History:");
            for e in &status.history {
                println!(
                    "  {}  {:<8} {}",
                    installer::inventory::time(e.at),
                    e.action,
                    e.version
                );
            }
            Ok(())
        }
    }
}
