//! `installer versions`: the app's releases and whether the license may install them.

use anyhow::Result;
use installer::release::Catalog;
use serde_json::json;

use super::{Output, print_json};

/// Lists the versions.
pub async fn versions(output: Output) -> Result<()> {
    let catalog = Catalog::load().await?;
    let rows: Vec<_> = catalog
        .releases
        .iter()
        .map(|r| {
            let refusal = catalog.refusal(r);
            json!({
                "version": r.version.to_string(),
                "channels": r.channels,
                "required": r.required,
                "yanked": r.yanked,
                "published_at": installer::inventory::time(r.published_at),
                "min_installer_version": r.min_installer_version.to_string(),
                "installable": refusal.is_none() && r.yanked.is_none(),
                "not_installable_because": refusal,
            })
        })
        .collect();
    let newest = catalog.newest_installable().map(|r| r.version.to_string());
    match output {
        Output::Json => print_json(&json!({"app": catalog.login.app, "versions": rows,
            "newest_installable": newest})),
        Output::Text => {
            println!("{} ({}):", catalog.login.app, catalog.login.vendor);
            for r in &catalog.releases {
                let refusal = catalog.refusal(r);
                let mut marks = Vec::new();
                if r.required {
                    marks.push("REQUIRED".to_owned());
                }
                if let Some(reason) = &r.yanked {
                    marks.push(format!("YANKED: {reason}"));
                } else if let Some(why) = &refusal {
                    marks.push(format!("not licensed: {why}"));
                }
                let channels: Vec<&str> = r.channels.iter().map(|c| c.as_str()).collect();
                println!(
                    "  {:<10} {:<16} published {}  {}",
                    r.version.to_string(),
                    channels.join(","),
                    installer::inventory::time(r.published_at),
                    marks.join("; ")
                );
            }
            match newest {
                Some(v) => println!(
                    "Newest your license may install: {v}. `installer status --stack NAME` says how far an installation is behind it."
                ),
                None => println!("Your license may install none of these versions."),
            }
            Ok(())
        }
    }
}
