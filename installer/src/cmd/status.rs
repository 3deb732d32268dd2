//! `installer status`: what is installed in a stack, read from the account.

use anyhow::Result;
use installer::aws::{Aws, AwsOptions};
use installer::release::{Catalog, Updates};

use super::{Output, print_json};

/// What the stack's installed version could move to, from the portal's signed release list
/// and the logged-in license: `None` when nothing is installed or the login is for another app;
/// an error in words when the portal cannot be read (status still shows what is installed).
async fn updates(status: &installer::inventory::Status) -> Option<Result<Updates, String>> {
    let installed = semver::Version::parse(status.version.as_deref()?).ok()?;
    match Catalog::load().await {
        Ok(catalog) if status.app.as_deref() == Some(catalog.login.app.as_str()) => {
            Some(Ok(catalog.updates_after(&installed)))
        }
        Ok(_) => None,
        Err(e) => Some(Err(e
            .to_string()
            .lines()
            .next()
            .unwrap_or("the portal could not be read")
            .to_owned())),
    }
}

/// Shows `stack`'s installation.
pub async fn run(stack: String, options: &AwsOptions, output: Output) -> Result<()> {
    let aws = Aws::connect(options).await?;
    let status = installer::inventory::status(&aws, &stack).await?;
    let updates = updates(&status).await;
    match output {
        Output::Json => {
            let mut value = serde_json::to_value(&status)?;
            if let (Some(map), Some(updates)) = (value.as_object_mut(), &updates) {
                map.insert(
                    "updates".into(),
                    match updates {
                        Ok(u) => serde_json::to_value(u)?,
                        Err(e) => serde_json::json!({"unknown": e}),
                    },
                );
            }
            print_json(&value)
        }
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
            match &updates {
                Some(Ok(u)) => println!("Updates:   {}", u.describe(&stack)),
                Some(Err(why)) => println!("Updates:   unknown ({why})"),
                None => {}
            }
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
