//! Who is asking, and what they may do.
//!
//! A user signs in with a Kubernetes bearer token; the dashboard validates it with a
//! TokenReview and keeps, server-side, a session holding the user's identity (the token is
//! reviewed again every few minutes, so a revoked token ends its sessions). Every view
//! and action is checked with a SubjectAccessReview for that user, cached briefly; the
//! dashboard then acts with its own identity. Mutations need the request to come from the
//! dashboard's own origin (Origin / Sec-Fetch-Site) and to carry the session's CSRF token.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use sluice_controller::actions::{self, UserAction};
use subtle::ConstantTimeEq;

/// How users sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A Kubernetes bearer token, validated with TokenReview; SubjectAccessReview per
    /// view and action.
    Token,
    /// Nobody signs in; everyone acts as the dashboard. Only allowed on loopback.
    None,
}

/// An authenticated user, as TokenReview reported them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// The stand-in user of `AuthMode::None`.
    pub fn anonymous() -> Self {
        User {
            name: "local user (no authentication)".into(),
            uid: None,
            groups: Vec::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// What a viewer asks the dashboard to do to one Rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashboardAction {
    /// One of the actions the plugin shares (promote, abort, restart, ...).
    User(UserAction),
    /// Put a previous revision's template back (`kubectl sluice undo --to-revision N`).
    Undo { revision: i64 },
}

impl DashboardAction {
    /// The word in the action's URL.
    pub fn word(self) -> &'static str {
        match self {
            DashboardAction::User(action) => action_word(action),
            DashboardAction::Undo { .. } => "undo",
        }
    }
}

/// One question for a SubjectAccessReview about `sluice.dev` rollouts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Access {
    pub verb: &'static str,
    pub subresource: Option<&'static str>,
    /// None: cluster-wide.
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Access {
    /// List rollouts in a namespace, or in all of them.
    pub fn list(namespace: Option<&str>) -> Self {
        Access {
            verb: "list",
            subresource: None,
            namespace: namespace.map(str::to_string),
            name: None,
        }
    }

    /// Get one rollout.
    pub fn get(namespace: &str, name: &str) -> Self {
        Access {
            verb: "get",
            subresource: None,
            namespace: Some(namespace.into()),
            name: Some(name.into()),
        }
    }

    /// What an action needs: the status actions patch `rollouts/status`; pause and
    /// resume change `spec.paused`, so they also need `patch` on the rollout itself;
    /// restart and undo change only the spec.
    pub fn for_action(action: DashboardAction, namespace: &str, name: &str) -> Vec<Self> {
        let patch = |subresource| Access {
            verb: "patch",
            subresource,
            namespace: Some(namespace.into()),
            name: Some(name.into()),
        };
        match action {
            DashboardAction::User(UserAction::Pause | UserAction::Resume) => {
                vec![patch(Some("status")), patch(None)]
            }
            // spec.restartAt, spec.template.
            DashboardAction::User(UserAction::Restart) | DashboardAction::Undo { .. } => {
                vec![patch(None)]
            }
            DashboardAction::User(_) => vec![patch(Some("status"))],
        }
    }

    fn describe(&self) -> String {
        let resource = match self.subresource {
            Some(sub) => format!("rollouts/{sub}"),
            None => "rollouts".into(),
        };
        let name = self
            .name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        match &self.namespace {
            Some(ns) => format!("{} {resource}{name} in namespace {ns}", self.verb),
            None => format!("{} {resource} in all namespaces", self.verb),
        }
    }
}

/// A refusal, with what the user would need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl Denied {
    pub fn missing(access: &Access) -> Self {
        Denied(format!("you may not {}", access.describe()))
    }
}

/// The apiserver as the dashboard uses it; a trait so the routes can be tested without
/// one.
pub trait Cluster: Send + Sync + 'static {
    /// The user a token belongs to, or None when the apiserver does not accept it.
    fn review_token(&self, token: String) -> BoxFuture<'_, Result<Option<User>, String>>;
    /// Whether the user may do what `access` says.
    fn allowed(&self, user: User, access: Access) -> BoxFuture<'_, Result<bool, String>>;
    /// Applies an action as the dashboard, on behalf of `user` (recorded in an Event);
    /// returns what was done, for the confirmation.
    fn act(
        &self,
        namespace: String,
        name: String,
        action: DashboardAction,
        user: String,
    ) -> BoxFuture<'_, Result<String, String>>;
}

/// The real apiserver, reached with the dashboard's own client.
pub struct KubeCluster {
    client: Client,
    recorder: Recorder,
}

impl KubeCluster {
    pub fn new(client: Client) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "sluice-dashboard".into(),
                instance: std::env::var("HOSTNAME").ok(),
            },
        );
        KubeCluster { client, recorder }
    }
}

impl Cluster for KubeCluster {
    fn review_token(&self, token: String) -> BoxFuture<'_, Result<Option<User>, String>> {
        async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token,
                    audiences: None,
                },
                ..TokenReview::default()
            };
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let reviewed = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("TokenReview failed: {e}"))?;
            let status = reviewed.status.unwrap_or_default();
            if status.authenticated != Some(true) {
                return Ok(None);
            }
            let info = status.user.unwrap_or_default();
            Ok(info.username.map(|name| User {
                name,
                uid: info.uid,
                groups: info.groups.unwrap_or_default(),
                extra: info.extra.unwrap_or_default(),
            }))
        }
        .boxed()
    }

    fn allowed(&self, user: User, access: Access) -> BoxFuture<'_, Result<bool, String>> {
        async move {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.name),
                    uid: user.uid,
                    groups: Some(user.groups),
                    extra: Some(user.extra),
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(sluice_api::GROUP.into()),
                        resource: Some("rollouts".into()),
                        subresource: access.subresource.map(str::to_string),
                        verb: Some(access.verb.into()),
                        namespace: access.namespace,
                        name: access.name,
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let reviewed = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
            Ok(reviewed.status.is_some_and(|s| s.allowed))
        }
        .boxed()
    }

    fn act(
        &self,
        namespace: String,
        name: String,
        action: DashboardAction,
        user: String,
    ) -> BoxFuture<'_, Result<String, String>> {
        async move {
            let failed = |e: kube::Error| match e {
                kube::Error::Api(s) if s.code == 404 => {
                    format!("rollout {namespace}/{name} not found")
                }
                kube::Error::Api(s) if s.code == 409 => {
                    format!("rollout {namespace}/{name} kept changing under the action; try again")
                }
                other => format!("the action failed: {other}"),
            };
            let (rollout, done) = match action {
                DashboardAction::User(action) => {
                    let rollout = actions::apply(&self.client, &namespace, &name, action)
                        .await
                        .map_err(failed)?;
                    (rollout, action.done().to_string())
                }
                DashboardAction::Undo { revision } => {
                    let (to, rollout) =
                        actions::undo(&self.client, &namespace, &name, Some(revision))
                            .await
                            .map_err(|e| match e {
                                actions::ActionError::Kube(e) => failed(e),
                                actions::ActionError::Refused(why) => why,
                            })?;
                    let done = format!(
                        "rolled back to revision {}: its template is spec.template again",
                        to.number
                    );
                    (rollout, done)
                }
            };
            // The apiserver's audit log shows the dashboard's identity; this Event says
            // which person asked.
            let event = Event {
                type_: EventType::Normal,
                reason: "DashboardAction".into(),
                note: Some(
                    format!("{done} (by {user}, from the dashboard)")
                        .chars()
                        .take(1000)
                        .collect(),
                ),
                action: action.word().into(),
                secondary: None,
            };
            if let Err(e) = self
                .recorder
                .publish(&event, &rollout.object_ref(&()))
                .await
            {
                tracing::warn!(error = %e, "could not record the dashboard action as an Event");
            }
            Ok(done)
        }
        .boxed()
    }
}

/// The URL word of an action, as `UserAction::parse` reads it.
pub fn action_word(action: UserAction) -> &'static str {
    match action {
        UserAction::Abort => "abort",
        UserAction::Retry => "retry",
        UserAction::Promote => "promote",
        UserAction::PromoteFull => "promote-full",
        UserAction::Pause => "pause",
        UserAction::Resume => "resume",
        UserAction::Restart => "restart",
    }
}

/// How long an access decision is reused: long enough that a live page does not ask the
/// apiserver on every change, short enough that revoked RBAC takes effect quickly.
pub const ACCESS_CACHE_TTL: Duration = Duration::from_secs(10);
/// How long a token stays trusted before it is reviewed again.
pub const TOKEN_REVIEW_EVERY: Duration = Duration::from_secs(300);
/// Most access decisions or sessions kept; past it, expired ones are dropped first.
const MAX_ENTRIES: usize = 10_000;

/// SubjectAccessReviews, cached per (user, question).
pub struct Authorizer {
    cache: Mutex<HashMap<(User, Access), (bool, Instant)>>,
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer {
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl Authorizer {
    /// Whether `user` may do `access`, from the cache or a SubjectAccessReview.
    pub async fn allowed(
        &self,
        cluster: &dyn Cluster,
        user: &User,
        access: &Access,
    ) -> Result<bool, String> {
        let key = (user.clone(), access.clone());
        if let Some((allowed, at)) = self.lock().get(&key)
            && at.elapsed() < ACCESS_CACHE_TTL
        {
            return Ok(*allowed);
        }
        let allowed = cluster.allowed(user.clone(), access.clone()).await?;
        let mut cache = self.lock();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (_, at)| at.elapsed() < ACCESS_CACHE_TTL);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (allowed, Instant::now()));
        Ok(allowed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(User, Access), (bool, Instant)>> {
        // A panic elsewhere while holding the lock leaves only cached decisions behind.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user: User,
    /// Sent with every form; compared in constant time.
    pub csrf: String,
    /// Kept server-side only, to review it again; None in `AuthMode::None`.
    token: Option<String>,
    reviewed_at: Instant,
    expires_at: Instant,
    /// A confirmation to show once on the next page (actions submitted without JS).
    pub flash: Option<String>,
}

/// Server-side sessions, keyed by the random id in the cookie.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sluice_session";

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `user`.
    pub fn create(&self, user: User, token: Option<String>) -> Result<Session, String> {
        let now = Instant::now();
        let session = Session {
            id: random_token()?,
            user,
            csrf: random_token()?,
            token,
            reviewed_at: now,
            expires_at: now + self.ttl,
            flash: None,
        };
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, s| s.expires_at > now);
            if map.len() >= MAX_ENTRIES {
                return Err("too many sessions; try again later".into());
            }
        }
        map.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// The live session with this id. Its token is reviewed again when the last review
    /// is older than [`TOKEN_REVIEW_EVERY`]; a token no longer accepted ends the session.
    pub async fn get(&self, id: &str, cluster: &dyn Cluster) -> Option<Session> {
        let now = Instant::now();
        let session = {
            let mut map = self.lock();
            match map.get(id) {
                Some(s) if s.expires_at > now => s.clone(),
                Some(_) => {
                    map.remove(id);
                    return None;
                }
                None => return None,
            }
        };
        let Some(token) = session.token.clone() else {
            return Some(session);
        };
        if session.reviewed_at.elapsed() < TOKEN_REVIEW_EVERY {
            return Some(session);
        }
        match cluster.review_token(token).await {
            Ok(Some(user)) if user == session.user => {
                let mut map = self.lock();
                let s = map.get_mut(id)?;
                s.reviewed_at = Instant::now();
                Some(s.clone())
            }
            // Rejected, or now another user: the session ends.
            Ok(_) => {
                self.remove(id);
                None
            }
            // The apiserver could not answer: keep the session until it can.
            Err(e) => {
                tracing::warn!(error = %e, "could not review a session's token again");
                Some(session)
            }
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Leaves a message for the session's next page.
    pub fn set_flash(&self, id: &str, message: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(message);
        }
    }

    /// The message left for this page, once.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }
}

/// 32 random bytes from the OS, hex-encoded.
pub fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness available: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Constant-time comparison of a submitted CSRF token with the session's.
pub fn csrf_matches(submitted: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(submitted.as_bytes().ct_eq(expected.as_bytes()))
}

/// Whether a mutation comes from the dashboard's own pages: `Sec-Fetch-Site` (when the
/// browser sends it) must be `same-origin`, and `Origin` (when present) must name this
/// host. A cookie-authenticated mutation must carry at least one of the two, as every
/// current browser does; a request that is not from a browser authenticates with a bearer
/// header instead, which no other site can make a browser send.
pub fn check_same_origin(headers: &HeaderMap, cookie_auth: bool) -> Result<(), String> {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = site
        && site != "same-origin"
    {
        return Err(format!(
            "cross-site request refused (Sec-Fetch-Site: {site})"
        ));
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let Some(origin) = origin {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if authority.is_none_or(|a| host.is_empty() || !a.eq_ignore_ascii_case(host)) {
            return Err(format!("cross-origin request refused (Origin: {origin})"));
        }
    }
    if cookie_auth && site.is_none() && origin.is_none() {
        return Err("request refused: it carries neither Origin nor Sec-Fetch-Site".into());
    }
    Ok(())
}

/// Without authentication the dashboard trusts whoever reaches it, so it must not be
/// reachable through a name an attacker controls (DNS rebinding): the Host header must
/// name a loopback address.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The bearer token of an `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// Token reviews of bearer-header requests, cached briefly so that a script polling the
/// dashboard does not review its token on every request.
#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<String, (Option<User>, Instant)>>,
}

const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);

impl TokenCache {
    pub async fn review(&self, cluster: &dyn Cluster, token: &str) -> Result<Option<User>, String> {
        if let Some((user, at)) = self.lock().get(token)
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(user.clone());
        }
        let user = cluster.review_token(token.to_string()).await?;
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(token.to_string(), (user.clone(), Instant::now()));
        Ok(user)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<User>, Instant)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
