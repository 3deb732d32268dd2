//! The pages behind the links the portal mails buyers: verifying an address, and choosing a new
//! password after asking for a reset. The rules live in `domain::mail::account`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::local_path;
use crate::server::domain::mail::account;
use crate::server::http::extract::RequestMeta;
use crate::server::state::AppState;
use crate::server::web::{Page, PageParts, WebError, WebForm, render, see_other};

/// A mailed link's query.
#[derive(Debug, Default, Deserialize)]
pub struct LinkQuery {
    /// The link's secret.
    #[serde(default)]
    pub token: String,
    /// Where to go afterwards (a path on this site).
    #[serde(default)]
    pub next: String,
}

/// `GET /verify?token=...&next=...`: the verification link.
pub async fn verify(
    State(state): State<AppState>,
    Query(query): Query<LinkQuery>,
) -> Result<Response, WebError> {
    account::verify(&state, &query.token).await?;
    let to = local_path(&query.next).unwrap_or("/account");
    let join = if to.contains('?') { '&' } else { '?' };
    Ok(see_other(&format!("{to}{join}done=verified")))
}

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    page: Page,
}

/// `GET /forgot`.
pub async fn forgot_form(parts: PageParts) -> Response {
    render(&ForgotPage {
        page: Page::new(&parts, "account", "Forgot your password?"),
    })
}

/// The forgotten-password form.
#[derive(Debug, Deserialize)]
pub struct ForgotForm {
    /// The account's address.
    #[serde(default)]
    pub email: String,
}

/// `POST /forgot`: the same answer whether or not the address has an account.
pub async fn forgot(
    State(state): State<AppState>,
    meta: RequestMeta,
    WebForm(form): WebForm<ForgotForm>,
) -> Result<Response, WebError> {
    account::request_reset(&state, &meta, &form.email).await?;
    Ok(see_other("/login?done=forgot"))
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage<'a> {
    page: Page,
    token: &'a str,
    error: Option<String>,
}

/// `GET /reset?token=...`: the form for a new password. Opening the link uses nothing up (mail
/// scanners open links too); sending the form does.
pub async fn reset_form(parts: PageParts, Query(query): Query<LinkQuery>) -> Response {
    render(&ResetPage {
        page: Page::new(&parts, "account", "Choose a new password"),
        token: &query.token,
        error: None,
    })
}

/// The new-password form.
#[derive(Debug, Deserialize)]
pub struct ResetForm {
    /// The link's secret.
    #[serde(default)]
    pub token: String,
    /// The new password.
    #[serde(default)]
    pub password: String,
}

/// `POST /reset`.
pub async fn reset(
    State(state): State<AppState>,
    parts: PageParts,
    WebForm(form): WebForm<ResetForm>,
) -> Result<Response, WebError> {
    match account::reset(&state, &form.token, &form.password).await {
        Ok(()) => Ok(see_other("/login?done=reset")),
        Err(e) if e.code == "weak_password" => {
            let mut response = render(&ResetPage {
                page: Page::new(&parts, "account", "Choose a new password"),
                token: &form.token,
                error: Some("Passwords must be at least 12 characters.".into()),
            });
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
        Err(e) => Err(e.into()),
    }
}
