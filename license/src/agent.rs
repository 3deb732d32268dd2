//! The license agent's core, for Rust functions that check in-process and for the
//! `license-agent` service: the verified license, what the agent remembers between runs, the
//! lifecycle (ACTIVE → GRACE → RESTRICTED) and the checks of every signed status the portal sends.
//! No clock and no network here: the caller passes `now` and carries the bytes, so every rule can
//! be tested at any moment.
//!
//! ```
//! # use license::*;
//! # fn main() -> Result<()> {
//! # let now = UnixTime::parse("2026-11-26").unwrap();
//! # let (root, signer) = (SigningKey::generate()?, SigningKey::generate()?);
//! # let kid = signer.public_key().derive_kid("lic");
//! # let keyset = Keyset { kind: KEYSET_TYPE.into(), issuer: None, seq: 1, issued_at: now,
//! #     root: root.public_key(), license_keys: vec![KeyEntry { kid: kid.clone(),
//! #     public_key: signer.public_key(), not_before: now, not_after: now.plus(86_400 * 400) }],
//! #     release_keys: vec![] };
//! # let keyset = Keyset::verify(keyset.sign(&root)?.as_bytes(), &TrustPin::default())?;
//! # let claims = LicenseRequest::from_json(br#"{"iss":"acme","sub":"globex","aud":"blog",
//! #     "exp":1830000000,"features":["posts"]}"#)?.into_claims(None, now)?;
//! # let armored = sign_license(&claims, &kid, &signer)?;
//! let agent = Agent::new(keyset, &armored, Memory::default(), now)?;
//! assert!(agent.check("posts", now).is_ok());
//! // Three days without a check-in (the default policy asks for one a day): GRACE, entitled work
//! // still runs.
//! assert_eq!(agent.lifecycle(now.plus(3 * 86_400)).state, State::Grace);
//! assert!(agent.check("posts", now.plus(3 * 86_400)).is_ok());
//! // After the license's offline grace it is RESTRICTED: new work is refused, with the reason.
//! assert!(agent.check("posts", now.plus(9 * 86_400)).is_err());
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::checkin::TamperReport;
use crate::claims::LicenseId;
use crate::entitlements::{Denial, Lifecycle, LimitStatus, QuotaStatus, State};
use crate::error::{Error, Result};
use crate::keyset::TrustedKeyset;
use crate::status::{LicenseState, StatusClaims};
use crate::time::UnixTime;
use crate::verify::{VerifiedLicense, VerifyOptions, Window};

/// The furthest, in seconds, the agent's clock may be from the portal's before a status is
/// treated as tampering.
pub const MAX_CLOCK_SKEW: u64 = 300;
/// The most tamper reports kept for the next check-in; older ones are dropped.
pub const MAX_REPORTS: usize = 32;

/// What the agent remembers between runs. Persist it after every change (it serializes to JSON):
/// without it a restart would forget the newest license and status seen, and the last check-in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// The license the rest is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicenseId>,
    /// The highest `seq` of that license seen, from a file or a signed status.
    #[serde(default)]
    pub license_seq: u64,
    /// When the agent first ran with it: the offline clock starts here, so an agent that never
    /// reaches the portal is not "pending" for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<UnixTime>,
    /// The last successful check-in (by the agent's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkin: Option<UnixTime>,
    /// The portal's time in the newest status accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_time: Option<UnixTime>,
    /// That status itself, as the portal signed it. Whoever holds the state can edit it, so
    /// on load the agent believes `status_time` and `portal_state` only as far as this shows
    /// them: an edited memory gets no more than a deleted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The license's state in the newest status accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_state: Option<LicenseState>,
    /// The newest time the agent has seen on its own clock at a check-in round, answered or
    /// not. With the newest signed status time and the last check-in it floors the agent's
    /// clock, so a clock set back never reopens a grace period that has run out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_floor: Option<UnixTime>,
    /// Tampering seen and not yet sent home.
    #[serde(default)]
    pub reports: Vec<TamperReport>,
    /// Digests of the last reports a check-in carried home, so that merging with another
    /// environment's memory (which may still hold them) does not send them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered: Vec<String>,
}

/// A short digest naming one tamper report.
fn report_digest(report: &TamperReport) -> String {
    let text = format!(
        "{}\n{}\n{}",
        report.at.as_secs(),
        report.code,
        report.detail
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn newest<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    a.max(b)
}

fn oldest<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Memory {
    /// Joins what another run remembers into this one: the agents of several Lambda execution
    /// environments share one memory in a table, and each merges the stored memory with its
    /// own before writing it back. The join keeps the most restrictive view: the newest license
    /// revision, status (with its state), check-in and clock, the earliest start, and every
    /// tamper report not yet carried home. Memory about another license is left alone.
    pub fn merge(&mut self, other: &Memory) {
        if other.license.is_none() {
            return;
        }
        if self.license.is_none() {
            *self = other.clone();
            return;
        }
        if self.license != other.license {
            return;
        }
        self.license_seq = self.license_seq.max(other.license_seq);
        self.started_at = oldest(self.started_at, other.started_at);
        self.last_checkin = newest(self.last_checkin, other.last_checkin);
        if other.status_time > self.status_time {
            self.status_time = other.status_time;
            self.portal_state = other.portal_state;
            self.status.clone_from(&other.status);
        }
        self.clock_floor = newest(self.clock_floor, other.clock_floor);
        for digest in &other.delivered {
            if !self.delivered.contains(digest) {
                self.delivered.push(digest.clone());
            }
        }
        let excess = self.delivered.len().saturating_sub(MAX_REPORTS);
        self.delivered.drain(..excess);
        for report in &other.reports {
            if !self.reports.contains(report) {
                self.reports.push(report.clone());
            }
        }
        let delivered = &self.delivered;
        self.reports
            .retain(|r| !delivered.contains(&report_digest(r)));
        self.reports.sort_by_key(|r| r.at);
        let excess = self.reports.len().saturating_sub(MAX_REPORTS);
        self.reports.drain(..excess);
    }
}

/// What a check-in changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The signed status.
    pub status: StatusClaims,
    /// Whether a renewed license took over.
    pub renewed: bool,
}

/// A verified license with its lifecycle, shared by every check. Cheap to read from many
/// threads: a check takes a read lock, compares two times and searches a sorted list.
#[derive(Debug)]
pub struct Agent {
    keyset: TrustedKeyset,
    inner: RwLock<Inner>,
}

#[derive(Debug)]
struct Inner {
    license: Arc<VerifiedLicense>,
    armored: Arc<str>,
    memory: Memory,
    /// Checks before this time are refused (the license's `nbf`).
    open_from: UnixTime,
    /// Checks from this time on are refused (expiry or the end of the offline grace).
    restricted_from: UnixTime,
    /// Time never runs back behind this: the newest signed status time, last check-in and
    /// round the agent has seen.
    floor: UnixTime,
    /// The vendor revoked or suspended the license.
    blocked: Option<LicenseState>,
}

/// The newest time `memory` has seen: signed status, last check-in, or a round's clock.
fn floor_of(memory: &Memory) -> UnixTime {
    [memory.status_time, memory.last_checkin, memory.clock_floor]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(UnixTime::EPOCH)
}

/// Keeps of `memory` only what a signature vouches for where it matters: the status (time and
/// state) must be the signed status kept with it, and the start of the offline clock is never
/// later than the license's signing time. Whoever edits the agent's state then gets no more
/// than whoever deletes it.
fn ground(memory: &mut Memory, keyset: &TrustedKeyset, license: &VerifiedLicense) {
    let claims = license.claims();
    if memory.license.as_ref() != Some(&claims.jti) {
        return;
    }
    let signed = memory
        .status
        .as_deref()
        .and_then(|s| keyset.verify_kept_status(s, &claims.jti).ok());
    match signed {
        Some(status) => {
            memory.status_time = Some(status.time);
            memory.portal_state = Some(status.state);
        }
        None => {
            memory.status = None;
            memory.status_time = None;
            memory.portal_state = None;
        }
    }
    if let Some(started) = &mut memory.started_at {
        *started = (*started).min(claims.iat);
    }
}

fn verify(keyset: &TrustedKeyset, armored: &str, now: UnixTime) -> Result<VerifiedLicense> {
    let mut options = VerifyOptions::at(now);
    options.window = Window::Report;
    keyset.verify_license(armored, &options)
}

impl Inner {
    fn new(
        keyset: &TrustedKeyset,
        license: VerifiedLicense,
        armored: &str,
        mut memory: Memory,
        now: UnixTime,
    ) -> Self {
        ground(&mut memory, keyset, &license);
        let claims = license.claims();
        if memory.license.as_ref() != Some(&claims.jti) {
            // Another license (a new contract): its own history starts now.
            memory = Memory {
                license: Some(claims.jti.clone()),
                reports: memory.reports,
                ..Memory::default()
            };
        }
        memory.license_seq = memory.license_seq.max(claims.seq);
        let floor = floor_of(&memory);
        // With no memory of this license the offline clock runs from when the license was
        // signed, not from now: deleting the agent's state never buys a new grace period.
        memory
            .started_at
            .get_or_insert(claims.iat.min(now.max(floor)));
        let mut inner = Inner {
            license: Arc::new(license),
            armored: armored.into(),
            memory,
            open_from: now,
            restricted_from: now,
            floor,
            blocked: None,
        };
        inner.refresh();
        inner
    }

    /// Recomputes the hot path's thresholds from the license and the memory.
    fn refresh(&mut self) {
        let c = self.license.claims();
        self.open_from = c.nbf;
        let mut until = c.exp;
        if c.policy.checkin_required
            && let Some(base) = self.memory.status_time.or(self.memory.started_at)
        {
            until = until.min(
                base.plus(c.policy.checkin_interval)
                    .plus(c.policy.offline_grace),
            );
        }
        self.restricted_from = until;
        self.floor = floor_of(&self.memory);
        self.blocked = self
            .memory
            .portal_state
            .filter(|s| *s != LicenseState::Active);
    }

    /// `now`, but never behind the newest time the agent has seen.
    fn clock(&self, now: UnixTime) -> UnixTime {
        now.max(self.floor)
    }

    fn gate(&self, now: UnixTime) -> Result<(), Denial> {
        if self.blocked.is_none() && now >= self.open_from && now < self.restricted_from {
            return Ok(());
        }
        Err(self.denial(now))
    }

    #[cold]
    fn denial(&self, now: UnixTime) -> Denial {
        match self.blocked {
            Some(LicenseState::Revoked) => return Denial::Revoked,
            Some(_) => return Denial::Suspended,
            None => {}
        }
        let c = self.license.claims();
        if now < c.nbf {
            return Denial::NotYetValid { nbf: c.nbf };
        }
        if now >= c.exp {
            return Denial::Expired { exp: c.exp };
        }
        Denial::Restricted {
            why: self
                .lifecycle(now)
                .reason
                .unwrap_or_else(|| "the license does not allow new work now".into()),
        }
    }

    fn lifecycle(&self, now: UnixTime) -> Lifecycle {
        if let Some(state) = self.blocked {
            let reason = match state {
                LicenseState::Revoked => "the vendor revoked the license",
                _ => "the vendor suspended the license",
            };
            return Lifecycle {
                state: State::Restricted,
                reason: Some(reason.into()),
                until: None,
                warning: None,
            };
        }
        let base = self.memory.status_time.or(self.memory.started_at);
        self.license.lifecycle(now, base)
    }

    fn report(&mut self, at: UnixTime, code: &str, detail: String) -> TamperReport {
        // Within what the portal accepts (details can quote what a portal sent).
        let report = TamperReport {
            at,
            code: code.chars().take(crate::checkin::MAX_REPORT_CODE).collect(),
            detail: detail
                .chars()
                .take(crate::checkin::MAX_REPORT_DETAIL)
                .collect(),
        };
        if self.memory.reports.len() >= MAX_REPORTS {
            self.memory.reports.remove(0);
        }
        self.memory.reports.push(report.clone());
        report
    }

    /// Takes `candidate` if it is a newer revision of the same license.
    fn offer(&mut self, keyset: &TrustedKeyset, armored: &str, now: UnixTime) -> Result<bool> {
        let fresh = verify(keyset, armored, now)?;
        let (current, offered) = (self.license.claims(), fresh.claims());
        if offered.jti != current.jti {
            return Err(Error::Invalid {
                what: "license",
                reason: format!(
                    "it is license {}, not {} that the agent runs",
                    offered.jti, current.jti
                ),
            });
        }
        if offered.seq < self.memory.license_seq {
            return Err(Error::Rollback {
                what: "license",
                seq: offered.seq,
                seen: self.memory.license_seq,
            });
        }
        if offered.seq <= current.seq {
            return Ok(false);
        }
        self.memory.license_seq = offered.seq;
        self.license = Arc::new(fresh);
        self.armored = armored.into();
        self.refresh();
        Ok(true)
    }
}

impl Agent {
    /// Starts from a license and what an earlier run remembered. The license must be genuine; an
    /// expired one loads (the agent is then RESTRICTED until a renewal arrives), a revision older
    /// than one seen before does not.
    pub fn new(
        keyset: TrustedKeyset,
        armored: &str,
        memory: Memory,
        now: UnixTime,
    ) -> Result<Self> {
        // A clock set back is read as the newest time the agent has seen.
        let now = now.max(floor_of(&memory));
        let license = verify(&keyset, armored, now)?;
        let claims = license.claims();
        if memory.license.as_ref() == Some(&claims.jti) && claims.seq < memory.license_seq {
            return Err(Error::Rollback {
                what: "license",
                seq: claims.seq,
                seen: memory.license_seq,
            });
        }
        let inner = Inner::new(&keyset, license, armored, memory, now);
        Ok(Self {
            keyset,
            inner: RwLock::new(inner),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether feature flag `feature` may be used at `now`: entitled, and the agent not
    /// RESTRICTED. The hot path: no allocation unless refused.
    pub fn check(&self, feature: &str, now: UnixTime) -> Result<(), Denial> {
        let inner = self.read();
        let now = inner.clock(now);
        inner.gate(now)?;
        inner.license.is_feature_allowed(feature, now)
    }

    /// Where limit `name` stands with `in_use` units in use (see
    /// [`VerifiedLicense::limit`]), refused while RESTRICTED.
    pub fn limit(&self, name: &str, in_use: u64, now: UnixTime) -> Result<LimitStatus, Denial> {
        let inner = self.read();
        let now = inner.clock(now);
        inner.gate(now)?;
        inner.license.limit(name, in_use, now)
    }

    /// Where quota `name` stands with `used` units used this period (see
    /// [`VerifiedLicense::quota`]), refused while RESTRICTED.
    pub fn quota(&self, name: &str, used: u64, now: UnixTime) -> Result<QuotaStatus, Denial> {
        let inner = self.read();
        let now = inner.clock(now);
        inner.gate(now)?;
        inner.license.quota(name, used, now)
    }

    /// The lifecycle state at `now`, the vendor's revocation or suspension included.
    pub fn lifecycle(&self, now: UnixTime) -> Lifecycle {
        let inner = self.read();
        inner.lifecycle(inner.clock(now))
    }

    /// Records that the agent's clock read `now` at a check-in round (answered or not): the
    /// clock never runs back behind it. Persist the memory afterwards.
    pub fn observe(&self, now: UnixTime) {
        let mut inner = self.write();
        if inner.memory.clock_floor.is_none_or(|seen| seen < now) {
            inner.memory.clock_floor = Some(now);
            inner.refresh();
        }
    }

    /// The license in force.
    pub fn license(&self) -> Arc<VerifiedLicense> {
        Arc::clone(&self.read().license)
    }

    /// The license in force, armoured (to persist a renewal).
    pub fn armored(&self) -> Arc<str> {
        Arc::clone(&self.read().armored)
    }

    /// The keyset the agent trusts.
    pub fn keyset(&self) -> &TrustedKeyset {
        &self.keyset
    }

    /// A copy of what to persist.
    pub fn memory(&self) -> Memory {
        self.read().memory.clone()
    }

    /// Offers a license read again from its file or parameter: a newer revision of the same
    /// license takes over (`Ok(true)`), the same one changes nothing, an older one is refused.
    pub fn offer_license(&self, armored: &str, now: UnixTime) -> Result<bool> {
        let mut inner = self.write();
        let now = inner.clock(now);
        inner.offer(&self.keyset, armored, now)
    }

    /// Forgets the first `sent` tamper reports once a check-in carried them home.
    pub fn reports_delivered(&self, sent: usize) {
        let mut inner = self.write();
        let n = sent.min(inner.memory.reports.len());
        let digests: Vec<String> = inner
            .memory
            .reports
            .drain(..n)
            .map(|r| report_digest(&r))
            .collect();
        let memory = &mut inner.memory;
        memory.delivered.extend(digests);
        let excess = memory.delivered.len().saturating_sub(MAX_REPORTS);
        memory.delivered.drain(..excess);
    }

    /// Takes in what another run remembers (see [`Memory::merge`]): a revocation, a newer
    /// status or check-in another Lambda environment saw applies here at once.
    pub fn absorb(&self, other: &Memory) {
        let mut inner = self.write();
        inner.memory.merge(other);
        let license = Arc::clone(&inner.license);
        ground(&mut inner.memory, &self.keyset, &license);
        inner.refresh();
    }

    /// Records tampering the caller saw (a response that does not parse, for instance).
    pub fn report(&self, at: UnixTime, code: &str, detail: String) -> TamperReport {
        self.write().report(at, code, detail)
    }

    /// Applies the portal's answer to a check-in or activation sent with `nonce` at `now`: the
    /// signed status (genuine, about this license, echoing `nonce`, not older than one already
    /// accepted, within [`MAX_CLOCK_SKEW`] of `now`) and a renewed license if one came with it.
    /// Anything else is tampering: it is refused, remembered for the next check-in and returned;
    /// the check-in then counts as failed, so the offline grace keeps running.
    pub fn accept(
        &self,
        signed_status: &str,
        renewed: Option<&str>,
        nonce: &str,
        now: UnixTime,
    ) -> std::result::Result<Accepted, TamperReport> {
        let mut inner = self.write();
        let jti = inner.license.claims().jti.clone();
        let status = match self.keyset.verify_status(signed_status, &jti, nonce) {
            Ok(status) => status,
            Err(e @ Error::Replayed { .. }) => {
                return Err(inner.report(now, "replayed_status", e.to_string()));
            }
            Err(e) => {
                return Err(inner.report(
                    now,
                    "bad_status",
                    format!("the portal's status does not verify: {e}"),
                ));
            }
        };
        let (portal, local) = (status.time.as_secs(), now.as_secs());
        if portal.abs_diff(local) > MAX_CLOCK_SKEW {
            return Err(inner.report(
                now,
                "clock_skew",
                format!(
                    "this machine's clock ({now}) is {} s away from the portal's ({}); more than {MAX_CLOCK_SKEW} s is not accepted: fix the clock",
                    portal.abs_diff(local),
                    status.time
                ),
            ));
        }
        if let Some(seen) = inner.memory.status_time
            && status.time < seen
        {
            return Err(inner.report(
                now,
                "old_status",
                format!(
                    "the status is from {}, older than one from {seen} already accepted: an old answer was played back",
                    status.time
                ),
            ));
        }
        let seen = inner.memory.license_seq;
        if status.seq < seen {
            return Err(inner.report(
                now,
                "license_rollback",
                format!(
                    "the status names revision {} of the license, older than revision {seen} already seen",
                    status.seq
                ),
            ));
        }
        let mut took = false;
        if let Some(armored) = renewed {
            match inner.offer(&self.keyset, armored, now) {
                Ok(t) => took = t,
                Err(e @ Error::Rollback { .. }) => {
                    return Err(inner.report(now, "license_rollback", e.to_string()));
                }
                Err(e) => {
                    return Err(inner.report(
                        now,
                        "bad_license",
                        format!("the renewed license from the portal does not verify: {e}"),
                    ));
                }
            }
        }
        inner.memory.status_time = Some(status.time);
        inner.memory.status = Some(signed_status.to_owned());
        inner.memory.last_checkin = Some(now);
        inner.memory.portal_state = Some(status.state);
        inner.refresh();
        Ok(Accepted {
            status,
            renewed: took,
        })
    }
}
