//! The console's members page: owners change roles, disable and enable, reset passwords and
//! remove members, through the API's own member handlers (`routes::members`), so the console
//! can do nothing the API cannot, and it is audited the same way.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::console::{Member, json_of};
use super::{Page, PageParts, WebError, WebForm, render, see_other};
use crate::server::http::auth::{Caller, Role};
use crate::server::http::extract::{ApiJson, ApiPath};
use crate::server::routes::members::{self, MemberUpdate, PasswordReset};
use crate::server::routes::vendor::{self, MemberInfo};
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
        members: vendor::members_of(state, &caller.vendor_id).await?,
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
    let update =
        |role: Option<Role>, disabled: Option<bool>| ApiJson(MemberUpdate { role, disabled });
    let st = State(state.clone());
    let path = ApiPath(id);
    match action.as_str() {
        "role" => {
            let role = Role::parse(&form.role).ok_or_else(|| {
                WebError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "Something is not right",
                    "Pick a role from the list.",
                )
            })?;
            members::update(st, caller, path, update(Some(role), None)).await?;
        }
        "disable" => {
            members::update(st, caller, path, update(None, Some(true))).await?;
        }
        "enable" => {
            members::update(st, caller, path, update(None, Some(false))).await?;
        }
        "remove" => {
            members::remove(st, caller, path).await?;
        }
        "password" => {
            let reply = members::reset_password(
                st,
                caller.clone(),
                None,
                path,
                ApiJson(PasswordReset::default()),
            )
            .await?;
            let reply = json_of(reply).await?;
            let shown = reply["password"].as_str().map(|p| {
                (
                    reply["email"].as_str().unwrap_or_default().to_owned(),
                    p.to_owned(),
                )
            });
            return show(&state, &parts, &caller, shown).await;
        }
        _ => return Err(WebError::not_found("member action")),
    }
    Ok(see_other(&format!("/console/members?done=member-{action}")))
}
