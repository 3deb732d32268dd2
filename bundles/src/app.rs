//! `consign.toml`, the app manifest a vendor writes next to the template and the function code.
//! Every field is documented in `bundles/FORMAT.md`; unknown fields are refused by name.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::template::TemplateSummary;

/// The whole `consign.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    /// The `[app]` table.
    pub app: AppSection,
    /// One `[[functions]]` table per function.
    #[serde(default)]
    pub functions: Vec<FunctionInput>,
    /// One `[[layers]]` table per Lambda layer the bundle carries.
    #[serde(default)]
    pub layers: Vec<LayerInput>,
    /// One `[[assets]]` table per static asset folder.
    #[serde(default)]
    pub assets: Vec<AssetInput>,
    /// One `[[parameters]]` table per template parameter the admin may set.
    #[serde(default)]
    pub parameters: Vec<ParameterSpec>,
}

/// `[app]`: what the app is and how it deploys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    /// The app's slug on the portal (`serverless-blog`).
    pub slug: license::claims::Slug,
    /// Its display name.
    pub name: String,
    /// This release's semver version.
    pub version: semver::Version,
    /// Release notes (Markdown), shown on the marketplace and by `installer versions`.
    #[serde(default)]
    pub release_notes: String,
    /// The CloudFormation template, relative to the app folder (JSON, with
    /// `AWSTemplateFormatVersion`, no `Transform`).
    pub template: String,
    /// The oldest installer that can deploy this release.
    pub min_installer_version: semver::Version,
    /// Capabilities the stack needs (`CAPABILITY_IAM`, `CAPABILITY_NAMED_IAM`, `CAPABILITY_AUTO_EXPAND`).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The template parameter that receives the name of the artifact bucket holding function code.
    pub artifact_bucket_parameter: Option<String>,
    /// The template parameter that receives the release's version (so the functions, and the
    /// license agent beside them, know what runs).
    pub version_parameter: Option<String>,
}

/// `[[functions]]`: one Lambda function.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionInput {
    /// The function's name in the bundle (a slug).
    pub name: license::claims::Slug,
    /// The Lambda runtime (`python3.12`, `nodejs20.x`, `provided.al2023`, …).
    pub runtime: String,
    /// The handler (`app.handler`).
    pub handler: String,
    /// A folder (zipped deterministically at build) or a prebuilt `.zip`, relative to the app folder.
    pub code: String,
    /// Extra folders (relative to the app folder) whose files are added at the zip's root: code
    /// shared between functions. Only with a folder `code`.
    #[serde(default)]
    pub include: Vec<String>,
    /// Memory in MB (128–10240); 128 by default.
    #[serde(default = "default_memory")]
    pub memory: u32,
    /// Timeout in seconds (1–900); 3 by default.
    #[serde(default = "default_timeout")]
    pub timeout: u32,
    /// The entitlement feature that gates the function, if any.
    pub feature: Option<license::claims::FeatureName>,
    /// The template parameter that receives the S3 key of the function's code.
    pub code_parameter: String,
    /// A command that builds the function's `code` (a compiled function's binary) before it is
    /// packed.
    pub build: Option<BuildSpec>,
}

/// `build = { command = [...], sources = [...] }`: how a function's code is made.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// The program and its arguments, run in the app folder before packing, without a shell.
    pub command: Vec<String>,
    /// Files and folders (relative to the app folder) holding the function's source: a build
    /// whose zip carries any of their files is refused, so source cannot ship by mistake.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// The most arguments a build command may have.
pub const MAX_BUILD_ARGS: usize = 64;

/// `[[layers]]`: a Lambda layer the bundle carries, such as the license agent's extension.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerInput {
    /// The layer's name in the bundle (a slug).
    pub name: license::claims::Slug,
    /// A folder (zipped deterministically at build, executable bits kept) or a prebuilt `.zip`,
    /// relative to the app folder.
    pub code: String,
    /// The template parameter that receives the S3 key of the layer's zip.
    pub code_parameter: String,
    /// Build without the layer when `code` does not exist (the template must then work with an
    /// empty `code_parameter`); otherwise a missing `code` is an error.
    #[serde(default)]
    pub optional: bool,
}

fn default_memory() -> u32 {
    128
}

fn default_timeout() -> u32 {
    3
}

/// `[[assets]]`: a folder of static files uploaded to a bucket the stack creates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetInput {
    /// The asset set's name (a slug).
    pub name: license::claims::Slug,
    /// The folder, relative to the app folder.
    pub path: String,
    /// The stack output whose value is the bucket to upload into.
    pub bucket_output: String,
}

/// `[[parameters]]`: a template parameter the admin may set with `--param`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    /// The template parameter's name.
    pub name: String,
    /// Its default, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// What it means, for the admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Lambda runtimes a bundle may name.
pub const RUNTIMES: &[&str] = &[
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "java17",
    "java21",
    "ruby3.3",
    "dotnet8",
    "provided.al2",
    "provided.al2023",
];

/// Capabilities a bundle may require.
pub const CAPABILITIES: &[&str] = &[
    "CAPABILITY_IAM",
    "CAPABILITY_NAMED_IAM",
    "CAPABILITY_AUTO_EXPAND",
];

const FILE: &str = "consign.toml";

fn invalid(reason: impl Into<String>) -> Error {
    Error::AppManifest {
        file: FILE.into(),
        reason: reason.into(),
    }
}

impl AppManifest {
    /// Parses `consign.toml`. Errors name the field and the line.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: AppManifest = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            invalid(format!(
                "{}{}",
                at.unwrap_or_default(),
                e.message().trim_end()
            ))
        })?;
        manifest.validate_shape()?;
        Ok(manifest)
    }

    fn validate_shape(&self) -> Result<()> {
        if self.app.name.trim().is_empty() || self.app.name.len() > 128 {
            return Err(invalid("app.name must be 1-128 characters"));
        }
        if self.app.release_notes.len() > 64 * 1024 {
            return Err(invalid("app.release_notes is over 64 KiB"));
        }
        if let Some(bad) = self
            .app
            .capabilities
            .iter()
            .find(|c| !CAPABILITIES.contains(&c.as_str()))
        {
            return Err(invalid(format!(
                "app.capabilities: {bad:?} is not one of {CAPABILITIES:?}"
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for f in &self.functions {
            if !names.insert(f.name.as_str()) {
                return Err(invalid(format!("functions: {} is listed twice", f.name)));
            }
            if !RUNTIMES.contains(&f.runtime.as_str()) {
                return Err(invalid(format!(
                    "functions.{}.runtime: {:?} is not a Lambda runtime ({RUNTIMES:?})",
                    f.name, f.runtime
                )));
            }
            if f.handler.is_empty()
                || f.handler.len() > 128
                || f.handler.contains(char::is_whitespace)
            {
                return Err(invalid(format!(
                    "functions.{}.handler must be 1-128 characters without spaces",
                    f.name
                )));
            }
            if !(128..=10_240).contains(&f.memory) {
                return Err(invalid(format!(
                    "functions.{}.memory must be 128-10240 MB",
                    f.name
                )));
            }
            if !(1..=900).contains(&f.timeout) {
                return Err(invalid(format!(
                    "functions.{}.timeout must be 1-900 seconds",
                    f.name
                )));
            }
            if let Some(build) = &f.build {
                if build.command.is_empty()
                    || build.command.len() > MAX_BUILD_ARGS
                    || build.command[0].is_empty()
                {
                    return Err(invalid(format!(
                        "functions.{}.build.command must be a program and at most {} arguments, as a list of strings",
                        f.name,
                        MAX_BUILD_ARGS - 1
                    )));
                }
                if build
                    .command
                    .iter()
                    .chain(&build.sources)
                    .any(|a| a.len() > 4096 || a.contains('\0'))
                {
                    return Err(invalid(format!(
                        "functions.{}.build: an argument or source is over 4096 bytes or holds a NUL",
                        f.name
                    )));
                }
            }
        }
        let mut layer_names = std::collections::BTreeSet::new();
        for l in &self.layers {
            if !layer_names.insert(l.name.as_str()) {
                return Err(invalid(format!("layers: {} is listed twice", l.name)));
            }
        }
        let mut asset_names = std::collections::BTreeSet::new();
        for a in &self.assets {
            if !asset_names.insert(a.name.as_str()) {
                return Err(invalid(format!("assets: {} is listed twice", a.name)));
            }
        }
        Ok(())
    }

    /// Checks the manifest against its template: every parameter it names exists, every bucket
    /// output exists, code parameters are distinct.
    pub fn check_against(&self, template: &TemplateSummary) -> Result<()> {
        let need_param = |field: String, name: &str| -> Result<()> {
            if template.parameters.iter().any(|p| p == name) {
                Ok(())
            } else {
                Err(invalid(format!(
                    "{field}: the template has no parameter {name:?}"
                )))
            }
        };
        if let Some(p) = &self.app.version_parameter {
            need_param("app.version_parameter".into(), p)?;
        }
        if let Some(p) = &self.app.artifact_bucket_parameter {
            need_param("app.artifact_bucket_parameter".into(), p)?;
        } else if !self.functions.is_empty() || !self.layers.is_empty() {
            return Err(invalid(
                "app.artifact_bucket_parameter is required when there are functions or layers",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let code_parameters = self
            .functions
            .iter()
            .map(|f| {
                (
                    format!("functions.{}.code_parameter", f.name),
                    &f.code_parameter,
                )
            })
            .chain(self.layers.iter().map(|l| {
                (
                    format!("layers.{}.code_parameter", l.name),
                    &l.code_parameter,
                )
            }));
        for (field, parameter) in code_parameters {
            need_param(field.clone(), parameter)?;
            if !seen.insert(parameter.as_str()) {
                return Err(invalid(format!("{field} {parameter:?} is used twice")));
            }
        }
        for p in &self.parameters {
            need_param(format!("parameters.{}", p.name), &p.name)?;
        }
        for a in &self.assets {
            if !template.outputs.contains(&a.bucket_output) {
                return Err(invalid(format!(
                    "assets.{}.bucket_output: the template has no output {:?}",
                    a.name, a.bucket_output
                )));
            }
        }
        Ok(())
    }
}
