//! OpenID Connect, the relying party's half: discovery, the provider's keys, redeeming a code and
//! checking the ID token.
//!
//! - Discovery is read from `ISSUER/.well-known/openid-configuration`; its `issuer` must be the
//!   configured issuer exactly (a document for another issuer is a mix-up), and every endpoint it
//!   names passes the same address rules as the issuer.
//! - The JWKS is cached with the discovery document for an hour. A token whose `kid` the cached
//!   set lacks makes one fresh read, at most once per [`REFETCH_COOLDOWN`] per issuer, so a
//!   provider rotating its keys keeps working and a stream of forged `kid`s cannot make the
//!   portal hammer the provider.
//! - ID tokens are checked with `jsonwebtoken`: only asymmetric algorithms the provider
//!   advertises (never `none`, never HMAC, whose secret would be the client secret or, in the
//!   classic confusion, the provider's public key), the signature against the key named by
//!   `kid`, and `iss`, `aud`, `azp`, `exp`, `iat` and `nonce`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::server::base::outbound::{self, UrlRules};
use crate::server::base::secrets::equal;
use crate::server::domain::error::{DomainError, DomainResult, Kind};

/// How long discovery and keys are kept.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// The least time between two reads of an issuer's JWKS caused by an unknown `kid`.
pub const REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// The most of a provider's answer that is read.
const MAX_ANSWER: usize = 256 * 1024;
/// Clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY: u64 = 60;
/// How old an ID token may be when it arrives (it was minted for this code a moment ago).
const MAX_AGE: i64 = 600;

/// The URL rules of an identity provider's addresses.
pub const PROVIDER_URLS: UrlRules = UrlRules {
    bad_code: "bad_sso_issuer",
    private_code: "private_sso_issuer",
    what: "identity providers",
    why_https: "sign-ins and the client secret travel to them",
    flag: "--sso-allow-private",
};

/// The asymmetric algorithms an ID token may be signed with, by their JOSE names.
fn asymmetric(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// What discovery says about a provider.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// The issuer, exactly as configured.
    pub issuer: String,
    /// Where browsers are sent to sign in.
    pub authorization_endpoint: String,
    /// Where codes are redeemed.
    pub token_endpoint: String,
    /// Where the keys are.
    pub jwks_uri: String,
    /// The ID token algorithms the provider advertises that the portal accepts.
    pub algorithms: Vec<Algorithm>,
    /// Whether to send the client secret in the form body (the provider takes no Basic auth).
    pub secret_in_body: bool,
}

#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

#[derive(Debug)]
struct Entry {
    discovery: Discovery,
    keys: JwkSet,
    read_at: Instant,
    /// When an unknown `kid` last made a fresh read.
    refetched_at: Option<Instant>,
}

/// Identity providers as this process last read them, and the client that reads them.
#[derive(Debug)]
pub struct Providers {
    http: reqwest::Client,
    allow_private: bool,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

fn unavailable(detail: String) -> DomainError {
    DomainError::new(Kind::Unavailable, "sso_provider_unavailable", detail)
}

/// A sign-in refused for what the provider sent (403).
pub fn refused(detail: impl Into<String>) -> DomainError {
    DomainError::refused("sso_refused", detail)
}

impl Providers {
    /// A reader; with `allow_private`, providers on private addresses and plain http too.
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        Ok(Self {
            http: outbound::client(
                allow_private,
                Duration::from_secs(10),
                4,
                concat!("consign-portal/", env!("CARGO_PKG_VERSION")),
            )?,
            allow_private,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Whether providers on private addresses are allowed (`serve --sso-allow-private`).
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    fn cached(&self, issuer: &str) -> Option<Arc<Entry>> {
        let entries = self.entries.lock().ok()?;
        entries.get(issuer).cloned()
    }

    fn store(&self, issuer: &str, entry: Entry) -> Arc<Entry> {
        let entry = Arc::new(entry);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(issuer.to_owned(), entry.clone());
        }
        entry
    }

    /// The provider's discovery, read now or at most an hour ago.
    pub async fn discover(&self, issuer: &str) -> DomainResult<Discovery> {
        if let Some(entry) = self.cached(issuer)
            && entry.read_at.elapsed() < CACHE_FOR
        {
            return Ok(entry.discovery.clone());
        }
        Ok(self.refresh(issuer).await?.discovery.clone())
    }

    /// Reads discovery and keys afresh (replacing what was cached): checks a provider.
    pub async fn read(&self, issuer: &str) -> DomainResult<Discovery> {
        Ok(self.refresh(issuer).await?.discovery.clone())
    }

    async fn refresh(&self, issuer: &str) -> DomainResult<Arc<Entry>> {
        let discovery = self.read_discovery(issuer).await?;
        let keys = self.read_keys(&discovery).await?;
        Ok(self.store(
            issuer,
            Entry {
                discovery,
                keys,
                read_at: Instant::now(),
                refetched_at: None,
            },
        ))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> DomainResult<T> {
        let answer = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(format!("the identity provider's {what} at {url} could not be read ({e}): check the issuer URL and that the provider is up")))?;
        let status = answer.status();
        let body = read_bounded(answer).await.map_err(|e| {
            unavailable(format!(
                "the identity provider's {what} at {url} could not be read ({e})"
            ))
        })?;
        if !status.is_success() {
            return Err(unavailable(format!(
                "the identity provider's {what} at {url} answered {status}: check the issuer URL"
            )));
        }
        serde_json::from_slice(&body).map_err(|e| {
            unavailable(format!(
                "the identity provider's {what} at {url} is not what OpenID Connect describes ({e})"
            ))
        })
    }

    async fn read_discovery(&self, issuer: &str) -> DomainResult<Discovery> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc: DiscoveryDocument = self.get_json(&url, "discovery document").await?;
        if doc.issuer != issuer {
            return Err(unavailable(format!(
                "the discovery document at {url} is for issuer {:?}, not {issuer:?}: give the issuer exactly as the provider names it",
                doc.issuer
            )));
        }
        for endpoint in [
            &doc.authorization_endpoint,
            &doc.token_endpoint,
            &doc.jwks_uri,
        ] {
            outbound::check_url(endpoint, self.allow_private, &PROVIDER_URLS).await?;
        }
        if let Some(methods) = &doc.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(unavailable(format!(
                "{issuer} does not offer PKCE with S256 (it offers {methods:?}): the portal signs in only with PKCE"
            )));
        }
        let advertised = if doc.id_token_signing_alg_values_supported.is_empty() {
            // The specification's default.
            vec!["RS256".to_owned()]
        } else {
            doc.id_token_signing_alg_values_supported.clone()
        };
        let algorithms: Vec<Algorithm> = advertised.iter().filter_map(|a| asymmetric(a)).collect();
        if algorithms.is_empty() {
            return Err(unavailable(format!(
                "{issuer} signs ID tokens only with {advertised:?}: the portal accepts asymmetric signatures only (RS256, PS256, ES256, EdDSA and their kin)"
            )));
        }
        let secret_in_body = doc
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_some_and(|m| {
                !m.iter().any(|x| x == "client_secret_basic")
                    && m.iter().any(|x| x == "client_secret_post")
            });
        Ok(Discovery {
            issuer: doc.issuer,
            authorization_endpoint: doc.authorization_endpoint,
            token_endpoint: doc.token_endpoint,
            jwks_uri: doc.jwks_uri,
            algorithms,
            secret_in_body,
        })
    }

    async fn read_keys(&self, discovery: &Discovery) -> DomainResult<JwkSet> {
        let value: Value = self.get_json(&discovery.jwks_uri, "key set").await?;
        // Keys of kinds this portal does not know are skipped, not fatal.
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                unavailable(format!(
                    "the key set at {} has no `keys`",
                    discovery.jwks_uri
                ))
            })?
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .collect();
        Ok(JwkSet { keys })
    }

    /// The signing key named `kid`: from the cache, else from one fresh read of the key set
    /// when the last such read is older than [`REFETCH_COOLDOWN`].
    async fn key(&self, issuer: &str, kid: &str) -> DomainResult<Jwk> {
        let entry = match self.cached(issuer) {
            Some(entry) => entry,
            None => self.refresh(issuer).await?,
        };
        if let Some(key) = entry.keys.find(kid) {
            return Ok(key.clone());
        }
        if entry
            .refetched_at
            .is_some_and(|at| at.elapsed() < REFETCH_COOLDOWN)
        {
            return Err(unknown_kid(kid, issuer));
        }
        let keys = self.read_keys(&entry.discovery).await?;
        let found = keys.find(kid).cloned();
        self.store(
            issuer,
            Entry {
                discovery: entry.discovery.clone(),
                keys,
                read_at: entry.read_at,
                refetched_at: Some(Instant::now()),
            },
        );
        found.ok_or_else(|| unknown_kid(kid, issuer))
    }

    /// Redeems `code` at the token endpoint (with the PKCE verifier) for an ID token.
    pub async fn redeem(
        &self,
        discovery: &Discovery,
        grant: &CodeGrant<'_>,
    ) -> DomainResult<String> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", grant.code),
            ("redirect_uri", grant.redirect_uri),
            ("code_verifier", grant.verifier),
        ];
        let mut request = self.http.post(&discovery.token_endpoint);
        if discovery.secret_in_body {
            form.push(("client_id", grant.client_id));
            form.push(("client_secret", grant.client_secret));
        } else {
            // RFC 6749 2.3.1: both halves form-encoded, then Basic.
            let user: String =
                url::form_urlencoded::byte_serialize(grant.client_id.as_bytes()).collect();
            let pass: String =
                url::form_urlencoded::byte_serialize(grant.client_secret.as_bytes()).collect();
            request = request.basic_auth(user, Some(pass));
        }
        let answer = request
            .header("accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                unavailable(format!(
                    "the identity provider's token endpoint could not be reached ({e}); try signing in again"
                ))
            })?;
        let status = answer.status();
        let body = read_bounded(answer)
            .await
            .map_err(|e| unavailable(format!("the token endpoint's answer was cut off ({e})")))?;
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let error = value.get("error").and_then(Value::as_str).unwrap_or("?");
            let description = value
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(refused(format!(
                "the identity provider would not redeem the sign-in ({status}: {} {}): check the client id and secret in the SSO settings, then sign in again",
                clip(error),
                clip(description)
            )));
        }
        value
            .get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                refused("the identity provider's answer carries no ID token: is `openid` among the client's scopes?")
            })
    }

    /// Checks an ID token from `discovery`'s provider for `client_id` and `nonce`; its claims.
    pub async fn verify(
        &self,
        discovery: &Discovery,
        token: &str,
        client_id: &str,
        nonce: &str,
        now: i64,
    ) -> DomainResult<Value> {
        let (algorithm, kid) = header_of(token, &discovery.algorithms)?;
        let key = self.key(&discovery.issuer, &kid).await?;
        check_claims(
            token,
            algorithm,
            &key,
            &discovery.issuer,
            client_id,
            nonce,
            now,
        )
    }
}

/// What redeeming a code needs.
#[derive(Debug)]
pub struct CodeGrant<'a> {
    /// The code the provider sent back.
    pub code: &'a str,
    /// The redirect URI the sign-in was started with.
    pub redirect_uri: &'a str,
    /// The PKCE verifier.
    pub verifier: &'a str,
    /// The client.
    pub client_id: &'a str,
    /// The client's secret.
    pub client_secret: &'a str,
}

fn unknown_kid(kid: &str, issuer: &str) -> DomainError {
    refused(format!(
        "the ID token is signed with key {:?}, which {issuer}'s key set does not hold: the token was not made by the provider",
        clip(kid)
    ))
}

/// At most 120 characters of text from a provider, for a message.
fn clip(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(120).collect()
}

async fn read_bounded(answer: reqwest::Response) -> Result<Vec<u8>, String> {
    use futures_util::StreamExt as _;
    let mut body = Vec::new();
    let mut stream = answer.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("over {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The token's algorithm and key id, read before anything is trusted: the algorithm must be one
/// of `allowed` (asymmetric and advertised), and a key id is required.
pub fn header_of(token: &str, allowed: &[Algorithm]) -> DomainResult<(Algorithm, String)> {
    let malformed = || refused("the ID token is not a signed JWT (three base64url parts)");
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(head)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(malformed)?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let Some(algorithm) = asymmetric(alg).filter(|a| allowed.contains(a)) else {
        let why = match alg {
            "none" | "" => "an unsigned token is never accepted".to_owned(),
            a if a.starts_with("HS") => {
                "a shared-secret (HMAC) signature proves nothing about the provider".to_owned()
            }
            _ => format!(
                "the provider advertises {}",
                allowed
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Err(refused(format!(
            "the ID token's algorithm is {:?}, which the portal refuses: {why}",
            clip(alg)
        )));
    };
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| refused("the ID token names no signing key (`kid`)"))?;
    Ok((algorithm, kid.to_owned()))
}

/// Verifies the signature with `key` and checks the claims; the claims.
pub fn check_claims(
    token: &str,
    algorithm: Algorithm,
    key: &Jwk,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> DomainResult<Value> {
    if key
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err(refused("the ID token's key is not a signing key"));
    }
    if let Some(key_alg) = key.common.key_algorithm
        && format!("{key_alg:?}") != format!("{algorithm:?}")
    {
        return Err(refused(format!(
            "the ID token says {algorithm:?} but its key is for {key_alg:?}"
        )));
    }
    let decoding = DecodingKey::from_jwk(key)
        .map_err(|e| refused(format!("the provider's key cannot be used ({e})")))?;
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, &decoding, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as E;
        refused(match e.kind() {
            E::InvalidSignature => {
                "the ID token's signature does not verify with the provider's key".to_owned()
            }
            E::ExpiredSignature => {
                "the ID token has expired: sign in again (and check this machine's clock)"
                    .to_owned()
            }
            E::ImmatureSignature => {
                "the ID token is not valid yet (nbf): check this machine's clock".to_owned()
            }
            E::InvalidIssuer => format!("the ID token is from another issuer, not {issuer}"),
            E::InvalidAudience => format!("the ID token is for another client, not {client_id}"),
            E::MissingRequiredClaim(c) => format!("the ID token lacks the `{c}` claim"),
            other => format!("the ID token is not valid ({other:?})"),
        })
    })?;
    let claims = data.claims;
    let audiences = match claims.get("aud") {
        Some(Value::Array(list)) => list.len(),
        _ => 1,
    };
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != client_id => {
            return Err(refused(format!(
                "the ID token was issued to another party ({}), not {client_id}",
                clip(azp)
            )));
        }
        None if audiences > 1 => {
            return Err(refused(
                "the ID token has several audiences and no `azp` naming this portal",
            ));
        }
        _ => {}
    }
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    let leeway = i64::try_from(LEEWAY).unwrap_or(60);
    if iat > now + leeway || iat < now - MAX_AGE - leeway {
        return Err(refused(format!(
            "the ID token was issued at {iat}, not just now ({now}): sign in again (and check this machine's clock)"
        )));
    }
    let sent = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !equal(sent, nonce) {
        return Err(refused(
            "the ID token's nonce is not this sign-in's: it was made for another sign-in (a replayed token)",
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn only_advertised_asymmetric_algorithms_with_a_key_id_pass_the_header() {
        let allowed = [Algorithm::RS256];
        let refused = |header: &str, why: &str| {
            let e = header_of(&token(header), &allowed).unwrap_err();
            assert!(e.detail.contains(why), "{header}: {}", e.detail);
        };
        refused(r#"{"alg":"none"}"#, "unsigned token is never accepted");
        refused(r#"{"alg":"HS256","kid":"k"}"#, "shared-secret (HMAC)");
        refused(
            r#"{"alg":"ES256","kid":"k"}"#,
            "the provider advertises RS256",
        );
        refused(r#"{"alg":"RS256"}"#, "names no signing key");
        let e = header_of("not.a.jwt.at-all", &allowed).unwrap_err();
        assert!(e.detail.contains("not a signed JWT"), "{}", e.detail);
        let (alg, kid) = header_of(&token(r#"{"alg":"RS256","kid":"k1"}"#), &allowed).unwrap();
        assert_eq!((alg, kid.as_str()), (Algorithm::RS256, "k1"));
    }
}
