//! What a CloudFormation template declares, read at build time so that the signed manifest can
//! tell buyers and admins — and the portal, which never sees the template in the clear — which AWS
//! resources a release creates and which IAM actions it holds.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The largest template accepted, in bytes (CloudFormation's own limit for templates in S3).
pub const MAX_TEMPLATE_LEN: usize = 1024 * 1024;

/// A resource the template declares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// The logical id.
    pub logical_id: String,
    /// The resource type (`AWS::Lambda::Function`).
    #[serde(rename = "type")]
    pub kind: String,
}

/// An IAM permission the template grants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// The role or policy's logical id.
    pub principal: String,
    /// The action (`dynamodb:Query`) or `managed-policy:ARN` for an attached managed policy.
    pub action: String,
    /// The resource it applies to, as written (intrinsics are shown as JSON).
    pub resource: String,
}

/// The parts of a template Consign reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateSummary {
    /// Resources, sorted by logical id.
    pub resources: Vec<Resource>,
    /// Allowed IAM actions, sorted.
    pub permissions: Vec<Permission>,
    /// Parameter names.
    pub parameters: Vec<String>,
    /// Output names.
    pub outputs: Vec<String>,
}

fn invalid(file: &str, reason: impl Into<String>) -> Error {
    Error::AppManifest {
        file: file.into(),
        reason: reason.into(),
    }
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl TemplateSummary {
    /// Reads a JSON template named `file`. Refuses templates without `AWSTemplateFormatVersion`
    /// (CloudFormation's template summary needs it), with a `Transform` (Consign deploys plain
    /// CloudFormation: no SAM), or without resources.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_TEMPLATE_LEN {
            return Err(invalid(file, "the template is over 1 MiB"));
        }
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
            invalid(
                file,
                format!(
                    "the template must be JSON ({e}); convert a YAML template with `cfn-flip` first"
                ),
            )
        })?;
        let doc = doc
            .as_object()
            .ok_or_else(|| invalid(file, "the template is not a JSON object"))?;
        if !doc.contains_key("AWSTemplateFormatVersion") {
            return Err(invalid(
                file,
                "the template needs AWSTemplateFormatVersion (\"2010-09-09\")",
            ));
        }
        if doc.contains_key("Transform") {
            return Err(invalid(
                file,
                "the template has a Transform: Consign deploys plain CloudFormation (expand SAM with `sam build` or write AWS:: resources)",
            ));
        }
        let resources = doc
            .get("Resources")
            .and_then(Value::as_object)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| invalid(file, "the template has no Resources"))?;
        let mut summary = TemplateSummary::default();
        let mut permissions = BTreeSet::new();
        for (logical_id, resource) in resources {
            let kind = resource
                .get("Type")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(file, format!("resource {logical_id} has no Type")))?;
            if kind.starts_with("AWS::Serverless::") {
                return Err(invalid(
                    file,
                    format!(
                        "resource {logical_id} is {kind}: SAM resources are not deployed; use AWS:: resources"
                    ),
                ));
            }
            summary.resources.push(Resource {
                logical_id: logical_id.clone(),
                kind: kind.to_owned(),
            });
            let props = resource.get("Properties").unwrap_or(&Value::Null);
            let mut documents = Vec::new();
            match kind {
                "AWS::IAM::Role" => {
                    for policy in as_list(props.get("Policies").unwrap_or(&Value::Null)) {
                        documents.extend(policy.get("PolicyDocument"));
                    }
                    for arn in as_list(props.get("ManagedPolicyArns").unwrap_or(&Value::Null)) {
                        permissions.insert(Permission {
                            principal: logical_id.clone(),
                            action: format!("managed-policy:{}", show(arn)),
                            resource: "*".into(),
                        });
                    }
                }
                "AWS::IAM::Policy"
                | "AWS::IAM::ManagedPolicy"
                | "AWS::IAM::UserPolicy"
                | "AWS::IAM::RolePolicy" => {
                    documents.extend(props.get("PolicyDocument"));
                }
                _ => {}
            }
            for document in documents {
                for statement in as_list(document.get("Statement").unwrap_or(&Value::Null)) {
                    if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
                        continue;
                    }
                    let resources: Vec<String> =
                        as_list(statement.get("Resource").unwrap_or(&Value::Null))
                            .into_iter()
                            .map(show)
                            .collect();
                    for action in as_list(statement.get("Action").unwrap_or(&Value::Null)) {
                        for resource in if resources.is_empty() {
                            vec!["*".to_owned()]
                        } else {
                            resources.clone()
                        } {
                            permissions.insert(Permission {
                                principal: logical_id.clone(),
                                action: show(action),
                                resource,
                            });
                        }
                    }
                }
            }
        }
        summary.resources.sort();
        summary.permissions = permissions.into_iter().collect();
        summary.parameters = doc
            .get("Parameters")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        summary.outputs = doc
            .get("Outputs")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        Ok(summary)
    }

    /// The distinct IAM actions, sorted (`dynamodb:Query`, `logs:PutLogEvents`, …).
    pub fn actions(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.permissions.iter().map(|p| p.action.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    }
}

/// The Lambda functions of a parsed JSON template whose code is a bundle object: logical id → the
/// template parameter that receives its code's S3 key (`Code.S3Key` is a `Ref` to it). With the
/// manifest's `code_parameter`s this says which function of the bundle each resource runs.
pub fn function_code_parameters(template: &Value) -> BTreeMap<String, String> {
    let Some(resources) = template.get("Resources").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    resources
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some("AWS::Lambda::Function"))
        .filter_map(|(id, r)| {
            let parameter = r.pointer("/Properties/Code/S3Key/Ref")?.as_str()?;
            Some((id.clone(), parameter.to_owned()))
        })
        .collect()
}

/// A reference from one resource to another in a template: `Ref`, `Fn::GetAtt`, or a
/// `${Name}` / `${Name.Attribute}` inside `Fn::Sub`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reference {
    /// The logical id of the resource that refers.
    pub from: String,
    /// The logical id of the resource referred to.
    pub to: String,
}

/// Every reference between the resources of a JSON template, sorted and without repeats;
/// references to parameters and pseudo parameters (`AWS::Region`) are left out. A template that
/// does not parse gives none: [`TemplateSummary::parse`] is where templates are judged.
pub fn references(bytes: &[u8]) -> Vec<Reference> {
    let Ok(doc) = serde_json::from_slice::<Value>(bytes) else {
        return Vec::new();
    };
    let Some(resources) = doc.get("Resources").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut found = BTreeSet::new();
    for (from, resource) in resources {
        let mut targets = BTreeSet::new();
        collect_targets(resource, &mut targets);
        for to in targets {
            if to != *from && resources.contains_key(&to) {
                found.insert(Reference {
                    from: from.clone(),
                    to,
                });
            }
        }
    }
    found.into_iter().collect()
}

fn collect_targets(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("Ref", Value::String(name)) => {
                        into.insert(name.clone());
                    }
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        if let Some(Value::String(name)) = parts.first() {
                            into.insert(name.clone());
                        }
                    }
                    ("Fn::GetAtt", Value::String(dotted)) => {
                        into.insert(dotted.split('.').next().unwrap_or_default().to_owned());
                    }
                    ("Fn::Sub", sub) => {
                        let text = match sub {
                            Value::String(text) => Some(text.as_str()),
                            Value::Array(parts) => parts.first().and_then(Value::as_str),
                            _ => None,
                        };
                        for name in text.map(sub_names).unwrap_or_default() {
                            into.insert(name);
                        }
                    }
                    _ => {}
                }
                collect_targets(inner, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_targets(item, into)),
        _ => {}
    }
}

/// The names a `Fn::Sub` string refers to: `${Name}` and `${Name.Attr}` (as `Name`), not
/// `${!Literal}` nor pseudo parameters (`${AWS::Region}`).
pub(crate) fn sub_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('}') else { break };
        let inner = &rest[..end];
        if !inner.starts_with('!') && !inner.contains("::") {
            names.push(inner.split('.').next().unwrap_or_default().to_owned());
        }
        rest = &rest[end + 1..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resources_and_permissions() {
        let t = br#"{"AWSTemplateFormatVersion":"2010-09-09",
          "Parameters":{"CodeKey":{"Type":"String"}},
          "Resources":{
            "Role":{"Type":"AWS::IAM::Role","Properties":{
              "ManagedPolicyArns":["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
              "Policies":[{"PolicyName":"p","PolicyDocument":{"Statement":[
                {"Effect":"Allow","Action":["dynamodb:Query","dynamodb:GetItem"],"Resource":{"Fn::GetAtt":["Posts","Arn"]}},
                {"Effect":"Deny","Action":"s3:*","Resource":"*"}]}}]}},
            "Posts":{"Type":"AWS::DynamoDB::Table"}},
          "Outputs":{"Url":{"Value":"x"}}}"#;
        let s = TemplateSummary::parse("template.json", t).unwrap();
        assert_eq!(s.resources.len(), 2);
        assert_eq!(
            s.actions(),
            [
                "dynamodb:GetItem",
                "dynamodb:Query",
                "managed-policy:arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
            ]
        );
        assert_eq!(
            s.permissions[0].resource,
            r#"{"Fn::GetAtt":["Posts","Arn"]}"#
        );
        assert_eq!(s.parameters, ["CodeKey"]);
        assert_eq!(s.outputs, ["Url"]);
    }

    #[test]
    fn finds_references_between_resources() {
        let t = br#"{"AWSTemplateFormatVersion":"2010-09-09",
          "Parameters":{"Stage":{"Type":"String"}},
          "Resources":{
            "Fn":{"Type":"AWS::Lambda::Function","Properties":{
              "Role":{"Fn::GetAtt":["Role","Arn"]},
              "Environment":{"Variables":{"TABLE":{"Ref":"Posts"},"STAGE":{"Ref":"Stage"},
                "REGION":{"Ref":"AWS::Region"},"Q":{"Fn::Sub":"${Queue.Arn}/${!Literal}"}}}}},
            "Role":{"Type":"AWS::IAM::Role","Properties":{"Policies":[{"PolicyDocument":{"Statement":[
              {"Effect":"Allow","Action":"dynamodb:Query","Resource":{"Fn::GetAtt":"Posts.Arn"}}]}}]}},
            "Posts":{"Type":"AWS::DynamoDB::Table"},
            "Queue":{"Type":"AWS::SQS::Queue"},
            "Loop":{"Type":"AWS::SNS::Topic","Properties":{"Name":{"Ref":"Loop"}}}}}"#;
        let edges: Vec<(String, String)> =
            references(t).into_iter().map(|r| (r.from, r.to)).collect();
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            edges,
            [
                pair("Fn", "Posts"),
                pair("Fn", "Queue"),
                pair("Fn", "Role"),
                pair("Role", "Posts")
            ]
        );
        assert!(references(b"not json").is_empty());
    }

    #[test]
    fn maps_functions_to_their_code_parameters() {
        let t = br#"{"Resources":{
            "Price":{"Type":"AWS::Lambda::Function","Properties":{"Code":{"S3Key":{"Ref":"PriceCodeKey"}}}},
            "Inline":{"Type":"AWS::Lambda::Function","Properties":{"Code":{"ZipFile":"x"}}},
            "Table":{"Type":"AWS::DynamoDB::Table"}}}"#;
        let map = function_code_parameters(&serde_json::from_slice(t).unwrap());
        assert_eq!(map.len(), 1);
        assert_eq!(map["Price"], "PriceCodeKey");
    }

    #[test]
    fn refuses_sam_and_missing_version() {
        let sam = br#"{"AWSTemplateFormatVersion":"2010-09-09","Transform":"AWS::Serverless-2016-10-31","Resources":{"F":{"Type":"AWS::Serverless::Function"}}}"#;
        assert!(
            TemplateSummary::parse("t", sam)
                .unwrap_err()
                .to_string()
                .contains("Transform")
        );
        let bare = br#"{"Resources":{"T":{"Type":"AWS::SNS::Topic"}}}"#;
        assert!(
            TemplateSummary::parse("t", bare)
                .unwrap_err()
                .to_string()
                .contains("AWSTemplateFormatVersion")
        );
        assert!(
            TemplateSummary::parse("t", b"Resources: {}")
                .unwrap_err()
                .to_string()
                .contains("must be JSON")
        );
    }
}
