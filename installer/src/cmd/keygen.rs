//! `installer keygen`: the static install key pair air-gapped kits are wrapped to.

use anyhow::Result;
use serde_json::json;

use super::{Output, print_json};

/// Writes the key pair into `out` and prints the public key.
pub fn keygen(out: &std::path::Path, output: Output) -> Result<()> {
    let public = installer::keys::generate(out)?;
    match output {
        Output::Json => print_json(
            &json!({"public_key": public, "secret": out.join(installer::keys::SECRET), "public": out.join(installer::keys::PUBLIC)}),
        ),
        Output::Text => {
            println!("{public}");
            eprintln!(
                "install key written to {} (keep it secret); give the vendor the public key above for `kit export --recipient`",
                out.join(installer::keys::SECRET).display()
            );
            Ok(())
        }
    }
}
