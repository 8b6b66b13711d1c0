//! The routes. Every page and stream resolves who is asking (session cookie or bearer
//! header), asks the apiserver whether they may see it (SubjectAccessReview, cached
//! briefly), and renders from the caches. Every mutation checks origin, CSRF token and
//! RBAC before calling the action module.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use futures::Stream;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use maud::Markup;
use serde::Deserialize;
use sluice_controller::actions::UserAction;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::Options;
use crate::auth::{
    Access, AuthMode, Authorizer, Cluster, Denied, SESSION_COOKIE, Session, Sessions, TokenCache,
    User, bearer, check_same_origin, csrf_matches, loopback_host,
};
use crate::cache::Caches;
use crate::views::{self, ActionsState, Filter, Page};

/// Everything the routes share.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    caches: Caches,
    cluster: Arc<dyn Cluster>,
    options: Options,
    sessions: Sessions,
    authorizer: Authorizer,
    tokens: TokenCache,
    /// Becomes true at shutdown: live streams end so the server can stop.
    stop: watch::Receiver<bool>,
}

impl AppState {
    pub fn new(
        caches: Caches,
        cluster: Arc<dyn Cluster>,
        options: Options,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let sessions = Sessions::new(options.session_ttl);
        AppState(Arc::new(Inner {
            caches,
            cluster,
            options,
            sessions,
            authorizer: Authorizer::default(),
            tokens: TokenCache::default(),
            stop,
        }))
    }
}

/// The dashboard's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/sse/overview", get(overview_stream))
        .route("/rollouts/{ns}/{name}", get(detail))
        .route("/sse/rollouts/{ns}/{name}", get(detail_stream))
        .route("/rollouts/{ns}/{name}/actions/{action}", post(act))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

async fn css() -> Response {
    static_asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    static_asset("text/javascript; charset=utf-8", JS)
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Headers on every response: a strict Content-Security-Policy (only the dashboard's own
/// script and stylesheet), no framing, no sniffing, no referrer to other sites, and no
/// caching of pages that show cluster state.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it Chromium sends `Origin: null` on form posts, which the
    // origin check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Who is asking.
struct Viewer {
    user: User,
    /// None for bearer-header requests.
    session: Option<Session>,
    /// A new session's cookie, to set on the response (no-auth mode).
    set_cookie: Option<String>,
}

impl Viewer {
    fn page(&self, state: &AppState, title: String) -> Page<'_> {
        let flash = self
            .session
            .as_ref()
            .and_then(|s| state.0.sessions.take_flash(&s.id));
        Page {
            title,
            user: Some(&self.user),
            csrf: self.session.as_ref().map(|s| s.csrf.as_str()),
            flash,
            auth_enabled: state.0.options.auth == AuthMode::Token,
            read_only: state.0.options.read_only,
        }
    }

    fn finish(&self, mut response: Response) -> Response {
        if let Some(cookie) = &self.set_cookie
            && let Ok(v) = HeaderValue::from_str(cookie)
        {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        response
    }
}

fn session_cookie(options: &Options, id: &str) -> String {
    Cookie::build((SESSION_COOKIE, id.to_string()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(options.secure_cookie)
        .path("/")
        .max_age(cookie_duration(options.session_ttl))
        .build()
        .to_string()
}

fn cookie_duration(d: Duration) -> cookie::time::Duration {
    cookie::time::Duration::seconds(d.as_secs().min(i64::MAX as u64) as i64)
}

fn expired_cookie(options: &Options) -> String {
    Cookie::build((SESSION_COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(options.secure_cookie)
        .path("/")
        .max_age(cookie_duration(Duration::ZERO))
        .build()
        .to_string()
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// 401 with the sign-in form (browsers show it; scripts read the status).
fn unauthenticated(next: &str, error: Option<&str>) -> Response {
    let mut r = html(StatusCode::UNAUTHORIZED, views::login_page(error, next));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"sluice dashboard\""),
    );
    r
}

fn forbidden_page(state: &AppState, viewer: &Viewer, message: &str) -> Response {
    viewer.finish(html(
        StatusCode::FORBIDDEN,
        views::message_page(
            viewer.page(state, "Not allowed".into()),
            "Not allowed",
            message,
        ),
    ))
}

/// Resolves the viewer, or the response that refuses them.
async fn viewer(
    state: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
    next: &str,
) -> Result<Viewer, Response> {
    let inner = &state.0;
    let cookie_id = jar.get(SESSION_COOKIE).map(|c| c.value().to_string());
    match inner.options.auth {
        AuthMode::None => {
            if !loopback_host(headers) {
                return Err(plain(
                    StatusCode::MISDIRECTED_REQUEST,
                    "without authentication the dashboard answers only to localhost names",
                ));
            }
            if let Some(id) = cookie_id
                && let Some(session) = inner.sessions.get(&id, inner.cluster.as_ref()).await
            {
                return Ok(Viewer {
                    user: session.user.clone(),
                    session: Some(session),
                    set_cookie: None,
                });
            }
            // A session only to carry the CSRF token and confirmations.
            let session = inner
                .sessions
                .create(User::anonymous(), None)
                .map_err(|e| plain(StatusCode::SERVICE_UNAVAILABLE, e))?;
            Ok(Viewer {
                user: session.user.clone(),
                set_cookie: Some(session_cookie(&inner.options, &session.id)),
                session: Some(session),
            })
        }
        AuthMode::Token => {
            if let Some(token) = bearer(headers) {
                return match inner.tokens.review(inner.cluster.as_ref(), &token).await {
                    Ok(Some(user)) => Ok(Viewer {
                        user,
                        session: None,
                        set_cookie: None,
                    }),
                    Ok(None) => Err(unauthenticated(
                        next,
                        Some("The API server did not accept this token."),
                    )),
                    Err(e) => Err(plain(StatusCode::SERVICE_UNAVAILABLE, e)),
                };
            }
            if let Some(id) = cookie_id
                && let Some(session) = inner.sessions.get(&id, inner.cluster.as_ref()).await
            {
                return Ok(Viewer {
                    user: session.user.clone(),
                    session: Some(session),
                    set_cookie: None,
                });
            }
            Err(unauthenticated(next, None))
        }
    }
}

/// Whether the viewer may do `access`; no-auth mode allows everything the dashboard can.
async fn may(state: &AppState, viewer: &Viewer, access: &Access) -> Result<bool, Response> {
    if state.0.options.auth == AuthMode::None {
        return Ok(true);
    }
    state
        .0
        .authorizer
        .allowed(state.0.cluster.as_ref(), &viewer.user, access)
        .await
        .map_err(|e| {
            warn!(error = %e, "access check failed");
            plain(StatusCode::SERVICE_UNAVAILABLE, e)
        })
}

/// The namespaces whose rollouts the viewer may list, among those in the cache (and
/// within the filter). Err when they may list none of them.
async fn listable_namespaces(
    state: &AppState,
    viewer: &Viewer,
    only: Option<&str>,
) -> Result<BTreeSet<String>, Result<Denied, Response>> {
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
        && may(state, viewer, &cluster_wide).await.map_err(Err)?
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
        if let Some(ns) = result.map_err(Err)? {
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
        return Err(Ok(Denied::missing(&access)));
    }
    Ok(allowed)
}

/// The overview's live part and the namespaces for its filter.
async fn render_overview(
    state: &AppState,
    viewer: &Viewer,
    filter: &Filter,
) -> Result<(Markup, Vec<String>), Result<Denied, Response>> {
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

async fn overview(
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
        Err(r) => return r,
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
        Err(Ok(denied)) => forbidden_page(&state, &viewer, &denied.0),
        Err(Err(r)) => r,
    }
}

/// Renders the detail page's live part, or why it cannot be shown.
async fn render_detail(
    state: &AppState,
    viewer: &Viewer,
    ns: &str,
    name: &str,
) -> Result<
    (
        Markup,
        Arc<kube::core::DeserializeGuard<sluice_api::Rollout>>,
    ),
    Result<(StatusCode, String), Response>,
> {
    if let Some(only) = &state.0.options.namespace
        && only != ns
    {
        return Err(Ok((
            StatusCode::NOT_FOUND,
            format!("this dashboard shows namespace {only} only"),
        )));
    }
    let access = Access::get(ns, name);
    if !may(state, viewer, &access).await.map_err(Err)? {
        return Err(Ok((StatusCode::FORBIDDEN, Denied::missing(&access).0)));
    }
    let Some(guard) = state.0.caches.rollout(ns, name) else {
        return Err(Ok((
            StatusCode::NOT_FOUND,
            format!("rollout {ns}/{name} not found"),
        )));
    };
    let live = match &guard.0 {
        Ok(r) => views::detail_live(&state.0.caches, r, Timestamp::now()),
        Err(e) => maud::html! { p.error { "This Rollout cannot be read: " (e.to_string()) } },
    };
    Ok((live, guard))
}

async fn detail(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let next = format!("/rollouts/{ns}/{name}");
    let viewer = match viewer(&state, &headers, &jar, &next).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (live, guard) = match render_detail(&state, &viewer, &ns, &name).await {
        Ok(ok) => ok,
        Err(Ok((status, message))) => {
            let title = if status == StatusCode::FORBIDDEN {
                "Not allowed"
            } else {
                "Not found"
            };
            return viewer.finish(html(
                status,
                views::message_page(viewer.page(&state, title.into()), title, &message),
            ));
        }
        Err(Err(r)) => return r,
    };
    let actions = if state.0.options.read_only {
        ActionsState::Hidden("Read-only mode: this dashboard does not change rollouts.".into())
    } else {
        let needed = Access::for_action(UserAction::Promote, &ns, &name);
        let mut allowed = true;
        for access in &needed {
            match may(&state, &viewer, access).await {
                Ok(ok) => allowed &= ok,
                Err(r) => return r,
            }
        }
        if allowed {
            ActionsState::Allowed {
                csrf: viewer
                    .session
                    .as_ref()
                    .map(|s| s.csrf.clone())
                    .unwrap_or_default(),
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

/// Why a live stream sends nothing this time.
enum StreamEnd {
    /// The viewer lost access or signed out: the page reloads to show why, and the
    /// stream ends.
    Reload(String),
    /// The apiserver could not answer an access check: keep what the page shows and try
    /// again at the next change or tick.
    Skip,
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

/// Whether the viewer's session is still valid (sign-out, expiry, revoked token).
async fn still_signed_in(state: &AppState, viewer: &Viewer, token: Option<&str>) -> bool {
    match (&viewer.session, token) {
        (Some(session), _) => state
            .0
            .sessions
            .get(&session.id, state.0.cluster.as_ref())
            .await
            .is_some(),
        (None, Some(token)) => matches!(
            state.0.tokens.review(state.0.cluster.as_ref(), token).await,
            Ok(Some(u)) if u == viewer.user
        ),
        (None, None) => true,
    }
}

async fn overview_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Query(filter): Query<Filter>,
) -> Response {
    let filter = filter.normalized();
    let viewer = match viewer(&state, &headers, &jar, "/").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = render_overview(&state, &viewer, &filter).await {
        return match e {
            Ok(denied) => plain(StatusCode::FORBIDDEN, denied.0),
            Err(r) => r,
        };
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
                Err(Ok(denied)) => Err(StreamEnd::Reload(denied.0)),
                Err(Err(_)) => Err(StreamEnd::Skip),
            }
        }
    })
}

async fn detail_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let viewer = match viewer(&state, &headers, &jar, "/").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = render_detail(&state, &viewer, &ns, &name).await {
        return match e {
            Ok((status, message)) => plain(status, message),
            Err(r) => r,
        };
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
                Err(Ok((_, message))) => Err(StreamEnd::Reload(message)),
                Err(Err(_)) => Err(StreamEnd::Skip),
            }
        }
    })
}

#[derive(Debug, Default, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    Path((ns, name, word)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let Some(action) = UserAction::parse(&word) else {
        return plain(StatusCode::NOT_FOUND, format!("no action {word:?}"));
    };
    if state.0.options.read_only {
        return plain(
            StatusCode::FORBIDDEN,
            "read-only mode: this dashboard does not change rollouts",
        );
    }
    let detail_url = format!("/rollouts/{ns}/{name}");
    let viewer = match viewer(&state, &headers, &jar, &detail_url).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(why) = check_same_origin(&headers, viewer.session.is_some()) {
        return plain(StatusCode::FORBIDDEN, why);
    }
    if let Some(session) = &viewer.session {
        let form: CsrfForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        if !csrf_matches(&form.csrf, &session.csrf) {
            return plain(
                StatusCode::FORBIDDEN,
                "request refused: missing or wrong CSRF token (reload the page and try again)",
            );
        }
    }
    for access in Access::for_action(action, &ns, &name) {
        match may(&state, &viewer, &access).await {
            Ok(true) => {}
            Ok(false) => return plain(StatusCode::FORBIDDEN, Denied::missing(&access).0),
            Err(r) => return r,
        }
    }
    let result = state
        .0
        .cluster
        .act(ns.clone(), name.clone(), action, viewer.user.name.clone())
        .await;
    let message = match &result {
        Ok(()) => {
            info!(user = %viewer.user.name, rollout = %format!("{ns}/{name}"), action = %word, "dashboard action");
            format!("Rollout {ns}/{name} {}.", action.done())
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

#[derive(Debug, Default, Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Only paths on this site: `/x`, never `//host` or `/\host`, which browsers treat as
/// another origin.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => n.into(),
        _ => "/".into(),
    }
}

async fn login_form(State(state): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    if state.0.options.auth == AuthMode::None {
        return Redirect::to("/").into_response();
    }
    html(
        StatusCode::OK,
        views::login_page(None, &safe_next(q.next.as_deref())),
    )
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if state.0.options.auth == AuthMode::None {
        return Redirect::to("/").into_response();
    }
    // Login CSRF: another site must not sign a browser in as someone else.
    if let Err(why) = check_same_origin(&headers, true) {
        return plain(StatusCode::FORBIDDEN, why);
    }
    let form: LoginForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let next = safe_next(form.next.as_deref());
    let token = form.token.trim().to_string();
    if token.is_empty() {
        return unauthenticated(&next, Some("Paste a token to sign in."));
    }
    match state.0.cluster.review_token(token.clone()).await {
        Ok(Some(user)) => match state.0.sessions.create(user, Some(token)) {
            Ok(session) => {
                info!(user = %session.user.name, "signed in to the dashboard");
                let mut r = Redirect::to(&next).into_response();
                if let Ok(v) = HeaderValue::from_str(&session_cookie(&state.0.options, &session.id))
                {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
                r
            }
            Err(e) => plain(StatusCode::SERVICE_UNAVAILABLE, e),
        },
        Ok(None) => unauthenticated(&next, Some("The API server did not accept this token.")),
        Err(e) => {
            warn!(error = %e, "token review failed");
            let mut r = unauthenticated(
                &next,
                Some("The API server could not check the token; try again."),
            );
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    }
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    if let Err(why) = check_same_origin(&headers, true) {
        return plain(StatusCode::FORBIDDEN, why);
    }
    let form: CsrfForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Some(id) = jar.get(SESSION_COOKIE).map(|c| c.value().to_string())
        && let Some(session) = state.0.sessions.get(&id, state.0.cluster.as_ref()).await
    {
        if !csrf_matches(&form.csrf, &session.csrf) {
            return plain(
                StatusCode::FORBIDDEN,
                "request refused: missing or wrong CSRF token",
            );
        }
        state.0.sessions.remove(&id);
    }
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&expired_cookie(&state.0.options)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
