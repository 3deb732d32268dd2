//! The console's members page: owners change roles, disable and enable, reset passwords and
//! remove members, through the same domain functions as the API (`domain::members`), so the
//! console can do nothing the API cannot, and it is audited the same way.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::console::Member;
use super::{Page, PageParts, WebError, WebForm, render, see_other};
use crate::server::domain::members::{self, MemberInfo, MemberUpdate, PasswordReset};
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::ApiPath;
use crate::server::state::AppState;

#[derive(Template)]
#[template(path = "console_members.html")]
struct MembersPage {
    page: Page,
    members: Vec<MemberInfo>,
    owner: bool,
    roles: [&'static str; 3],
    /// A generated password to show once: (email, password).
    password: Option<(String, String)>,
}

async fn show(
    state: &AppState,
    parts: &PageParts,
    caller: &Caller,
    password: Option<(String, String)>,
) -> Result<Response, WebError> {
    Ok(render(&MembersPage {
        page: Page::new(parts, "console", "Members"),
        members: members::members_of(state, &caller.vendor_id).await?,
        owner: caller.role == Role::Owner,
        roles: ["owner", "publisher", "support"],
        password,
    }))
}

/// `GET /console/members`.
pub async fn page(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
) -> Result<Response, WebError> {
    show(&state, &parts, &caller, None).await
}

/// The member forms' fields.
#[derive(Debug, Deserialize)]
pub struct MemberForm {
    /// The new role (`role` action).
    #[serde(default)]
    pub role: String,
}

/// `POST /console/members/{id}/{action}`: role, disable, enable, password or remove.
pub async fn action(
    State(state): State<AppState>,
    parts: PageParts,
    Member(caller): Member,
    ApiPath((id, action)): ApiPath<(String, String)>,
    WebForm(form): WebForm<MemberForm>,
) -> Result<Response, WebError> {
    let update = |role: Option<Role>, disabled: Option<bool>| MemberUpdate { role, disabled };
    match action.as_str() {
        "role" => {
            let role = Role::parse(&form.role).ok_or_else(|| {
                WebError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "Something is not right",
                    "Pick a role from the list.",
                )
            })?;
            members::update(&state, &caller, id, update(Some(role), None)).await?;
        }
        "disable" => {
            members::update(&state, &caller, id, update(None, Some(true))).await?;
        }
        "enable" => {
            members::update(&state, &caller, id, update(None, Some(false))).await?;
        }
        "remove" => {
            members::remove(&state, &caller, id).await?;
        }
        "password" => {
            let reply =
                members::reset_password(&state, &caller, None, id, PasswordReset::default())
                    .await?;
            let shown = reply.password.map(|p| (reply.member.email, p));
            return show(&state, &parts, &caller, shown).await;
        }
        _ => return Err(WebError::not_found("member action")),
    }
    Ok(see_other(&format!("/console/members?done=member-{action}")))
}
