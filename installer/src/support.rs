//! Support bundles: what a vendor needs to help with an installation it cannot see, collected
//! read-only from the customer's account and redacted before anything is written.
//!
//! The bundle is a `.tar.gz` of JSON and log files: `manifest.json` (versions, files, sizes,
//! every redaction with its file and line, and what could not be read), `stack.json` (status,
//! parameters, outputs), `events.json`, `resources.json`, `functions/<name>.json` (each
//! function's configuration, environment values replaced by their names and lengths),
//! `logs/<name>.log` (its recent CloudWatch Logs), `agent/<table>.json` (the license agent's
//! state table: its state, outbox of pending records, last check-ins) and `installation.json`
//! (the installation record and history). A permission the caller lacks leaves that part out
//! and says so in the manifest; it does not stop the bundle.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::aws::Aws;
use crate::redact::{Redactor, Report};

/// Log events kept per function.
const MAX_LOG_EVENTS: usize = 5000;
/// State-table items kept.
const MAX_STATE_ITEMS: usize = 500;
/// The bundle's format.
pub const FORMAT: &str = "consign-support-bundle-v1";

/// One file of the bundle.
#[derive(Debug, Serialize)]
pub struct BundleFile {
    /// Its path in the bundle.
    pub path: String,
    /// Its size in bytes.
    pub bytes: usize,
}

/// What a bundle holds, as `manifest.json` says.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: &'static str,
    /// When it was collected (RFC 3339).
    pub created_at: String,
    /// The installer's version.
    pub installer_version: &'static str,
    /// The app and version installed, from the installation record.
    pub release: Option<String>,
    /// The stack.
    pub stack: String,
    /// The account and region.
    pub account: String,
    /// The region.
    pub region: String,
    /// Events and logs from this many seconds back.
    pub since_seconds: u64,
    /// Every file, with its size.
    pub files: Vec<BundleFile>,
    /// Every redaction.
    pub redactions: Report,
    /// What could not be read, and why.
    pub problems: Vec<String>,
}

/// A collected bundle.
pub struct Bundle {
    /// The manifest.
    pub manifest: Manifest,
    /// The `.tar.gz` bytes.
    pub bytes: Vec<u8>,
}

fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn when(t: Option<&aws_sdk_cloudformation::primitives::DateTime>) -> Value {
    t.map_or(Value::Null, |t| rfc3339(t.secs()).into())
}

/// Collects the bundle of `stack`, redacting with `redactor`.
pub async fn collect(
    aws: &Aws,
    stack: &str,
    since_seconds: u64,
    redactor: &Redactor,
) -> Result<Bundle> {
    let now = jiff::Timestamp::now().as_second();
    let since = now - i64::try_from(since_seconds).unwrap_or(i64::MAX / 2);
    let mut problems = Vec::new();
    let mut files: BTreeMap<String, String> = BTreeMap::new();

    let described = aws
        .cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| aws.explain(e, "cloudformation:DescribeStacks", stack))?;
    let Some(s) = described.stacks().first() else {
        bail!(
            "stack {stack} does not exist in account {} {}",
            aws.account,
            aws.region
        );
    };
    files.insert(
        "stack.json".into(),
        pretty(&json!({
            "name": s.stack_name(), "status": s.stack_status().map(|x| x.as_str()),
            "reason": s.stack_status_reason(), "created": when(s.creation_time()),
            "updated": when(s.last_updated_time()),
            "parameters": s.parameters().iter().map(|p| (p.parameter_key().unwrap_or_default().to_owned(),
                p.parameter_value().unwrap_or_default().to_owned())).collect::<BTreeMap<_, _>>(),
            "outputs": s.outputs().iter().map(|o| (o.output_key().unwrap_or_default().to_owned(),
                o.output_value().unwrap_or_default().to_owned())).collect::<BTreeMap<_, _>>(),
            "tags": s.tags().iter().map(|t| (t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned())).collect::<BTreeMap<_, _>>(),
        })),
    );
    files.insert(
        "events.json".into(),
        pretty(&events(aws, stack, since, &mut problems).await),
    );
    let resources = crate::stack::list_resources(aws, stack)
        .await
        .unwrap_or_else(|e| {
            problems.push(format!("stack resources: {e:#}"));
            Vec::new()
        });
    files.insert(
        "resources.json".into(),
        pretty(&Value::Array(
            resources
                .iter()
                .map(|r| {
                    json!({"logical": r.logical, "physical": r.physical, "type": r.kind, "status": r.status})
                })
                .collect(),
        )),
    );
    let lambda = aws_sdk_lambda::Client::new(aws.sdk_config());
    let logs = aws_sdk_cloudwatchlogs::Client::new(aws.sdk_config());
    let mut tables = Vec::new();
    for r in &resources {
        let (logical, physical) = (&r.logical, &r.physical);
        if r.kind != "AWS::Lambda::Function" || physical.is_empty() {
            continue;
        }
        match lambda
            .get_function_configuration()
            .function_name(physical)
            .send()
            .await
        {
            Ok(c) => {
                let env = c.environment().and_then(|e| e.variables());
                if let Some(table) = env.and_then(|v| v.get("CONSIGN_AGENT_STATE_TABLE"))
                    && !tables.contains(table)
                {
                    tables.push(table.clone());
                }
                let environment: BTreeMap<String, Value> = env
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), json!({"length": v.len()})))
                    .collect();
                files.insert(
                    format!("functions/{logical}.json"),
                    pretty(&json!({
                        "name": c.function_name(), "runtime": c.runtime().map(|r| r.as_str()),
                        "handler": c.handler(), "memory_mb": c.memory_size(), "timeout_s": c.timeout(),
                        "code_sha256": c.code_sha256(), "last_modified": c.last_modified(),
                        "state": c.state().map(|s| s.as_str()),
                        "layers": c.layers().iter().map(|l| l.arn().unwrap_or_default()).collect::<Vec<_>>(),
                        "environment": environment,
                    })),
                );
            }
            Err(e) => problems.push(format!(
                "function {logical}: {}",
                aws.explain(e, "lambda:GetFunctionConfiguration", physical)
            )),
        }
        let group = format!("/aws/lambda/{physical}");
        match log_lines(&logs, &group, since).await {
            Ok(lines) => {
                files.insert(format!("logs/{logical}.log"), lines);
            }
            Err(e) => problems.push(format!("logs of {logical} ({group}): {e}")),
        }
    }
    let dynamo = aws_sdk_dynamodb::Client::new(aws.sdk_config());
    for table in &tables {
        match state_items(&dynamo, table).await {
            Ok(items) => {
                files.insert(format!("agent/{table}.json"), pretty(&items));
            }
            Err(e) => problems.push(format!("the license agent's state table {table}: {e}")),
        }
    }
    let installation = match crate::inventory::status(aws, stack).await {
        Ok(status) => serde_json::to_value(&status).unwrap_or(Value::Null),
        Err(e) => {
            problems.push(format!("the installation record: {e:#}"));
            Value::Null
        }
    };
    let release = match (installation.get("app"), installation.get("version")) {
        (Some(Value::String(a)), Some(Value::String(v))) => Some(format!("{a} {v}")),
        _ => None,
    };
    files.insert("installation.json".into(), pretty(&installation));

    // Redaction, before a byte is written.
    let mut report = Report::default();
    let redacted: BTreeMap<String, String> = files
        .into_iter()
        .map(|(path, text)| {
            let clean = redactor.redact(&path, &text, &mut report);
            (path, clean)
        })
        .collect();
    let problems: Vec<String> = problems
        .iter()
        .map(|p| redactor.redact("manifest.json", p, &mut report))
        .collect();
    let manifest = Manifest {
        format: FORMAT,
        created_at: rfc3339(now),
        installer_version: env!("CARGO_PKG_VERSION"),
        release,
        stack: stack.to_owned(),
        account: aws.account.clone(),
        region: aws.region.clone(),
        since_seconds,
        files: redacted
            .iter()
            .map(|(path, text)| BundleFile {
                path: path.clone(),
                bytes: text.len(),
            })
            .collect(),
        redactions: report,
        problems,
    };
    let bytes = archive(&manifest, &redacted)?;
    Ok(Bundle { manifest, bytes })
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

async fn events(aws: &Aws, stack: &str, since: i64, problems: &mut Vec<String>) -> Value {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .cfn
            .describe_stack_events()
            .stack_name(stack)
            .set_next_token(token.take())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!(
                    "stack events: {}",
                    aws.explain(e, "cloudformation:DescribeStackEvents", stack)
                ));
                break;
            }
        };
        let mut older = false;
        for e in page.stack_events() {
            if e.timestamp().is_some_and(|t| t.secs() < since) {
                older = true;
                continue;
            }
            out.push(
                json!({"at": when(e.timestamp()), "resource": e.logical_resource_id(),
                "type": e.resource_type(), "status": e.resource_status().map(|s| s.as_str()),
                "reason": e.resource_status_reason()}),
            );
        }
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if older || token.is_none() {
            break;
        }
    }
    Value::Array(out)
}

async fn log_lines(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    since: i64,
) -> Result<String> {
    let mut out = String::new();
    let mut count = 0;
    let mut token: Option<String> = None;
    loop {
        let page = logs
            .filter_log_events()
            .log_group_name(group)
            .start_time(since.saturating_mul(1000))
            .set_next_token(token.take())
            .send()
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata as _;
                let err = e.into_service_error();
                if err.code() == Some("ResourceNotFoundException") {
                    return Ok("(no log group: the function has not run yet)\n".into());
                }
                bail!(
                    "{} ({}): the bundle needs logs:FilterLogEvents on {group}",
                    err.message().unwrap_or("refused"),
                    err.code().unwrap_or("error")
                );
            }
        };
        for e in page.events() {
            let at = e
                .timestamp()
                .map_or_else(String::new, |ms| rfc3339(ms / 1000));
            out.push_str(&format!(
                "{at} {} {}\n",
                e.log_stream_name().unwrap_or("-"),
                e.message().unwrap_or_default().trim_end()
            ));
            count += 1;
        }
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() || count >= MAX_LOG_EVENTS {
            break;
        }
    }
    Ok(out)
}

/// A DynamoDB attribute as JSON (binary as its length).
fn attribute(v: &aws_sdk_dynamodb::types::AttributeValue) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) => s.clone().into(),
        A::N(n) => n.clone().into(),
        A::Bool(b) => (*b).into(),
        A::Null(_) => Value::Null,
        A::B(b) => json!({"binary_bytes": b.as_ref().len()}),
        A::L(l) => Value::Array(l.iter().map(attribute).collect()),
        A::M(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), attribute(v))).collect()),
        A::Ss(s) => json!(s),
        A::Ns(n) => json!(n),
        _ => Value::Null,
    }
}

async fn state_items(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<Value> {
    let page = client
        .scan()
        .table_name(table)
        .limit(i32::try_from(MAX_STATE_ITEMS).unwrap_or(500))
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
            let err = e.into_service_error();
            anyhow::anyhow!(
                "{} ({}): the bundle needs dynamodb:Scan on {table}",
                err.message().unwrap_or("refused"),
                err.code().unwrap_or("error")
            )
        })?;
    let items: Vec<Value> = page
        .items()
        .iter()
        .map(|item| {
            Value::Object(
                item.iter()
                    .map(|(k, v)| {
                        // A JSON document in a string reads better unpacked.
                        let value = match attribute(v) {
                            Value::String(s) => {
                                serde_json::from_str(&s).unwrap_or(Value::String(s))
                            }
                            other => other,
                        };
                        (k.clone(), value)
                    })
                    .collect(),
            )
        })
        .collect();
    Ok(Value::Array(items))
}

/// The `.tar.gz`: the manifest first, then every file (mode 0600).
fn archive(manifest: &Manifest, files: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    let manifest_text = serde_json::to_string_pretty(manifest)?;
    let all = std::iter::once(("manifest.json", manifest_text.as_str()))
        .chain(files.iter().map(|(p, t)| (p.as_str(), t.as_str())));
    for (path, text) in all {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(
            &mut header,
            format!("support-bundle/{path}"),
            text.as_bytes(),
        )
        .context("cannot write the bundle")?;
    }
    let gz = tar.into_inner().context("cannot finish the bundle")?;
    let mut bytes = gz.finish().context("cannot compress the bundle")?;
    bytes.flush().ok();
    Ok(bytes)
}
