//! Entitlement evaluation on a verified license, with no I/O: is a feature allowed, how much of a
//! limit or quota is left, may a release be installed, may it run in this account and region, and
//! which lifecycle state (ACTIVE, GRACE, RESTRICTED) the license is in. The agent, the installer
//! and the portal all answer these questions through this one implementation.

use std::fmt;

use serde::Serialize;

use crate::claims::{Claims, Period};
use crate::time::UnixTime;
use crate::verify::VerifiedLicense;

/// Why an entitlement question was answered "no".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Denial {
    /// The license does not include the feature, limit or quota.
    #[error("the license does not include {name:?}")]
    NotEntitled {
        /// The feature, limit or quota asked about.
        name: String,
    },
    /// The license is not valid yet.
    #[error("the license is not valid until {nbf}")]
    NotYetValid {
        /// When it becomes valid.
        nbf: UnixTime,
    },
    /// The license has expired.
    #[error("the license expired at {exp}")]
    Expired {
        /// When it expired.
        exp: UnixTime,
    },
    /// A limit would be exceeded, overage included.
    #[error("{name:?} is limited to {allowed} ({in_use} requested)")]
    LimitExceeded {
        /// The limit.
        name: String,
        /// The maximum plus any overage.
        allowed: u64,
        /// What was asked for.
        in_use: u64,
    },
    /// A quota is used up for this period, overage included.
    #[error("{name:?} is used up until {period_end} ({used} of {allowed} used)")]
    QuotaExhausted {
        /// The quota.
        name: String,
        /// The amount plus any overage.
        allowed: u64,
        /// What was asked for.
        used: u64,
        /// When the quota resets.
        period_end: UnixTime,
    },
    /// The license is for another app.
    #[error("the license is for app {licensed:?}, not {requested:?}")]
    WrongApp {
        /// The app the license names.
        licensed: String,
        /// The app asked about.
        requested: String,
    },
    /// The release's channel is not one the license may install from.
    #[error("the license may install from channels {allowed:?}, not {channel:?}")]
    ChannelNotAllowed {
        /// The release's channel.
        channel: String,
        /// The licensed channels.
        allowed: Vec<String>,
    },
    /// The version is outside the licensed range.
    #[error("version {version} is outside the licensed range {range}")]
    VersionNotAllowed {
        /// The release's version.
        version: String,
        /// The licensed range.
        range: String,
    },
    /// The release was published after the license's cut-off.
    #[error(
        "the release was published at {published_at}, after the license's cut-off {published_before}"
    )]
    PublishedTooLate {
        /// When the release was published.
        published_at: UnixTime,
        /// The license's cut-off.
        published_before: UnixTime,
    },
    /// The AWS account is not one the license is bound to.
    #[error("the license is bound to AWS accounts {allowed:?}, not {account}")]
    AccountNotAllowed {
        /// The account asked about.
        account: String,
        /// The licensed accounts.
        allowed: Vec<String>,
    },
    /// The vendor revoked the license (learnt from a signed status).
    #[error("the vendor revoked the license")]
    Revoked,
    /// The vendor suspended the license (learnt from a signed status).
    #[error("the vendor suspended the license; it works again once reinstated")]
    Suspended,
    /// The agent is RESTRICTED: new work waits until the reason is resolved.
    #[error("the license agent is RESTRICTED: {why}")]
    Restricted {
        /// Why.
        why: String,
    },
    /// The AWS region is not one the license is bound to.
    #[error("the license is bound to regions {allowed:?}, not {region}")]
    RegionNotAllowed {
        /// The region asked about.
        region: String,
        /// The licensed regions.
        allowed: Vec<String>,
    },
}

impl Denial {
    /// A stable code for the denial, for JSON answers.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::NotEntitled { .. } => "not_entitled",
            Denial::NotYetValid { .. } => "not_yet_valid",
            Denial::Expired { .. } => "expired",
            Denial::LimitExceeded { .. } => "limit_exceeded",
            Denial::QuotaExhausted { .. } => "quota_exhausted",
            Denial::WrongApp { .. } => "wrong_app",
            Denial::ChannelNotAllowed { .. } => "channel_not_allowed",
            Denial::VersionNotAllowed { .. } => "version_not_allowed",
            Denial::PublishedTooLate { .. } => "published_too_late",
            Denial::AccountNotAllowed { .. } => "account_not_allowed",
            Denial::RegionNotAllowed { .. } => "region_not_allowed",
            Denial::Revoked => "revoked",
            Denial::Suspended => "suspended",
            Denial::Restricted { .. } => "restricted",
        }
    }
}

/// Where a limit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitStatus {
    /// The contracted maximum.
    pub max: u64,
    /// What is in use (including what was asked for).
    pub in_use: u64,
    /// How much more fits under `max`.
    pub remaining: u64,
    /// How much more fits in the overage allowance after `max`.
    pub overage_remaining: u64,
    /// Whether use is above `max` (billable overage).
    pub in_overage: bool,
}

/// Where a quota stands in the current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaStatus {
    /// Units per period.
    pub amount: u64,
    /// Units used this period (including what was asked for).
    pub used: u64,
    /// Units left under `amount` this period.
    pub remaining: u64,
    /// Units left in the overage allowance this period.
    pub overage_remaining: u64,
    /// Whether use is above `amount`.
    pub in_overage: bool,
    /// The current period's first second.
    pub period_start: UnixTime,
    /// The next period's first second.
    pub period_end: UnixTime,
}

/// A release as far as the distribution window cares.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseRef<'a> {
    /// The app's slug.
    pub app: &'a str,
    /// The release's version.
    pub version: &'a semver::Version,
    /// The channel it is installed from.
    pub channel: &'a str,
    /// When it was published.
    pub published_at: UnixTime,
}

/// A release as the portal and the installer see it: on any number of channels, and perhaps
/// needing a feature of the license.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// The app's slug.
    pub app: &'a str,
    /// The release's version.
    pub version: &'a semver::Version,
    /// The channels it is on.
    pub channels: &'a [&'a str],
    /// When it was published.
    pub published_at: UnixTime,
    /// The feature the release needs, if any.
    pub entitlement: Option<&'a str>,
}

/// The license agent's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Everything entitled works.
    Active,
    /// Everything entitled still works, with warnings, until a deadline.
    Grace,
    /// New entitled work is refused; work already running finishes.
    Restricted,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Active => "ACTIVE",
            State::Grace => "GRACE",
            State::Restricted => "RESTRICTED",
        })
    }
}

/// The lifecycle state at a moment, with why and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lifecycle {
    /// The state.
    pub state: State,
    /// Why the state is not ACTIVE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When GRACE ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<UnixTime>,
    /// A warning to show while ACTIVE or in GRACE (term ending soon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The distribution and placement rules read only the claims, so the portal applies them to the
/// revision it stores and the installer and the agent to the license they verified: one
/// implementation for all three.
impl Claims {
    /// Whether `release` is inside the distribution window: the same app, a licensed channel, a
    /// version in range, published before the cut-off.
    pub fn may_install(&self, release: &ReleaseRef<'_>) -> Result<(), Denial> {
        self.check_app(release.app)?;
        let d = &self.distribution;
        if !d.channels.iter().any(|ch| ch.as_str() == release.channel) {
            return Err(Denial::ChannelNotAllowed {
                channel: release.channel.to_owned(),
                allowed: d.channels.iter().map(|c| c.to_string()).collect(),
            });
        }
        if !d.versions.matches(release.version) {
            return Err(Denial::VersionNotAllowed {
                version: release.version.to_string(),
                range: d.versions.as_str().to_owned(),
            });
        }
        if let Some(cutoff) = d.published_before
            && release.published_at >= cutoff
        {
            return Err(Denial::PublishedTooLate {
                published_at: release.published_at,
                published_before: cutoff,
            });
        }
        Ok(())
    }

    /// Whether `release` may be received: [`Claims::may_install`] from at least one of its
    /// channels (the first channel's denial when none qualifies), and the release's feature, if
    /// it needs one, among the license's features.
    pub fn may_receive(&self, release: &Offer<'_>) -> Result<(), Denial> {
        let mut first_denial = None;
        let channels: &[&str] = if release.channels.is_empty() {
            &[""]
        } else {
            release.channels
        };
        for channel in channels {
            let on = ReleaseRef {
                app: release.app,
                version: release.version,
                channel,
                published_at: release.published_at,
            };
            match self.may_install(&on) {
                Ok(()) => {
                    first_denial = None;
                    break;
                }
                Err(denial) => {
                    first_denial.get_or_insert(denial);
                }
            }
        }
        if let Some(denial) = first_denial {
            return Err(denial);
        }
        if let Some(feature) = release.entitlement
            && !self
                .entitlements
                .features
                .iter()
                .any(|f| f.as_str() == feature)
        {
            return Err(Denial::NotEntitled {
                name: feature.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether the license is for app `app` (its slug).
    pub fn check_app(&self, app: &str) -> Result<(), Denial> {
        if self.aud.as_str() != app {
            return Err(Denial::WrongApp {
                licensed: self.aud.to_string(),
                requested: app.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether the license allows AWS account `account` (any, when it names none).
    pub fn check_account(&self, account: &str) -> Result<(), Denial> {
        let accounts = &self.bindings.aws_accounts;
        if !accounts.is_empty() && !accounts.iter().any(|a| a.as_str() == account) {
            return Err(Denial::AccountNotAllowed {
                account: account.to_owned(),
                allowed: accounts.iter().map(|a| a.to_string()).collect(),
            });
        }
        Ok(())
    }

    /// Whether the license allows AWS region `region` (any, when it names none).
    pub fn check_region(&self, region: &str) -> Result<(), Denial> {
        let regions = &self.bindings.regions;
        if !regions.is_empty() && !regions.iter().any(|r| r.as_str() == region) {
            return Err(Denial::RegionNotAllowed {
                region: region.to_owned(),
                allowed: regions.iter().map(|r| r.to_string()).collect(),
            });
        }
        Ok(())
    }

    /// Whether the app may run in AWS account `account` and region `region`.
    pub fn check_placement(&self, account: &str, region: &str) -> Result<(), Denial> {
        self.check_account(account)?;
        self.check_region(region)
    }
}

impl VerifiedLicense {
    fn check_window(&self, now: UnixTime) -> Result<(), Denial> {
        let c = &self.claims;
        if now < c.nbf {
            return Err(Denial::NotYetValid { nbf: c.nbf });
        }
        if now >= c.exp {
            return Err(Denial::Expired { exp: c.exp });
        }
        Ok(())
    }

    /// Whether feature flag `feature` is on at `now`. This is the hot path of the agent: a time
    /// comparison and a binary search, no allocation.
    pub fn is_feature_allowed(&self, feature: &str, now: UnixTime) -> Result<(), Denial> {
        self.check_window(now)?;
        match self.features.binary_search_by(|f| (**f).cmp(feature)) {
            Ok(_) => Ok(()),
            Err(_) => Err(Denial::NotEntitled {
                name: feature.to_owned(),
            }),
        }
    }

    /// Where limit `name` stands with `in_use` units in use; refused when `in_use` is above the
    /// maximum plus overage. Ask with `in_use` including what is about to be added.
    pub fn limit(&self, name: &str, in_use: u64, now: UnixTime) -> Result<LimitStatus, Denial> {
        self.check_window(now)?;
        let limit = self
            .claims
            .entitlements
            .limits
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| Denial::NotEntitled {
                name: name.to_owned(),
            })?;
        let overage = limit.overage.unwrap_or(0);
        let allowed = limit.max.saturating_add(overage);
        if in_use > allowed {
            return Err(Denial::LimitExceeded {
                name: name.to_owned(),
                allowed,
                in_use,
            });
        }
        Ok(LimitStatus {
            max: limit.max,
            in_use,
            remaining: limit.max.saturating_sub(in_use),
            overage_remaining: allowed.saturating_sub(in_use.max(limit.max)),
            in_overage: in_use > limit.max,
        })
    }

    /// Where quota `name` stands with `used` units used in the period containing `now`.
    pub fn quota(&self, name: &str, used: u64, now: UnixTime) -> Result<QuotaStatus, Denial> {
        self.check_window(now)?;
        let quota = self
            .claims
            .entitlements
            .quotas
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| Denial::NotEntitled {
                name: name.to_owned(),
            })?;
        let (period_start, period_end) = period_bounds(quota.period, now);
        let allowed = quota.amount.saturating_add(quota.overage.unwrap_or(0));
        if used > allowed {
            return Err(Denial::QuotaExhausted {
                name: name.to_owned(),
                allowed,
                used,
                period_end,
            });
        }
        Ok(QuotaStatus {
            amount: quota.amount,
            used,
            remaining: quota.amount.saturating_sub(used),
            overage_remaining: allowed.saturating_sub(used.max(quota.amount)),
            in_overage: used > quota.amount,
            period_start,
            period_end,
        })
    }

    /// Whether `release` is inside the license's distribution window: the same app, a licensed
    /// channel, a version in range, published before the cut-off.
    pub fn may_install(&self, release: &ReleaseRef<'_>) -> Result<(), Denial> {
        self.claims.may_install(release)
    }

    /// Whether `release`, on any of its channels, may be received under this license
    /// ([`Claims::may_receive`]).
    pub fn may_receive(&self, release: &Offer<'_>) -> Result<(), Denial> {
        self.claims.may_receive(release)
    }

    /// Whether the app may run in AWS account `account` and region `region` (as reported by STS
    /// and the SDK's configuration).
    pub fn check_placement(&self, account: &str, region: &str) -> Result<(), Denial> {
        self.claims.check_placement(account, region)
    }

    /// The lifecycle state at `now`.
    ///
    /// `last_checkin` is the last successful check-in (or the agent's activation, before the
    /// first one); `None` when the caller does not track check-ins, which then play no part.
    /// Past `term.end` the license is in GRACE until `exp`; a missed check-in puts it in GRACE for
    /// `policy.offline_grace` seconds; after either deadline it is RESTRICTED. There is no
    /// "pending" state: every moment maps to one of the three.
    pub fn lifecycle(&self, now: UnixTime, last_checkin: Option<UnixTime>) -> Lifecycle {
        let c = &self.claims;
        let restricted = |reason: String| Lifecycle {
            state: State::Restricted,
            reason: Some(reason),
            until: None,
            warning: None,
        };
        if let Err(denial) = self.check_window(now) {
            return restricted(denial.to_string());
        }
        let mut grace: Option<(UnixTime, String)> = None;
        if now > c.term.end {
            grace = Some((
                c.exp,
                format!(
                    "the contract term ended at {}; renew before {}",
                    c.term.end, c.exp
                ),
            ));
        }
        if c.policy.checkin_required
            && let Some(last) = last_checkin
        {
            let missed_at = last.plus(c.policy.checkin_interval);
            let deadline = missed_at.plus(c.policy.offline_grace);
            if now >= deadline {
                return restricted(format!(
                    "no successful check-in with the vendor's portal since {last}; the offline grace ended at {deadline}"
                ));
            }
            if now > missed_at && grace.as_ref().is_none_or(|(until, _)| deadline < *until) {
                grace = Some((
                    deadline,
                    format!("no successful check-in with the vendor's portal since {last}"),
                ));
            }
        }
        // The warning lead never covers more than the last quarter of the term, so a term
        // shorter than the lead (a 14-day trial under a 30-day lead) does not warn from its first
        // day; a year's term keeps the full lead.
        let term = c.term.end.as_secs().saturating_sub(c.term.start.as_secs());
        let lead = c.policy.expiry_warning.min(term / 4);
        let warning = (now.plus(lead) >= c.term.end && now <= c.term.end)
            .then(|| format!("the contract term ends at {}", c.term.end));
        match grace {
            Some((until, reason)) => Lifecycle {
                state: State::Grace,
                reason: Some(reason),
                until: Some(until),
                warning,
            },
            None => Lifecycle {
                state: State::Active,
                reason: None,
                until: None,
                warning,
            },
        }
    }
}

/// The first second of the period containing `now` and of the next one, on UTC boundaries.
pub fn period_bounds(period: Period, now: UnixTime) -> (UnixTime, UnixTime) {
    let secs = now.as_secs();
    match period {
        Period::Hour => {
            let start = secs - secs % 3600;
            (now.minus(secs - start), now.minus(secs - start).plus(3600))
        }
        Period::Day => {
            let start = secs - secs % 86_400;
            (
                now.minus(secs - start),
                now.minus(secs - start).plus(86_400),
            )
        }
        Period::Month => {
            let (y, m, ..) = now.to_civil();
            let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (
                UnixTime::from_civil_date(y, m, 1),
                UnixTime::from_civil_date(next.0, next.1, 1),
            )
        }
        Period::Year => {
            let (y, ..) = now.to_civil();
            (
                UnixTime::from_civil_date(y, 1, 1),
                UnixTime::from_civil_date(y + 1, 1, 1),
            )
        }
    }
}
