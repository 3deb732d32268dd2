//! Single sign-on for vendor members through the vendor's own OpenID Connect provider.
//!
//! - An owner configures the provider ([`set`]): issuer, client, the e-mail domains whose people
//!   may sign in, a claim that maps to roles, whether members may only sign in this way, and
//!   whether people the provider vouches for become members at their first sign-in.
//! - A sign-in ([`begin`], then [`finish`]) is the authorization code flow with PKCE (S256),
//!   `state` and `nonce`. The attempt is bound to the browser by a cookie holding a secret whose
//!   hash keys the attempt row; the provider's `state` must match that row, once, within ten
//!   minutes. The ID token is checked by [`oidc`].
//! - A person is matched to a member by their e-mail, which the provider must say it verified,
//!   in one of the allowed domains.
//! - With `require_sso`, password sign-ins of the vendor's members are refused (API tokens keep
//!   working). It can be turned on only after a sign-in through the configured provider worked,
//!   so an owner cannot lock the team out with a typo.

pub mod oidc;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::access::{Caller, RequestMeta, Role};
use super::error::{DomainError, DomainResult, Kind};
use super::members::{self, MemberInfo};
use super::sessions::{self, SessionInfo};
use super::tx::VendorTx;
use crate::server::base::now;
use crate::server::base::secrets::{equal, new_id, new_secret, secret_hash};
use crate::server::state::AppState;

/// How long a sign-in may take from the portal to the provider and back.
pub const ATTEMPT_SECONDS: i64 = 600;
/// The path providers send browsers back to.
pub const CALLBACK_PATH: &str = "/console/sso/callback";
/// The cookie that binds a sign-in to the browser that started it.
pub const ATTEMPT_COOKIE: &str = "__Host-consign_sso";

/// An owner's settings for the vendor's identity provider.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoSettings {
    /// The provider's issuer URL, exactly as its discovery document names it.
    pub issuer: String,
    /// The client id the provider gave the portal.
    pub client_id: String,
    /// The client secret; may be left out when changing other settings.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// E-mail domains whose people may sign in (`example.com`).
    pub allowed_domains: Vec<String>,
    /// An ID token claim (a string or a list of strings) whose values name roles.
    #[serde(default)]
    pub role_claim: Option<String>,
    /// The claim's values to roles (`{"consign-admins": "owner"}`); without an entry, a value
    /// that is a role's name (`owner`, `publisher`, `support`) is that role.
    #[serde(default)]
    pub role_map: BTreeMap<String, Role>,
    /// Scopes to ask for besides `openid email` (`groups`, for a provider that sends the role
    /// claim only when asked).
    #[serde(default)]
    pub extra_scopes: Vec<String>,
    /// Members sign in only through the provider; password sign-ins are refused (API tokens
    /// still work). Needs one working SSO sign-in first.
    #[serde(default)]
    pub require_sso: bool,
    /// People the provider vouches for who are not members become members at their first
    /// sign-in, with the role the claim maps to or else this one. Absent: they are refused.
    #[serde(default)]
    pub jit_role: Option<Role>,
}

/// The vendor's identity provider as the portal keeps it (the secret is never shown).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SsoConfig {
    /// The issuer.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// Allowed e-mail domains.
    pub allowed_domains: Vec<String>,
    /// The claim that names roles.
    pub role_claim: Option<String>,
    /// Claim values to roles.
    pub role_map: BTreeMap<String, Role>,
    /// Scopes asked for besides `openid email`.
    pub extra_scopes: Vec<String>,
    /// Whether members may sign in only through the provider.
    pub require_sso: bool,
    /// The role of members added at their first sign-in; absent: nobody is added.
    pub jit_role: Option<Role>,
    /// The redirect URI to register with the provider.
    pub redirect_uri: String,
    /// Where members start a sign-in.
    pub sign_in_url: String,
    /// When a sign-in through this provider last worked (Unix seconds).
    pub verified_at: Option<i64>,
    /// When the settings last changed (Unix seconds).
    pub updated_at: i64,
}

/// What the provider sends the browser back with.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state the sign-in was started with.
    pub state: Option<String>,
    /// The issuer (RFC 9207), when the provider sends it.
    pub iss: Option<String>,
    /// An error code instead of a code.
    pub error: Option<String>,
    /// The error's description.
    pub error_description: Option<String>,
}

struct Stored {
    vendor_id: String,
    issuer: String,
    client_id: String,
    secret_sealed: String,
    domains: Vec<String>,
    role_claim: Option<String>,
    role_map: BTreeMap<String, Role>,
    extra_scopes: Vec<String>,
    require_sso: bool,
    jit_role: Option<Role>,
    verified_at: Option<i64>,
    updated_at: i64,
}

fn seal_context(vendor_id: &str) -> String {
    format!("sso-client-secret:{vendor_id}")
}

/// The redirect URI the portal registers with providers.
pub fn redirect_uri(state: &AppState) -> String {
    format!("{}{CALLBACK_PATH}", state.public_url())
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

async fn stored(
    exec: impl sqlx::Executor<'_, Database = sqlx::Any>,
    vendor_id: &str,
) -> DomainResult<Option<Stored>> {
    let Some(row) = sqlx::query(
        "SELECT vendor_id, issuer, client_id, client_secret_sealed, allowed_domains, role_claim, \
         role_map, extra_scopes, require_sso, jit_role, verified_at, updated_at FROM sso_providers WHERE vendor_id = $1",
    )
    .bind(vendor_id)
    .fetch_optional(exec)
    .await?
    else {
        return Ok(None);
    };
    let role_map = serde_json::from_str(&row.try_get::<String, _>("role_map")?)
        .map_err(DomainError::internal)?;
    Ok(Some(Stored {
        vendor_id: row.try_get("vendor_id")?,
        issuer: row.try_get("issuer")?,
        client_id: row.try_get("client_id")?,
        secret_sealed: row.try_get("client_secret_sealed")?,
        domains: words(&row.try_get::<String, _>("allowed_domains")?),
        role_claim: row.try_get("role_claim")?,
        role_map,
        extra_scopes: words(&row.try_get::<String, _>("extra_scopes")?),
        require_sso: row.try_get::<i64, _>("require_sso")? != 0,
        jit_role: row
            .try_get::<Option<String>, _>("jit_role")?
            .and_then(|r| Role::parse(&r)),
        verified_at: row.try_get("verified_at")?,
        updated_at: row.try_get("updated_at")?,
    }))
}

fn config_of(state: &AppState, vendor_slug: &str, s: Stored) -> SsoConfig {
    SsoConfig {
        issuer: s.issuer,
        client_id: s.client_id,
        allowed_domains: s.domains,
        role_claim: s.role_claim,
        role_map: s.role_map,
        extra_scopes: s.extra_scopes,
        require_sso: s.require_sso,
        jit_role: s.jit_role,
        redirect_uri: redirect_uri(state),
        sign_in_url: format!(
            "{}/console/sso/start?vendor={}",
            state.public_url(),
            url::form_urlencoded::byte_serialize(vendor_slug.as_bytes()).collect::<String>()
        ),
        verified_at: s.verified_at,
        updated_at: s.updated_at,
    }
}

/// The vendor's identity provider, if one is configured.
pub async fn show(state: &AppState, caller: &Caller) -> DomainResult<Option<SsoConfig>> {
    Ok(stored(&state.db.pool, &caller.vendor_id)
        .await?
        .map(|s| config_of(state, &caller.vendor_slug, s)))
}

fn invalid(detail: impl Into<String>) -> DomainError {
    DomainError::new(Kind::Invalid, "bad_sso_settings", detail)
}

fn check_domains(domains: &[String]) -> DomainResult<Vec<String>> {
    if domains.is_empty() || domains.len() > 50 {
        return Err(invalid(
            "give between 1 and 50 allowed e-mail domains (example.com): only people with addresses there may sign in",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for d in domains {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        let fine = d.len() <= 253
            && d.contains('.')
            && d.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !fine {
            return Err(invalid(format!(
                "{d:?} is not an e-mail domain (example.com)"
            )));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

fn check_token(text: &str, what: &str, max: usize) -> DomainResult<()> {
    if text.is_empty()
        || text.len() > max
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(format!(
            "the {what} must be 1 to {max} characters without spaces"
        )));
    }
    Ok(())
}

/// Sets the vendor's identity provider (owners only). The provider's discovery document and
/// keys are read now, so a wrong issuer is refused here rather than at the first sign-in.
pub async fn set(state: &AppState, caller: &Caller, body: SsoSettings) -> DomainResult<SsoConfig> {
    caller.require(Role::Owner)?;
    let issuer = body.issuer.trim().to_owned();
    let allow_private = state.oidc.allow_private();
    let parsed =
        crate::server::base::outbound::check_url(&issuer, allow_private, &oidc::PROVIDER_URLS)
            .await?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            "the issuer URL has no query or fragment: give it as the provider's discovery document names it",
        ));
    }
    check_token(&body.client_id, "client id", 255)?;
    let domains = check_domains(&body.allowed_domains)?;
    if let Some(claim) = &body.role_claim {
        check_token(claim, "role claim", 100)?;
    }
    if body.role_map.len() > 50 || body.role_map.keys().any(|k| k.is_empty() || k.len() > 200) {
        return Err(invalid(
            "the role map takes at most 50 values of at most 200 characters",
        ));
    }
    for scope in &body.extra_scopes {
        check_token(scope, "scope", 100)?;
    }
    if body.jit_role == Some(Role::Owner) {
        return Err(invalid(
            "members added at sign-in cannot be owners by default: give them support or publisher, and map your administrators' group to owner with role_claim and role_map",
        ));
    }
    state
        .oidc
        .read(&issuer)
        .await
        .map_err(|e| invalid(e.detail))?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let before = stored(tx.conn(), &caller.vendor_id).await?;
    let sealed = match (&body.client_secret, &before) {
        (Some(secret), _) => {
            if secret.is_empty() || secret.len() > 1024 {
                return Err(invalid("the client secret must be 1 to 1024 characters"));
            }
            state
                .master
                .seal(&seal_context(&caller.vendor_id), secret.as_bytes())
                .map_err(DomainError::internal)?
        }
        (None, Some(b)) => b.secret_sealed.clone(),
        (None, None) => {
            return Err(invalid(
                "give the client secret the provider issued for the portal (client_secret)",
            ));
        }
    };
    // A sign-in that worked proves these settings only while the provider and client stay.
    let verified_at = before
        .as_ref()
        .filter(|b| b.issuer == issuer && b.client_id == body.client_id)
        .and_then(|b| b.verified_at);
    if body.require_sso && verified_at.is_none() {
        return Err(DomainError::new(
            Kind::Conflict,
            "sso_not_verified",
            "sign in through the provider once with these settings before requiring single sign-on (open the sign-in URL this answer gives without require_sso first): otherwise a mistake here would lock every member out",
        ));
    }
    let at = now();
    let role_map = serde_json::to_string(&body.role_map).map_err(DomainError::internal)?;
    sqlx::query("DELETE FROM sso_providers WHERE vendor_id = $1")
        .bind(&caller.vendor_id)
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "INSERT INTO sso_providers (vendor_id, issuer, client_id, client_secret_sealed, allowed_domains, \
         role_claim, role_map, extra_scopes, require_sso, jit_role, verified_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&caller.vendor_id)
    .bind(&issuer)
    .bind(&body.client_id)
    .bind(&sealed)
    .bind(domains.join(" "))
    .bind(&body.role_claim)
    .bind(&role_map)
    .bind(body.extra_scopes.join(" "))
    .bind(i64::from(body.require_sso))
    .bind(body.jit_role.map(|r| r.as_str()))
    .bind(verified_at)
    .bind(at)
    .execute(tx.conn())
    .await?;
    tx.audit(
        caller,
        "sso.set",
        &issuer,
        serde_json::json!({"issuer": issuer, "client_id": body.client_id, "allowed_domains": domains,
            "role_claim": body.role_claim, "role_map": body.role_map, "require_sso": body.require_sso,
            "jit_role": body.jit_role, "secret_changed": body.client_secret.is_some()}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    let now_stored = stored(&state.db.pool, &caller.vendor_id)
        .await?
        .ok_or_else(|| DomainError::internal("the SSO settings vanished after saving"))?;
    Ok(config_of(state, &caller.vendor_slug, now_stored))
}

/// Removes the vendor's identity provider (owners only); members sign in with passwords again.
pub async fn remove(state: &AppState, caller: &Caller) -> DomainResult<SsoConfig> {
    caller.require(Role::Owner)?;
    let mut tx = VendorTx::begin(state, &caller.vendor_id).await?;
    let Some(before) = stored(tx.conn(), &caller.vendor_id).await? else {
        return Err(DomainError::not_found("SSO provider", &caller.vendor_slug));
    };
    sqlx::query("DELETE FROM sso_attempts WHERE vendor_id = $1")
        .bind(&caller.vendor_id)
        .execute(tx.conn())
        .await?;
    sqlx::query("DELETE FROM sso_providers WHERE vendor_id = $1")
        .bind(&caller.vendor_id)
        .execute(tx.conn())
        .await?;
    tx.audit(
        caller,
        "sso.remove",
        &before.issuer,
        serde_json::json!({"issuer": before.issuer, "client_id": before.client_id}),
    )
    .await?;
    tx.commit_all(&[]).await?;
    Ok(config_of(state, &caller.vendor_slug, before))
}

/// Refuses a password sign-in to a vendor that requires single sign-on.
pub async fn refuse_password_if_required(state: &AppState, vendor_slug: &str) -> DomainResult<()> {
    let required = sqlx::query(
        "SELECT p.require_sso FROM sso_providers p JOIN vendors v ON v.id = p.vendor_id WHERE v.slug = $1",
    )
    .bind(vendor_slug)
    .fetch_optional(&state.db.pool)
    .await?
    .map(|row| row.try_get::<i64, _>("require_sso"))
    .transpose()?
    .unwrap_or(0);
    if required != 0 {
        return Err(DomainError::new(
            Kind::Forbidden,
            "sso_required",
            format!(
                "{vendor_slug} requires single sign-on: use \"Sign in with SSO\" on the console's sign-in page (API tokens still work)"
            ),
        ));
    }
    Ok(())
}

fn random_text() -> DomainResult<Zeroizing<String>> {
    new_secret("").map_err(DomainError::internal)
}

/// Starts a sign-in for `vendor_slug`: the provider URL to send the browser to, and the secret
/// for the attempt cookie.
pub async fn begin(
    state: &AppState,
    meta: &RequestMeta,
    vendor_slug: &str,
) -> DomainResult<(String, Zeroizing<String>)> {
    let bucket = format!("login:{}", meta.ip);
    let limit = state.limits.logins_per_minute;
    let (hits, retry) = super::ratelimit::current(&state.db.pool, &bucket, 60).await?;
    if limit > 0 && hits >= limit {
        return Err(DomainError::rate_limited(
            format!("too many failed sign-ins from this address; retry in {retry} s"),
            retry,
        ));
    }
    {
        // Each start writes an attempt row: bounded per address too (six per failed sign-in
        // allowed, so a team behind one address is not held up).
        let _turn = state.write_turn().await;
        super::ratelimit::hit(
            &state.db.pool,
            &format!("sso-start:{}", meta.ip),
            60,
            limit.saturating_mul(6),
            "sign-ins started from this address",
        )
        .await?;
    }
    let vendor_id: Option<String> = sqlx::query("SELECT id FROM vendors WHERE slug = $1")
        .bind(vendor_slug)
        .fetch_optional(&state.db.pool)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?;
    let found = match &vendor_id {
        Some(id) => stored(&state.db.pool, id).await?,
        None => None,
    };
    let Some(config) = found else {
        return Err(DomainError::new(
            Kind::NotFound,
            "sso_not_configured",
            format!(
                "{vendor_slug:?} has no single sign-on: check the vendor's name, or sign in with your e-mail and password"
            ),
        ));
    };
    let discovery = state.oidc.discover(&config.issuer).await?;
    let attempt_state = random_text()?;
    let nonce = random_text()?;
    let verifier = random_text()?;
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let cookie = random_text()?;
    let at = now();
    let turn = state.write_turn().await;
    sqlx::query(
        "INSERT INTO sso_attempts (id_hash, vendor_id, state, nonce, code_verifier, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(secret_hash(&cookie))
    .bind(&config.vendor_id)
    .bind(attempt_state.as_str())
    .bind(nonce.as_str())
    .bind(verifier.as_str())
    .bind(at)
    .bind(at + ATTEMPT_SECONDS)
    .execute(&state.db.pool)
    .await?;
    drop(turn);
    let mut url = url::Url::parse(&discovery.authorization_endpoint)
        .map_err(|e| DomainError::internal(format!("authorization endpoint: {e}")))?;
    let mut scope = String::from("openid email");
    for extra in &config.extra_scopes {
        scope.push(' ');
        scope.push_str(extra);
    }
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &config.client_id)
        .append_pair("redirect_uri", &redirect_uri(state))
        .append_pair("scope", &scope)
        .append_pair("state", &attempt_state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok((url.to_string(), cookie))
}

struct Attempt {
    vendor_id: String,
    state: String,
    nonce: String,
    verifier: String,
    expires_at: i64,
}

/// Takes the attempt the cookie names, once: it is deleted whatever happens next.
async fn take_attempt(state: &AppState, cookie: &str) -> DomainResult<Option<Attempt>> {
    let hash = secret_hash(cookie);
    let Some(row) = sqlx::query(
        "SELECT vendor_id, state, nonce, code_verifier, expires_at FROM sso_attempts WHERE id_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(&state.db.pool)
    .await?
    else {
        return Ok(None);
    };
    let turn = state.write_turn().await;
    let deleted = sqlx::query("DELETE FROM sso_attempts WHERE id_hash = $1")
        .bind(&hash)
        .execute(&state.db.pool)
        .await?
        .rows_affected();
    drop(turn);
    if deleted != 1 {
        // Another request took it first.
        return Ok(None);
    }
    Ok(Some(Attempt {
        vendor_id: row.try_get("vendor_id")?,
        state: row.try_get("state")?,
        nonce: row.try_get("nonce")?,
        verifier: row.try_get("code_verifier")?,
        expires_at: row.try_get("expires_at")?,
    }))
}

/// Finishes a sign-in: checks the callback against the attempt the browser's cookie names,
/// redeems the code, checks the ID token and the person, and opens a session. Failures count
/// against the address's sign-in budget.
pub async fn finish(
    state: &AppState,
    meta: &RequestMeta,
    cookie: Option<&str>,
    callback: Callback,
) -> DomainResult<(SessionInfo, Zeroizing<String>)> {
    let result = complete(state, meta, cookie, callback).await;
    if let Err(e) = &result
        && e.is_client_error()
    {
        tracing::info!(ip = %meta.ip, reason = %e.detail, "single sign-on refused");
        sessions::count_failure(state, &format!("login:{}", meta.ip)).await?;
    }
    result
}

async fn complete(
    state: &AppState,
    meta: &RequestMeta,
    cookie: Option<&str>,
    callback: Callback,
) -> DomainResult<(SessionInfo, Zeroizing<String>)> {
    let restart = "start again from the console's sign-in page (\"Sign in with SSO\")";
    let attempt = match cookie {
        Some(cookie) => take_attempt(state, cookie).await?,
        None => None,
    };
    let Some(attempt) = attempt else {
        return Err(oidc::refused(format!(
            "this browser did not start this sign-in, or it was already used: {restart}"
        )));
    };
    if !callback
        .state
        .as_deref()
        .is_some_and(|s| equal(s, &attempt.state))
    {
        return Err(oidc::refused(format!(
            "the provider's answer is for another sign-in (its state does not match this browser's): {restart}"
        )));
    }
    if attempt.expires_at < now() {
        return Err(oidc::refused(format!(
            "the sign-in took over {} minutes: {restart}",
            ATTEMPT_SECONDS / 60
        )));
    }
    let config = stored(&state.db.pool, &attempt.vendor_id)
        .await?
        .ok_or_else(|| oidc::refused("the vendor no longer has single sign-on"))?;
    if let Some(error) = &callback.error {
        let description = callback.error_description.as_deref().unwrap_or("");
        return Err(oidc::refused(format!(
            "the identity provider refused the sign-in ({}: {}): ask your identity administrator whether you are assigned to the Consign application",
            error.chars().take(100).collect::<String>(),
            description.chars().take(200).collect::<String>()
        )));
    }
    if let Some(iss) = &callback.iss
        && *iss != config.issuer
    {
        return Err(oidc::refused(format!(
            "the answer comes from issuer {:?}, not {}: {restart}",
            iss.chars().take(200).collect::<String>(),
            config.issuer
        )));
    }
    let code = callback
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| oidc::refused(format!("the provider sent no code: {restart}")))?;
    let secret = state
        .master
        .open(&seal_context(&config.vendor_id), &config.secret_sealed)
        .map_err(DomainError::internal)?;
    let secret = std::str::from_utf8(&secret).map_err(DomainError::internal)?;
    let discovery = state.oidc.discover(&config.issuer).await?;
    let redirect = redirect_uri(state);
    let token = state
        .oidc
        .redeem(
            &discovery,
            &oidc::CodeGrant {
                code,
                redirect_uri: &redirect,
                verifier: &attempt.verifier,
                client_id: &config.client_id,
                client_secret: secret,
            },
        )
        .await?;
    let claims = state
        .oidc
        .verify(&discovery, &token, &config.client_id, &attempt.nonce, now())
        .await?;
    let email = person(&config, &claims)?;
    let (vendor_slug, member) = admit(state, meta, &config, &email, &claims).await?;
    sessions::open(state, &config.vendor_id, vendor_slug, member).await
}

/// The person's e-mail, once the provider says it verified it and it is in an allowed domain.
fn person(config: &Stored, claims: &Value) -> DomainResult<String> {
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty() && e.len() <= 254)
        .ok_or_else(|| {
            oidc::refused(
                "the ID token carries no e-mail: allow the `email` scope for the Consign client at your provider",
            )
        })?;
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if !verified {
        return Err(oidc::refused(format!(
            "the provider does not say it verified {email} (email_verified is not true): verify the address at your provider, then sign in again"
        )));
    }
    let domain = email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    if !config.domains.contains(&domain) {
        return Err(oidc::refused(format!(
            "{email} is not in a domain this vendor allows ({}): ask an owner to add {domain:?} to the SSO settings",
            config.domains.join(", ")
        )));
    }
    Ok(email)
}

/// The role the claim maps to, if any: the highest of its values' roles.
fn mapped_role(config: &Stored, claims: &Value) -> Option<Role> {
    let claim = claims.get(config.role_claim.as_deref()?)?;
    let values: Vec<&str> = match claim {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    values
        .into_iter()
        .filter_map(|v| config.role_map.get(v).copied().or_else(|| Role::parse(v)))
        .max()
}

/// The member the person is: found by e-mail (case aside), with the role the claim maps to, or
/// added when the vendor admits people at their first sign-in.
async fn admit(
    state: &AppState,
    meta: &RequestMeta,
    config: &Stored,
    email: &str,
    claims: &Value,
) -> DomainResult<(String, MemberInfo)> {
    let mapped = mapped_role(config, claims);
    let mut tx = VendorTx::begin(state, &config.vendor_id).await?;
    let vendor_slug: String = sqlx::query("SELECT slug FROM vendors WHERE id = $1")
        .bind(&config.vendor_id)
        .fetch_one(tx.conn())
        .await?
        .try_get("slug")?;
    let row = sqlx::query(
        "SELECT id, email, role, disabled_at FROM members WHERE vendor_id = $1 AND LOWER(email) = LOWER($2) \
         ORDER BY created_at LIMIT 1",
    )
    .bind(&config.vendor_id)
    .bind(email)
    .fetch_optional(tx.conn())
    .await?;
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let actor = |id: &str, role: Role| {
        serde_json::json!({"member": id, "email": email, "role": role.as_str(), "token": null,
            "sso": {"issuer": config.issuer, "sub": sub}})
    };
    let member = match row {
        Some(row) => {
            let id: String = row.try_get("id")?;
            let stored_email: String = row.try_get("email")?;
            let role_text: String = row.try_get("role")?;
            let role = Role::parse(&role_text).unwrap_or(Role::Support);
            if row.try_get::<Option<i64>, _>("disabled_at")?.is_some() {
                return Err(DomainError::forbidden(format!(
                    "{email} is disabled on {vendor_slug}: ask an owner to enable the account"
                )));
            }
            let role = match mapped {
                Some(new) if new != role => {
                    if role == Role::Owner
                        && members::keep_an_owner(tx.conn(), &config.vendor_id, &id)
                            .await
                            .is_err()
                    {
                        tracing::warn!(member = %id, "the provider's role claim would demote the vendor's last owner; kept owner");
                        role
                    } else {
                        sqlx::query(
                            "UPDATE members SET role = $3 WHERE vendor_id = $1 AND id = $2",
                        )
                        .bind(&config.vendor_id)
                        .bind(&id)
                        .bind(new.as_str())
                        .execute(tx.conn())
                        .await?;
                        let (sessions_ended, tokens_revoked) =
                            members::end_access(tx.conn(), &config.vendor_id, &id).await?;
                        tx.audit_as(
                            actor(&id, role),
                            &meta.ip,
                            &meta.request_id,
                            "member.update",
                            &id,
                            serde_json::json!({"email": stored_email, "role": new, "was": role,
                                "disabled": false, "sessions_ended": sessions_ended,
                                "tokens_revoked": tokens_revoked, "by": "sso role claim"}),
                        )
                        .await?;
                        new
                    }
                }
                _ => role,
            };
            MemberInfo {
                id,
                email: stored_email,
                role,
                disabled: false,
            }
        }
        None => {
            let Some(default) = config.jit_role else {
                return Err(DomainError::new(
                    Kind::Forbidden,
                    "sso_not_member",
                    format!(
                        "{email} signed in at the provider but is not a member of {vendor_slug}, which adds members only by hand: ask an owner to add {email}"
                    ),
                ));
            };
            let role = mapped.unwrap_or(default);
            let id = new_id("mem").map_err(DomainError::internal)?;
            sqlx::query(
                "INSERT INTO members (id, vendor_id, email, role, password_hash, created_at) VALUES ($1, $2, $3, $4, NULL, $5)",
            )
            .bind(&id)
            .bind(&config.vendor_id)
            .bind(email)
            .bind(role.as_str())
            .bind(now())
            .execute(tx.conn())
            .await?;
            tx.audit_as(
                actor(&id, role),
                &meta.ip,
                &meta.request_id,
                "member.add",
                &id,
                serde_json::json!({"email": email, "role": role, "by": "sso just-in-time"}),
            )
            .await?;
            MemberInfo {
                id,
                email: email.to_owned(),
                role,
                disabled: false,
            }
        }
    };
    sqlx::query("UPDATE sso_providers SET verified_at = $2 WHERE vendor_id = $1")
        .bind(&config.vendor_id)
        .bind(now())
        .execute(tx.conn())
        .await?;
    tx.commit_all(&[]).await?;
    state.credentials.clear();
    Ok((vendor_slug, member))
}
