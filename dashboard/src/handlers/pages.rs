//! The pages: the overview of every rollout the viewer may list, and one rollout's
//! detail. Their live parts are rendered here too, for the pages and for
//! [`super::streams`].

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use maud::Markup;
use sluice_controller::actions::UserAction;

use super::session::{Viewer, may, viewer};
use super::{AppState, Refusal, html};
use crate::auth::{Access, DashboardAction, Denied};
use crate::views::{self, ActionsState, Filter};

/// The namespaces whose rollouts the viewer may list, among those in the cache (and
/// within the filter). Err when they may list none of them.
async fn listable_namespaces(
    state: &AppState,
    viewer: &Viewer,
    only: Option<&str>,
) -> Result<BTreeSet<String>, Refusal> {
    let cached: BTreeSet<String> = state
        .0
        .caches
        .all_rollouts()
        .iter()
        .filter_map(|r| r.namespace())
        .chain(state.0.options.namespace.clone())
        .collect();
    let wanted: BTreeSet<String> = match only {
        Some(ns) => BTreeSet::from([ns.to_string()]),
        None => cached,
    };
    // A cluster-wide grant answers for every namespace in one review.
    let cluster_wide = Access::list(None);
    if only.is_none()
        && state.0.options.namespace.is_none()
        && may(state, viewer, &cluster_wide).await?
    {
        return Ok(wanted);
    }
    let checks = wanted.iter().map(|ns| async move {
        may(state, viewer, &Access::list(Some(ns)))
            .await
            .map(|ok| ok.then(|| ns.clone()))
    });
    let mut allowed = BTreeSet::new();
    for result in futures::future::join_all(checks).await {
        if let Some(ns) = result? {
            allowed.insert(ns);
        }
    }
    // Until the caches have listed once, an empty answer may only mean "not loaded yet":
    // show the loading page; its live stream decides once they have.
    if allowed.is_empty() && !state.0.caches.is_ready() {
        return Ok(allowed);
    }
    if allowed.is_empty() {
        let access = match only.or(state.0.options.namespace.as_deref()) {
            Some(ns) => Access::list(Some(ns)),
            None => cluster_wide,
        };
        return Err(Denied::missing(&access).into());
    }
    Ok(allowed)
}

/// The overview's live part and the namespaces for its filter.
pub(super) async fn render_overview(
    state: &AppState,
    viewer: &Viewer,
    filter: &Filter,
) -> Result<(Markup, Vec<String>), Refusal> {
    let namespaces = listable_namespaces(state, viewer, filter.ns.as_deref()).await?;
    let rollouts: Vec<_> = state
        .0
        .caches
        .all_rollouts()
        .into_iter()
        .filter(|g| {
            let ns = g.namespace().unwrap_or_default();
            let phase =
                g.0.as_ref()
                    .ok()
                    .and_then(|r| r.status.as_ref())
                    .and_then(|s| s.phase);
            namespaces.contains(&ns) && filter.matches(&ns, &g.name_any(), phase)
        })
        .collect();
    Ok((
        views::overview_live(&state.0.caches, &rollouts, Timestamp::now()),
        namespaces.into_iter().collect(),
    ))
}

pub(super) async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(filter): Query<Filter>,
) -> Response {
    let filter = filter.normalized();
    let next = match filter.query() {
        q if q.is_empty() => "/".to_string(),
        q => format!("/?{q}"),
    };
    let viewer = match viewer(&state, &headers, &jar, &next).await {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    match render_overview(&state, &viewer, &filter).await {
        Ok((live, namespaces)) => {
            let page = views::overview_page(
                viewer.page(&state, "Rollouts".into()),
                &filter,
                &namespaces,
                live,
            );
            viewer.finish(html(StatusCode::OK, page))
        }
        Err(refusal) => refusal.page(&state, &viewer),
    }
}

/// Renders the detail page's live part, or why it cannot be shown.
pub(super) async fn render_detail(
    state: &AppState,
    viewer: &Viewer,
    ns: &str,
    name: &str,
) -> Result<
    (
        Markup,
        Arc<kube::core::DeserializeGuard<sluice_api::Rollout>>,
    ),
    Refusal,
> {
    if let Some(only) = &state.0.options.namespace
        && only != ns
    {
        return Err(Refusal::NotFound(format!(
            "this dashboard shows namespace {only} only"
        )));
    }
    let access = Access::get(ns, name);
    if !may(state, viewer, &access).await? {
        return Err(Denied::missing(&access).into());
    }
    let Some(guard) = state.0.caches.rollout(ns, name) else {
        return Err(Refusal::NotFound(format!("rollout {ns}/{name} not found")));
    };
    let live = match &guard.0 {
        Ok(r) => views::detail_live(&state.0.caches, r, Timestamp::now()),
        Err(e) => maud::html! { p.error { "This Rollout cannot be read: " (e.to_string()) } },
    };
    Ok((live, guard))
}

pub(super) async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let next = format!("/rollouts/{ns}/{name}");
    let viewer = match viewer(&state, &headers, &jar, &next).await {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    let (live, guard) = match render_detail(&state, &viewer, &ns, &name).await {
        Ok(ok) => ok,
        Err(refusal) => return refusal.page(&state, &viewer),
    };
    let actions = if state.0.options.read_only {
        ActionsState::Hidden("Read-only mode: this dashboard does not change rollouts.".into())
    } else {
        let needed = Access::for_action(DashboardAction::User(UserAction::Promote), &ns, &name);
        let mut allowed = true;
        for access in &needed {
            match may(&state, &viewer, access).await {
                Ok(ok) => allowed &= ok,
                Err(refusal) => return refusal.into_response(),
            }
        }
        // Undo changes the spec, which a viewer who may promote need not be allowed.
        let undo = match &guard.0 {
            Ok(r) if allowed => {
                let mut may_undo = true;
                for access in Access::for_action(DashboardAction::Undo { revision: 0 }, &ns, &name)
                {
                    match may(&state, &viewer, &access).await {
                        Ok(ok) => may_undo &= ok,
                        Err(refusal) => return refusal.into_response(),
                    }
                }
                if may_undo {
                    let sets = state.0.caches.replica_sets_of(r);
                    views::undo_choices(r, sets.iter().map(|rs| rs.as_ref()))
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        if allowed {
            ActionsState::Allowed {
                csrf: viewer
                    .session
                    .as_ref()
                    .map(|s| s.csrf.clone())
                    .unwrap_or_default(),
                undo,
            }
        } else {
            ActionsState::Hidden(format!(
                "You may view this rollout but not act on it: that needs patch on rollouts/status in namespace {ns}."
            ))
        }
    };
    let page = match &guard.0 {
        Ok(r) => views::detail_page(viewer.page(&state, name.clone()), r, &actions, live),
        Err(_) => views::layout(viewer.page(&state, name.clone()), live),
    };
    viewer.finish(html(StatusCode::OK, page))
}
