//! What the account itself records about an installation, so that status, upgrade and rollback
//! need no local state and every admin sees the same:
//!
//! - stack tags `consign:app`, `consign:version`, `consign:manifest`, `consign:license`, written
//!   with every change set;
//! - the SSM String parameter `/consign/<stack>/history`: the installed versions, newest last;
//! - the SSM SecureString parameter `/consign/<stack>/license`: the license, for the agent
//!   (`license-agent serve --license-parameter`).
//!
//! The history is the authority for what is installed: it is written only after a stack
//! settles successfully. (moto does not update stack tags on an executed UPDATE change set;
//! the tags are kept for the console and for a history that was deleted by hand.)

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::aws::{Aws, is_not_found};

/// Entries kept (standard SSM parameters hold 4 KiB).
const MAX_ENTRIES: usize = 12;
const MAX_PARAMETER: usize = 4096;

/// One installation step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `install`, `upgrade` or `rollback`.
    pub action: String,
    /// The version now running.
    pub version: semver::Version,
    /// SHA-256 of its signed manifest.
    pub manifest: String,
    /// The license id it was installed with.
    pub license: String,
    /// When the license expires (Unix seconds).
    pub license_expires: u64,
    /// When the stack settled (Unix seconds).
    pub at: u64,
    /// Who ran it (the caller's ARN).
    pub by: String,
    /// The function artifacts' keys in the artifact bucket.
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// Buckets the installer uploaded static assets into (emptied before uninstall).
    #[serde(default)]
    pub asset_buckets: Vec<String>,
}

/// An installation's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The vendor's slug.
    pub vendor: String,
    /// The app's slug.
    pub app: String,
    /// Steps, oldest first.
    pub entries: Vec<Entry>,
}

impl History {
    /// The running version's entry.
    pub fn current(&self) -> Option<&Entry> {
        self.entries.last()
    }

    /// The version before the current one (what `rollback` returns to).
    pub fn previous(&self) -> Option<&Entry> {
        let current = self.current()?;
        self.entries
            .iter()
            .rev()
            .skip(1)
            .find(|e| e.version != current.version)
    }

    /// Adds a step, keeping the parameter within its size.
    pub fn push(&mut self, entry: Entry) -> Result<String> {
        self.entries.push(entry);
        loop {
            let text = serde_json::to_string(self)?;
            if self.entries.len() <= 1
                || (self.entries.len() <= MAX_ENTRIES && text.len() <= MAX_PARAMETER)
            {
                return Ok(text);
            }
            self.entries.remove(0);
        }
    }
}

/// The history parameter's name.
pub fn history_parameter(stack: &str) -> String {
    format!("/consign/{stack}/history")
}

/// The license parameter's name.
pub fn license_parameter(stack: &str) -> String {
    format!("/consign/{stack}/license")
}

/// The value of parameter `name`, decrypted (`None`: there is none).
pub(crate) async fn get(aws: &Aws, name: &str) -> Result<Option<String>> {
    match aws
        .ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
    {
        Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_owned)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(aws.explain(e, "ssm:GetParameter", name)),
    }
}

/// Writes parameter `name`, replacing any value.
async fn put(
    aws: &Aws,
    name: &str,
    value: &str,
    kind: aws_sdk_ssm::types::ParameterType,
    description: &str,
) -> Result<()> {
    aws.ssm
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .overwrite(true)
        .description(description)
        .send()
        .await
        .map_err(|e| aws.explain(e, "ssm:PutParameter", name))?;
    Ok(())
}

/// Writes parameter `name` unless it exists: `None` when this call wrote `value`, else the value
/// that was already there (written first by another run).
pub(crate) async fn put_once(
    aws: &Aws,
    name: &str,
    value: &str,
    description: &str,
) -> Result<Option<String>> {
    if let Some(existing) = get(aws, name).await? {
        return Ok(Some(existing));
    }
    match aws
        .ssm
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(false)
        .description(description)
        .send()
        .await
    {
        Ok(_) => Ok(None),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_parameter_already_exists()) =>
        {
            get(aws, name).await
        }
        Err(e) => Err(aws.explain(e, "ssm:PutParameter", name)),
    }
}

/// Deletes parameter `name` (a missing one is fine).
pub(crate) async fn delete(aws: &Aws, name: &str) -> Result<()> {
    match aws.ssm.delete_parameter().name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(aws.explain(e, "ssm:DeleteParameter", name)),
    }
}

/// Reads `stack`'s history (`None`: never installed, or uninstalled).
pub async fn read_history(aws: &Aws, stack: &str) -> Result<Option<History>> {
    let name = history_parameter(stack);
    let Some(text) = get(aws, &name).await? else {
        return Ok(None);
    };
    let history = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "the parameter {name} is not an installation history ({e}): restore it or delete it"
        )
    })?;
    Ok(Some(history))
}

/// Writes `stack`'s history.
pub async fn write_history(aws: &Aws, stack: &str, text: String) -> Result<()> {
    put(
        aws,
        &history_parameter(stack),
        &text,
        aws_sdk_ssm::types::ParameterType::String,
        "Consign: the versions installed in this stack (installer status)",
    )
    .await
}

/// Stores the license for the agent, as a SecureString (unchanged values are not rewritten).
pub async fn store_license(aws: &Aws, stack: &str, license: &str) -> Result<bool> {
    if read_license(aws, stack).await?.as_deref() == Some(license) {
        return Ok(false);
    }
    put(
        aws,
        &license_parameter(stack),
        license,
        aws_sdk_ssm::types::ParameterType::SecureString,
        "Consign: the license the license agent verifies",
    )
    .await?;
    Ok(true)
}

/// Reads the stored license, if any.
pub async fn read_license(aws: &Aws, stack: &str) -> Result<Option<String>> {
    get(aws, &license_parameter(stack)).await
}

/// Deletes both parameters (after an uninstall); missing ones are fine.
pub async fn forget(aws: &Aws, stack: &str) -> Result<()> {
    for name in [history_parameter(stack), license_parameter(stack)] {
        delete(aws, &name).await?;
    }
    Ok(())
}

/// Every history in the account and region (other installations share the artifact bucket).
pub async fn all_histories(aws: &Aws) -> Result<Vec<(String, History)>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = aws
            .ssm
            .get_parameters_by_path()
            .path("/consign/")
            .recursive(true)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws.explain(e, "ssm:GetParametersByPath", "/consign/"))?;
        for p in page.parameters() {
            if let (Some(name), Some(value)) = (p.name(), p.value())
                && let Some(stack) = name
                    .strip_prefix("/consign/")
                    .and_then(|n| n.strip_suffix("/history"))
                && let Ok(history) = serde_json::from_str::<History>(value)
            {
                out.push((stack.to_owned(), history));
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str) -> Entry {
        Entry {
            action: "install".into(),
            version: semver::Version::parse(version).unwrap_or(semver::Version::new(0, 0, 0)),
            manifest: format!("sha256:{}", "a".repeat(64)),
            license: "lic_0123456789abcdef".into(),
            license_expires: 1_900_000_000,
            at: 1_800_000_000,
            by: "arn:aws:iam::123456789012:user/admin".into(),
            artifacts: vec![format!("functions/{}.zip", "b".repeat(64)); 3],
            asset_buckets: vec![],
        }
    }

    #[test]
    fn previous_skips_reinstalls_of_the_current_version() {
        let mut history = History::default();
        for v in ["1.0.0", "1.1.0", "1.1.0"] {
            history.push(entry(v)).ok();
        }
        assert_eq!(
            history.previous().map(|e| e.version.to_string()),
            Some("1.0.0".into())
        );
        let mut single = History::default();
        single.push(entry("1.0.0")).ok();
        assert!(single.previous().is_none());
    }

    #[test]
    fn history_stays_within_a_standard_parameter() {
        let mut history = History::default();
        let mut text = String::new();
        for i in 0..100 {
            text = history.push(entry(&format!("1.{i}.0"))).unwrap_or_default();
        }
        assert!(text.len() <= MAX_PARAMETER, "{} bytes", text.len());
        assert_eq!(history.current().map(|e| e.version.minor), Some(99));
        assert!(history.entries.len() <= MAX_ENTRIES);
    }
}
