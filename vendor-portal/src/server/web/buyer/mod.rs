//! Buyers: sign-up and sign-in on the marketplace, self-service trials, and the buyer's pages
//! (licenses, the versions each entitles, expiry, downloads and install commands).
//!
//! Trials are started here and decided in `domain::trials`: the buyer becomes the vendor's
//! customer and gets a license from the trial plan, bound to the buyer's AWS account, one per
//! app and account.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use sqlx::Row as _;

use super::{Page, PageParts, WebError, WebForm, render, see_other, set_cookie};
use crate::server::base::db::is_unique_violation;
use crate::server::base::now;
use crate::server::base::secrets::{
    hash_password, new_id, new_secret, secret_hash, verify_password,
};
use crate::server::domain;
use crate::server::domain::error::DomainError;
use crate::server::domain::ratelimit;
use crate::server::http::extract::RequestMeta;
use crate::server::state::AppState;

mod licenses;
mod mail;
mod trials;

pub use self::licenses::{account, license_file, license_page};
pub use self::mail::{forgot, forgot_form, reset, reset_form, verify};
pub use self::trials::start_trial;

/// The buyer's session cookie.
pub const BUYER_COOKIE: &str = "__Host-consign_buyer";

/// Buyer session secrets start with this.
const BUYER_PREFIX: &str = "cnbs_";

/// Buyer sessions last 12 hours.
const SESSION_SECONDS: i64 = 12 * 3600;

/// A signed-in buyer.
#[derive(Clone, Debug)]
pub struct Buyer {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Company.
    pub company: String,
    /// The AWS account trials are bound to.
    pub aws_account: String,
    /// Whether they opened the verification link mailed to them.
    pub email_verified: bool,
}

/// The buyer the request's session cookie belongs to, if any.
pub async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Buyer>, WebError> {
    let Some(secret) = super::cookie(headers, BUYER_COOKIE) else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT b.id, b.email, b.name, b.company, b.aws_account, b.email_verified_at, s.expires_at FROM buyer_sessions s \
         JOIN buyers b ON b.id = s.buyer_id WHERE s.id_hash = $1",
    )
    .bind(secret_hash(&secret))
    .fetch_optional(&state.db.pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    if row.try_get::<i64, _>("expires_at")? <= now() {
        return Ok(None);
    }
    Ok(Some(Buyer {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        company: row.try_get("company")?,
        aws_account: row.try_get("aws_account")?,
        email_verified: row
            .try_get::<Option<i64>, _>("email_verified_at")?
            .is_some(),
    }))
}

async fn required(state: &AppState, headers: &HeaderMap, next: &str) -> Result<Buyer, WebError> {
    current(state, headers).await?.ok_or_else(|| {
        WebError::redirect(format!("/login?next={}", crate::server::web::encode(next)))
    })
}

/// Only paths on this site (`/x`, not `//host` or `https://…`) are followed after sign-in:
/// `next` when it starts with one `/` and holds no backslash, no
/// whitespace and no control character (browsers drop tabs and newlines from URLs, so `/\t/evil`
/// would become `//evil`, another site).
fn local_path(next: &str) -> Option<&str> {
    (next.len() <= 2048
        && next.starts_with('/')
        && !next.starts_with("//")
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace()))
    .then_some(next)
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage<'a> {
    page: Page,
    form: &'a SignupForm,
    error: Option<String>,
}

/// The sign-up form.
#[derive(Debug, Default, Deserialize)]
pub struct SignupForm {
    /// Full name.
    #[serde(default)]
    pub name: String,
    /// Company.
    #[serde(default)]
    pub company: String,
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Password.
    #[serde(default)]
    pub password: String,
    /// The 12-digit AWS account id trials are bound to.
    #[serde(default)]
    pub aws_account: String,
    /// Where to go afterwards.
    #[serde(default)]
    pub next: String,
}

/// `GET /signup`.
pub async fn signup_form(
    parts: PageParts,
    axum::extract::Query(query): axum::extract::Query<NextQuery>,
) -> Response {
    let form = SignupForm {
        next: query.next,
        ..SignupForm::default()
    };
    render(&SignupPage {
        page: Page::new(&parts, "account", "Sign up to try apps"),
        form: &form,
        error: None,
    })
}

/// `?next=` on sign-in pages.
#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    /// Where to go after signing in.
    #[serde(default)]
    pub next: String,
}

fn check_signup(form: &SignupForm) -> Result<(), String> {
    let name_ok = |s: &str| {
        let n = s.trim().chars().count();
        (1..=100).contains(&n) && !s.chars().any(char::is_control)
    };
    if !name_ok(&form.name) {
        return Err("Give your name (1 to 100 characters).".into());
    }
    if !name_ok(&form.company) {
        return Err("Give your company's name (1 to 100 characters).".into());
    }
    let email = form.email.trim();
    if email.len() > 200 || !email.contains('@') || email.contains(char::is_whitespace) {
        return Err("Give an email address such as you@example.com.".into());
    }
    if form.password.chars().count() < 12 || form.password.len() > 200 {
        return Err("Choose a password of at least 12 characters.".into());
    }
    if form.aws_account.len() != 12 || !form.aws_account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            "The AWS account id is 12 digits (the number in the AWS console's account menu)."
                .into(),
        );
    }
    Ok(())
}

/// `POST /signup`.
pub async fn signup(
    State(state): State<AppState>,
    parts: PageParts,
    meta: RequestMeta,
    WebForm(form): WebForm<SignupForm>,
) -> Result<Response, WebError> {
    let page = |parts: &PageParts| Page::new(parts, "account", "Sign up to try apps");
    if let Err(message) = check_signup(&form) {
        let mut response = render(&SignupPage {
            page: page(&parts),
            form: &form,
            error: Some(message),
        });
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(response);
    }
    {
        let _turn = state.write_turn().await;
        ratelimit::hit(
            &state.db.pool,
            &format!("signup:{}", meta.ip),
            3600,
            state.limits.signups_per_hour,
            "sign-ups from this address",
        )
        .await?;
    }
    let hash = domain::members::hash_in_background(form.password.clone()).await?;
    let id = new_id("buy")?;
    let inserted = {
        let _turn = state.write_turn().await;
        sqlx::query(
            "INSERT INTO buyers (id, email, name, company, aws_account, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(form.email.trim().to_lowercase())
        .bind(form.name.trim())
        .bind(form.company.trim())
        .bind(&form.aws_account)
        .bind(&hash)
        .bind(now())
        .execute(&state.db.pool)
        .await
    };
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            let mut response = render(&SignupPage {
                page: page(&parts),
                form: &form,
                error: Some("An account with this email exists already: sign in instead.".into()),
            });
            *response.status_mut() = StatusCode::CONFLICT;
            return Ok(response);
        }
        other => other?,
    };
    let to = local_path(&form.next).unwrap_or("/account?done=signup");
    start_session(&state, &id, to).await
}

async fn start_session(state: &AppState, buyer_id: &str, to: &str) -> Result<Response, WebError> {
    let secret = new_secret(BUYER_PREFIX).map_err(DomainError::internal)?;
    {
        let _turn = state.write_turn().await;
        sqlx::query(
            "INSERT INTO buyer_sessions (id_hash, buyer_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(secret_hash(&secret))
        .bind(buyer_id)
        .bind(now())
        .bind(now() + SESSION_SECONDS)
        .execute(&state.db.pool)
        .await?;
    }
    let mut response = see_other(to);
    if let Some(cookie) = set_cookie(BUYER_COOKIE, &secret, SESSION_SECONDS) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The sign-in page, for buyers and (with the vendor field) for the console.
#[derive(Template)]
#[template(path = "login.html")]
pub(super) struct LoginPage<'a> {
    pub page: Page,
    pub action: &'a str,
    pub vendor_field: bool,
    pub vendor: &'a str,
    pub email: &'a str,
    pub next: &'a str,
    pub error: Option<&'a str>,
}

/// The buyer's sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Password.
    #[serde(default)]
    pub password: String,
    /// Where to go afterwards.
    #[serde(default)]
    pub next: String,
}

/// `GET /login`.
pub async fn login_form(
    parts: PageParts,
    axum::extract::Query(query): axum::extract::Query<NextQuery>,
) -> Response {
    render(&LoginPage {
        page: Page::new(&parts, "account", "Buyer sign in"),
        action: "/login",
        vendor_field: false,
        vendor: "",
        email: "",
        next: &query.next,
        error: None,
    })
}

/// `POST /login`.
pub async fn login(
    State(state): State<AppState>,
    parts: PageParts,
    meta: RequestMeta,
    WebForm(form): WebForm<LoginForm>,
) -> Result<Response, WebError> {
    let bucket = format!("buyer-login:{}", meta.ip);
    let (hits, retry) = ratelimit::current(&state.db.pool, &bucket, 60).await?;
    let limit = state.limits.logins_per_minute;
    if limit > 0 && hits >= limit {
        return Err(DomainError::rate_limited(
            format!(
                "Too many failed sign-ins from this address. Wait {retry} seconds and try again."
            ),
            retry,
        )
        .into());
    }
    let row = sqlx::query("SELECT id, password_hash FROM buyers WHERE email = $1")
        .bind(form.email.trim().to_lowercase())
        .fetch_optional(&state.db.pool)
        .await?;
    let stored: Option<(String, String)> = match row {
        Some(r) => Some((r.try_get("id")?, r.try_get("password_hash")?)),
        None => None,
    };
    let password = zeroize::Zeroizing::new(form.password.clone());
    let hash = stored.as_ref().map(|(_, h)| h.clone());
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_password(&password, &hash),
        None => {
            // Spend the same time as a real check, so timing does not tell who has an account.
            let _ = hash_password(&password);
            false
        }
    })
    .await
    .map_err(DomainError::internal)?;
    let Some((id, _)) = stored.filter(|_| ok) else {
        {
            let _turn = state.write_turn().await;
            ratelimit::hit(&state.db.pool, &bucket, 60, u64::MAX, "sign-ins").await?;
        }
        let mut response = render(&LoginPage {
            page: Page::new(&parts, "account", "Buyer sign in"),
            action: "/login",
            vendor_field: false,
            vendor: "",
            email: &form.email,
            next: &form.next,
            error: Some("The email or password is wrong."),
        });
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    };
    start_session(&state, &id, local_path(&form.next).unwrap_or("/account")).await
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if let Some(secret) = super::cookie(&headers, BUYER_COOKIE) {
        let _turn = state.write_turn().await;
        sqlx::query("DELETE FROM buyer_sessions WHERE id_hash = $1")
            .bind(secret_hash(&secret))
            .execute(&state.db.pool)
            .await?;
    }
    let mut response = see_other("/");
    if let Some(cookie) = set_cookie(BUYER_COOKIE, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn sign_in_next_cannot_leave_the_site() {
        assert_eq!(local_path("/account"), Some("/account"));
        assert_eq!(local_path("//evil.example/x"), None);
        assert_eq!(local_path("https://evil.example"), None);
        assert_eq!(local_path("/\\evil.example"), None);
        // Browsers strip tabs and newlines: these would become //evil.example.
        for attack in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/ /evil",
        ] {
            assert_eq!(local_path(attack), None, "{attack:?}");
        }
        assert_eq!(
            local_path("/account/licenses/lic_1?x=1"),
            Some("/account/licenses/lic_1?x=1")
        );
    }
}
