//! The CloudFormation stack: reading it and its outputs, change sets, executing one, and
//! watching stack events until the stack settles (streamed to the terminal).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, Parameter, StackStatus, Tag,
};
use license::UnixTime;
use serde::Serialize;

use crate::aws::{Aws, is_missing_stack};
use crate::release::Release;

use crate::ui::Ui;

/// One change in a change set.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    /// `Add`, `Modify`, `Remove`.
    pub action: String,
    /// The logical id.
    pub logical_id: String,
    /// The resource type.
    pub resource_type: String,
    /// `True`, `False`, `Conditional` (for `Modify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

/// The stack as CloudFormation describes it.
#[derive(Clone, Debug, Default)]
pub struct Stack {
    /// Its status.
    pub status: String,
    /// Why, if CloudFormation says.
    pub reason: Option<String>,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Its parameters.
    pub parameters: BTreeMap<String, String>,
    /// Its outputs.
    pub outputs: BTreeMap<String, String>,
}

impl Stack {
    /// Left by a CREATE change set that never ran, or a failed first create: no installation.
    pub(crate) fn is_vacant(&self) -> bool {
        matches!(
            self.status.as_str(),
            "REVIEW_IN_PROGRESS" | "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" | "CREATE_FAILED"
        )
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.status.ends_with("_IN_PROGRESS") && self.status != "REVIEW_IN_PROGRESS"
    }
}

/// Describes `name` (`None`: no such stack).
pub async fn describe_stack(aws: &Aws, name: &str) -> Result<Option<Stack>> {
    let out = match aws.cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => out,
        Err(e) if is_missing_stack(&e) => return Ok(None),
        Err(e) => return Err(aws.explain(e, "cloudformation:DescribeStacks", name)),
    };
    let Some(stack) = out.stacks().first() else {
        return Ok(None);
    };
    let status = stack
        .stack_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    if status == "DELETE_COMPLETE" {
        return Ok(None);
    }
    Ok(Some(Stack {
        status,
        reason: stack.stack_status_reason().map(str::to_owned),
        tags: stack
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect(),
        parameters: stack
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_owned(),
                    p.parameter_value()?.to_owned(),
                ))
            })
            .collect(),
        outputs: stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect(),
    }))
}

/// The resources of `template` whose `Condition` is false for these parameter values, so
/// CloudFormation will not create them (moto still lists them in a change set). `value` gives a
/// parameter's value, else the template's default is used. A condition this cannot decide (an
/// intrinsic other than `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition` and `Ref` of
/// a parameter) counts as true: the resource stays listed.
pub(crate) fn resources_left_out(
    template: &serde_json::Value,
    value: impl Fn(&str) -> Option<String>,
) -> BTreeSet<String> {
    use serde_json::Value;
    let conditions = template.get("Conditions").and_then(Value::as_object);
    let parameters = template.get("Parameters").and_then(Value::as_object);
    let resolve = |v: &Value| -> Option<String> {
        match v {
            Value::String(text) => Some(text.clone()),
            Value::Object(map) => {
                let name = map.get("Ref")?.as_str()?;
                value(name).or_else(|| {
                    parameters?.get(name)?.get("Default").map(|d| match d {
                        Value::String(t) => t.clone(),
                        other => other.to_string(),
                    })
                })
            }
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    fn eval(
        c: &Value,
        depth: usize,
        resolve: &dyn Fn(&Value) -> Option<String>,
        conditions: Option<&serde_json::Map<String, Value>>,
    ) -> Option<bool> {
        if depth > 16 {
            return None;
        }
        let map = c.as_object()?;
        let (op, args) = map.iter().next()?;
        let list = || args.as_array().map(Vec::as_slice).unwrap_or_default();
        let each = |f: &dyn Fn(&[Option<bool>]) -> Option<bool>| {
            let values: Vec<Option<bool>> = list()
                .iter()
                .map(|a| eval(a, depth + 1, resolve, conditions))
                .collect();
            f(&values)
        };
        match op.as_str() {
            "Fn::Equals" => match list() {
                [a, b] => Some(resolve(a)? == resolve(b)?),
                _ => None,
            },
            "Fn::Not" => match list() {
                [a] => eval(a, depth + 1, resolve, conditions).map(|b| !b),
                _ => None,
            },
            // One false decides an And, one true an Or, whatever the undecided ones say.
            "Fn::And" => each(&|v| {
                if v.contains(&Some(false)) {
                    Some(false)
                } else {
                    v.iter().all(Option::is_some).then_some(true)
                }
            }),
            "Fn::Or" => each(&|v| {
                if v.contains(&Some(true)) {
                    Some(true)
                } else {
                    v.iter().all(Option::is_some).then_some(false)
                }
            }),
            "Condition" => {
                let name = args.as_str()?;
                eval(conditions?.get(name)?, depth + 1, resolve, conditions)
            }
            _ => None,
        }
    }
    template
        .get("Resources")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, resource)| {
            resource
                .get("Condition")
                .and_then(Value::as_str)
                .and_then(|name| conditions?.get(name))
                .and_then(|c| eval(c, 0, &resolve, conditions))
                == Some(false)
        })
        .map(|(logical, _)| logical.clone())
        .collect()
}

/// How an output's value is made from the stack's resources and parameters, when it is simple
/// enough to rebuild from outside: a `Ref` to a resource, or an `Fn::Sub` string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OutputValue {
    /// `{"Ref": RESOURCE}`: the resource's physical id.
    Ref(String),
    /// `{"Fn::Sub": "…${Name}…"}`: names are resources, parameters or pseudo parameters.
    Sub(String),
}

/// The template's outputs that [`OutputValue`] can rebuild, by output name.
pub(crate) fn rebuildable_outputs(template: &serde_json::Value) -> BTreeMap<String, OutputValue> {
    let resources = template.get("Resources").and_then(|r| r.as_object());
    template
        .get("Outputs")
        .and_then(|o| o.as_object())
        .map(|outputs| {
            outputs
                .iter()
                .filter_map(|(name, o)| {
                    let value = o.get("Value")?;
                    if let Some(target) = value.get("Ref").and_then(|t| t.as_str()) {
                        return resources?
                            .contains_key(target)
                            .then(|| (name.clone(), OutputValue::Ref(target.to_owned())));
                    }
                    let text = value.get("Fn::Sub")?.as_str()?;
                    Some((name.clone(), OutputValue::Sub(text.to_owned())))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `text` with every `${Name}` replaced by `lookup(Name)`; `None` when a name has no value (an
/// attribute such as `${Api.RootResourceId}`, or a resource the stack lacks).
pub(crate) fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        if let Some(literal) = after.strip_prefix('!') {
            // `${!Literal}` stands for `${Literal}`.
            let end = literal.find('}')?;
            out.push_str("${");
            out.push_str(&literal[..=end]);
            rest = &literal[end + 1..];
            continue;
        }
        let end = after.find('}')?;
        out.push_str(&lookup(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The stack's outputs. CloudFormation lists them once the stack settles; moto does not rebuild
/// them after a change set executes, so when none are listed, the outputs of the stack's own
/// template that are a `Ref` to a resource, or an `Fn::Sub` of resources, parameters and pseudo
/// parameters (the app's URL, typically), are rebuilt from the resources' physical ids and the
/// stack's parameters instead.
pub(crate) async fn outputs(aws: &Aws, stack: &str) -> Result<BTreeMap<String, String>> {
    let described = describe_stack(aws, stack).await?.unwrap_or_default();
    let mut out = described.outputs;
    if !out.is_empty() {
        return Ok(out);
    }
    let template = match aws.cfn.get_template().stack_name(stack).send().await {
        Ok(t) => t.template_body().unwrap_or_default().to_owned(),
        Err(e) if is_missing_stack(&e) => return Ok(out),
        Err(e) => return Err(aws.explain(e, "cloudformation:GetTemplate", stack)),
    };
    let template: serde_json::Value = serde_json::from_str(&template).unwrap_or_default();
    let wanted = rebuildable_outputs(&template);
    if wanted.is_empty() {
        return Ok(out);
    }
    // One listing for every resource (moto also fails DescribeStackResource on a stack with a
    // resource its conditions left out).
    let physical: BTreeMap<String, String> = list_resources(aws, stack)
        .await?
        .into_iter()
        .filter(|r| !r.logical.is_empty() && !r.physical.is_empty())
        .map(|r| (r.logical, r.physical))
        .collect();
    let china = aws.region.starts_with("cn-");
    let lookup = |name: &str| -> Option<String> {
        let pseudo = match name {
            "AWS::Region" => Some(aws.region.clone()),
            "AWS::AccountId" => Some(aws.account.clone()),
            "AWS::StackName" => Some(stack.to_owned()),
            "AWS::Partition" => Some(if china { "aws-cn" } else { "aws" }.to_owned()),
            "AWS::URLSuffix" => Some(
                if china {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                }
                .to_owned(),
            ),
            _ => None,
        };
        pseudo
            .or_else(|| physical.get(name).cloned())
            .or_else(|| described.parameters.get(name).cloned())
    };
    for (name, value) in wanted {
        let rebuilt = match value {
            OutputValue::Ref(logical) => physical.get(&logical).cloned(),
            OutputValue::Sub(text) => substitute(&text, lookup),
        };
        if let Some(rebuilt) = rebuilt {
            out.insert(name, rebuilt);
        }
    }
    Ok(out)
}

pub(crate) fn change_set_name(version: &semver::Version) -> String {
    let v: String = version
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("consign-{v}-{}", UnixTime::now().as_secs())
}

/// A change set created and described.
pub(crate) struct ChangeSet {
    pub(crate) name: String,
    pub(crate) kind: ChangeSetType,
    pub(crate) changes: Vec<Change>,
    /// False when CloudFormation found nothing to change.
    pub(crate) has_changes: bool,
}

pub(crate) async fn create_change_set(
    aws: &Aws,
    release: &Release,
    stack: &str,
    kind: ChangeSetType,
    template: TemplateRef,
    parameters: Vec<Parameter>,
    capabilities: Vec<Capability>,
) -> Result<ChangeSet> {
    let name = change_set_name(&release.manifest.version);
    let tags = [
        ("consign:app", release.app().to_owned()),
        ("consign:version", release.manifest.version.to_string()),
        ("consign:manifest", release.manifest_digest.to_string()),
        (
            "consign:license",
            release.license.claims().jti.as_str().to_owned(),
        ),
    ];
    let mut request = aws
        .cfn
        .create_change_set()
        .stack_name(stack)
        .set_role_arn(aws.role_arn.clone())
        .change_set_name(&name)
        .change_set_type(kind.clone())
        .set_parameters(Some(parameters))
        .set_capabilities(Some(capabilities))
        .description(format!(
            "Consign: {} {}",
            release.app(),
            release.manifest.version
        ));
    for (key, value) in tags {
        request = request.tags(Tag::builder().key(key).value(value).build());
    }
    request = match template {
        TemplateRef::Body(body) => request.template_body(body),
        TemplateRef::Url(url) => request.template_url(url),
    };
    request
        .send()
        .await
        .map_err(|e| aws.explain(e, "cloudformation:CreateChangeSet", stack))?;
    wait_for_change_set(aws, stack, name, kind).await
}

/// Polls a new change set until CloudFormation has computed it (seconds, usually): its changes,
/// or none when the stack needs none; a change set CloudFormation refused is deleted and refused.
async fn wait_for_change_set(
    aws: &Aws,
    stack: &str,
    name: String,
    kind: ChangeSetType,
) -> Result<ChangeSet> {
    let mut waited = Duration::ZERO;
    loop {
        let described = aws
            .cfn
            .describe_change_set()
            .stack_name(stack)
            .change_set_name(&name)
            .send()
            .await
            .map_err(|e| aws.explain(e, "cloudformation:DescribeChangeSet", &name))?;
        match described.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                let changes = described
                    .changes()
                    .iter()
                    .filter_map(|c| c.resource_change())
                    .map(|r| Change {
                        action: r
                            .action()
                            .map(|a| a.as_str().to_owned())
                            .unwrap_or_default(),
                        logical_id: r.logical_resource_id().unwrap_or_default().to_owned(),
                        resource_type: r.resource_type().unwrap_or_default().to_owned(),
                        replacement: r.replacement().map(|x| x.as_str().to_owned()),
                    })
                    .collect();
                return Ok(ChangeSet {
                    name,
                    kind,
                    changes,
                    has_changes: true,
                });
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = described.status_reason().unwrap_or_default().to_owned();
                // "The submitted information didn't contain changes": not a failure.
                if reason.contains("didn't contain changes") || reason.contains("No updates") {
                    delete_change_set(aws, stack, &name).await?;
                    return Ok(ChangeSet {
                        name,
                        kind,
                        changes: Vec::new(),
                        has_changes: false,
                    });
                }
                delete_change_set(aws, stack, &name).await.ok();
                crate::refuse!(
                    DeployFailed,
                    "CloudFormation refused the change set for {stack}: {reason}"
                );
            }
            _ if waited > Duration::from_secs(600) => {
                bail!("the change set {name} was not ready after 10 minutes")
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                waited += Duration::from_millis(500);
            }
        }
    }
}

pub(crate) async fn delete_change_set(aws: &Aws, stack: &str, name: &str) -> Result<()> {
    aws.cfn
        .delete_change_set()
        .stack_name(stack)
        .change_set_name(name)
        .send()
        .await
        .map_err(|e| aws.explain(e, "cloudformation:DeleteChangeSet", name))?;
    Ok(())
}

pub(crate) async fn delete_stack_quietly(aws: &Aws, stack: &str) -> Result<()> {
    aws.cfn
        .delete_stack()
        .stack_name(stack)
        .set_role_arn(aws.role_arn.clone())
        .send()
        .await
        .map_err(|e| aws.explain(e, "cloudformation:DeleteStack", stack))?;
    Ok(())
}

/// One resource of a stack, as ListStackResources gives it (empty strings where it gives none).
#[derive(Clone, Debug)]
pub struct StackResource {
    /// The logical id.
    pub logical: String,
    /// The physical id.
    pub physical: String,
    /// The resource type.
    pub kind: String,
    /// Its status.
    pub status: String,
}

/// Every resource of `stack`, page by page.
pub async fn list_resources(aws: &Aws, stack: &str) -> Result<Vec<StackResource>> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = aws
            .cfn
            .list_stack_resources()
            .stack_name(stack)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| aws.explain(e, "cloudformation:ListStackResources", stack))?;
        for r in page.stack_resource_summaries() {
            out.push(StackResource {
                logical: r.logical_resource_id().unwrap_or_default().to_owned(),
                physical: r.physical_resource_id().unwrap_or_default().to_owned(),
                kind: r.resource_type().unwrap_or_default().to_owned(),
                status: r
                    .resource_status()
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
            });
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_owned()),
            _ => return Ok(out),
        }
    }
}

pub(crate) async fn newest_event(aws: &Aws, stack: &str) -> Result<Option<String>> {
    match aws
        .cfn
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .stack_events()
            .first()
            .and_then(|e| e.event_id())
            .map(str::to_owned)),
        Err(e) if is_missing_stack(&e) => Ok(None),
        Err(e) => Err(aws.explain(e, "cloudformation:DescribeStackEvents", stack)),
    }
}

/// Executes the change set. A failing resource makes CloudFormation end in a failed or
/// rolled-back status, which [`watch`] reports; moto instead fails the ExecuteChangeSet call
/// itself with the resource's error and no name, so the resource is found as the one the stack
/// cannot describe.
pub(crate) async fn execute(
    aws: &Aws,
    stack: &str,
    change_set: &str,
    template: &serde_json::Value,
) -> Result<()> {
    let Err(err) = aws
        .cfn
        .execute_change_set()
        .stack_name(stack)
        .change_set_name(change_set)
        .send()
        .await
    else {
        return Ok(());
    };
    let explained = aws.explain(err, "cloudformation:ExecuteChangeSet", stack);
    let message = explained.to_string();
    if message.starts_with("cannot reach") || message.starts_with("AWS denied") {
        return Err(explained);
    }
    let reason = message
        .strip_prefix(&format!(
            "cloudformation:ExecuteChangeSet on {stack} failed: "
        ))
        .unwrap_or(&message)
        .to_owned();
    let resources = template
        .get("Resources")
        .and_then(|r| r.as_object())
        .cloned()
        .unwrap_or_default();
    for (logical, body) in &resources {
        let kind = body.get("Type").and_then(|t| t.as_str()).unwrap_or("?");
        if let Err(e) = aws
            .cfn
            .describe_stack_resource()
            .stack_name(stack)
            .logical_resource_id(logical)
            .send()
            .await
        {
            // The failing resource answers with the very error the execution failed with.
            if aws
                .explain(e, "create", logical)
                .to_string()
                .contains(&reason)
            {
                crate::refuse!(
                    DeployFailed,
                    "stack {stack} failed: resource {logical} ({kind}) could not be created: {reason}. Fix the cause and run the command again, or `installer uninstall --stack {stack}`"
                );
            }
        }
    }
    Err(explained.context(format!("stack {stack} failed")))
}

/// Streams stack events until the stack settles; the final status, or the failed resource and
/// its reason as an error.
pub(crate) async fn watch(
    aws: &Aws,
    stack: &str,
    mut marker: Option<String>,
    poll: Duration,
    total: usize,
    ui: Ui,
) -> Result<String> {
    let mut first_failure: Option<String> = None;
    let mut settled_resources = BTreeSet::new();
    let started = std::time::Instant::now();
    loop {
        let out = match aws
            .cfn
            .describe_stack_events()
            .stack_name(stack)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_missing_stack(&e) => return Ok("DELETE_COMPLETE".into()),
            Err(e) => return Err(aws.explain(e, "cloudformation:DescribeStackEvents", stack)),
        };
        // Newest first, down to the marker; printed oldest first.
        let mut fresh = Vec::new();
        for event in out.stack_events() {
            if event.event_id().map(str::to_owned) == marker {
                break;
            }
            fresh.push(event.clone());
        }
        if let Some(newest) = out.stack_events().first() {
            marker = newest.event_id().map(str::to_owned);
        }
        for event in fresh.iter().rev() {
            show_event(
                event,
                stack,
                total,
                &mut settled_resources,
                &mut first_failure,
                ui,
            );
        }
        let Some(current) = describe_stack(aws, stack).await? else {
            return Ok("DELETE_COMPLETE".into());
        };
        let status = current.status.clone();
        let settled = !status.ends_with("_IN_PROGRESS");
        if settled {
            let failed = status.ends_with("_FAILED")
                || status.contains("ROLLBACK")
                || status == StackStatus::DeleteFailed.as_str();
            if failed {
                let why = first_failure
                    .or(current.reason)
                    .unwrap_or_else(|| "CloudFormation gave no reason".into());
                crate::refuse!(
                    DeployFailed,
                    "stack {stack} ended in {status}: {why}. Fix the cause and run the command again"
                );
            }
            return Ok(status);
        }
        if started.elapsed() > Duration::from_secs(3 * 3600) {
            bail!("stack {stack} did not settle within 3 hours (still {status})");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Prints one stack event with the count of settled resources, and remembers the first failure.
fn show_event(
    event: &aws_sdk_cloudformation::types::StackEvent,
    stack: &str,
    total: usize,
    settled_resources: &mut BTreeSet<String>,
    first_failure: &mut Option<String>,
    ui: Ui,
) {
    let status = event
        .resource_status()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    let logical = event.logical_resource_id().unwrap_or_default();
    let kind = event.resource_type().unwrap_or_default();
    let reason = event.resource_status_reason().unwrap_or_default();
    let at = event.timestamp().map(|t| t.to_string()).unwrap_or_default();
    if logical != stack && status.ends_with("_COMPLETE") {
        settled_resources.insert(logical.to_owned());
    }
    // The count moves with resource events; a stack's own events (and an emulator that sends
    // no resource events) get none, so no counter stands still.
    let counter = if total > 0 && logical != stack {
        format!("[{:>2}/{total}] ", settled_resources.len().min(total))
    } else {
        String::new()
    };
    ui.say(format!(
        "  {counter}{at}  {status:<22} {logical} ({kind}) {reason}"
    ));
    if status.ends_with("_FAILED") && first_failure.is_none() && logical != stack {
        *first_failure = Some(format!("resource {logical} ({kind}) failed: {reason}"));
    }
}

pub(crate) enum TemplateRef {
    Body(String),
    Url(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::describe_changes;

    #[test]
    fn resources_whose_condition_is_false_are_left_out() {
        let template = serde_json::json!({
            "Parameters": {"LayerKey": {"Type": "String", "Default": ""}, "Stage": {"Type": "String"}},
            "Conditions": {
                "HasLayer": {"Fn::Not": [{"Fn::Equals": [{"Ref": "LayerKey"}, ""]}]},
                "Live": {"Fn::And": [{"Condition": "HasLayer"}, {"Fn::Equals": ["live", {"Ref": "Stage"}]}]},
                "Odd": {"Fn::Equals": [{"Fn::Select": [0, ["a"]]}, "a"]}
            },
            "Resources": {
                "Layer": {"Type": "AWS::Lambda::LayerVersion", "Condition": "HasLayer"},
                "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Condition": "Live"},
                "Other": {"Type": "AWS::SNS::Topic", "Condition": "Odd"},
                "Table": {"Type": "AWS::DynamoDB::Table"}
            }
        });
        let none = |_: &str| None;
        let left: Vec<String> = resources_left_out(&template, none).into_iter().collect();
        assert_eq!(left, ["Alarm", "Layer"]);
        let with_layer = |name: &str| match name {
            "LayerKey" => Some("functions/abc.zip".to_owned()),
            "Stage" => Some("live".to_owned()),
            _ => None,
        };
        assert!(resources_left_out(&template, with_layer).is_empty());
    }

    #[test]
    fn outputs_rebuild_from_refs_and_subs() {
        let template = serde_json::json!({
            "Resources": {"SiteBucket": {"Type": "AWS::S3::Bucket"}},
            "Parameters": {"Stage": {"Type": "String"}},
            "Outputs": {
                "SiteBucketName": {"Value": {"Ref": "SiteBucket"}},
                "StageName": {"Value": {"Ref": "Stage"}},
                "Url": {"Value": {"Fn::Sub": "https://${SiteBucket}"}}
            }
        });
        let outputs = rebuildable_outputs(&template);
        assert_eq!(outputs.len(), 2);
        assert_eq!(
            outputs.get("SiteBucketName"),
            Some(&OutputValue::Ref("SiteBucket".into()))
        );
        assert_eq!(
            outputs.get("Url"),
            Some(&OutputValue::Sub("https://${SiteBucket}".into()))
        );
        let lookup = |name: &str| match name {
            "Api" => Some("abc123".to_owned()),
            "AWS::Region" => Some("eu-west-1".to_owned()),
            "Stage" => Some("prod".to_owned()),
            _ => None,
        };
        assert_eq!(
            substitute(
                "https://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}/",
                lookup
            )
            .as_deref(),
            Some("https://abc123.execute-api.eu-west-1.amazonaws.com/prod/")
        );
        assert_eq!(substitute("${Api.RootResourceId}", lookup), None);
        assert_eq!(
            substitute("${!Literal} ${Stage}", lookup).as_deref(),
            Some("${Literal} prod")
        );
        assert_eq!(substitute("broken ${Stage", lookup), None);
    }

    #[test]
    fn changes_read_as_add_modify_replace_remove() {
        let change = |action: &str, replacement: Option<&str>| Change {
            action: action.into(),
            logical_id: "Posts".into(),
            resource_type: "AWS::Lambda::Function".into(),
            replacement: replacement.map(str::to_owned),
        };
        let text = describe_changes(&[
            change("Add", None),
            change("Modify", Some("False")),
            change("Modify", Some("True")),
            change("Modify", Some("Conditional")),
            change("Remove", None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].trim_start().starts_with("+ Add"), "{text}");
        assert!(lines[1].trim_start().starts_with("~ Modify") && !lines[1].contains("REPLACED"));
        assert!(lines[2].ends_with("(REPLACED)"), "{text}");
        assert!(lines[3].ends_with("(may be replaced)"), "{text}");
        assert!(lines[4].trim_start().starts_with("- Remove"), "{text}");
        assert!(describe_changes(&[]).contains("no resource changes"));
    }

    #[test]
    fn vacant_and_busy_stacks() {
        let stack = |status: &str| Stack {
            status: status.into(),
            ..Stack::default()
        };
        assert!(stack("REVIEW_IN_PROGRESS").is_vacant());
        assert!(stack("ROLLBACK_COMPLETE").is_vacant());
        assert!(!stack("UPDATE_ROLLBACK_COMPLETE").is_vacant());
        assert!(stack("UPDATE_IN_PROGRESS").is_busy());
        assert!(!stack("REVIEW_IN_PROGRESS").is_busy());
    }
}
