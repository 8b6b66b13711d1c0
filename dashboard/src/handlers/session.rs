//! Who is asking: the viewer of a request (session cookie, bearer header, or the
//! anonymous session of no-auth mode), what they may do, and signing in and out.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use tracing::{info, warn};

use super::{AppState, Refusal, html};
use crate::Options;
use crate::auth::{
    Access, AuthMode, SESSION_COOKIE, Session, User, bearer, check_same_origin, csrf_matches,
    loopback_host,
};
use crate::views::{self, Page};

/// Who is asking.
pub(super) struct Viewer {
    pub(super) user: User,
    /// None for bearer-header requests.
    pub(super) session: Option<Session>,
    /// A new session's cookie, to set on the response (no-auth mode).
    set_cookie: Option<String>,
}

impl Viewer {
    pub(super) fn page(&self, state: &AppState, title: String) -> Page<'_> {
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

    pub(super) fn finish(&self, mut response: Response) -> Response {
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

/// 401 with the sign-in form (browsers show it; scripts read the status).
pub(super) fn unauthenticated(next: &str, error: Option<&str>) -> Response {
    let mut r = html(StatusCode::UNAUTHORIZED, views::login_page(error, next));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"sluice dashboard\""),
    );
    r
}

/// Resolves the viewer, or why they are refused.
pub(super) async fn viewer(
    state: &AppState,
    headers: &HeaderMap,
    jar: &CookieJar,
    next: &str,
) -> Result<Viewer, Refusal> {
    let inner = &state.0;
    let cookie_id = jar.get(SESSION_COOKIE).map(|c| c.value().to_string());
    match inner.options.auth {
        AuthMode::None => {
            if !loopback_host(headers) {
                return Err(Refusal::Misdirected(
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
                .map_err(Refusal::Unavailable)?;
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
                    Ok(None) => Err(Refusal::SignIn {
                        next: next.to_string(),
                        error: Some("The API server did not accept this token."),
                    }),
                    Err(e) => Err(Refusal::Unavailable(e)),
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
            Err(Refusal::SignIn {
                next: next.to_string(),
                error: None,
            })
        }
    }
}

/// Whether the viewer may do `access`; no-auth mode allows everything the dashboard can.
pub(super) async fn may(
    state: &AppState,
    viewer: &Viewer,
    access: &Access,
) -> Result<bool, Refusal> {
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
            Refusal::Unavailable(e)
        })
}

/// Whether the viewer's session is still valid (sign-out, expiry, revoked token).
pub(super) async fn still_signed_in(
    state: &AppState,
    viewer: &Viewer,
    token: Option<&str>,
) -> bool {
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

/// The CSRF token a form posts (actions, sign-out).
#[derive(Debug, Default, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NextQuery {
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

pub(super) async fn login_form(
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
) -> Response {
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

pub(super) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.0.options.auth == AuthMode::None {
        return Redirect::to("/").into_response();
    }
    // Login CSRF: another site must not sign a browser in as someone else.
    if let Err(why) = check_same_origin(&headers, true) {
        return Refusal::Forbidden(why).into_response();
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
            Err(e) => Refusal::Unavailable(e).into_response(),
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

pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    if let Err(why) = check_same_origin(&headers, true) {
        return Refusal::Forbidden(why).into_response();
    }
    let form: CsrfForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if let Some(id) = jar.get(SESSION_COOKIE).map(|c| c.value().to_string())
        && let Some(session) = state.0.sessions.get(&id, state.0.cluster.as_ref()).await
    {
        if !csrf_matches(&form.csrf, &session.csrf) {
            return Refusal::Forbidden("request refused: missing or wrong CSRF token".into())
                .into_response();
        }
        state.0.sessions.remove(&id);
    }
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&expired_cookie(&state.0.options)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
