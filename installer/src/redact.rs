//! Redaction for support bundles: what must not leave the customer's account is replaced, before
//! anything is written, by a marker naming its kind (`[REDACTED:aws_secret_key]`), and every
//! redaction is listed with its file and line so the customer sees what was taken out and where.
//!
//! Kinds, in the order they are applied: private keys (PEM), Consign licenses (armoured) and
//! compact JWS/JWT tokens, AWS session tokens, AWS secret access keys (beside their name), AWS
//! access key ids, bearer tokens and Consign secrets (`cns_`, `whsec_`), passwords in URLs,
//! e-mail addresses, and the customer's own patterns (`--redact FILE`: one regular expression
//! per line, `#` comments).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use regex::Regex;
use serde::Serialize;

/// One rule: a kind and a pattern; a pattern with a group named `secret` replaces only that
/// group, keeping the context around it.
struct Rule {
    kind: String,
    pattern: Regex,
}

/// Where one redaction was made.
#[derive(Clone, Debug, Serialize)]
pub struct Place {
    /// The file in the bundle.
    pub file: String,
    /// The line (from 1) the marker is on.
    pub line: usize,
    /// What kind of secret was removed.
    pub kind: String,
}

/// Every redaction made.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// How many of each kind.
    pub counts: BTreeMap<String, usize>,
    /// Where each was.
    pub places: Vec<Place>,
}

/// The redactor.
pub struct Redactor {
    rules: Vec<Rule>,
}

const BUILT_IN: &[(&str, &str)] = &[
    (
        "private_key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    ),
    (
        "license",
        r"-----BEGIN CONSIGN LICENSE-----[\s\S]*?-----END CONSIGN LICENSE-----",
    ),
    (
        "token",
        r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}",
    ),
    (
        "aws_session_token",
        r"(?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdz|FQoGZXIvYXdz)[A-Za-z0-9/+=]{20,}",
    ),
    (
        "aws_session_token",
        r#"(?i)(?:session_?token|security_?token|x-amz-security-token)["':=\s]+(?P<secret>[A-Za-z0-9/+=]{16,})"#,
    ),
    (
        "aws_secret_key",
        r#"(?i)(?:secret_?access_?key|aws_?secret(?:_?key)?|secretkey)["':=\s]+(?P<secret>[A-Za-z0-9/+=]{40})"#,
    ),
    (
        "aws_access_key",
        r"\b(?:AKIA|ASIA|AROA|AIDA|AGPA|ANPA)[A-Z0-9]{16}\b",
    ),
    (
        "bearer_token",
        r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
    ),
    (
        "consign_secret",
        r"\b(?:cns|cnss|whsec)_[A-Za-z0-9_+/=-]{16,}",
    ),
    (
        "password",
        r#"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@"']+:(?P<secret>[^@\s/"']+)@"#,
    ),
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
];

impl Redactor {
    /// The built-in rules, and the customer's patterns from `custom` (one per line).
    pub fn new(custom: Option<&Path>) -> Result<Self> {
        let mut rules = Vec::new();
        for (kind, pattern) in BUILT_IN {
            rules.push(Rule {
                kind: (*kind).to_owned(),
                pattern: Regex::new(pattern).context("a built-in redaction pattern is invalid")?,
            });
        }
        if let Some(path) = custom {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the redaction patterns {}", path.display())
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let pattern = Regex::new(line).with_context(|| {
                    format!(
                        "line {} of {} is not a regular expression: {line}",
                        n + 1,
                        path.display()
                    )
                })?;
                rules.push(Rule {
                    kind: "custom".into(),
                    pattern,
                });
            }
        }
        Ok(Self { rules })
    }

    /// `text` with every secret replaced by its marker; each redaction recorded in `report`
    /// under `file`.
    pub fn redact(&self, file: &str, text: &str, report: &mut Report) -> String {
        let mut out = text.to_owned();
        for rule in &self.rules {
            if !rule.pattern.is_match(&out) {
                continue;
            }
            let marker = format!("[REDACTED:{}]", rule.kind);
            let mut next = String::with_capacity(out.len());
            let mut last = 0;
            for caps in rule.pattern.captures_iter(&out) {
                let Some(whole) = caps.get(0) else { continue };
                let (start, end) = caps
                    .name("secret")
                    .map_or((whole.start(), whole.end()), |s| (s.start(), s.end()));
                if start == end {
                    continue;
                }
                next.push_str(&out[last..start]);
                let line = 1 + next.matches('\n').count();
                next.push_str(&marker);
                last = end;
                *report.counts.entry(rule.kind.clone()).or_default() += 1;
                report.places.push(Place {
                    file: file.to_owned(),
                    line,
                    kind: rule.kind.clone(),
                });
            }
            next.push_str(&out[last..]);
            out = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> (String, Report) {
        let mut report = Report::default();
        let out = Redactor::new(None).unwrap().redact("f", text, &mut report);
        (out, report)
    }

    #[test]
    fn each_kind_is_replaced_by_its_marker() {
        for (secret, kind) in [
            ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_key",
            ),
            (
                "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexample",
                "aws_session_token",
            ),
            ("Authorization: Bearer abc.def-ghi_jkl", "bearer_token"),
            ("postgres://app:hunter2@db.internal:5432/x", "password"),
            ("mail pat@example.com now", "email"),
            ("token cns_0123456789abcdefghijkl", "consign_secret"),
        ] {
            let (out, report) = redacted(secret);
            assert!(
                out.contains(&format!("[REDACTED:{kind}]")),
                "{secret} → {out}"
            );
            assert_eq!(report.counts.get(kind), Some(&1), "{secret}");
        }
    }

    #[test]
    fn context_is_kept_around_a_secret_group() {
        let (out, _) = redacted("url postgres://app:hunter2@db:5432/x end");
        assert_eq!(out, "url postgres://app:[REDACTED:password]@db:5432/x end");
    }

    #[test]
    fn places_name_the_line() {
        let (_, report) = redacted("one\ntwo pat@example.com\nthree");
        assert_eq!(report.places[0].line, 2);
    }
}
