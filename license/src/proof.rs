//! Proof of an AWS account without sending credentials: the caller signs an
//! `sts:GetCallerIdentity` request with its own AWS credentials (SigV4, by the AWS SDK's signer)
//! and sends the *signed request* to the portal; the portal sends it to STS and reads the account
//! and ARN from STS's answer. A portal-issued, single-use nonce rides in a signed header
//! ([`NONCE_HEADER`]), so a proof cannot be replayed, and the signature's date must be recent.
//!
//! The portal only ever sends a proof to an STS endpoint on its allowlist
//! (`https://sts.amazonaws.com/`, `https://sts.<region>.amazonaws.com/`, and one endpoint its
//! operator configures for an emulator); [`check`] refuses anything else before any request is
//! made. What the signature is worth is STS's to judge: a proof signed with credentials that are
//! not valid gets STS's refusal, not an identity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::UnixTime;

/// The header that carries the portal's nonce; it must be among the signed headers.
pub const NONCE_HEADER: &str = "x-consign-proof-nonce";
/// The only request a proof may carry.
pub const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
/// Its content type.
pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
/// How far the signature's `X-Amz-Date` may be from the portal's clock, in seconds.
pub const MAX_SKEW: u64 = 300;
/// How long a portal nonce can be used, in seconds.
pub const NONCE_LIFETIME: u64 = 300;
/// The most bytes a proof's URL and headers may take together.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// The headers a proof may carry (lower case); nothing else is forwarded to STS.
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-amz-date",
    "x-amz-security-token",
    NONCE_HEADER,
];
/// The headers that must be signed.
const SIGNED: &[&str] = &["host", "content-type", "x-amz-date", NONCE_HEADER];

/// A signed `sts:GetCallerIdentity` request: where it goes, its headers (lower-case names) and
/// its body. It holds a signature, never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountProof {
    /// The STS endpoint, `https://sts.<region>.amazonaws.com/` on AWS.
    pub url: String,
    /// The request's headers, among them `authorization`, `x-amz-date` and the nonce.
    pub headers: BTreeMap<String, String>,
    /// Always [`BODY`].
    pub body: String,
}

/// Why a proof was refused before it was sent anywhere: a stable code and a sentence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ProofError {
    /// `proof_endpoint`, `proof_unsigned_nonce`, `proof_stale` or `proof_malformed`.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub detail: String,
}

fn refuse(code: &'static str, detail: impl Into<String>) -> ProofError {
    ProofError {
        code,
        detail: detail.into(),
    }
}

fn malformed(what: impl Into<String>) -> ProofError {
    refuse(
        "proof_malformed",
        format!(
            "the account proof is malformed: {}; make it again with an up-to-date installer or agent",
            what.into()
        ),
    )
}

/// A proof that passed [`check`]: what to send, and to where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedProof {
    /// The endpoint, `scheme://host[:port]/`.
    pub url: String,
    /// The headers to send (the allowed ones, as given).
    pub headers: Vec<(String, String)>,
    /// The portal nonce it carries, still to be consumed by the portal.
    pub nonce: String,
    /// The region it is signed for.
    pub region: String,
}

/// Whether `nonce` has the shape of a portal nonce (`pn_` and 43 base64url characters).
pub fn valid_nonce(nonce: &str) -> bool {
    nonce.len() == 46
        && nonce.starts_with("pn_")
        && nonce[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The endpoint `url` names when it is an allowed STS endpoint: `https://sts.amazonaws.com/`,
/// `https://sts.<region>.amazonaws.com/`, or exactly `emulator` (the operator's, for tests).
fn allowed_endpoint(url: &str, emulator: Option<&str>) -> Result<String, ProofError> {
    let normalized = format!("{}/", url.trim_end_matches('/'));
    if let Some(emulator) = emulator
        && normalized == format!("{}/", emulator.trim_end_matches('/'))
    {
        return Ok(normalized);
    }
    let host = normalized
        .strip_prefix("https://")
        .and_then(|rest| rest.strip_suffix('/'))
        .filter(|host| !host.contains(['/', '@', '?', '#', ':']));
    let allowed = host.is_some_and(|host| {
        host == "sts.amazonaws.com"
            || host
                .strip_prefix("sts.")
                .and_then(|h| h.strip_suffix(".amazonaws.com"))
                .is_some_and(|region| crate::claims::Region::new(region.to_owned()).is_ok())
    });
    if allowed {
        Ok(normalized)
    } else {
        Err(refuse(
            "proof_endpoint",
            format!(
                "the account proof is addressed to {url:.80}, which is not an STS endpoint this portal sends proofs to (https://sts.amazonaws.com/ or https://sts.<region>.amazonaws.com/): sign it for STS"
            ),
        ))
    }
}

/// The parts of an `AWS4-HMAC-SHA256` authorization header: (region, service, signed headers).
fn authorization_parts(value: &str) -> Option<(&str, &str, Vec<&str>)> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(c) = part.strip_prefix("Credential=") {
            credential = Some(c);
        } else if let Some(s) = part.strip_prefix("SignedHeaders=") {
            signed = Some(s);
        }
    }
    // access key / date / region / service / aws4_request
    let scope: Vec<&str> = credential?.split('/').collect();
    let [_key, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return None;
    };
    Some((region, service, signed?.split(';').collect()))
}

/// `20261130T184500Z` as Unix time.
fn amz_date(value: &str) -> Option<UnixTime> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    UnixTime::parse(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        &value[0..4],
        &value[4..6],
        &value[6..8],
        &value[9..11],
        &value[11..13],
        &value[13..15]
    ))
}

/// Checks `proof` before anything is sent: an allowed STS endpoint, only the GetCallerIdentity
/// body, only known headers, the nonce and the date among the signed headers, a signature for
/// `sts`, an `X-Amz-Date` within [`MAX_SKEW`] of `now`, and at most [`MAX_PROOF_BYTES`].
pub fn check(
    proof: &AccountProof,
    emulator: Option<&str>,
    now: UnixTime,
) -> Result<CheckedProof, ProofError> {
    let size = proof.url.len()
        + proof
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > MAX_PROOF_BYTES {
        return Err(malformed(format!(
            "it takes {size} bytes, more than {MAX_PROOF_BYTES}"
        )));
    }
    let url = allowed_endpoint(&proof.url, emulator)?;
    if proof.body != BODY {
        return Err(malformed(format!(
            "its body must be exactly {BODY:?} (an sts:GetCallerIdentity request)"
        )));
    }
    if let Some(other) = proof
        .headers
        .keys()
        .find(|k| !ALLOWED_HEADERS.contains(&k.as_str()))
    {
        return Err(malformed(format!(
            "it carries header {other:.40}, and only {} may be sent",
            ALLOWED_HEADERS.join(", ")
        )));
    }
    let header = |name: &str| {
        proof
            .headers
            .get(name)
            .ok_or_else(|| malformed(format!("it has no {name} header")))
    };
    if header("content-type")? != CONTENT_TYPE {
        return Err(malformed(format!(
            "its content-type must be {CONTENT_TYPE}"
        )));
    }
    let nonce = header(NONCE_HEADER)?;
    if !valid_nonce(nonce) {
        return Err(malformed(
            "its nonce is not a portal nonce: ask the portal for one (POST /api/v1/proofs/nonce)",
        ));
    }
    let (region, service, signed) = authorization_parts(header("authorization")?)
        .ok_or_else(|| malformed("its authorization is not an AWS4-HMAC-SHA256 signature"))?;
    if service != "sts" {
        return Err(malformed(format!(
            "it is signed for {service:.20}, not for sts"
        )));
    }
    if let Some(missing) = SIGNED.iter().find(|h| !signed.contains(h)) {
        return Err(refuse(
            if *missing == NONCE_HEADER {
                "proof_unsigned_nonce"
            } else {
                "proof_malformed"
            },
            format!(
                "the account proof does not sign its {missing} header, so it could be replayed with another one: sign the request with the header in place"
            ),
        ));
    }
    let date = amz_date(header("x-amz-date")?)
        .ok_or_else(|| malformed("its x-amz-date is not like 20261130T184500Z"))?;
    let skew = date.as_secs().abs_diff(now.as_secs());
    if skew > MAX_SKEW {
        return Err(refuse(
            "proof_stale",
            format!(
                "the account proof was signed at {date}, {skew} s from the portal's clock ({now}); proofs must be signed within {MAX_SKEW} s: check the machine's clock and prove again"
            ),
        ));
    }
    let headers = proof
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(CheckedProof {
        url,
        headers,
        nonce: nonce.clone(),
        region: region.to_owned(),
    })
}

/// Who STS says signed a proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The 12-digit account id.
    pub account: String,
    /// The caller's ARN.
    pub arn: String,
}

fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim())
}

/// The identity in STS's GetCallerIdentity answer, when it names a 12-digit account and an ARN.
pub fn parse_identity(xml: &str) -> Option<Identity> {
    let result = element(xml, "GetCallerIdentityResult")?;
    let account = element(result, "Account")?;
    let arn = element(result, "Arn")?;
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let arn_ok = arn.starts_with("arn:aws")
        && arn.len() <= 2048
        && arn.bytes().all(|b| b.is_ascii_graphic() && b != b'<');
    (account_ok && arn_ok).then(|| Identity {
        account: account.to_owned(),
        arn: arn.to_owned(),
    })
}

/// The STS endpoint a caller in `region` signs for: `AWS_ENDPOINT_URL_STS` when set (the AWS
/// SDKs' variable for STS alone), else `endpoint` (an emulator) when given, else the regional
/// endpoint.
pub fn endpoint_for(region: &str, endpoint: Option<&str>) -> String {
    let sts = std::env::var("AWS_ENDPOINT_URL_STS")
        .ok()
        .filter(|e| !e.trim().is_empty());
    match sts.as_deref().or(endpoint) {
        Some(url) => format!("{}/", url.trim_end_matches('/')),
        None => format!("https://sts.{region}.amazonaws.com/"),
    }
}

/// Signs a proof with `credentials` for `region`, sent to `url` (from [`endpoint_for`]),
/// carrying `nonce` in a signed header (`None` leaves the header out: for tests of the refusal).
#[cfg(feature = "proof-sign")]
pub fn sign(
    credentials: aws_credential_types::Credentials,
    region: &str,
    url: &str,
    nonce: Option<&str>,
    time: std::time::SystemTime,
) -> crate::Result<AccountProof> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    let failed = |e: &dyn std::fmt::Display| crate::Error::Proof(format!("cannot sign it: {e}"));
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let mut headers = BTreeMap::new();
    headers.insert("content-type".to_owned(), CONTENT_TYPE.to_owned());
    if let Some(nonce) = nonce {
        headers.insert(NONCE_HEADER.to_owned(), nonce.to_owned());
    }
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(BODY.as_bytes()),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    for (name, value) in instructions.headers() {
        headers.insert(name.to_ascii_lowercase(), value.to_owned());
    }
    Ok(AccountProof {
        url: url.to_owned(),
        headers,
        body: BODY.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof(url: &str, signed: &str, date: &str) -> AccountProof {
        let mut headers = BTreeMap::new();
        headers.insert("content-type".into(), CONTENT_TYPE.into());
        headers.insert(NONCE_HEADER.into(), format!("pn_{}", "a".repeat(43)));
        headers.insert("x-amz-date".into(), date.into());
        headers.insert(
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIA/20261130/eu-west-1/sts/aws4_request, SignedHeaders={signed}, Signature={}",
                "0".repeat(64)
            ),
        );
        AccountProof {
            url: url.into(),
            headers,
            body: BODY.into(),
        }
    }

    const ALL: &str = "content-type;host;x-amz-date;x-consign-proof-nonce";
    const NOW: &str = "2026-11-30T18:45:00Z";

    fn now() -> UnixTime {
        UnixTime::parse(NOW).unwrap()
    }

    #[test]
    fn a_proof_for_a_regional_sts_endpoint_passes() {
        let p = proof(
            "https://sts.eu-west-1.amazonaws.com/",
            ALL,
            "20261130T184200Z",
        );
        let checked = check(&p, None, now()).unwrap();
        assert_eq!(checked.url, "https://sts.eu-west-1.amazonaws.com/");
        assert_eq!(checked.region, "eu-west-1");
    }

    #[test]
    fn endpoints_off_the_allowlist_are_refused() {
        for url in [
            "https://sts.amazonaws.com.evil.example/",
            "https://evil.example/sts.amazonaws.com/",
            "http://sts.amazonaws.com/",
            "https://sts.amazonaws.com@evil.example/",
            "https://sts.amazonaws.com:444/",
            "https://sts.eu-west-1.amazonaws.com/?x=1",
            "https://sts.Evil.amazonaws.com/",
            "http://127.0.0.1:9/",
        ] {
            let e = check(&proof(url, ALL, "20261130T184500Z"), None, now()).unwrap_err();
            assert_eq!(e.code, "proof_endpoint", "{url}");
        }
        let emulator = "http://localhost:5000";
        check(
            &proof("http://localhost:5000/", ALL, "20261130T184500Z"),
            Some(emulator),
            now(),
        )
        .unwrap();
        let e = check(
            &proof("http://localhost:5001/", ALL, "20261130T184500Z"),
            Some(emulator),
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code, "proof_endpoint");
    }

    #[test]
    fn an_unsigned_nonce_a_stale_date_and_extra_headers_are_refused() {
        let url = "https://sts.amazonaws.com/";
        let e = check(
            &proof(url, "content-type;host;x-amz-date", "20261130T184500Z"),
            None,
            now(),
        )
        .unwrap_err();
        assert_eq!(e.code, "proof_unsigned_nonce");
        let e = check(&proof(url, ALL, "20261130T183900Z"), None, now()).unwrap_err();
        assert_eq!(e.code, "proof_stale");
        let e = check(&proof(url, ALL, "20261130T185100Z"), None, now()).unwrap_err();
        assert_eq!(e.code, "proof_stale");
        let mut p = proof(url, ALL, "20261130T184500Z");
        p.headers.insert("x-forwarded-host".into(), "evil".into());
        assert_eq!(check(&p, None, now()).unwrap_err().code, "proof_malformed");
        let mut p = proof(url, ALL, "20261130T184500Z");
        p.body = "Action=AssumeRole&Version=2011-06-15".into();
        assert_eq!(check(&p, None, now()).unwrap_err().code, "proof_malformed");
        let mut p = proof(url, ALL, "20261130T184500Z");
        p.headers
            .insert("x-amz-security-token".into(), "t".repeat(MAX_PROOF_BYTES));
        assert_eq!(check(&p, None, now()).unwrap_err().code, "proof_malformed");
    }

    #[test]
    fn identities_are_read_from_sts_answers_only_when_well_formed() {
        let answer = "<GetCallerIdentityResponse><GetCallerIdentityResult><UserId>AID</UserId>\
            <Account>123456789012</Account><Arn>arn:aws:iam::123456789012:user/ann</Arn>\
            </GetCallerIdentityResult></GetCallerIdentityResponse>";
        assert_eq!(
            parse_identity(answer),
            Some(Identity {
                account: "123456789012".into(),
                arn: "arn:aws:iam::123456789012:user/ann".into()
            })
        );
        assert_eq!(
            parse_identity(&answer.replace("123456789012<", "12<")),
            None
        );
        assert_eq!(
            parse_identity("<Error><Account>123456789012</Account></Error>"),
            None
        );
    }
}
