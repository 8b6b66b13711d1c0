//! The live streams (Server-Sent Events) of the pages: the overview's and a rollout's
//! live parts, sent again whenever they change, until the viewer signs out or loses
//! access.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use futures::Stream;
use tokio::sync::watch;

use super::pages::{render_detail, render_overview};
use super::session::{still_signed_in, viewer};
use super::{AppState, Refusal};
use crate::auth::bearer;
use crate::views::Filter;

/// Why a live stream sends nothing this time.
enum StreamEnd {
    /// The viewer lost access or signed out: the page reloads to show why, and the
    /// stream ends.
    Reload(String),
    /// The apiserver could not answer an access check: keep what the page shows and try
    /// again at the next change or tick.
    Skip,
}

impl StreamEnd {
    /// What a refusal met while streaming does: the viewer lost access or the rollout is
    /// gone (reload, to show why), or the apiserver could not answer (skip this time).
    fn after(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Forbidden(why) | Refusal::NotFound(why) => StreamEnd::Reload(why),
            _ => StreamEnd::Skip,
        }
    }
}

/// A live stream: renders on every cache change (coalesced) and every 15 s (ages, and
/// the access check, which re-asks the apiserver when its cached answer expires); sends
/// only what changed.
fn live_stream<F, Fut>(state: AppState, render: F) -> Response
where
    F: Fn(AppState) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, StreamEnd>> + Send + 'static,
{
    struct S<F> {
        state: AppState,
        render: F,
        changes: watch::Receiver<u64>,
        stop: watch::Receiver<bool>,
        last: Option<String>,
        first: bool,
        done: bool,
    }
    let s = S {
        changes: state.0.caches.changes.clone(),
        stop: state.0.stop.clone(),
        state,
        render,
        last: None,
        first: true,
        done: false,
    };
    let stream = futures::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            if !s.first {
                tokio::select! {
                    changed = s.changes.changed() => {
                        if changed.is_err() { return None; }
                        // Coalesce a burst of changes (a list, a step) into one render.
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        s.changes.borrow_and_update();
                    }
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                    _ = s.stop.changed() => return None,
                }
            }
            s.first = false;
            if *s.stop.borrow() {
                return None;
            }
            match (s.render)(s.state.clone()).await {
                Ok(html) => {
                    if s.last.as_deref() == Some(html.as_str()) {
                        continue;
                    }
                    let event = SseEvent::default().event("update").data(&html);
                    s.last = Some(html);
                    return Some((Ok::<_, Infallible>(event), s));
                }
                Err(StreamEnd::Skip) => continue,
                Err(StreamEnd::Reload(why)) => {
                    s.done = true;
                    let event = SseEvent::default().event("reload").data(why);
                    return Some((Ok(event), s));
                }
            }
        }
    });
    sse(stream)
}

fn sse(stream: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(20)))
        .into_response();
    // Proxies such as NGINX buffer responses unless told not to.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

pub(super) async fn overview_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(filter): Query<Filter>,
) -> Response {
    let filter = filter.normalized();
    let viewer = match viewer(&state, &headers, &jar, "/").await {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = render_overview(&state, &viewer, &filter).await {
        return refusal.into_response();
    }
    let token = bearer(&headers);
    let viewer = Arc::new(viewer);
    live_stream(state, move |state| {
        let (viewer, filter, token) = (viewer.clone(), filter.clone(), token.clone());
        async move {
            if !still_signed_in(&state, &viewer, token.as_deref()).await {
                return Err(StreamEnd::Reload("signed out".into()));
            }
            match render_overview(&state, &viewer, &filter).await {
                Ok((live, _)) => Ok(live.into_string()),
                Err(refusal) => Err(StreamEnd::after(refusal)),
            }
        }
    })
}

pub(super) async fn detail_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let viewer = match viewer(&state, &headers, &jar, "/").await {
        Ok(v) => v,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = render_detail(&state, &viewer, &ns, &name).await {
        return refusal.into_response();
    }
    let token = bearer(&headers);
    let viewer = Arc::new(viewer);
    live_stream(state, move |state| {
        let (viewer, ns, name, token) = (viewer.clone(), ns.clone(), name.clone(), token.clone());
        async move {
            if !still_signed_in(&state, &viewer, token.as_deref()).await {
                return Err(StreamEnd::Reload("signed out".into()));
            }
            match render_detail(&state, &viewer, &ns, &name).await {
                Ok((live, _)) => Ok(live.into_string()),
                Err(refusal) => Err(StreamEnd::after(refusal)),
            }
        }
    })
}
