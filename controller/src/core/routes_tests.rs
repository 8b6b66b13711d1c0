//! Managed routes (`setHeaderRoute`, `setMirrorRoute`): which are in force at each step,
//! and walks through the simulated cluster that set, keep and remove them (abort,
//! completion, a spec edit), with the router-specific `InvalidSpec`s.

use serde_json::{Value, json};
use sluice_api::rollout::{CanaryStrategy, Rollout, RolloutPhase};

use super::conditions::{get, is_true, types};
use super::routes::{RouteKind, routes_at};
use super::testkit::{World, after, hash_of, phase, promote, set_image, settle, step_index, t0};
use super::{Action, plan};

fn rollout(image: &str, canary: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "default", "generation": 1 },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": image }] },
            },
            "strategy": { "canary": canary },
        },
    }))
    .unwrap()
}

fn header(name: &str, value: &str) -> Value {
    json!({ "setHeaderRoute": { "name": name, "match": [
        { "headerName": "X-Canary", "headerValue": { "exact": value } }
    ] } })
}

fn gateway(steps: Value) -> Value {
    json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": {
            "gatewayAPI": { "httpRoute": "web" },
            "managedRoutes": [{ "name": "testers" }, { "name": "mirror" }],
        },
        "steps": steps,
    })
}

fn strategy(canary: Value) -> CanaryStrategy {
    serde_json::from_value(canary).unwrap()
}

fn names_at(c: &CanaryStrategy, index: usize) -> Vec<String> {
    routes_at(&c.steps, super::routes::managed(c), index)
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn routes_in_force_accumulate_until_a_step_removes_them() {
    let c = strategy(gateway(json!([
        { "setMirrorRoute": { "name": "mirror", "match": [{ "path": { "prefix": "/api" } }] } },
        header("testers", "yes"),
        { "setWeight": 20 },
        { "setHeaderRoute": { "name": "testers" } },
        { "setMirrorRoute": { "name": "mirror", "percentage": 30, "match": [{ "method": { "exact": "GET" } }] } },
    ])));
    let table: [(usize, &[&str]); 5] = [
        (0, &["mirror"]),
        // managedRoutes order, not step order: testers is listed first.
        (1, &["testers", "mirror"]),
        (2, &["testers", "mirror"]),
        (3, &["mirror"]),
        (4, &["mirror"]),
    ];
    for (index, want) in table {
        assert_eq!(names_at(&c, index), want, "at step {index}");
    }
    let m = routes_at(&c.steps, super::routes::managed(&c), 0);
    assert!(
        matches!(
            &m[0].kind,
            RouteKind::Mirror {
                percentage: 100,
                ..
            }
        ),
        "percentage defaults to 100: {m:?}"
    );
    let later = routes_at(&c.steps, super::routes::managed(&c), 4);
    assert!(matches!(
        &later[0].kind,
        RouteKind::Mirror { percentage: 30, .. }
    ));
    assert_ne!(
        m[0].fingerprint(),
        later[0].fingerprint(),
        "a changed setting is a different route to the router"
    );
}

fn routed(r: &Rollout) -> Vec<(String, String, bool)> {
    let s = r.status.as_ref().unwrap();
    s.canary
        .as_ref()
        .map(|c| {
            c.managed_routes
                .iter()
                .map(|m| (m.name.clone(), m.kind.clone(), m.verified))
                .collect()
        })
        .unwrap_or_default()
}

/// At v2 with a header route set at weight 0, paused after it.
fn at_header_step(steps: Value) -> (Rollout, World, String) {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let mut r = rollout("app:v1", gateway(steps));
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    let v1 = hash_of(&r);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    (r, w, v1)
}

#[test]
fn a_header_route_at_weight_zero_gets_a_canary_pod_then_the_route() {
    let (r, w, v1) =
        at_header_step(json!([header("testers", "yes"), { "pause": {} }, { "setWeight": 50 }]));
    assert_eq!(
        step_index(&r),
        1,
        "the route step is done once it is in place"
    );
    assert_eq!(phase(&r), RolloutPhase::Paused);
    assert_eq!(
        w.router,
        Some(0),
        "no weight: only the header's requests reach the canary"
    );
    assert_eq!(
        w.sizes(&r, &v1),
        (1, 4),
        "one canary pod to take the matched requests"
    );
    assert_eq!(w.routes.keys().collect::<Vec<_>>(), ["testers"]);
    assert_eq!(routed(&r), [("testers".into(), "header".into(), true)]);
}

#[test]
fn no_route_before_a_canary_pod_is_available() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let mut r = rollout(
        "app:v1",
        gateway(json!([header("testers", "yes"), { "pause": {} }])),
    );
    settle(&mut r, &mut w, t0(), None);
    set_image(&mut r, "app:v2");
    // One plan, no tick: the canary ReplicaSet is only being created.
    let p = plan(&r, &w.observed(), after(1));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetManagedRoutes { .. })),
        "a route to a canary with no pod would fail its requests: {p:#?}"
    );
}

#[test]
fn the_route_stays_for_later_steps_and_completion_removes_it() {
    let (mut r, mut w, _) = at_header_step(
        json!([header("testers", "yes"), { "pause": {} }, { "setWeight": 50 }, { "pause": {} }]),
    );
    promote(&mut r);
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(step_index(&r), 3);
    assert_eq!(w.router, Some(50));
    assert!(w.routes.contains_key("testers"), "kept past its step");
    promote(&mut r);
    settle(&mut r, &mut w, after(2), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert!(
        w.routes.is_empty(),
        "completion removes every managed route"
    );
    assert!(routed(&r).is_empty());
}

#[test]
fn abort_removes_the_route_before_the_canary_goes() {
    let (mut r, mut w, v1) = at_header_step(json!([header("testers", "yes"), { "pause": {} }]));
    r.status.as_mut().unwrap().abort = true;
    let p = plan(&r, &w.observed(), after(1));
    let removal = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::SetManagedRoutes { routes } if routes.is_empty()));
    assert!(removal.is_some(), "the route is removed at once: {p:#?}");
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleReplicaSet { replicas: 0, .. })),
        "nothing scaled down while the route still sends requests to the canary: {p:#?}"
    );
    settle(&mut r, &mut w, after(1), None);
    assert!(w.routes.is_empty());
    assert_eq!(phase(&r), RolloutPhase::Degraded);
    assert!(routed(&r).is_empty());
    // abortScaleDownDelaySeconds (30s) later the canary is gone too.
    settle(&mut r, &mut w, after(40), None);
    assert_eq!(w.sizes(&r, &v1), (0, 4));
}

#[test]
fn a_spec_edit_dropping_the_header_step_removes_the_route() {
    let (mut r, mut w, _) =
        at_header_step(json!([header("testers", "yes"), { "pause": {} }, { "setWeight": 50 }]));
    assert!(w.routes.contains_key("testers"));
    r.spec.strategy.canary.as_mut().unwrap().steps = serde_json::from_value(json!([
        { "setWeight": 25 }, { "pause": {} }, { "setWeight": 50 }
    ]))
    .unwrap();
    r.metadata.generation = Some(2);
    settle(&mut r, &mut w, after(1), None);
    assert!(
        w.routes.is_empty(),
        "no step sets it any more: {:?}",
        w.routes
    );
    assert_eq!(w.router, Some(25));
    assert!(routed(&r).is_empty());
}

#[test]
fn a_step_without_match_removes_the_route() {
    let (mut r, mut w, _) = at_header_step(json!([
        header("testers", "yes"), { "pause": {} },
        { "setHeaderRoute": { "name": "testers" } }, { "pause": {} },
    ]));
    assert!(w.routes.contains_key("testers"));
    promote(&mut r);
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(step_index(&r), 3);
    assert!(w.routes.is_empty());
}

#[test]
fn a_route_changed_by_another_writer_is_put_back_with_one_event() {
    let (mut r, mut w, _) = at_header_step(json!([header("testers", "yes"), { "pause": {} }]));
    let before = w.routes.clone();
    w.routes.clear();
    let p = plan(&r, &w.observed(), after(1));
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::SetManagedRoutes { routes } if routes.len() == 1))
    );
    let drift: Vec<_> = p
        .events
        .iter()
        .filter(|e| e.reason == "TrafficDrift")
        .collect();
    assert_eq!(drift.len(), 1, "{:#?}", p.events);
    assert!(!p.status.canary.as_ref().unwrap().managed_routes[0].verified);
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(w.routes, before);
    assert!(routed(&r)[0].2);
    // In place again: no more writes.
    let p = plan(&r, &w.observed(), after(2));
    assert!(p.actions.is_empty(), "{p:#?}");
}

fn nginx(steps: Value) -> Value {
    json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": {
            "nginx": { "stableIngress": "web" },
            "managedRoutes": [{ "name": "testers" }, { "name": "other" }],
        },
        "steps": steps,
    })
}

#[test]
fn what_a_router_cannot_hold_is_an_invalid_spec_naming_router_and_step() {
    let two_headers = json!([{ "setHeaderRoute": { "name": "testers", "match": [
        { "headerName": "A", "headerValue": { "exact": "1" } },
        { "headerName": "B", "headerValue": { "exact": "2" } },
    ] } }]);
    let mirror = json!([{ "setWeight": 10 }, { "setMirrorRoute": { "name": "testers", "match": [{ "path": { "prefix": "/" } }] } }]);
    let two_routes = json!([header("testers", "a"), header("other", "b")]);
    let regex_method = json!([{ "setMirrorRoute": { "name": "mirror", "match": [{ "method": { "regex": "GET|POST" } }] } }]);
    let both_kinds = json!([header("mirror", "a"), { "setMirrorRoute": { "name": "mirror", "match": [{ "path": { "exact": "/" } }] } }]);
    let cases = [
        (
            nginx(two_headers),
            "steps[0].setHeaderRoute: the nginx router can match one header",
        ),
        (
            nginx(mirror),
            "steps[1].setMirrorRoute: the nginx router cannot mirror",
        ),
        (nginx(two_routes), "the nginx router holds one header route"),
        (
            gateway(regex_method),
            "steps[0].setMirrorRoute.match[0].method: the gatewayAPI router",
        ),
        (
            gateway(both_kinds),
            "steps[0].setHeaderRoute: route mirror is also set by a setMirrorRoute",
        ),
    ];
    for (canary, want) in cases {
        let r = rollout("app:v1", canary);
        let p = plan(&r, &World::new().observed(), t0());
        let s = &p.status;
        assert!(
            is_true(&s.conditions, types::INVALID_SPEC),
            "{want}: {s:#?}"
        );
        let message = &get(&s.conditions, types::INVALID_SPEC).unwrap().message;
        assert!(
            message.contains(want),
            "{message:?} should contain {want:?}"
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.events.len(), 1);
    }
    // What a router can hold plans normally.
    let fine = rollout(
        "app:v1",
        nginx(
            json!([header("testers", "a"), { "setHeaderRoute": { "name": "testers", "match": [
        { "headerName": "X", "headerValue": { "regex": "^b.*" } }] } }]),
        ),
    );
    let p = plan(&fine, &World::new().observed(), t0());
    assert!(
        !is_true(&p.status.conditions, types::INVALID_SPEC),
        "{:#?}",
        p.status
    );
}
