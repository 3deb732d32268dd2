//! The claims a license carries, strictly typed: every object refuses unknown fields, every time is
//! integer Unix seconds, every name is a validated newtype, and [`Claims::validate`] checks the
//! relations between fields that types alone cannot.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::time::UnixTime;

/// The JWS `typ` of a Consign license.
pub const LICENSE_TYP: &str = "consign-license+jwt";

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`; the error says what the value must look like.
            pub fn new(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                let check: fn(&str) -> bool = $check;
                if check(&value) {
                    Ok(Self(value))
                } else {
                    Err(format!("{value:?} is not {}", $what))
                }
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

validated_string!(
    /// A lowercase identifier for a vendor, customer, app, plan or channel: 1–63 of `a-z`, `0-9`
    /// and `-`, not starting with `-`.
    Slug,
    "a slug (1-63 lowercase letters, digits or '-', not starting with '-')",
    is_slug
);

validated_string!(
    /// A license's id (`jti`): 1–64 of `A-Z`, `a-z`, `0-9`, `_` and `-`.
    LicenseId,
    "a license id (1-64 letters, digits, '_' or '-')",
    |s| (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
);

validated_string!(
    /// The name of an entitlement (a feature flag, a limit or a quota dimension): 1–64 of
    /// `a-z`, `0-9`, `_`, `-`, `.` and `:`, starting with a letter or digit.
    FeatureName,
    "a feature name (1-64 lowercase letters, digits, '_', '-', '.' or ':', starting with a letter or digit)",
    |s| {
        let b = s.as_bytes();
        (1..=64).contains(&b.len())
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.:".contains(c))
    }
);

validated_string!(
    /// A 12-digit AWS account id.
    AwsAccountId,
    "an AWS account id (exactly 12 digits)",
    |s| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
);

validated_string!(
    /// An AWS region name such as `eu-west-1` or `us-gov-east-1`.
    Region,
    "an AWS region (like eu-west-1)",
    |s| {
        let parts: Vec<&str> = s.split('-').collect();
        (3..=32).contains(&s.len())
            && parts.len() >= 3
            && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
            && parts.last().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    }
);

impl Slug {
    /// A slug from a constant known to be valid (checked in debug builds).
    pub(crate) fn known(s: &'static str) -> Self {
        debug_assert!(is_slug(s), "{s}");
        Self(s.to_owned())
    }
}

/// A semver range of app versions (Cargo's syntax: `^1.2`, `>=1, <3`, `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRange {
    text: String,
    req: semver::VersionReq,
}

impl VersionRange {
    /// Parses a range; the error says why it is not one.
    pub fn new(text: impl Into<String>) -> Result<Self, String> {
        let text = text.into();
        if text.len() > 128 {
            return Err("a version range is at most 128 characters".into());
        }
        let req = semver::VersionReq::parse(&text)
            .map_err(|e| format!("{text:?} is not a semver range ({e})"))?;
        Ok(Self { text, req })
    }

    /// Every version.
    pub fn any() -> Self {
        Self {
            text: "*".into(),
            req: semver::VersionReq::STAR,
        }
    }

    /// Whether `version` is in the range.
    pub fn matches(&self, version: &semver::Version) -> bool {
        self.req.matches(version)
    }

    /// The range as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Serialize for VersionRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for VersionRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        VersionRange::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Everything a license says. Field names follow JWT where JWT has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The vendor that issued the license.
    pub iss: Slug,
    /// The customer it is issued to.
    pub sub: Slug,
    /// The app it licenses.
    pub aud: Slug,
    /// The license id; stays the same across revisions.
    pub jti: LicenseId,
    /// The revision: each renewal, suspension or change increments it, and a verifier that has
    /// seen a higher one refuses a lower one.
    pub seq: u64,
    /// When this revision was signed.
    pub iat: UnixTime,
    /// Not valid before.
    pub nbf: UnixTime,
    /// Not valid after, by any verifier: the hard end, including any grace after the term.
    pub exp: UnixTime,
    /// The contract term; between `term.end` and `exp` the agent runs in GRACE.
    pub term: Term,
    /// The plan the license was issued on.
    pub plan: Slug,
    /// Whether this is a self-service trial.
    #[serde(default)]
    pub trial: bool,
    /// What the license entitles.
    pub entitlements: Entitlements,
    /// Where it may run.
    pub bindings: Bindings,
    /// Which releases it may install.
    pub distribution: Distribution,
    /// How the license agent behaves.
    pub policy: Policy,
}

/// The contract's start and end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Term {
    /// First second of the contract.
    pub start: UnixTime,
    /// Last second of the contract.
    pub end: UnixTime,
}

/// Typed entitlements: feature flags, numeric limits and quotas per period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entitlements {
    /// Feature flags that are on; every other feature is off.
    #[serde(default)]
    pub features: Vec<FeatureName>,
    /// Ceilings on something counted at a point in time (seats, tenants, nodes).
    #[serde(default, deserialize_with = "crate::json::unique_map")]
    pub limits: BTreeMap<FeatureName, Limit>,
    /// Allowances of something consumed over a period (API calls per month).
    #[serde(default, deserialize_with = "crate::json::unique_map")]
    pub quotas: BTreeMap<FeatureName, Quota>,
}

/// A numeric limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The contracted maximum.
    pub max: u64,
    /// Units allowed above `max` before use is refused; they are reported as overage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overage: Option<u64>,
}

/// A quota that resets every period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Units per period.
    pub amount: u64,
    /// The period, on UTC calendar boundaries.
    pub period: Period,
    /// Units allowed above `amount` in a period before use is refused; reported as overage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overage: Option<u64>,
}

/// A quota period, aligned to UTC calendar boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// Clock hours.
    Hour,
    /// UTC days.
    Day,
    /// Calendar months.
    Month,
    /// Calendar years.
    Year,
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        })
    }
}

/// Where a license may run. Empty lists mean "anywhere".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bindings {
    /// AWS accounts the app may be installed in.
    #[serde(default)]
    pub aws_accounts: Vec<AwsAccountId>,
    /// AWS regions the app may be installed in.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// How many installations may be active at once (enforced by the portal at activation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_installations: Option<u32>,
}

/// Which releases a license may install.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distribution {
    /// Channels the license may install from.
    pub channels: Vec<Slug>,
    /// Versions the license may install.
    pub versions: VersionRange,
    /// Only releases published before this time (a perpetual fallback license, for instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_before: Option<UnixTime>,
}

/// The grace and check-in policy the license agent follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Seconds between check-ins with the portal.
    pub checkin_interval: u64,
    /// Whether check-ins are required. `false` allows air-gapped installs that never call home.
    pub checkin_required: bool,
    /// Seconds after a missed check-in during which features keep working (GRACE) before the
    /// agent restricts them.
    pub offline_grace: u64,
    /// Seconds before the term ends from which the agent warns.
    pub expiry_warning: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            checkin_interval: 24 * 3600,
            checkin_required: true,
            offline_grace: 7 * 24 * 3600,
            expiry_warning: 30 * 24 * 3600,
        }
    }
}

impl Default for Distribution {
    fn default() -> Self {
        Self {
            channels: vec![Slug::known("stable")],
            versions: VersionRange::any(),
            published_before: None,
        }
    }
}

/// The most entries any one list or map in a license may hold.
pub const MAX_ENTRIES: usize = 256;

impl Claims {
    /// Checks what the types cannot: the order of times, non-empty and duplicate-free lists,
    /// and sizes. The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.seq == 0 {
            return Err("seq must be 1 or more".into());
        }
        if self.nbf >= self.exp {
            return Err(format!(
                "nbf ({}) must be before exp ({})",
                self.nbf, self.exp
            ));
        }
        if self.iat > self.exp {
            return Err(format!(
                "iat ({}) must not be after exp ({})",
                self.iat, self.exp
            ));
        }
        if self.term.start > self.term.end {
            return Err(format!(
                "term.start ({}) must not be after term.end ({})",
                self.term.start, self.term.end
            ));
        }
        if self.term.end > self.exp {
            return Err(format!(
                "term.end ({}) must not be after exp ({})",
                self.term.end, self.exp
            ));
        }
        let e = &self.entitlements;
        check_list("entitlements.features", &e.features)?;
        check_list("bindings.aws_accounts", &self.bindings.aws_accounts)?;
        check_list("bindings.regions", &self.bindings.regions)?;
        check_list("distribution.channels", &self.distribution.channels)?;
        if self.distribution.channels.is_empty() {
            return Err("distribution.channels must name at least one channel".into());
        }
        if e.limits.len() > MAX_ENTRIES || e.quotas.len() > MAX_ENTRIES {
            return Err(format!(
                "entitlements may hold at most {MAX_ENTRIES} limits and quotas"
            ));
        }
        if self.bindings.max_installations == Some(0) {
            return Err("bindings.max_installations must be 1 or more when present".into());
        }
        if self.policy.checkin_interval == 0 {
            return Err("policy.checkin_interval must be 1 second or more".into());
        }
        Ok(())
    }
}

fn check_list<T: Ord + fmt::Display>(field: &str, items: &[T]) -> Result<(), String> {
    if items.len() > MAX_ENTRIES {
        return Err(format!(
            "{field} holds {} entries, over the limit of {MAX_ENTRIES}",
            items.len()
        ));
    }
    let mut sorted: Vec<&T> = items.iter().collect();
    sorted.sort();
    if let Some(pair) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("{field} lists {} twice", pair[0]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_validate_on_construction() {
        assert!(Slug::new("acme-corp").is_ok());
        for bad in [
            "",
            "-acme",
            "Acme",
            "acme_corp",
            "a/b",
            "../etc",
            &"a".repeat(64),
        ] {
            assert!(Slug::new(bad).is_err(), "{bad}");
        }
        assert!(AwsAccountId::new("123456789012").is_ok());
        for bad in [
            "12345678901",
            "1234567890123",
            "12345678901a",
            "١٢٣٤٥٦٧٨٩٠١٢",
        ] {
            assert!(AwsAccountId::new(bad).is_err(), "{bad}");
        }
        for good in ["eu-west-1", "us-gov-east-1", "ap-southeast-2"] {
            assert!(Region::new(good).is_ok(), "{good}");
        }
        for bad in ["eu-west", "EU-WEST-1", "eu--1", "west-1", "eu-west-1a"] {
            assert!(Region::new(bad).is_err(), "{bad}");
        }
        assert!(FeatureName::new("api:write").is_ok());
        assert!(FeatureName::new("Write").is_err());
        assert!(VersionRange::new(">=1.2, <2").is_ok());
        assert!(VersionRange::new("one").is_err());
    }
}
