//! The web pages: the marketplace buyers browse, the buyer's own pages, and the vendor console.
//! Server-rendered from templates compiled into the binary (askama, HTML-escaped by default),
//! usable without JavaScript (there is none: the content security policy forbids scripts).
//!
//! Every page goes through [`layer`], which
//! - gives the browser a CSRF token in a cookie and checks it against the `csrf` field of every
//!   form it posts (double submit), and refuses posts whose `Origin` is another site;
//! - sets the content security policy and the other security headers.
//!
//! Handlers render [`Page`]s or return a [`WebError`], which is a page that says what happened
//! and what to do.

pub mod buyer;
pub mod console;
pub mod market;
pub mod members;
pub mod sso;
pub mod svg;
pub mod webhooks;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::state::AppState;
use crate::server::domain::error::DomainError;

/// The CSRF cookie's name.
pub const CSRF_COOKIE: &str = "__Host-consign_csrf";

/// Form posts are small; this bounds what the CSRF check buffers.
const MAX_FORM: usize = 64 * 1024;

/// The content security policy of every page: nothing but this origin's own stylesheet and
/// images, no scripts at all, forms only to this origin, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The site's stylesheet.
const STYLESHEET: &str = include_str!("../../../templates/site.css");

/// Every page's route.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(market::catalogue))
        .route("/static/site.css", get(stylesheet))
        .route("/apps/{vendor}/{app}", get(market::app_page))
        .route("/apps/{vendor}/{app}/trial", post(buyer::start_trial))
        .route("/signup", get(buyer::signup_form).post(buyer::signup))
        .route("/login", get(buyer::login_form).post(buyer::login))
        .route("/logout", post(buyer::logout))
        .route("/verify", get(buyer::verify))
        .route("/forgot", get(buyer::forgot_form).post(buyer::forgot))
        .route("/reset", get(buyer::reset_form).post(buyer::reset))
        .route("/account", get(buyer::account))
        .route("/account/licenses/{id}", get(buyer::license_page))
        .route("/account/licenses/{id}/file", get(buyer::license_file))
        .route(
            "/console/login",
            get(console::login_form).post(console::login),
        )
        .route("/console/logout", post(console::logout))
        .route("/console/sso/start", get(sso::start))
        .route("/console/sso/callback", get(sso::callback))
        .route("/console/sso", get(sso::page).post(sso::save))
        .route("/console/sso/remove", post(sso::remove))
        .route("/console", get(console::overview))
        .route(
            "/console/apps/{app}",
            get(console::app_page).post(console::update_app),
        )
        .route("/console/apps/{app}/listing", post(console::set_listed))
        .route(
            "/console/apps/{app}/releases/{version}/{action}",
            post(console::release_action),
        )
        .route("/console/customers", get(console::customers))
        .route("/console/customers/{customer}", get(console::customer_page))
        .route(
            "/console/customers/{customer}/licenses",
            post(console::issue_license),
        )
        .route(
            "/console/licenses/{id}/{action}",
            post(console::license_action),
        )
        .route("/console/installations", get(console::installations))
        .route("/console/audit", get(console::audit))
        .route("/console/members", get(members::page))
        .route("/console/members/{id}/{action}", post(members::action))
        .route("/console/webhooks", get(webhooks::page).post(webhooks::add))
        .route("/console/webhooks/{id}/{action}", post(webhooks::action))
        .method_not_allowed_fallback(|| async {
            WebError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not this way",
                "This address takes a form from one of the portal's pages. Go back to the page and use its button.",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Whether a path is one of the web pages' (for the fallback: pages get an HTML 404).
pub fn is_page_path(path: &str) -> bool {
    !(path.starts_with("/api/") || path.starts_with("/tuf/") || path == "/metrics")
}

/// The request's CSRF token (from its cookie, or minted for this response).
#[derive(Clone, Debug)]
pub struct CsrfToken(pub String);

/// A cookie's value from request headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value: HttpOnly, Secure, SameSite=Strict, for the whole site. Browsers keep
/// Secure cookies from `http://localhost` and `http://127.0.0.1` too, so a portal on loopback
/// works without TLS; anywhere else it must be served over HTTPS.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}"
    ))
    .ok()
}

fn same_origin(headers: &HeaderMap) -> bool {
    // Browsers send Origin with every cross-site form post; its absence means a same-site
    // navigation or a non-browser client, which the token check still covers.
    crate::server::http::auth::origin_matches_host(headers).unwrap_or(true)
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The middleware of every page: CSRF and security headers, and error pages drawn with the
/// visitor's own header (signed in, with working sign-out forms).
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let existing = cookie(request.headers(), CSRF_COOKIE).filter(|t| t.len() == 43);
    let (mut parts, body) = request.into_parts();
    let body = if parts.method == Method::POST {
        if !same_origin(&parts.headers) {
            return with_headers(
                WebError::forbidden(
                    "This form was sent from another site, so it was refused. Open the page on this portal and send it from there.",
                )
                .into_response(),
                None,
            );
        }
        let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return with_headers(
                    WebError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Too much to send",
                        "The form is over 64 KiB. Shorten what you typed and send it again.",
                    )
                    .into_response(),
                    None,
                );
            }
        };
        let sent = form_field(&bytes, "csrf");
        let valid = matches!((&existing, &sent), (Some(a), Some(b)) if super::secrets::equal(a, b));
        if !valid {
            return with_headers(
                WebError::forbidden(
                    "The form's security token is missing or out of date (cookies may be off, or the page is old). Reload the page and send the form again.",
                )
                .into_response(),
                None,
            );
        }
        Body::from(bytes)
    } else {
        body
    };
    let (token, fresh) = match existing {
        Some(token) => (token, false),
        None => match super::secrets::new_secret("") {
            Ok(secret) => (secret.to_string(), true),
            Err(e) => return WebError::from(DomainError::internal(e)).into_response(),
        },
    };
    parts.extensions.insert(CsrfToken(token.clone()));
    let (uri, headers) = (parts.uri.clone(), parts.headers.clone());
    let response = next.run(Request::from_parts(parts, body)).await;
    let response = match response.extensions().get::<ErrorShown>().cloned() {
        Some(shown) if signed_in(&headers) => {
            redraw_error(&state, shown, uri, headers, &token).await
        }
        _ => response,
    };
    with_headers(response, fresh.then_some(token))
}

fn signed_in(headers: &HeaderMap) -> bool {
    cookie(headers, buyer::BUYER_COOKIE).is_some()
        || cookie(headers, crate::server::http::auth::SESSION_COOKIE).is_some()
}

/// An error page again, with the header of the visitor who asked for it.
async fn redraw_error(
    state: &AppState,
    shown: ErrorShown,
    uri: axum::http::Uri,
    headers: HeaderMap,
    csrf: &str,
) -> Response {
    let mut request = Request::new(());
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    let (mut parts, ()) = request.into_parts();
    parts.extensions.insert(CsrfToken(csrf.to_owned()));
    let viewer = match PageParts::from_request_parts(&mut parts, state).await {
        Ok(page_parts) => page_parts.viewer,
        Err(_) => Viewer::default(),
    };
    shown.render(parts.uri.path(), csrf.to_owned(), viewer)
}

fn with_headers(mut response: Response, new_csrf: Option<String>) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(value) = new_csrf.and_then(|t| set_cookie(CSRF_COOKIE, &t, 12 * 3600)) {
        headers.append(header::SET_COOKIE, value);
    }
    response
}

/// Who is looking, for the header of every page.
#[derive(Clone, Debug, Default)]
pub struct Viewer {
    /// The signed-in buyer's name.
    pub buyer: Option<String>,
    /// The signed-in vendor member (`email at vendor`).
    pub member: Option<String>,
    /// The signed-in member's vendor slug (they see its unpublished listings).
    pub member_vendor: Option<String>,
}

/// What every page's layout needs.
#[derive(Clone, Debug)]
pub struct Page {
    /// The `<title>` and first heading.
    pub title: String,
    /// The CSRF token for the page's forms.
    pub csrf: String,
    /// Who is signed in.
    pub viewer: Viewer,
    /// A one-line notice (the outcome of the last action).
    pub notice: Option<String>,
    /// Which part of the site: `market`, `account` or `console` (for the navigation).
    pub section: &'static str,
}

impl Page {
    /// A page in `section` titled `title`.
    pub fn new(parts: &PageParts, section: &'static str, title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            csrf: parts.csrf.clone(),
            viewer: parts.viewer.clone(),
            notice: parts.notice.clone(),
            section,
        }
    }
}

/// What a page handler extracts once: the CSRF token, who is signed in, and a notice passed
/// in the query string after a redirect (`?done=...`).
#[derive(Clone, Debug)]
pub struct PageParts {
    /// The CSRF token.
    pub csrf: String,
    /// Who is signed in.
    pub viewer: Viewer,
    /// The notice.
    pub notice: Option<String>,
}

impl FromRequestParts<AppState> for PageParts {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        let buyer = buyer::current(state, &parts.headers).await?;
        let member = console::current_member(state, parts).await;
        let notice = parts
            .uri
            .query()
            .and_then(|q| form_field(q.as_bytes(), "done"))
            .map(|code| notice_text(&code).to_owned());
        Ok(Self {
            csrf,
            viewer: Viewer {
                buyer: buyer.map(|b| b.name),
                member: member
                    .as_ref()
                    .map(|m| format!("{} at {}", m.email, m.vendor_slug)),
                member_vendor: member.map(|m| m.vendor_slug),
            },
            notice: notice.filter(|n| !n.is_empty()),
        })
    }
}

/// The notices a redirect may ask for, by code: a page never echoes text from the URL.
fn notice_text(code: &str) -> &'static str {
    match code {
        "revoke" => "The license is revoked. Agents learn it at their next check-in.",
        "suspend" => "The license is suspended.",
        "reinstate" => "The license is active again.",
        "renew" => "The license is renewed; its new file is ready to download.",
        "issue" => "The license is issued.",
        "listed" => "The listing is published on the marketplace.",
        "unlisted" => "The listing is off the marketplace. Existing licenses are unaffected.",
        "saved" => "The listing is saved.",
        "promoted" => {
            "The release is on the channel: the portal signed it with the release key it holds for you."
        }
        "yanked" => {
            "The release is yanked: the portal signed it with the release key it holds for you. Installers refuse it and show your reason."
        }
        "signup" => "Welcome. Pick a plan marked trial on an app's page to start a trial.",
        "trial" => "Your trial license is ready.",
        "verified" => "Your e-mail is confirmed. You can start trials now.",
        "forgot" => {
            "If an account uses that address, a link to choose a new password is on its way: it works once, for an hour."
        }
        "reset" => "Your password is changed, and other sessions are signed out. Sign in with it.",
        "member-role" => "The role is changed; the member's sessions and tokens ended.",
        "member-disable" => "The member is disabled; their sessions and tokens ended.",
        "member-enable" => "The member is enabled again. Their old tokens stay revoked.",
        "member-remove" => "The member is removed; their sessions ended and tokens are deleted.",
        "webhook-test" => "A webhook.test event is on its way; reload to see its delivery.",
        "webhook-remove" => "The endpoint is removed; its pending deliveries are cancelled.",
        "sso-saved" => "The single sign-on settings are saved.",
        "sso-removed" => "Single sign-on is removed; members sign in with passwords again.",
        "webhook-redeliver" => "The delivery is queued again, with the same webhook-id.",
        _ => "",
    }
}

/// Renders a template into an HTML response.
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => WebError::from(DomainError::internal(e)).into_response(),
    }
}

/// A redirect after a post (303: the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// An error as a page: what happened and what to do.
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    title: String,
    detail: String,
    /// Where to send the browser instead (a sign-in page).
    redirect: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    page: Page,
    status: u16,
    detail: &'a str,
    /// Where to go from here: the part of the site the request was for.
    back: (&'static str, &'static str),
}

/// What an error page showed, kept on the response so [`layer`] can draw it again with the
/// visitor's header.
#[derive(Clone, Debug)]
struct ErrorShown {
    status: StatusCode,
    title: String,
    detail: String,
}

impl ErrorShown {
    fn render(&self, path: &str, csrf: String, viewer: Viewer) -> Response {
        let (section, back) = if path.starts_with("/console") {
            ("console", ("/console", "Back to the console"))
        } else if path.starts_with("/account") {
            ("account", ("/account", "Back to my licenses"))
        } else {
            ("market", ("/", "Back to the marketplace"))
        };
        let page = ErrorPage {
            page: Page {
                title: self.title.clone(),
                csrf,
                viewer,
                notice: None,
                section,
            },
            status: self.status.as_u16(),
            detail: &self.detail,
            back,
        };
        let html = page.render().unwrap_or_else(|_| self.detail.clone());
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response();
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl WebError {
    /// An error page.
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title: title.to_owned(),
            detail: detail.into(),
            redirect: None,
        }
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Refused", detail)
    }

    /// 404 for a page.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!(
                "There is no such {what}, or it is not yours to see. Check the address, or start from the marketplace."
            ),
        )
    }

    /// Send the browser to `to` (a sign-in page) instead.
    pub fn redirect(to: String) -> Self {
        Self {
            status: StatusCode::SEE_OTHER,
            title: String::new(),
            detail: String::new(),
            redirect: Some(to),
        }
    }
}

impl From<DomainError> for WebError {
    fn from(e: DomainError) -> Self {
        let status = e.status();
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::CONFLICT => "Not possible now",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::UNAUTHORIZED => "Sign in first",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "Something is not right",
            s if s.is_server_error() => "The portal failed",
            _ => "Error",
        };
        let detail = if status.is_server_error() {
            // The cause is logged with the request id; the page does not show internals.
            "The portal could not finish this. Nothing was changed; try again in a minute, and tell the portal's operator if it keeps happening.".to_owned()
        } else {
            e.detail
        };
        Self::new(status, title, detail)
    }
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> Self {
        DomainError::internal(format!("{e:#}")).into()
    }
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        DomainError::from(e).into()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Some(to) = self.redirect {
            return see_other(&to);
        }
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "page failed");
        }
        ErrorShown {
            status: self.status,
            title: self.title,
            detail: self.detail,
        }
        .render("/", String::new(), Viewer::default())
    }
}

/// The HTML 404 for paths outside the API, drawn with the visitor's header when they are
/// signed in.
pub async fn not_found_page(
    state: &AppState,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let shown = ErrorShown {
        status: StatusCode::NOT_FOUND,
        title: "Page not found".to_owned(),
        detail: "There is no page at this address. Start from the marketplace, or check the address for typos.".to_owned(),
    };
    let response = if signed_in(&headers) {
        let csrf = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
        redraw_error(state, shown, uri, headers, &csrf).await
    } else {
        shown.render(uri.path(), String::new(), Viewer::default())
    };
    with_headers(response, None)
}

/// A form body; a malformed one is a page saying which field is wrong.
pub struct WebForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for WebForm<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, WebError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(v)| WebForm(v))
            .map_err(|rejection| {
                WebError::new(
                    StatusCode::BAD_REQUEST,
                    "Something is not right",
                    format!(
                        "The form could not be read ({}). Go back, check the fields and send it again.",
                        rejection.body_text()
                    ),
                )
            })
    }
}

/// Unix seconds as a date (`2026-11-27`), for tables.
pub fn date(secs: i64) -> String {
    crate::server::base::utc_date(secs)
}

/// Unix seconds as date and time in UTC.
pub fn datetime(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| "-".to_owned())
}

/// Percent-encodes a path or query part.
pub fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
