//! The routes, by concern: [`pages`] (the overview and a rollout's detail), [`streams`]
//! (their live Server-Sent Event parts), [`actions`] (promote, abort, ... on behalf of
//! the viewer) and [`session`] (who is asking, sign-in and sign-out, what they may do).
//! Every page and stream resolves who is asking (session cookie or bearer header), asks
//! the apiserver whether they may see it (SubjectAccessReview, cached briefly), and
//! renders from the caches. Every mutation checks origin, CSRF token and RBAC before
//! calling the action module. Every refusal is a [`Refusal`], which renders as the
//! response.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::Markup;
use tokio::sync::watch;

use crate::Options;
use crate::auth::{Authorizer, Cluster, Denied, Sessions, TokenCache};
use crate::cache::Caches;
use crate::views;

mod actions;
mod pages;
mod session;
mod streams;

use session::Viewer;

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
        .route("/", get(pages::overview))
        .route("/sse/overview", get(streams::overview_stream))
        .route("/rollouts/{ns}/{name}", get(pages::detail))
        .route("/sse/rollouts/{ns}/{name}", get(streams::detail_stream))
        .route("/rollouts/{ns}/{name}/actions/{action}", post(actions::act))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");

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

pub(super) fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

pub(super) fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// Why a request gets no page or stream: each renders as its own response, plainly (for
/// streams, actions and scripts) or, through [`Refusal::page`], as an HTML page.
pub(super) enum Refusal {
    /// No one signed in, or a token the apiserver did not accept: 401 with the sign-in
    /// form, which comes back to `next`.
    SignIn {
        next: String,
        error: Option<&'static str>,
    },
    /// Without authentication the dashboard answers only to localhost names: 421.
    Misdirected(&'static str),
    /// The viewer may not do this: 403, saying which permission is missing.
    Forbidden(String),
    /// Not there, or outside the namespace this dashboard shows: 404.
    NotFound(String),
    /// The request itself is incomplete or malformed (an undo without a revision): 400.
    BadRequest(String),
    /// The apiserver could not answer (an access check, a token review) or no session
    /// could be made: 503.
    Unavailable(String),
}

impl From<Denied> for Refusal {
    fn from(denied: Denied) -> Self {
        Refusal::Forbidden(denied.0)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn { next, error } => session::unauthenticated(&next, error),
            Refusal::Misdirected(why) => plain(StatusCode::MISDIRECTED_REQUEST, why),
            Refusal::Forbidden(why) => plain(StatusCode::FORBIDDEN, why),
            Refusal::NotFound(why) => plain(StatusCode::NOT_FOUND, why),
            Refusal::BadRequest(why) => plain(StatusCode::BAD_REQUEST, why),
            Refusal::Unavailable(why) => plain(StatusCode::SERVICE_UNAVAILABLE, why),
        }
    }
}

impl Refusal {
    /// The refusal as a page for `viewer`: "Not allowed" and "Not found" in the layout;
    /// the others as their plain responses.
    fn page(self, state: &AppState, viewer: &Viewer) -> Response {
        let (status, title, message) = match self {
            Refusal::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            Refusal::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            other => return other.into_response(),
        };
        viewer.finish(html(
            status,
            views::message_page(viewer.page(state, title.into()), title, &message),
        ))
    }
}
