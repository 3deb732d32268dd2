//! The permissions boundary of an installation: every IAM role a release creates is bounded by
//! the actions its signed manifest declares, so a role can never hold more than the admin was
//! shown (`installer plan`, the marketplace page), whatever its policies say.
//!
//! - Before anything changes, [`check_template`] reads every policy the template grants and
//!   refuses an action the manifest does not declare, and what no boundary can hold (managed
//!   policies, `NotAction`, users and access keys, statements that are not literal JSON).
//! - [`ensure`] keeps the boundary as a customer-managed policy per installation
//!   (`/consign/consign-<region>-<stack>-boundary`), and [`bounded_text`] sets it as the
//!   `PermissionsBoundary` of every `AWS::IAM::Role` of the template deployed. The installer's own
//!   policy (`installer iam-policy`) may create and change roles only with this boundary attached.
//! - [`remove`] deletes it after the stack.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use bundles::BundleManifest;
use serde_json::{Value, json};

use crate::aws::Aws;

/// The boundary policy's path.
pub const PATH: &str = "/consign/";

/// Resource types a release may not create: identities with their own credentials, which no
/// role boundary holds.
const REFUSED_TYPES: &[&str] = &[
    "AWS::IAM::User",
    "AWS::IAM::Group",
    "AWS::IAM::AccessKey",
    "AWS::IAM::UserToGroupAddition",
];

/// The boundary policy's name for `stack` in `region` (IAM is global; stacks are regional).
pub fn name(region: &str, stack: &str) -> String {
    format!("consign-{region}-{stack}-boundary")
}

/// The boundary policy's ARN.
pub fn arn(account: &str, region: &str, stack: &str) -> String {
    format!(
        "arn:aws:iam::{account}:policy/consign/{}",
        name(region, stack)
    )
}

/// The actions the manifest declares, which the boundary allows.
pub fn actions(manifest: &BundleManifest) -> Vec<String> {
    manifest
        .actions()
        .into_iter()
        .filter(|a| !a.starts_with("managed-policy:"))
        .collect()
}

/// The boundary's policy document: the declared actions on any resource (each role's own
/// policies scope the resources); a release whose roles declare nothing gets a boundary that
/// allows nothing.
pub fn document(manifest: &BundleManifest) -> Value {
    let actions = actions(manifest);
    let statement = if actions.is_empty() {
        json!({"Sid": "NothingDeclared", "Effect": "Deny", "Action": "*", "Resource": "*"})
    } else {
        json!({"Sid": "DeclaredByTheRelease", "Effect": "Allow", "Action": actions, "Resource": "*"})
    };
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// Whether the template creates any IAM role (and so needs a boundary).
pub fn has_roles(template: &Value) -> bool {
    resources(template).any(|(_, kind, _)| kind == "AWS::IAM::Role")
}

fn resources(template: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    template
        .get("Resources")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(id, r)| {
            (
                id.as_str(),
                r.get("Type").and_then(Value::as_str).unwrap_or_default(),
                r.get("Properties").unwrap_or(&Value::Null),
            )
        })
}

fn undeclared(detail: String) -> anyhow::Error {
    crate::error::refused(crate::error::Code::UndeclaredPermission, detail)
}

/// Every action named under an `Action` key anywhere in `document` (statements inside
/// intrinsic functions included); `NotAction` and non-literal actions are refused.
fn granted(id: &str, document: &Value, into: &mut BTreeSet<String>) -> Result<()> {
    match document {
        Value::Object(map) => {
            for (key, value) in map {
                match key.as_str() {
                    "NotAction" => {
                        return Err(undeclared(format!(
                            "resource {id} of the template grants with NotAction (everything but a list), which no boundary of declared actions can show: do not install this release, and tell the vendor"
                        )));
                    }
                    "Action" => {
                        let list = match value {
                            Value::String(s) => vec![s.as_str()],
                            Value::Array(items) => items
                                .iter()
                                .map(|i| i.as_str())
                                .collect::<Option<Vec<_>>>()
                                .ok_or_else(|| {
                                    undeclared(format!(
                                        "resource {id} of the template names IAM actions that are not plain strings: the installer cannot show what it grants; do not install this release, and tell the vendor"
                                    ))
                                })?
                                .into_iter()
                                .collect(),
                            _ => {
                                return Err(undeclared(format!(
                                    "resource {id} of the template computes its IAM actions: the installer cannot show what it grants; do not install this release, and tell the vendor"
                                )));
                            }
                        };
                        into.extend(list.into_iter().map(|s| s.to_owned()));
                    }
                    _ => granted(id, value, into)?,
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                granted(id, item, into)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Refuses a template that grants any IAM action its signed manifest does not declare (naming
/// the resource and the action), a managed policy (whose actions no manifest declares), and
/// IAM users, groups and access keys. Reads only; runs before anything changes.
pub fn check_template(manifest: &BundleManifest, template: &Value) -> Result<()> {
    let declared: BTreeSet<String> = actions(manifest).into_iter().collect();
    for (id, kind, props) in resources(template) {
        if REFUSED_TYPES.contains(&kind) {
            return Err(undeclared(format!(
                "resource {id} of the template is {kind}: a release may create roles, which the installer bounds, but not identities with their own credentials; do not install this release, and tell the vendor"
            )));
        }
        let documents: Vec<&Value> = match kind {
            "AWS::IAM::Role" => {
                if props
                    .get("ManagedPolicyArns")
                    .is_some_and(|m| m.as_array().is_none_or(|a| !a.is_empty()))
                {
                    return Err(undeclared(format!(
                        "role {id} of the template attaches managed policies, whose actions the signed manifest cannot declare: the vendor must put those statements in the role's own policies"
                    )));
                }
                props.get("Policies").map(|p| vec![p]).unwrap_or_default()
            }
            "AWS::IAM::Policy"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::IAM::RolePolicy"
            | "AWS::IAM::UserPolicy"
            | "AWS::IAM::GroupPolicy" => props.get("PolicyDocument").into_iter().collect(),
            _ => Vec::new(),
        };
        let mut found = BTreeSet::new();
        for document in documents {
            granted(id, document, &mut found)?;
        }
        if let Some(action) = found.iter().find(|a| !declared.contains(*a)) {
            return Err(undeclared(format!(
                "resource {id} of the template grants {action}, which the vendor's signed manifest does not declare (it declares {}): the release would hold more than it shows; do not install it, and tell the vendor",
                license::process::count(declared.len() as u64, "action", "actions")
            )));
        }
    }
    Ok(())
}

/// JSON that keeps its keys in the order written (`serde_json::Value` sorts them): the deployed
/// template differs from the signed one only by the boundary, and CloudFormation emulators that
/// create resources in template order see the vendor's order.
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Array(Vec<Ordered>),
    Scalar(Value),
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
                    entries.push((k, v));
                }
                Ok(Ordered::Object(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<Ordered>()? {
                    items.push(v);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::from(v)))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::Null))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl serde::Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        match self {
            Ordered::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Ordered::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Ordered::Scalar(v) => v.serialize(s),
        }
    }
}

impl Ordered {
    fn get_mut(&mut self, key: &str) -> Option<&mut Ordered> {
        match self {
            Ordered::Object(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets `key` (in place when present, else last).
    fn set(&mut self, key: &str, value: Ordered) {
        if let Ordered::Object(entries) = self {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => entries.push((key.to_owned(), value)),
            }
        }
    }
}

/// The template's text with `boundary` as the `PermissionsBoundary` of every `AWS::IAM::Role`
/// (one the vendor set is replaced: the admin's boundary is the one that holds), everything else
/// in the vendor's order.
pub fn bounded_text(text: &[u8], boundary: &str) -> Result<Vec<u8>> {
    let mut doc: Ordered =
        serde_json::from_slice(text).context("the release's template is not JSON")?;
    if let Some(Ordered::Object(resources)) = doc.get_mut("Resources") {
        for (_, resource) in resources.iter_mut() {
            let is_role = matches!(resource, Ordered::Object(entries)
                if entries.iter().any(|(k, v)| k == "Type" && matches!(v, Ordered::Scalar(Value::String(t)) if t == "AWS::IAM::Role")));
            if !is_role {
                continue;
            }
            if resource.get_mut("Properties").is_none() {
                resource.set("Properties", Ordered::Object(Vec::new()));
            }
            if let Some(props) = resource.get_mut("Properties") {
                props.set(
                    "PermissionsBoundary",
                    Ordered::Scalar(Value::from(boundary)),
                );
            }
        }
    }
    Ok(serde_json::to_vec(&doc)?)
}

/// A denied boundary write as one sentence: who may write it, and how.
fn write_denied<E>(
    aws: &Aws,
    err: aws_sdk_cloudformation::error::SdkError<E, crate::aws::HttpResponse>,
    action: &str,
    arn: &str,
    stack: &str,
) -> anyhow::Error
where
    E: aws_sdk_cloudformation::error::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    if is_denied(&err) {
        return crate::error::refused(
            crate::error::Code::UndeclaredPermission,
            format!(
                "AWS denied {action} on {arn}: the permissions boundary of stack {stack} must be written (or widened) for this release, and your credentials may only read it; nothing was changed. Run the same command once with credentials that carry `installer iam-policy --boundary-admin --stack {stack}` (an admin approving the actions `installer plan` lists)"
            ),
        );
    }
    aws.explain(err, action, arn)
}

/// Creates the installation's boundary, or makes `manifest`'s document its default version
/// (deleting the oldest version when IAM's five are in use); returns its ARN. Writing takes
/// [`crate::iam::boundary_admin_policy`]; a boundary that already says what the release
/// declares is only read.
pub async fn ensure(aws: &Aws, manifest: &BundleManifest, stack: &str) -> Result<String> {
    let name = name(&aws.region, stack);
    let arn = arn(&aws.account, &aws.region, stack);
    let wanted = document(manifest);
    let text = wanted.to_string();
    let existing = aws.iam.get_policy().policy_arn(&arn).send().await;
    let policy = match existing {
        Ok(found) => found.policy,
        Err(e) if crate::aws::is_not_found(&e) || is_no_such_entity(&e) => None,
        Err(e) => return Err(aws.explain(e, "iam:GetPolicy", &arn)),
    };
    let Some(policy) = policy else {
        aws.iam
            .create_policy()
            .policy_name(&name)
            .path(PATH)
            .description(format!(
                "Consign: every action the roles of stack {stack} may hold (the release's signed manifest)"
            ))
            .policy_document(&text)
            .send()
            .await
            .map_err(|e| write_denied(aws, e, "iam:CreatePolicy", &arn, stack))?;
        return Ok(arn);
    };
    if let Some(version) = policy.default_version_id() {
        let current = aws
            .iam
            .get_policy_version()
            .policy_arn(&arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| aws.explain(e, "iam:GetPolicyVersion", &arn))?;
        let document = current
            .policy_version()
            .and_then(|v| v.document())
            .map(decode_document)
            .unwrap_or(Value::Null);
        if document == wanted {
            return Ok(arn);
        }
    }
    let versions = aws
        .iam
        .list_policy_versions()
        .policy_arn(&arn)
        .send()
        .await
        .map_err(|e| aws.explain(e, "iam:ListPolicyVersions", &arn))?;
    let mut old: Vec<_> = versions
        .versions()
        .iter()
        .filter(|v| !v.is_default_version())
        .filter_map(|v| v.version_id().map(str::to_owned))
        .collect();
    old.sort_by_key(|v| v.trim_start_matches('v').parse::<u64>().unwrap_or(0));
    if versions.versions().len() >= 5
        && let Some(oldest) = old.first()
    {
        aws.iam
            .delete_policy_version()
            .policy_arn(&arn)
            .version_id(oldest)
            .send()
            .await
            .map_err(|e| write_denied(aws, e, "iam:DeletePolicyVersion", &arn, stack))?;
    }
    aws.iam
        .create_policy_version()
        .policy_arn(&arn)
        .policy_document(&text)
        .set_as_default(true)
        .send()
        .await
        .map_err(|e| write_denied(aws, e, "iam:CreatePolicyVersion", &arn, stack))?;
    Ok(arn)
}

/// What [`remove`] did with the boundary.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// There was none.
    None,
    /// Deleted.
    Deleted,
    /// Kept: these credentials may not delete it (the sentence says who may).
    Kept(String),
}

fn is_denied<E: aws_sdk_cloudformation::error::ProvideErrorMetadata>(
    err: &aws_sdk_cloudformation::error::SdkError<E, crate::aws::HttpResponse>,
) -> bool {
    matches!(err, aws_sdk_cloudformation::error::SdkError::ServiceError(s)
        if s.err().code().is_some_and(|c| crate::aws::DENIED.contains(&c)))
}

/// Deletes the installation's boundary (its versions first), if there is one; credentials that
/// may not (the deploy policy only reads it) leave it, and say who may delete it.
pub async fn remove(aws: &Aws, stack: &str) -> Result<Removal> {
    let arn = arn(&aws.account, &aws.region, stack);
    let kept = || {
        Removal::Kept(format!(
            "the permissions boundary {arn} stays: these credentials may not delete it; credentials with `installer iam-policy --boundary-admin --stack {stack}` may (`aws iam delete-policy --policy-arn {arn}`)"
        ))
    };
    let versions = match aws.iam.list_policy_versions().policy_arn(&arn).send().await {
        Ok(v) => v,
        Err(e) if crate::aws::is_not_found(&e) || is_no_such_entity(&e) => {
            return Ok(Removal::None);
        }
        Err(e) if is_denied(&e) => return Ok(kept()),
        Err(e) => return Err(aws.explain(e, "iam:ListPolicyVersions", &arn)),
    };
    for version in versions
        .versions()
        .iter()
        .filter(|v| !v.is_default_version())
    {
        if let Some(id) = version.version_id() {
            match aws
                .iam
                .delete_policy_version()
                .policy_arn(&arn)
                .version_id(id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_denied(&e) => return Ok(kept()),
                Err(e) => return Err(aws.explain(e, "iam:DeletePolicyVersion", &arn)),
            }
        }
    }
    match aws.iam.delete_policy().policy_arn(&arn).send().await {
        Ok(_) => Ok(Removal::Deleted),
        Err(e) if is_denied(&e) => Ok(kept()),
        Err(e) => Err(aws.explain(e, "iam:DeletePolicy", &arn))
            .context("the stack is gone but its permissions boundary is not"),
    }
}

fn is_no_such_entity<E: aws_sdk_cloudformation::error::ProvideErrorMetadata>(
    err: &aws_sdk_cloudformation::error::SdkError<E, crate::aws::HttpResponse>,
) -> bool {
    matches!(err, aws_sdk_cloudformation::error::SdkError::ServiceError(s) if s.err().code() == Some("NoSuchEntity"))
}

/// IAM answers policy documents URL-encoded.
fn decode_document(text: &str) -> Value {
    let decoded = url::form_urlencoded::parse(format!("d={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    serde_json::from_str(&decoded)
        .or_else(|_| serde_json::from_str(text))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_hidden_in_intrinsics_are_read() {
        let doc = json!({"Statement": [{"Fn::If": ["C", {"Effect": "Allow", "Action": "iam:*", "Resource": "*"}, {"Ref": "AWS::NoValue"}]}]});
        let mut found = BTreeSet::new();
        granted("R", &doc, &mut found).unwrap();
        assert!(found.contains("iam:*"));
        let computed = json!({"Statement": [{"Effect": "Allow", "Action": {"Fn::Sub": "iam:*"}}]});
        assert!(granted("R", &computed, &mut BTreeSet::new()).is_err());
        let not = json!({"Statement": [{"Effect": "Allow", "NotAction": "s3:*"}]});
        assert!(granted("R", &not, &mut BTreeSet::new()).is_err());
    }

    #[test]
    fn the_bounded_text_keeps_the_vendors_order() {
        let text = br#"{"Resources": {"Z": {"Type": "AWS::IAM::Role", "Properties": {"B": 1, "A": 2}}, "A": {"Type": "AWS::S3::Bucket"}}}"#;
        let out = String::from_utf8(bounded_text(text, "ours").unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"Resources":{"Z":{"Type":"AWS::IAM::Role","Properties":{"B":1,"A":2,"PermissionsBoundary":"ours"}},"A":{"Type":"AWS::S3::Bucket"}}}"#
        );
    }

    #[test]
    fn every_role_gets_the_boundary() {
        let text = br#"{"Resources": {
            "A": {"Type": "AWS::IAM::Role", "Properties": {"PermissionsBoundary": "theirs"}},
            "B": {"Type": "AWS::IAM::Role"},
            "C": {"Type": "AWS::S3::Bucket"}}}"#;
        let out: Value = serde_json::from_slice(&bounded_text(text, "ours").unwrap()).unwrap();
        assert_eq!(
            out["Resources"]["A"]["Properties"]["PermissionsBoundary"],
            "ours"
        );
        assert_eq!(
            out["Resources"]["B"]["Properties"]["PermissionsBoundary"],
            "ours"
        );
        assert!(out["Resources"]["C"].get("Properties").is_none());
    }
}
