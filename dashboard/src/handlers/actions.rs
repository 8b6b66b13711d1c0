//! The actions (promote, abort, retry, ..., undo) a viewer takes from a rollout's page:
//! origin, CSRF token and RBAC checked, then the action module, as the dashboard, on
//! their behalf.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use sluice_controller::actions::UserAction;
use tracing::{info, warn};

use super::session::{may, viewer};
use super::{AppState, Refusal, plain};
use crate::auth::{Access, DashboardAction, Denied, check_same_origin, csrf_matches};

/// An action form's fields: the session's CSRF token, and for undo the revision.
#[derive(Debug, Default, serde::Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    revision: Option<String>,
}

/// The action a URL word and form name, or why not.
fn parse_action(word: &str, form: &ActionForm) -> Result<DashboardAction, Refusal> {
    if word == "undo" {
        let revision = form.revision.as_deref().map(str::trim).unwrap_or_default();
        return match revision.parse::<i64>() {
            Ok(revision) if revision > 0 => Ok(DashboardAction::Undo { revision }),
            _ if revision.is_empty() => Err(Refusal::BadRequest(
                "undo needs the revision to roll back to (form field revision)".into(),
            )),
            _ => Err(Refusal::BadRequest(format!(
                "revision {revision:?} is not a revision number"
            ))),
        };
    }
    UserAction::parse(word)
        .map(DashboardAction::User)
        .ok_or_else(|| Refusal::NotFound(format!("no action {word:?}")))
}

pub(super) async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path((ns, name, word)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let form: ActionForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let action = match parse_action(&word, &form) {
        Ok(action) => action,
        Err(refusal) => return refusal.into_response(),
    };
    if state.0.options.read_only {
        return Refusal::Forbidden(
            "read-only mode: this dashboard does not change rollouts".into(),
        )
        .into_response();
    }
    let detail_url = format!("/rollouts/{ns}/{name}");
    let viewer = match viewer(&state, &headers, &jar, &detail_url).await {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(why) = check_same_origin(&headers, viewer.session.is_some()) {
        return Refusal::Forbidden(why).into_response();
    }
    if let Some(session) = &viewer.session
        && !csrf_matches(&form.csrf, &session.csrf)
    {
        return Refusal::Forbidden(
            "request refused: missing or wrong CSRF token (reload the page and try again)".into(),
        )
        .into_response();
    }
    for access in Access::for_action(action, &ns, &name) {
        match may(&state, &viewer, &access).await {
            Ok(true) => {}
            Ok(false) => return Refusal::from(Denied::missing(&access)).into_response(),
            Err(refusal) => return refusal.into_response(),
        }
    }
    let result = state
        .0
        .cluster
        .act(ns.clone(), name.clone(), action, viewer.user.name.clone())
        .await;
    let message = match &result {
        Ok(done) => {
            info!(user = %viewer.user.name, rollout = %format!("{ns}/{name}"), action = %word, "dashboard action");
            format!("Rollout {ns}/{name} {done}.")
        }
        Err(e) => {
            warn!(user = %viewer.user.name, rollout = %format!("{ns}/{name}"), action = %word, error = %e, "dashboard action failed");
            format!("Could not {word} rollout {ns}/{name}: {e}")
        }
    };
    let status = if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    // Without JavaScript the form posts and the browser follows the redirect to the
    // detail page, which shows the confirmation once; with it (and for scripts) the
    // confirmation is the response.
    match &viewer.session {
        Some(session) if !headers.contains_key("sluice-fetch") => {
            state.0.sessions.set_flash(&session.id, message);
            viewer.finish(Redirect::to(&detail_url).into_response())
        }
        _ => viewer.finish(plain(status, message)),
    }
}
