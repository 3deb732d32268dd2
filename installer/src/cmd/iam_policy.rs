//! `installer iam-policy`: the least-privilege policy the installer needs for a version.

use anyhow::Result;
use installer::release::Catalog;

use super::{parse_version, print_json};

/// Prints the policy for `version`, scoped to `stack` when given; with `boundary_admin`, the
/// policy that writes the installation's permissions boundary instead.
/// With `deployment_role`, the deployment role of that name and the caller's policy beside it.
pub async fn run(
    version: String,
    stack: Option<String>,
    boundary_admin: bool,
    deployment_role: Option<String>,
) -> Result<()> {
    if boundary_admin {
        return print_json(&installer::iam::boundary_admin_policy(stack.as_deref()));
    }
    let version = parse_version(&version)?;
    let release = Catalog::load().await?.release(&version).await?;
    let (policy, unmapped) = match &deployment_role {
        Some(role) => installer::iam::deployment_role(&release.manifest, stack.as_deref(), role),
        None => installer::iam::policy(&release.manifest, stack.as_deref()),
    };
    for kind in &unmapped {
        eprintln!(
            "warning: the template declares {kind}, whose permissions the installer does not know: add them by hand"
        );
    }
    print_json(&policy)
}
