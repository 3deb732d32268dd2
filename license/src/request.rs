//! What a vendor writes to ask for a license (`license sign --claims FILE.json`): a flat JSON
//! object where only the customer, the app and the expiry are required, and everything else gets
//! a sound default. [`LicenseRequest::into_claims`] turns it into full [`Claims`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::claims::{
    AwsAccountId, Bindings, Claims, Distribution, Entitlements, FeatureName, LicenseId, Limit,
    Policy, Quota, Region, Slug, Term, VersionRange,
};
use crate::error::{Error, Result};
use crate::time::UnixTime;

/// A request for a license. Unknown fields are refused by name, so a typo never silently becomes
/// a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseRequest {
    /// The customer (required).
    pub sub: Slug,
    /// The app (required).
    pub aud: Slug,
    /// The hard expiry in Unix seconds (required).
    pub exp: UnixTime,
    /// The vendor; defaults to the keyset's issuer.
    pub iss: Option<Slug>,
    /// The license id; a fresh random one by default. Give the old id with a higher `seq` to
    /// issue a new revision of an existing license.
    pub jti: Option<LicenseId>,
    /// The revision; 1 by default.
    pub seq: Option<u64>,
    /// Not valid before; now by default.
    pub nbf: Option<UnixTime>,
    /// Start of the contract term; `nbf` by default.
    pub term_start: Option<UnixTime>,
    /// End of the contract term; `exp` by default (no grace after the term). Set it before `exp`
    /// to give the customer a grace period after the contract ends.
    pub term_end: Option<UnixTime>,
    /// The plan's name; `standard` by default.
    pub plan: Option<Slug>,
    /// Whether this is a trial; `false` by default.
    #[serde(default)]
    pub trial: bool,
    /// Feature flags that are on.
    #[serde(default)]
    pub features: Vec<FeatureName>,
    /// Numeric limits.
    #[serde(default)]
    pub limits: BTreeMap<FeatureName, Limit>,
    /// Quotas per period.
    #[serde(default)]
    pub quotas: BTreeMap<FeatureName, Quota>,
    /// AWS accounts it is bound to; any by default.
    #[serde(default)]
    pub aws_accounts: Vec<AwsAccountId>,
    /// AWS regions it is bound to; any by default.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Maximum simultaneous installations; unlimited by default.
    pub max_installations: Option<u32>,
    /// Channels it may install from; `["stable"]` by default.
    pub channels: Option<Vec<Slug>>,
    /// Versions it may install; `*` by default.
    pub versions: Option<VersionRange>,
    /// Only releases published before this time; no cut-off by default.
    pub published_before: Option<UnixTime>,
    /// Seconds between agent check-ins; one day by default.
    pub checkin_interval: Option<u64>,
    /// Whether check-ins are required; `true` by default.
    pub checkin_required: Option<bool>,
    /// Seconds of GRACE after a missed check-in; seven days by default.
    pub offline_grace: Option<u64>,
    /// Seconds before the term ends from which the agent warns; thirty days by default.
    pub expiry_warning: Option<u64>,
}

impl LicenseRequest {
    /// Parses a request from JSON, naming the offending field on error.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        crate::json::check_strict(bytes).map_err(|reason| Error::Invalid {
            what: "claims file",
            reason,
        })?;
        serde_json::from_slice(bytes).map_err(|e| Error::Invalid {
            what: "claims file",
            reason: e.to_string(),
        })
    }

    /// Fills in defaults: `issuer` when the request names none, `now` for times, a random id.
    pub fn into_claims(self, issuer: Option<&Slug>, now: UnixTime) -> Result<Claims> {
        let invalid = |reason: String| Error::Invalid {
            what: "claims file",
            reason,
        };
        let iss = self
            .iss
            .or_else(|| issuer.cloned())
            .ok_or_else(|| invalid("it names no issuer (iss) and the keyset has none".into()))?;
        let nbf = self.nbf.unwrap_or(now);
        let defaults = Policy::default();
        let claims = Claims {
            iss,
            sub: self.sub,
            aud: self.aud,
            jti: match self.jti {
                Some(id) => id,
                None => new_license_id()?,
            },
            seq: self.seq.unwrap_or(1),
            iat: now,
            nbf,
            exp: self.exp,
            term: Term {
                start: self.term_start.unwrap_or(nbf),
                end: self.term_end.unwrap_or(self.exp),
            },
            plan: self.plan.unwrap_or_else(|| Slug::known("standard")),
            trial: self.trial,
            entitlements: Entitlements {
                features: self.features,
                limits: self.limits,
                quotas: self.quotas,
            },
            bindings: Bindings {
                aws_accounts: self.aws_accounts,
                regions: self.regions,
                max_installations: self.max_installations,
            },
            distribution: Distribution {
                channels: self
                    .channels
                    .unwrap_or_else(|| Distribution::default().channels),
                versions: self.versions.unwrap_or_else(VersionRange::any),
                published_before: self.published_before,
            },
            policy: Policy {
                checkin_interval: self.checkin_interval.unwrap_or(defaults.checkin_interval),
                checkin_required: self.checkin_required.unwrap_or(defaults.checkin_required),
                offline_grace: self.offline_grace.unwrap_or(defaults.offline_grace),
                expiry_warning: self.expiry_warning.unwrap_or(defaults.expiry_warning),
            },
        };
        claims.validate().map_err(invalid)?;
        Ok(claims)
    }
}

/// A fresh random license id: `lic_` and 24 hex digits (96 random bits).
pub fn new_license_id() -> Result<LicenseId> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Key("the system random source failed".into()))?;
    LicenseId::new(format!("lic_{}", crate::keys::hex(&bytes))).map_err(Error::Key)
}
