//! Route-level tests with `tower::ServiceExt::oneshot` against a fake apiserver: sign-in,
//! authorisation of views and actions, CSRF and origin checks, read-only and no-auth
//! modes, escaping, and the live stream. The end-to-end tests (`e2e/tests/dashboard.rs`)
//! repeat the essentials against the real control plane and a real browser.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use serde_json::json;
use sluice_api::Rollout;
use sluice_api::labels::{
    ANALYSIS_ROLE_LABEL, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, ROLLOUT_LABEL,
};
use sluice_controller::actions::UserAction;
use tower::ServiceExt;

use crate::auth::{Access, AuthMode, Cluster, DashboardAction, User};
use crate::cache::{Caches, FixedRollouts};
use crate::{AppState, Options, router};

/// Users by token, and what each may do as "verb resource/sub ns".
#[derive(Default)]
struct FakeCluster {
    users: HashMap<String, User>,
    grants: HashSet<(String, String)>,
    acted: Mutex<Vec<(String, String, DashboardAction, String)>>,
    reviews: Mutex<u32>,
}

fn user(name: &str) -> User {
    User {
        name: name.into(),
        uid: None,
        groups: vec!["system:authenticated".into()],
        extra: BTreeMap::new(),
    }
}

impl FakeCluster {
    fn with_user(mut self, token: &str, name: &str, grants: &[&str]) -> Self {
        self.users.insert(token.into(), user(name));
        for g in grants {
            self.grants.insert((name.into(), g.to_string()));
        }
        self
    }
}

fn grant_key(a: &Access) -> String {
    let resource = match a.subresource {
        Some(s) => format!("rollouts/{s}"),
        None => "rollouts".into(),
    };
    format!(
        "{} {resource} {}",
        a.verb,
        a.namespace.as_deref().unwrap_or("*")
    )
}

impl Cluster for FakeCluster {
    fn review_token(&self, token: String) -> BoxFuture<'_, Result<Option<User>, String>> {
        *self.reviews.lock().unwrap() += 1;
        let user = self.users.get(&token).cloned();
        async move { Ok(user) }.boxed()
    }

    fn allowed(&self, user: User, access: Access) -> BoxFuture<'_, Result<bool, String>> {
        let ok = self.grants.contains(&(user.name, grant_key(&access)));
        async move { Ok(ok) }.boxed()
    }

    fn act(
        &self,
        namespace: String,
        name: String,
        action: DashboardAction,
        user: String,
    ) -> BoxFuture<'_, Result<String, String>> {
        self.acted
            .lock()
            .unwrap()
            .push((namespace, name, action, user));
        let done = match action {
            DashboardAction::User(action) => action.done().to_string(),
            DashboardAction::Undo { revision } => format!("rolled back to revision {revision}"),
        };
        async { Ok(done) }.boxed()
    }
}

fn rollout(ns: &str, name: &str, step: i32, message: &str) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"),
                      "creationTimestamp": "2026-01-01T00:00:00Z" },
        "spec": {
            "replicas": 5,
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } } },
            "strategy": { "canary": { "steps": [
                { "setWeight": 20 }, { "pause": {} }, { "setWeight": 50 }, { "pause": { "duration": "10s" } },
            ] } },
        },
        "status": {
            "phase": "Paused", "message": message, "strategy": "Canary",
            "currentStepIndex": step, "stepProgress": format!("{}/4", step + 1),
            "canary": { "weights": { "canary": 20, "stable": 80, "verified": true } },
        },
    }))
    .unwrap()
}

struct World {
    app: Router,
    cluster: Arc<FakeCluster>,
    rollouts: FixedRollouts,
}

const ADDR: &str = "127.0.0.1:8080";

fn world(
    cluster: FakeCluster,
    rollouts: Vec<Rollout>,
    configure: impl FnOnce(&mut Options),
) -> World {
    let (caches, fixed) = Caches::fixed(rollouts, vec![], vec![], vec![]);
    let cluster = Arc::new(cluster);
    let mut options = Options::new(ADDR.parse::<SocketAddr>().unwrap());
    configure(&mut options);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    // Keep the sender alive for the whole test: a dropped sender is not a shutdown.
    std::mem::forget(_stop_tx);
    let state = AppState::new(caches, cluster.clone(), options, stop);
    World {
        app: router(state),
        cluster,
        rollouts: fixed,
    }
}

fn alice_and_bob() -> FakeCluster {
    FakeCluster::default()
        .with_user(
            "alice-token",
            "alice",
            &[
                "list rollouts shop",
                "get rollouts shop",
                "patch rollouts/status shop",
            ],
        )
        .with_user("bob-token", "bob", &[])
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(uri: &str) -> axum::http::request::Builder {
    Request::get(uri).header(header::HOST, ADDR)
}

fn post(uri: &str) -> axum::http::request::Builder {
    Request::post(uri)
        .header(header::HOST, ADDR)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

/// Signs in through the form and returns the cookie and the page's CSRF token.
async fn sign_in(w: &World, token: &str) -> (String, String) {
    let (status, headers, _) = send(
        &w.app,
        post("/login")
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .body(Body::from(format!(
                "token={token}&next=%2Frollouts%2Fshop%2Fweb"
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/rollouts/shop/web");
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let (status, _, body) = send(
        &w.app,
        get("/rollouts/shop/web")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_string();
    assert_eq!(csrf.len(), 64);
    (cookie, csrf)
}

fn promote(cookie: &str) -> axum::http::request::Builder {
    post("/rollouts/shop/web/actions/promote").header(header::COOKIE, cookie)
}

#[tokio::test]
async fn without_credentials_every_page_is_401_with_the_sign_in_form() {
    let w = world(alice_and_bob(), vec![rollout("shop", "web", 1, "")], |_| {});
    for uri in ["/", "/rollouts/shop/web", "/sse/overview"] {
        let (status, headers, body) = send(&w.app, get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        assert!(body.contains("name=\"token\""), "{body}");
        assert!(!body.contains("data-rollout"), "{body}");
    }
    let (status, _, _) = send(
        &w.app,
        get("/")
            .header(header::AUTHORIZATION, "Bearer nope")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        &w.app,
        post("/rollouts/shop/web/actions/abort")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(w.cluster.acted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_user_without_rbac_is_refused_views_and_actions() {
    let w = world(alice_and_bob(), vec![rollout("shop", "web", 1, "")], |_| {});
    let bob = |b: axum::http::request::Builder| b.header(header::AUTHORIZATION, "Bearer bob-token");
    let (status, _, body) = send(&w.app, bob(get("/")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("you may not list rollouts"), "{body}");
    let (status, _, _) = send(
        &w.app,
        bob(get("/rollouts/shop/web")).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = send(
        &w.app,
        bob(post("/rollouts/shop/web/actions/promote"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("patch rollouts/status web in namespace shop"),
        "{body}"
    );
    assert!(w.cluster.acted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_bearer_token_with_rbac_acts_and_the_action_is_confirmed() {
    let w = world(alice_and_bob(), vec![rollout("shop", "web", 1, "")], |_| {});
    let (status, _, body) = send(
        &w.app,
        post("/rollouts/shop/web/actions/promote")
            .header(header::AUTHORIZATION, "Bearer alice-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "Rollout shop/web promoted past the current step.");
    assert_eq!(
        *w.cluster.acted.lock().unwrap(),
        vec![(
            "shop".into(),
            "web".into(),
            DashboardAction::User(UserAction::Promote),
            "alice".into()
        )]
    );
    // Pause changes spec.paused: patch on rollouts/status alone is not enough.
    let (status, _, body) = send(
        &w.app,
        post("/rollouts/shop/web/actions/pause")
            .header(header::AUTHORIZATION, "Bearer alice-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("patch rollouts web in namespace shop"),
        "{body}"
    );
    assert_eq!(w.cluster.acted.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn restart_needs_patch_on_the_rollout_itself() {
    let cluster = alice_and_bob().with_user(
        "carol-token",
        "carol",
        &[
            "list rollouts shop",
            "get rollouts shop",
            "patch rollouts shop",
        ],
    );
    let w = world(cluster, vec![rollout("shop", "web", 1, "")], |_| {});
    let restart = |token: &str| {
        post("/rollouts/shop/web/actions/restart")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    // Alice may patch the status only: restart sets spec.restartAt.
    let (status, _, body) = send(&w.app, restart("alice-token")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("patch rollouts web in namespace shop"),
        "{body}"
    );
    assert!(w.cluster.acted.lock().unwrap().is_empty());
    let (status, _, body) = send(&w.app, restart("carol-token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        "Rollout shop/web restarting: its pods are replaced one at a time."
    );
    assert_eq!(
        *w.cluster.acted.lock().unwrap(),
        vec![(
            "shop".into(),
            "web".into(),
            DashboardAction::User(UserAction::Restart),
            "carol".into()
        )]
    );
}

fn carol() -> FakeCluster {
    alice_and_bob().with_user(
        "carol-token",
        "carol",
        &[
            "list rollouts shop",
            "get rollouts shop",
            "patch rollouts shop",
            "patch rollouts/status shop",
        ],
    )
}

#[tokio::test]
async fn undo_needs_patch_on_the_rollout_and_a_revision_number() {
    let w = world(carol(), vec![rollout("shop", "web", 1, "")], |_| {});
    let undo = |token: &str, form: &str| {
        post("/rollouts/shop/web/actions/undo")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(form.to_string()))
            .unwrap()
    };
    // Alice may patch the status only: undo replaces spec.template.
    let (status, _, body) = send(&w.app, undo("alice-token", "revision=2")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("patch rollouts web in namespace shop"),
        "{body}"
    );
    for (form, why) in [
        ("", "undo needs the revision to roll back to"),
        ("revision=", "undo needs the revision to roll back to"),
        ("revision=two", "\"two\" is not a revision number"),
        ("revision=-1", "\"-1\" is not a revision number"),
    ] {
        let (status, _, body) = send(&w.app, undo("carol-token", form)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {body}");
        assert!(body.contains(why), "{form}: {body}");
    }
    assert!(w.cluster.acted.lock().unwrap().is_empty());
    let (status, _, body) = send(&w.app, undo("carol-token", "revision=2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "Rollout shop/web rolled back to revision 2.");
    assert_eq!(
        *w.cluster.acted.lock().unwrap(),
        vec![(
            "shop".into(),
            "web".into(),
            DashboardAction::Undo { revision: 2 },
            "carol".into()
        )]
    );
}

#[tokio::test]
async fn the_detail_page_offers_undo_only_to_those_who_may_change_the_spec() {
    let mut r = rollout("shop", "web", 1, "");
    r.status.as_mut().unwrap().stable_rs = Some("mid".into());
    let rs = vec![
        replica_set("shop", "web", "new", 3, "shop:v3", 2, 1),
        replica_set("shop", "web", "mid", 2, "shop:v2", 3, 3),
        replica_set("shop", "web", "old", 1, "shop:v1", 0, 0),
    ];
    let (caches, _) = Caches::fixed(vec![r], rs, vec![], vec![]);
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let app = router(AppState::new(
        caches,
        Arc::new(carol()),
        Options::new(ADDR.parse().unwrap()),
        stop,
    ));
    let page = |token: &str| {
        get("/rollouts/shop/web")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = send(&app, page("alice-token")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("data-action=\"promote\""), "{body}");
    assert!(!body.contains("data-action=\"undo\""), "{body}");
    let (status, _, body) = send(&app, page("carol-token")).await;
    assert_eq!(status, StatusCode::OK);
    let form = body
        .split("data-action=\"undo\"")
        .nth(1)
        .and_then(|rest| rest.split("</form>").next())
        .unwrap_or_else(|| panic!("no undo form: {body}"));
    // Newest first, the stable one named.
    let options: Vec<&str> = form
        .split("<option ")
        .skip(1)
        .map(|o| o.split("</option>").next().unwrap())
        .collect();
    assert_eq!(
        options,
        [
            "value=\"3\">revision 3: app=shop:v3",
            "value=\"2\">revision 2 (stable): app=shop:v2",
            "value=\"1\">revision 1: app=shop:v1",
        ]
    );
}

#[test]
fn undo_offers_every_revision_but_the_current_template_and_none_for_a_workload_ref() {
    let mut r = rollout("shop", "web", 1, "");
    let current = sluice_controller::core::hash::pod_template_hash(&r.spec.template);
    let rs = vec![
        replica_set("shop", "web", &current, 2, "shop:v2", 3, 3),
        replica_set("shop", "web", "old", 1, "shop:v1", 0, 0),
    ];
    let choices = crate::views::undo_choices(&r, &rs);
    assert_eq!(
        choices.iter().map(|c| c.revision).collect::<Vec<_>>(),
        [1],
        "{choices:?}"
    );
    r.spec.workload_ref = Some(
        serde_json::from_value(
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" }),
        )
        .unwrap(),
    );
    assert!(crate::views::undo_choices(&r, &rs).is_empty());
}

#[tokio::test]
async fn a_session_acts_only_from_its_own_origin_with_its_csrf_token() {
    let w = world(alice_and_bob(), vec![rollout("shop", "web", 1, "")], |_| {});
    let (cookie, csrf) = sign_in(&w, "alice-token").await;
    let form = |token: &str| Body::from(format!("csrf={token}"));
    let refused = [
        // No Origin and no Sec-Fetch-Site: not provably from our page.
        promote(&cookie).body(form(&csrf)).unwrap(),
        promote(&cookie)
            .header(header::ORIGIN, "http://evil.example")
            .body(form(&csrf))
            .unwrap(),
        promote(&cookie)
            .header("sec-fetch-site", "cross-site")
            .body(form(&csrf))
            .unwrap(),
        promote(&cookie)
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .body(form("0000"))
            .unwrap(),
        promote(&cookie)
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .body(Body::empty())
            .unwrap(),
    ];
    for req in refused {
        let (status, _, body) = send(&w.app, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    assert!(w.cluster.acted.lock().unwrap().is_empty());

    // Without JavaScript: a redirect to the detail page, which confirms once.
    let (status, headers, _) = send(
        &w.app,
        promote(&cookie)
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .header("sec-fetch-site", "same-origin")
            .body(form(&csrf))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/rollouts/shop/web");
    assert_eq!(w.cluster.acted.lock().unwrap().len(), 1);
    let page = |cookie: &str| {
        get("/rollouts/shop/web")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap()
    };
    let (_, _, body) = send(&w.app, page(&cookie)).await;
    assert!(
        body.contains("Rollout shop/web promoted past the current step."),
        "{body}"
    );
    let (_, _, body) = send(&w.app, page(&cookie)).await;
    assert!(
        !body.contains("promoted past the current step."),
        "shown once: {body}"
    );

    // With JavaScript (fetch): the confirmation is the response.
    let (status, _, body) = send(
        &w.app,
        post("/rollouts/shop/web/actions/abort")
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .header("sluice-fetch", "1")
            .body(form(&csrf))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("aborted"), "{body}");

    // Sign-out ends the session.
    let (status, _, _) = send(
        &w.app,
        post("/logout")
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .body(form(&csrf))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = send(&w.app, page(&cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_refuses_other_origins_bad_tokens_and_open_redirects() {
    let w = world(alice_and_bob(), vec![], |_| {});
    let (status, headers, _) = send(
        &w.app,
        post("/login")
            .header(header::ORIGIN, "http://evil.example")
            .body(Body::from("token=alice-token"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!headers.contains_key(header::SET_COOKIE));
    let (status, headers, body) = send(
        &w.app,
        post("/login")
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .body(Body::from("token=wrong"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!headers.contains_key(header::SET_COOKIE));
    assert!(body.contains("did not accept this token"), "{body}");
    let (status, headers, _) = send(
        &w.app,
        post("/login")
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .body(Body::from("token=alice-token&next=%2F%2Fevil.example%2F"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/");
}

#[tokio::test]
async fn read_only_mode_refuses_actions_and_shows_no_buttons() {
    let w = world(alice_and_bob(), vec![rollout("shop", "web", 1, "")], |o| {
        o.read_only = true
    });
    let (status, _, body) = send(
        &w.app,
        post("/rollouts/shop/web/actions/promote")
            .header(header::AUTHORIZATION, "Bearer alice-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("read-only"), "{body}");
    assert!(w.cluster.acted.lock().unwrap().is_empty());
    let (status, _, body) = send(
        &w.app,
        get("/rollouts/shop/web")
            .header(header::AUTHORIZATION, "Bearer alice-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("/actions/promote"), "{body}");
    assert!(body.contains("Read-only mode"), "{body}");
}

#[tokio::test]
async fn overview_lists_only_namespaces_the_user_may_list_and_filters() {
    let rollouts = vec![
        rollout("shop", "web", 1, ""),
        rollout("shop", "api", 0, ""),
        rollout("bank", "ledger", 2, ""),
    ];
    let w = world(alice_and_bob(), rollouts, |_| {});
    let alice = |uri: &str| {
        get(uri)
            .header(header::AUTHORIZATION, "Bearer alice-token")
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = send(&w.app, alice("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("data-rollout=\"shop/web\""), "{body}");
    assert!(body.contains("data-rollout=\"shop/api\""), "{body}");
    assert!(!body.contains("ledger"), "bank is not alice's: {body}");
    let (_, _, body) = send(&w.app, alice("/?q=AP&phase=Paused")).await;
    assert!(
        body.contains("shop/api") && !body.contains("shop/web"),
        "{body}"
    );
    let (_, _, body) = send(&w.app, alice("/?phase=Healthy")).await;
    assert!(body.contains("No rollouts match"), "{body}");
    let (status, _, _) = send(&w.app, alice("/?ns=bank")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(&w.app, alice("/rollouts/bank/ledger")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn cluster_data_is_escaped_and_pages_carry_a_strict_csp() {
    let evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
    let w = world(
        alice_and_bob(),
        vec![rollout("shop", "web", 1, evil)],
        |_| {},
    );
    let (status, headers, body) = send(
        &w.app,
        get("/rollouts/shop/web")
            .header(header::AUTHORIZATION, "Bearer alice-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(!body.contains("<img src=x"), "{body}");
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;"),
        "{body}"
    );
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    // `no-referrer` would make Chromium send `Origin: null` on the dashboard's own forms.
    assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
    // The step timeline marks the current step for assistive technology.
    assert!(
        body.contains("aria-current=\"step\" data-step=\"1\""),
        "{body}"
    );
}

#[tokio::test]
async fn no_auth_is_loopback_only_and_refuses_foreign_host_names() {
    let mut options = Options::new("0.0.0.0:8080".parse().unwrap());
    options.auth = AuthMode::None;
    assert!(options.validate().is_err());
    options.addr = "127.0.0.1:8080".parse().unwrap();
    assert!(options.validate().is_ok());
    options.addr = "[::1]:8080".parse().unwrap();
    assert!(options.validate().is_ok());

    let w = world(
        FakeCluster::default(),
        vec![rollout("shop", "web", 1, "")],
        |o| o.auth = AuthMode::None,
    );
    // DNS rebinding: a page on attacker.example resolving to 127.0.0.1.
    let (status, _, _) = send(
        &w.app,
        Request::get("/")
            .header(header::HOST, "attacker.example:8080")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    let (status, headers, body) = send(
        &w.app,
        Request::get("/rollouts/shop/web")
            .header(header::HOST, "localhost:8080")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Even without sign-in, mutations need the session's CSRF token.
    let cookie = headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(body.contains("/actions/promote"), "{body}");
    let (status, _, _) = send(
        &w.app,
        Request::post("/rollouts/shop/web/actions/promote")
            .header(header::HOST, "localhost:8080")
            .header(header::ORIGIN, "http://localhost:8080")
            .header(header::COOKIE, &cookie)
            .body(Body::from("csrf=wrong"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(w.cluster.acted.lock().unwrap().is_empty());
}

async fn next_event(body: &mut Body) -> String {
    let mut text = String::new();
    while !text.contains("\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    text
}

#[tokio::test]
async fn the_live_stream_sends_the_page_again_when_the_cache_changes() {
    let mut w = world(alice_and_bob(), vec![rollout("shop", "web", 1, "")], |_| {});
    let resp = w
        .app
        .clone()
        .oneshot(
            get("/sse/rollouts/shop/web")
                .header(header::AUTHORIZATION, "Bearer alice-token")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let first = next_event(&mut body).await;
    assert!(first.starts_with("event: update\n"), "{first}");
    assert!(first.contains("<dd id=\"step\">2/4</dd>"), "{first}");

    w.rollouts.apply(rollout("shop", "web", 2, "moving on"));
    let second = next_event(&mut body).await;
    assert!(second.contains("<dd id=\"step\">3/4</dd>"), "{second}");
    assert!(second.contains("moving on"), "{second}");
}

fn replica_set(
    ns: &str,
    owner: &str,
    hash: &str,
    revision: u32,
    image: &str,
    replicas: i32,
    ready: i32,
) -> k8s_openapi::api::apps::v1::ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{owner}-{hash}"), "namespace": ns,
            "labels": { POD_TEMPLATE_HASH_LABEL: hash, ROLLOUT_LABEL: owner },
            "annotations": { REVISION_ANNOTATION: revision.to_string() },
            "ownerReferences": [{ "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": owner, "uid": format!("uid-{ns}-{owner}") }],
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { POD_TEMPLATE_HASH_LABEL: hash } },
            "template": { "spec": { "containers": [{ "name": "app", "image": image }] } },
        },
        "status": { "replicas": replicas, "readyReplicas": ready, "availableReplicas": ready },
    }))
    .unwrap()
}

#[tokio::test]
async fn the_detail_page_shows_revisions_pods_analysis_and_events() {
    let mut r = rollout("shop", "web", 1, "");
    let status = r.status.as_mut().unwrap();
    status.current_pod_hash = Some("new".into());
    status.stable_rs = Some("mid".into());
    let rs = vec![
        replica_set("shop", "web", "new", 3, "shop:v3", 2, 1),
        replica_set("shop", "web", "mid", 2, "shop:v2", 3, 3),
        replica_set("shop", "web", "old", 1, "shop:v1", 0, 0),
        // Another rollout's: never shown on this page.
        replica_set("shop", "api", "zzz", 1, "api:v9", 1, 1),
    ];
    let run: sluice_api::AnalysisRun = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": { "name": "web-new-2", "namespace": "shop",
            "labels": { ROLLOUT_LABEL: "web", ANALYSIS_ROLE_LABEL: "step" },
            "ownerReferences": [{ "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web", "uid": "uid-shop-web" }],
            "creationTimestamp": "2026-01-01T00:00:00Z" },
        "spec": { "metrics": [{ "name": "success-rate", "interval": "10s",
            "successCondition": "result[0] >= 0.99", "failureCondition": "result[0] < 0.9",
            "provider": { "prometheus": { "address": "http://prometheus:9090", "query": "q" } } }] },
        "status": { "phase": "Running", "metricResults": [{ "name": "success-rate", "phase": "Running",
            "count": 2, "successful": 1, "failed": 1,
            "measurements": [
                { "phase": "Successful", "value": "[0.995]", "finishedAt": "2026-01-01T00:00:10Z" },
                { "phase": "Failed", "value": "[0.85]", "finishedAt": "2026-01-01T00:00:20Z" },
            ] }] },
    }))
    .unwrap();
    let event: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "metadata": { "name": "e1", "namespace": "shop" },
        "involvedObject": { "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web", "namespace": "shop" },
        "reason": "RolloutAborted", "action": "Degraded-old-Step2", "type": "Warning",
        "message": "analysis web-old-1 failed", "eventTime": "2026-01-01T00:00:30.000000Z",
    }))
    .unwrap();
    let (caches, _) = Caches::fixed(vec![r], rs, vec![run], vec![event]);
    let cluster = Arc::new(alice_and_bob());
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let app = router(AppState::new(
        caches,
        cluster,
        Options::new(ADDR.parse().unwrap()),
        stop,
    ));
    let (status, _, body) = send(
        &app,
        get("/rollouts/shop/web")
            .header(header::AUTHORIZATION, "Bearer alice-token")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // ReplicaSets by revision, with readiness; the scaled-down old one only in history.
    assert!(
        body.contains("shop:v3") && body.contains("shop:v2"),
        "{body}"
    );
    assert!(!body.contains("api:v9"), "{body}");
    assert!(body.contains("aria-label=\"1 of 2 pods ready\""), "{body}");
    assert!(
        body.contains("<td>canary</td>") && body.contains("<td>stable</td>"),
        "{body}"
    );
    // The metric's measurements against both thresholds.
    assert!(body.contains("<svg class=\"chart\""), "{body}");
    assert!(
        body.contains("class=\"threshold success\"")
            && body.contains("class=\"threshold failure\""),
        "{body}"
    );
    assert!(body.contains("class=\"point bad\""), "{body}");
    assert!(body.contains("Role: step. Not started yet."), "{body}");
    // Events, and how a past revision ended read from them.
    assert!(body.contains("analysis web-old-1 failed"), "{body}");
    let history = body.split("id=\"h-history\"").nth(1).unwrap();
    assert!(
        history.contains("<code>old</code></td><td>shop:v1</td>"),
        "{history}"
    );
    assert!(history.contains("aborted"), "{history}");
    assert!(history.contains("being rolled out (step 2/4)"), "{history}");
    // Steps before the current one are marked done.
    assert!(body.contains("class=\"done\""), "{body}");
}

#[tokio::test]
async fn a_live_stream_ends_with_a_reload_when_its_session_signs_out() {
    let mut w = world(alice_and_bob(), vec![rollout("shop", "web", 1, "")], |_| {});
    let (cookie, csrf) = sign_in(&w, "alice-token").await;
    let resp = w
        .app
        .clone()
        .oneshot(
            get("/sse/rollouts/shop/web")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    assert!(next_event(&mut body).await.starts_with("event: update\n"));
    let (status, _, _) = send(
        &w.app,
        post("/logout")
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    w.rollouts.apply(rollout("shop", "web", 2, ""));
    let last = next_event(&mut body).await;
    assert!(last.starts_with("event: reload\n"), "{last}");
    assert!(
        !last.contains("step"),
        "no more page content after sign-out: {last}"
    );
}

#[tokio::test]
async fn before_the_caches_have_listed_the_overview_says_loading_not_forbidden() {
    let (caches, _fixed) = Caches::fixed(vec![], vec![], vec![], vec![]);
    caches.set_ready(false);
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let app = router(AppState::new(
        caches.clone(),
        Arc::new(alice_and_bob()),
        Options::new(ADDR.parse().unwrap()),
        stop,
    ));
    let overview = |token: &str| {
        get("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = send(&app, overview("alice-token")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Loading rollouts"), "{body}");
    // Once listed, a user who may list rollouts nowhere is refused.
    caches.set_ready(true);
    let (status, _, _) = send(&app, overview("bob-token")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_blue_green_detail_page_shows_its_stages_and_selectors() {
    let mut r = rollout("shop", "web", 1, "waiting for a promote");
    r.spec.strategy.canary = None;
    r.spec.strategy.blue_green = Some(
        serde_json::from_value(json!({
            "activeService": "web-active", "previewService": "web-preview",
            "autoPromotionEnabled": false,
        }))
        .unwrap(),
    );
    let status = r.status.as_mut().unwrap();
    status.canary = None;
    status.step_progress = Some("2/3".into());
    status.blue_green = Some(
        serde_json::from_value(json!({ "activeSelector": "old1", "previewSelector": "new2" }))
            .unwrap(),
    );
    let w = world(alice_and_bob(), vec![r], |_| {});
    let (cookie, _) = sign_in(&w, "alice-token").await;
    let (status, _, body) = send(
        &w.app,
        get("/rollouts/shop/web")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(">Stages<"), "{body}");
    // The planner's stage list: preview, pause (manual promotion), promote; the index
    // in the status (1) is the pause.
    let stages: Vec<&str> = body
        .split("<span class=\"step-text\">")
        .skip(1)
        .filter_map(|rest| rest.split('<').next())
        .collect();
    assert_eq!(stages, ["Preview", "Pause", "Promote"], "{body}");
    assert!(
        body.contains(
            "data-step=\"1\"><span class=\"step-n\">2</span><span class=\"step-text\">Pause"
        ),
        "the pause is the current stage: {body}"
    );
    assert!(body.contains("new2") && body.contains("old1"), "{body}");
    assert!(!body.contains("Set weight"), "{body}");
}

#[test]
fn the_detail_view_names_the_gate_that_holds_and_lists_the_gates() {
    let mut r = rollout(
        "shop",
        "web",
        2,
        "held by gate load-test at weightIncrease step 3: HTTP 503",
    );
    let status = r.status.as_mut().unwrap();
    status.pause_conditions = serde_json::from_value(json!([
        { "reason": "Gate", "gate": "load-test", "startTime": "2026-01-01T00:00:00Z" },
    ]))
    .unwrap();
    status.gates = serde_json::from_value(json!([
        { "name": "load-test", "point": "weightIncrease", "revision": "bbb", "step": 2,
          "phase": "Pending", "startedAt": "2026-01-01T00:00:00Z", "message": "HTTP 503: busy" },
    ]))
    .unwrap();
    let (caches, _) = Caches::fixed(vec![r.clone()], vec![], vec![], vec![]);
    let now: k8s_openapi::jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
    let html = crate::views::detail_live(&caches, &r, now).into_string();
    assert!(html.contains("Gate <code>load-test</code> for"), "{html}");
    assert!(
        html.contains("<code>load-test</code> Pending at weightIncrease step 3: <span class=\"message\">HTTP 503: busy</span>"),
        "{html}"
    );
}
