//! What the license agent and the portal say to each other: activation, check-ins and usage
//! records. Every request is signed with the agent's installation key (Ed25519) over a domain tag
//! and the exact payload bytes, so the portal knows which agent spoke and nothing in between can
//! change a word; every answer carries a status the vendor's license key signed over the agent's
//! fresh nonce. Usage records are chained by hash per agent and signed one by one, so a record
//! that goes missing, is changed or is counted twice shows.
//!
//! The payload travels as base64url of the bytes that were signed: those bytes are exactly what
//! `GET /v1/outbox` shows the customer.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::claims::LicenseId;
use crate::error::{Error, Result};
use crate::keys::{PublicKey, SigningKey, hex};
use crate::time::UnixTime;

/// The domain tag of an activation request.
pub const ACTIVATION: &str = "consign-activation-v1";
/// The domain tag of a check-in request.
pub const CHECKIN: &str = "consign-checkin-v1";
/// The domain tag of one usage record.
pub const USAGE_RECORD: &str = "consign-usage-record-v1";
/// The chain hash before an agent's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The most records one check-in carries; the rest wait for the next one.
pub const MAX_RECORDS_PER_CHECKIN: usize = 500;
/// The largest signed payload either side accepts.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// A payload and its signature, both unpadded base64url.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    /// The payload's bytes (JSON).
    pub payload: String,
    /// Ed25519 over `domain || 0x00 || payload bytes`.
    pub signature: String,
}

fn signing_input(domain: &str, payload: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(domain.len() + 1 + payload.len());
    input.extend_from_slice(domain.as_bytes());
    input.push(0);
    input.extend_from_slice(payload);
    input
}

fn invalid(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what,
        reason: reason.into(),
    }
}

impl Signed {
    /// Serializes `body` and signs it under `domain`.
    pub fn sign<T: Serialize>(domain: &str, body: &T, key: &SigningKey) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|e| invalid("request", e.to_string()))?;
        let signature = key.sign(&signing_input(domain, &bytes));
        Ok(Self {
            payload: URL_SAFE_NO_PAD.encode(&bytes),
            signature: URL_SAFE_NO_PAD.encode(signature),
        })
    }

    /// The payload's bytes, unverified (to read which key should verify them).
    pub fn payload_bytes(&self) -> Result<Vec<u8>> {
        if self.payload.len() > MAX_PAYLOAD / 3 * 4 + 4 {
            return Err(Error::TooLarge {
                what: "signed request",
                size: self.payload.len() / 4 * 3,
                limit: MAX_PAYLOAD,
            });
        }
        URL_SAFE_NO_PAD
            .decode(&self.payload)
            .map_err(|_| invalid("signed request", "the payload is not base64url"))
    }

    /// Reads the payload without checking the signature: only to find the key to check it with.
    pub fn peek<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload_bytes()?)
            .map_err(|e| invalid("signed request", e.to_string()))
    }

    /// Verifies the signature under `domain` with `key` and parses the payload.
    pub fn open<T: DeserializeOwned>(&self, domain: &str, key: &PublicKey) -> Result<T> {
        let bytes = self.payload_bytes()?;
        let signature = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .map_err(|_| invalid("signed request", "the signature is not base64url"))?;
        if !key.verify(&signing_input(domain, &bytes), &signature) {
            return Err(Error::BadSignature {
                what: "signed request",
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| invalid("signed request", e.to_string()))
    }
}

/// The id of an agent's installation key: `agt_` and the first 24 hex digits of its SHA-256.
pub fn agent_key_id(key: &PublicKey) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    format!("agt_{}", &hex(digest.as_ref())[..24])
}

/// A fresh random nonce for a check-in (22 characters of base64url).
pub fn fresh_nonce() -> Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Key("the system random generator failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Where an installation runs: one seat of a license is one (account, region, stack).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// The AWS account id.
    pub aws_account: String,
    /// The AWS region.
    pub region: String,
    /// The CloudFormation stack.
    pub stack: String,
    /// The app version running there.
    pub version: String,
}

/// An agent's first words: the license it runs under, where, and its installation key. Signed
/// with that key, which proves the agent holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// The armoured license.
    pub license: String,
    /// The installation key (base64url).
    pub public_key: PublicKey,
    /// Where it runs.
    pub placement: Placement,
    /// A fresh nonce for the status in the answer.
    pub nonce: String,
    /// The agent's clock.
    pub time: UnixTime,
    /// The proof of `placement.aws_account` (a signed `sts:GetCallerIdentity` request with a
    /// portal nonce); required by licenses that name accounts, and trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_proof: Option<crate::proof::AccountProof>,
}

/// The portal's answer to an activation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationAnswer {
    /// The installation (seat) the agent belongs to.
    pub installation: String,
    /// The agent key's id.
    pub agent: String,
    /// The license's signed status over the activation's nonce.
    pub status: String,
    /// The newest revision of the license when it is newer than the one presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

/// Something the agent saw that should not happen, sent home on the next check-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TamperReport {
    /// When the agent saw it.
    pub at: UnixTime,
    /// A stable code: `replayed_status`, `old_status`, `clock_skew`, `license_rollback`,
    /// `bad_status`, `bad_license`.
    pub code: String,
    /// What happened.
    pub detail: String,
}

/// A check-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkin {
    /// The agent key's id.
    pub agent: String,
    /// The license.
    pub license: LicenseId,
    /// The revision the agent runs.
    pub license_seq: u64,
    /// The version running.
    pub version: String,
    /// A fresh nonce.
    pub nonce: String,
    /// The agent's clock.
    pub time: UnixTime,
    /// Sealed usage records not yet acknowledged, oldest first.
    #[serde(default)]
    pub records: Vec<UsageRecord>,
    /// What the agent reports.
    #[serde(default)]
    pub reports: Vec<TamperReport>,
    /// The proof that the agent still runs in its installation's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_proof: Option<crate::proof::AccountProof>,
}

/// The portal's answer to a check-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinAnswer {
    /// The license's signed status over the check-in's nonce.
    pub status: String,
    /// The newest revision of the license when it is newer than the agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The highest record number the portal holds for this agent: every record up to it is
    /// stored (uploads are idempotent, so resending any of them changes nothing).
    pub records_through: u64,
}

/// The signed part of a usage record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// `<agent>:<n>`: unique, and the same for every upload of this record.
    pub id: String,
    /// The agent key's id.
    pub agent: String,
    /// The license.
    pub license: LicenseId,
    /// The record's number in the agent's chain, from 1.
    pub n: u64,
    /// The metered dimension.
    pub dimension: String,
    /// The first second of the hour the usage happened in.
    pub hour: UnixTime,
    /// Units used.
    pub quantity: u64,
    /// Journal events folded into it.
    pub events: u64,
    /// The previous record's hash ([`GENESIS`] for the first).
    pub prev: String,
}

/// A sealed usage record: its body, the chain hash, and the agent's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecord {
    /// What it says.
    #[serde(flatten)]
    pub body: RecordBody,
    /// SHA-256 (hex) of the body's JSON.
    pub hash: String,
    /// Ed25519 over [`USAGE_RECORD`] and the hash (base64url).
    pub signature: String,
}

/// The most characters in a dimension name.
pub const MAX_DIMENSION_LEN: usize = 64;

/// The most units (and events) one usage record may carry: a trillion per dimension and hour
/// from one agent. Agents split anything larger into several records.
pub const MAX_RECORD_QUANTITY: u64 = 1_000_000_000_000;

/// The most units of one dimension the portal keeps for a license in one hour, over all its
/// agents: far above any real use, and far below what would overflow a sum of 64-bit integers
/// over every hour of a century (8.8e17 < 9.2e18).
pub const MAX_HOUR_QUANTITY: u64 = 1_000_000_000_000_000;

/// The most characters in a tamper report's code and detail.
pub const MAX_REPORT_CODE: usize = 64;
/// See [`MAX_REPORT_CODE`].
pub const MAX_REPORT_DETAIL: usize = 1024;

/// Whether `name` may name a metered dimension: 1 to 64 of `a-z 0-9 _ - . :`, starting with a
/// letter or digit (the same alphabet as feature names, so a quota and its dimension match).
pub fn valid_dimension(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=MAX_DIMENSION_LEN).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.:".contains(c))
}

impl RecordBody {
    fn hash(&self) -> Result<String> {
        let bytes = serde_json::to_vec(self).map_err(|e| invalid("usage record", e.to_string()))?;
        Ok(hex(
            ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()
        ))
    }
}

impl UsageRecord {
    /// Hashes and signs `body`.
    pub fn seal(body: RecordBody, key: &SigningKey) -> Result<Self> {
        let hash = body.hash()?;
        let signature =
            URL_SAFE_NO_PAD.encode(key.sign(&signing_input(USAGE_RECORD, hash.as_bytes())));
        Ok(Self {
            body,
            hash,
            signature,
        })
    }

    /// Checks the record's shape, its hash and its signature by `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<()> {
        let b = &self.body;
        if b.n == 0 || b.id != format!("{}:{}", b.agent, b.n) {
            return Err(invalid("usage record", "its id is not <agent>:<n>"));
        }
        if !valid_dimension(&b.dimension) {
            return Err(invalid(
                "usage record",
                format!("{:?} is not a dimension name", b.dimension),
            ));
        }
        if !b.hour.as_secs().is_multiple_of(3600) {
            return Err(invalid("usage record", "its hour is not on the hour"));
        }
        if b.quantity > MAX_RECORD_QUANTITY || b.events > MAX_RECORD_QUANTITY {
            return Err(invalid(
                "usage record",
                format!("it carries more than {MAX_RECORD_QUANTITY} units or events"),
            ));
        }
        if self.body.hash()? != self.hash {
            return Err(invalid(
                "usage record",
                format!("record {} does not match its hash: it was changed", b.id),
            ));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .map_err(|_| invalid("usage record", "the signature is not base64url"))?;
        if !key.verify(
            &signing_input(USAGE_RECORD, self.hash.as_bytes()),
            &signature,
        ) {
            return Err(Error::BadSignature {
                what: "usage record",
            });
        }
        Ok(())
    }
}

/// The domain tag of a usage export (air-gapped usage return).
pub const USAGE_EXPORT: &str = "consign-usage-export-v1";
/// The `format` of a usage acknowledgement.
pub const USAGE_ACK: &str = "consign-usage-ack-v1";
/// The most records one usage export carries.
pub const MAX_EXPORT_RECORDS: usize = 100_000;

/// What an air-gapped agent sends home on paper: its sealed records not yet acknowledged, the
/// license and placement they were metered under, and its installation key. Plain JSON, so the
/// customer reads every byte before it leaves; each record is signed and hash-chained as in a
/// check-in, and the whole is signed by the installation key under [`USAGE_EXPORT`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageExport {
    /// [`USAGE_EXPORT`].
    pub format: String,
    /// The agent key's id.
    pub agent: String,
    /// The installation key (base64url).
    pub public_key: PublicKey,
    /// The armoured license.
    pub license: String,
    /// Where the agent runs.
    pub placement: Placement,
    /// When it was written.
    pub exported_at: UnixTime,
    /// Sealed records not yet acknowledged, oldest first.
    pub records: Vec<UsageRecord>,
    /// Ed25519 over [`USAGE_EXPORT`], a zero byte and the JSON of every field above, in order
    /// (base64url).
    pub signature: String,
}

/// The signed fields of a [`UsageExport`].
#[derive(Serialize)]
struct ExportBody<'a> {
    format: &'a str,
    agent: &'a str,
    public_key: &'a PublicKey,
    license: &'a str,
    placement: &'a Placement,
    exported_at: UnixTime,
    records: &'a [UsageRecord],
}

impl UsageExport {
    fn body(&self) -> ExportBody<'_> {
        ExportBody {
            format: &self.format,
            agent: &self.agent,
            public_key: &self.public_key,
            license: &self.license,
            placement: &self.placement,
            exported_at: self.exported_at,
            records: &self.records,
        }
    }

    /// An export of `records`, signed with `key`.
    pub fn sign(
        license: String,
        placement: Placement,
        records: Vec<UsageRecord>,
        key: &SigningKey,
        now: UnixTime,
    ) -> Result<Self> {
        let public_key = key.public_key();
        let mut export = Self {
            format: USAGE_EXPORT.into(),
            agent: agent_key_id(&public_key),
            public_key,
            license,
            placement,
            exported_at: now,
            records,
            signature: String::new(),
        };
        let bytes = serde_json::to_vec(&export.body())
            .map_err(|e| invalid("usage export", e.to_string()))?;
        export.signature = URL_SAFE_NO_PAD.encode(key.sign(&signing_input(USAGE_EXPORT, &bytes)));
        Ok(export)
    }

    /// Checks the format, the agent id, the signature, and each record: its signature, that it
    /// is this agent's under this license, and that it follows the one before it in the chain.
    /// A failing record is named by its index in the file.
    pub fn verify(&self, license: &LicenseId) -> Result<()> {
        if self.format != USAGE_EXPORT {
            return Err(invalid(
                "usage export",
                format!("its format is {:?}, not {USAGE_EXPORT}", self.format),
            ));
        }
        if self.agent != agent_key_id(&self.public_key) {
            return Err(invalid(
                "usage export",
                "its agent id is not its installation key's",
            ));
        }
        if self.records.len() > MAX_EXPORT_RECORDS {
            return Err(invalid(
                "usage export",
                format!("it carries over {MAX_EXPORT_RECORDS} records: export more often"),
            ));
        }
        let mut previous: Option<&UsageRecord> = None;
        for (index, record) in self.records.iter().enumerate() {
            let at = |reason: String| invalid("usage export", format!("record {index}: {reason}"));
            if record.body.agent != self.agent || &record.body.license != license {
                return Err(at(format!(
                    "{} belongs to another agent or license",
                    record.body.id
                )));
            }
            record
                .verify(&self.public_key)
                .map_err(|e| at(e.to_string()))?;
            if let Some(before) = previous
                && (record.body.n != before.body.n + 1 || record.body.prev != before.hash)
            {
                return Err(at(format!(
                    "{} does not follow {} (record {}): a record was dropped, changed or reordered",
                    record.body.id,
                    before.body.id,
                    index - 1
                )));
            }
            previous = Some(record);
        }
        // The whole file last, so that a changed record is named by its index above.
        let bytes =
            serde_json::to_vec(&self.body()).map_err(|e| invalid("usage export", e.to_string()))?;
        let signature = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .map_err(|_| invalid("usage export", "the signature is not base64url"))?;
        if !self
            .public_key
            .verify(&signing_input(USAGE_EXPORT, &bytes), &signature)
        {
            return Err(invalid(
                "usage export",
                "its signature does not match its contents: the file was changed after it was exported",
            ));
        }
        Ok(())
    }
}

/// The portal's answer to an imported [`UsageExport`], carried back to the agent: every record
/// up to `records_through` is counted, so the agent may forget them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageAck {
    /// [`USAGE_ACK`].
    pub format: String,
    /// The agent key's id.
    pub agent: String,
    /// The license.
    pub license: LicenseId,
    /// Every record of the agent up to this number is counted.
    pub records_through: u64,
    /// The hash of record `records_through` (the agent checks it is its own).
    pub chain_hash: String,
    /// Records this import counted for the first time.
    pub new_records: u64,
    /// When the portal imported it.
    pub imported_at: UnixTime,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn body(agent: &str, n: u64, prev: &str) -> RecordBody {
        RecordBody {
            id: format!("{agent}:{n}"),
            agent: agent.into(),
            license: LicenseId::new("lic_1").unwrap(),
            n,
            dimension: "api-calls".into(),
            hour: UnixTime::from_secs(1_800_000_000).unwrap(),
            quantity: 7,
            events: 3,
            prev: prev.into(),
        }
    }

    #[test]
    fn signed_requests_bind_domain_and_key() {
        let key = SigningKey::generate().unwrap();
        let signed = Signed::sign(CHECKIN, &serde_json::json!({"a": 1}), &key).unwrap();
        let opened: serde_json::Value = signed.open(CHECKIN, &key.public_key()).unwrap();
        assert_eq!(opened["a"], 1);
        // The same bytes presented as another kind of request are refused.
        assert!(
            signed
                .open::<serde_json::Value>(ACTIVATION, &key.public_key())
                .is_err()
        );
        let other = SigningKey::generate().unwrap();
        assert!(
            signed
                .open::<serde_json::Value>(CHECKIN, &other.public_key())
                .is_err()
        );
    }

    #[test]
    fn a_changed_record_is_refused() {
        let key = SigningKey::generate().unwrap();
        let agent = agent_key_id(&key.public_key());
        let record = UsageRecord::seal(body(&agent, 1, GENESIS), &key).unwrap();
        record.verify(&key.public_key()).unwrap();
        let mut inflated = record.clone();
        inflated.body.quantity = 700;
        assert!(inflated.verify(&key.public_key()).is_err());
        let mut renumbered = record;
        renumbered.body.n = 2;
        assert!(renumbered.verify(&key.public_key()).is_err());
    }

    #[test]
    fn nonces_are_fresh_and_valid() {
        let (a, b) = (fresh_nonce().unwrap(), fresh_nonce().unwrap());
        assert_ne!(a, b);
        assert!(crate::status::valid_nonce(&a));
    }

    #[test]
    fn dimension_names() {
        assert!(valid_dimension("api-calls"));
        assert!(!valid_dimension("API"));
        assert!(!valid_dimension(""));
        assert!(!valid_dimension(&"a".repeat(65)));
    }
}
