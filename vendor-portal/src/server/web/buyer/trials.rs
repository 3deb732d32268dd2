//! `POST /apps/{vendor}/{app}/trial`: a signed-in buyer starts a trial. The rules (one per app
//! and account, the plan must be a trial plan, the rate limit) live in `domain::trials`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::required;
use super::{WebError, WebForm, see_other};
use crate::server::domain::access::RequestMeta;
use crate::server::domain::trials::{self, TrialBuyer, TrialOf};
use crate::server::state::AppState;

/// The trial form.
#[derive(Debug, Deserialize)]
pub struct TrialForm {
    /// The trial plan's slug.
    #[serde(default)]
    pub plan: String,
}

/// `POST /apps/{vendor}/{app}/trial`.
pub async fn start_trial(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    Path((vendor, app)): Path<(String, String)>,
    WebForm(form): WebForm<TrialForm>,
) -> Result<Response, WebError> {
    let buyer = required(&state, &headers, &format!("/apps/{vendor}/{app}")).await?;
    let for_buyer = TrialBuyer {
        id: &buyer.id,
        email: &buyer.email,
        company: &buyer.company,
        aws_account: &buyer.aws_account,
        email_verified: buyer.email_verified,
    };
    let of = TrialOf {
        vendor: &vendor,
        app: &app,
        plan: &form.plan,
    };
    let license_id = trials::start(&state, for_buyer, meta, of).await?;
    Ok(see_other(&format!(
        "/account/licenses/{license_id}?done=trial"
    )))
}
