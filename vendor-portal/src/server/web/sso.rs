//! Single sign-on in the browser: the start and callback of a sign-in, and the owners' settings
//! page. The flow and every check are the domain's ([`crate::server::domain::sso`]).
//!
//! Cookies: the attempt cookie is `SameSite=Lax`, because the provider's redirect back is a
//! cross-site navigation, on which browsers withhold `Strict` cookies. For the same reason the
//! callback answers with a page that moves on to the console itself (a same-site navigation),
//! so the new `Strict` session cookie is sent with the console's first request.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::console::Member;
use super::{Page, PageParts, WebError, WebForm, cookie, render, see_other};
use crate::server::domain::sso::{
    self, ATTEMPT_COOKIE, ATTEMPT_SECONDS, Callback, SsoConfig, SsoSettings,
};
use crate::server::http::auth::{Caller, Role, set_session_cookie};
use crate::server::http::extract::RequestMeta;
use crate::server::state::AppState;

fn attempt_cookie(value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{ATTEMPT_COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age}"
    ))
    .ok()
}

/// Which vendor to sign in to.
#[derive(Debug, Deserialize)]
pub struct StartQuery {
    /// The vendor's slug.
    #[serde(default)]
    pub vendor: String,
}

#[derive(Template)]
#[template(path = "sso_go.html")]
struct GoPage<'a> {
    page: Page,
    vendor: &'a str,
    to: &'a str,
}

/// `GET /console/sso/start?vendor=SLUG`: sends the browser to the vendor's provider. With a
/// page that moves on by itself rather than a redirect: the sign-in form that leads here may
/// post only to this site (`form-action 'self'`), and browsers hold a redirect after a form to
/// that too.
pub async fn start(
    State(state): State<AppState>,
    parts: PageParts,
    meta: RequestMeta,
    Query(query): Query<StartQuery>,
) -> Result<Response, WebError> {
    let vendor = query.vendor.trim();
    let (to, secret) = sso::begin(&state, &meta, vendor).await?;
    let mut response = render(&GoPage {
        page: Page::new(&parts, "console", "Signing in"),
        vendor,
        to: &to,
    });
    if let Some(value) = attempt_cookie(&secret, ATTEMPT_SECONDS) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Template)]
#[template(path = "sso_done.html")]
struct DonePage<'a> {
    page: Page,
    email: &'a str,
    vendor: &'a str,
    next: &'a str,
}

/// `GET /console/sso/callback`: where the provider sends the browser back.
pub async fn callback(
    State(state): State<AppState>,
    parts: PageParts,
    meta: RequestMeta,
    headers: HeaderMap,
    query: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let callback = query.map(|Query(c)| c).unwrap_or_default();
    let attempt = cookie(&headers, ATTEMPT_COOKIE);
    let outcome = sso::finish(&state, &meta, attempt.as_deref(), callback).await;
    let mut response = match outcome {
        Ok((session, secret)) => {
            let mut response = render(&DonePage {
                page: Page::new(&parts, "console", "Signed in"),
                email: &session.member.email,
                vendor: &session.vendor,
                next: "/console",
            });
            if let Ok(value) = HeaderValue::from_str(&set_session_cookie(&secret)) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => axum::response::IntoResponse::into_response(WebError::from(e)),
    };
    if let Some(value) = attempt_cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Template)]
#[template(path = "console_sso.html")]
struct SettingsPage {
    page: Page,
    config: Option<SsoConfig>,
    verified: Option<String>,
    redirect_uri: String,
    owner: bool,
    form: SettingsForm,
}

/// The settings form's fields (all text, as a browser sends them).
#[derive(Debug, Default, Deserialize)]
pub struct SettingsForm {
    /// The issuer URL.
    #[serde(default)]
    pub issuer: String,
    /// The client id.
    #[serde(default)]
    pub client_id: String,
    /// The client secret (empty: keep).
    #[serde(default)]
    pub client_secret: String,
    /// Domains, separated by spaces or commas.
    #[serde(default)]
    pub allowed_domains: String,
    /// The role claim.
    #[serde(default)]
    pub role_claim: String,
    /// `value=role` lines.
    #[serde(default)]
    pub role_map: String,
    /// Scopes separated by spaces.
    #[serde(default)]
    pub extra_scopes: String,
    /// `support`, `publisher` or empty.
    #[serde(default)]
    pub jit_role: String,
    /// `on` when ticked.
    #[serde(default, deserialize_with = "checkbox")]
    pub require_sso: bool,
}

fn checkbox<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = String::deserialize(d)?;
    Ok(!text.is_empty())
}

impl SettingsForm {
    fn of(config: &SsoConfig) -> Self {
        Self {
            issuer: config.issuer.clone(),
            client_id: config.client_id.clone(),
            client_secret: String::new(),
            allowed_domains: config.allowed_domains.join(" "),
            role_claim: config.role_claim.clone().unwrap_or_default(),
            role_map: config
                .role_map
                .iter()
                .map(|(value, role)| format!("{value}={}", role.as_str()))
                .collect::<Vec<_>>()
                .join("\n"),
            extra_scopes: config.extra_scopes.join(" "),
            jit_role: config
                .jit_role
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            require_sso: config.require_sso,
        }
    }

    fn settings(&self) -> Result<SsoSettings, WebError> {
        let bad = |detail: String| {
            WebError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Something is not right",
                detail,
            )
        };
        let mut role_map = BTreeMap::new();
        for line in self
            .role_map
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let (value, role) = line.rsplit_once('=').ok_or_else(|| {
                bad(format!(
                    "{line:?} is not value=role: write one per line, as consign-admins=owner"
                ))
            })?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                bad(format!(
                    "{:?} is not a role: use owner, publisher or support",
                    role.trim()
                ))
            })?;
            role_map.insert(value.trim().to_owned(), role);
        }
        let jit_role = match self.jit_role.as_str() {
            "" => None,
            other => {
                Some(Role::parse(other).ok_or_else(|| bad("Pick a choice from the list.".into()))?)
            }
        };
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(SsoSettings {
            issuer: self.issuer.trim().to_owned(),
            client_id: self.client_id.trim().to_owned(),
            client_secret: text(&self.client_secret),
            allowed_domains: self
                .allowed_domains
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect(),
            role_claim: text(&self.role_claim),
            role_map,
            extra_scopes: self
                .extra_scopes
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            require_sso: self.require_sso,
            jit_role,
        })
    }
}

async fn settings_page(
    state: &AppState,
    parts: &PageParts,
    caller: &Caller,
) -> Result<Response, WebError> {
    let config = sso::show(state, caller).await?;
    let form = config.as_ref().map(SettingsForm::of).unwrap_or_default();
    Ok(render(&SettingsPage {
        page: Page::new(parts, "console", "Single sign-on"),
        verified: config
            .as_ref()
            .and_then(|c| c.verified_at)
            .map(super::datetime),
        config,
        redirect_uri: sso::redirect_uri(state),
        owner: caller.role == Role::Owner,
        form,
    }))
}

/// `GET /console/sso`.
pub async fn page(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
) -> Result<Response, WebError> {
    settings_page(&state, &parts, &caller).await
}

/// `POST /console/sso`: saves the settings (owners).
pub async fn save(
    State(state): State<AppState>,
    Member(caller): Member,
    WebForm(form): WebForm<SettingsForm>,
) -> Result<Response, WebError> {
    sso::set(&state, &caller, form.settings()?).await?;
    Ok(see_other("/console/sso?done=sso-saved"))
}

/// `POST /console/sso/remove` (owners).
pub async fn remove(
    State(state): State<AppState>,
    Member(caller): Member,
) -> Result<Response, WebError> {
    sso::remove(&state, &caller).await?;
    Ok(see_other("/console/sso?done=sso-removed"))
}
