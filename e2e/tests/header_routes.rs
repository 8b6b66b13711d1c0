//! Managed routes end to end (`setHeaderRoute`, `setMirrorRoute`): a real controller
//! against the real plane, with the traffic simulator sending a share of testers' requests
//! with a header, so each test sees the canary receive exactly the matched traffic; the
//! hidden states (abort during a header route, a spec edit dropping the header step) and
//! that the user's rules and Ingress stay untouched.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::{Env, STEP_TIMEOUT, hashes, ingress, weights};
use sluice_e2e::simulator::{Simulator, Testers};
use sluice_e2e::wait_for;

const TESTERS: f64 = 0.1;

fn testers() -> Testers {
    Testers {
        header: "X-Canary".into(),
        value: "yes".into(),
        share: TESTERS,
    }
}

fn header_step() -> Value {
    json!({ "setHeaderRoute": { "name": "testers", "match": [
        { "headerName": "X-Canary", "headerValue": { "exact": "yes" } }
    ] } })
}

fn routes_api(env: &Env) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(env.client.clone(), env.ns(), &ApiResource::from_gvk(&gvk))
}

fn rules(route: &DynamicObject) -> Vec<Value> {
    route.data["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sluice_rules(route: &DynamicObject) -> Vec<Value> {
    rules(route)
        .into_iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("sluice-")))
        .collect()
}

/// The user's rules with the weights left out (sluice sets those).
fn user_rules_unweighted(route: &DynamicObject) -> Vec<Value> {
    let mut out: Vec<Value> = rules(route)
        .into_iter()
        .filter(|r| !r["name"].as_str().is_some_and(|n| n.starts_with("sluice-")))
        .collect();
    for r in &mut out {
        for b in r["backendRefs"].as_array_mut().into_iter().flatten() {
            b.as_object_mut().unwrap().remove("weight");
        }
    }
    out
}

/// Waits until the simulator's split gives `version` `share` (±0.01).
async fn wait_share(sim: &Simulator, version: &str, share: f64, mirrored: bool) -> Result<()> {
    let what = format!(
        "{} share of {version} at {share}",
        if mirrored { "mirrored" } else { "served" }
    );
    wait_for(&what, STEP_TIMEOUT, || async {
        let split = if mirrored {
            sim.mirror_split()
        } else {
            sim.split()
        };
        Ok((split.get(version).copied().unwrap_or(0.0) - share).abs() < 0.01)
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e:#}: split {:?}, mirrored {:?}",
            sim.split(),
            sim.mirror_split()
        )
    })
}

async fn gateway_env(prefix: &str, steps: Value) -> Result<(Env, Value)> {
    let env = Env::new(prefix).await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "web" },
        "spec": {
            "parentRefs": [{ "name": "gateway" }],
            "rules": [
                { "name": "admin", "matches": [{ "path": { "type": "PathPrefix", "value": "/admin" } }],
                  "backendRefs": [{ "name": "web-stable", "port": 80 }] },
                { "name": "main", "backendRefs": [
                    { "name": "web-stable", "port": 80, "weight": 100 },
                    { "name": "web-canary", "port": 80, "weight": 0 },
                ] },
            ],
        },
    }))
    .await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": {
                "gatewayAPI": { "httpRoute": "web" },
                "managedRoutes": [{ "name": "testers" }, { "name": "mirror" }],
            },
            "steps": steps,
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let before = serde_json::to_value(rules(&routes_api(&env).get("web").await?))?;
    Ok((env, before))
}

#[tokio::test]
async fn gateway_header_and_mirror_routes_then_abort_leaves_the_users_rules_as_they_were()
-> Result<()> {
    let (env, before) = gateway_env(
        "hdr-gw",
        json!([
            header_step(), { "pause": {} },
            { "setMirrorRoute": { "name": "mirror", "percentage": 50, "match": [{ "path": { "prefix": "/" } }] } },
            { "pause": {} },
            { "setWeight": 20 }, { "pause": {} },
        ]),
    )
    .await?;
    let routes = routes_api(&env);
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.send_testers(testers());

    env.set_version("v2").await?;
    let r = env.wait_step(1, RolloutPhase::Paused).await?;
    let (v2, v1) = hashes(&r);
    env.wait_sizes(&v2, &v1, (1, 4)).await?;
    assert_eq!(weights(&r), (0, 100, Some(true)));
    let managed = &r
        .status
        .as_ref()
        .unwrap()
        .canary
        .as_ref()
        .unwrap()
        .managed_routes;
    assert_eq!(managed.len(), 1);
    assert_eq!(
        (
            managed[0].name.as_str(),
            managed[0].kind.as_str(),
            managed[0].verified
        ),
        ("testers", "header", true)
    );
    let route = routes.get("web").await?;
    let ours = sluice_rules(&route);
    assert_eq!(
        ours.len(),
        1,
        "one rule per user rule routing to both Services: {ours:#?}"
    );
    assert_eq!(rules(&route)[0], ours[0], "sluice's rules come first");
    assert_eq!(ours[0]["backendRefs"].as_array().unwrap().len(), 1);
    assert_eq!(ours[0]["backendRefs"][0]["name"], "web-canary");
    assert_eq!(
        ours[0]["matches"][0]["headers"],
        json!([{ "name": "X-Canary", "type": "Exact", "value": "yes" }])
    );
    assert_eq!(user_rules_unweighted(&route), {
        let mut b = before.as_array().unwrap().clone();
        for r in &mut b {
            for x in r["backendRefs"].as_array_mut().into_iter().flatten() {
                x.as_object_mut().unwrap().remove("weight");
            }
        }
        b
    });
    // At weight 0 the canary serves exactly the testers.
    wait_share(&sim, "v2", TESTERS, false).await?;

    env.act(UserAction::Promote).await?;
    let r = env.wait_step(3, RolloutPhase::Paused).await?;
    let kinds: Vec<_> = r
        .status
        .as_ref()
        .unwrap()
        .canary
        .as_ref()
        .unwrap()
        .managed_routes
        .iter()
        .map(|m| (m.name.clone(), m.verified))
        .collect();
    assert_eq!(kinds, [("testers".into(), true), ("mirror".into(), true)]);
    let route = routes.get("web").await?;
    let ours = sluice_rules(&route);
    assert_eq!(ours.len(), 2);
    let mirror = ours[1]["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "RequestMirror")
        .cloned();
    let mirror = mirror.expect("a RequestMirror filter");
    assert_eq!(mirror["requestMirror"]["backendRef"]["name"], "web-canary");
    assert_eq!(mirror["requestMirror"]["percent"], 50);
    // Half of the non-testers' requests are copied to the canary; it still serves only
    // the testers.
    wait_share(&sim, "v2", (1.0 - TESTERS) * 0.5, true).await?;
    wait_share(&sim, "v2", TESTERS, false).await?;
    assert!(sim.mirrored().get("v2").copied().unwrap_or(0.0) > 0.0);

    env.act(UserAction::Promote).await?;
    let r = env.wait_step(5, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r), (20, 80, Some(true)));
    wait_share(&sim, "v2", TESTERS + (1.0 - TESTERS) * 0.2, false).await?;

    // Abort in the middle of the routes: all removed, traffic back to stable, and the
    // route is the user's again, byte for byte.
    env.act(UserAction::Abort).await?;
    env.wait("aborted with no managed route", |r| {
        let s = r.status.clone().unwrap_or_default();
        s.phase == Some(RolloutPhase::Degraded)
            && s.canary
                .as_ref()
                .is_some_and(|c| c.managed_routes.is_empty())
            && s.canary
                .as_ref()
                .and_then(|c| c.weights.clone())
                .is_some_and(|w| w.canary == 0 && w.verified == Some(true))
    })
    .await?;
    wait_for("the route as the user wrote it", STEP_TIMEOUT, || async {
        Ok(serde_json::to_value(rules(&routes.get("web").await?))? == before)
    })
    .await?;
    wait_share(&sim, "v2", 0.0, false).await?;
    wait_share(&sim, "v2", 0.0, true).await?;
    env.finish().await
}

#[tokio::test]
async fn gateway_spec_edit_dropping_the_header_step_removes_the_route_and_completion_is_clean()
-> Result<()> {
    let (env, before) = gateway_env(
        "hdr-edit",
        json!([header_step(), { "pause": {} }, { "setWeight": 50 }, { "pause": {} }]),
    )
    .await?;
    let routes = routes_api(&env);
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.send_testers(testers());
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(sluice_rules(&routes.get("web").await?).len(), 1);
    wait_share(&sim, "v2", TESTERS, false).await?;

    // Git drops the header step mid-rollout.
    let patch = json!({ "spec": { "strategy": { "canary": { "steps": [
        { "setWeight": 25 }, { "pause": {} }, { "setWeight": 50 }, { "pause": {} },
    ] } } } });
    env.rollouts()
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let r = env
        .wait("at the new first pause, no managed route", |r| {
            let s = r.status.clone().unwrap_or_default();
            s.current_step_index == Some(1)
                && s.phase == Some(RolloutPhase::Paused)
                && s.canary
                    .as_ref()
                    .is_some_and(|c| c.managed_routes.is_empty())
        })
        .await?;
    assert_eq!(weights(&r), (25, 75, Some(true)));
    wait_for("no sluice rule left", STEP_TIMEOUT, || async {
        Ok(sluice_rules(&routes.get("web").await?).is_empty())
    })
    .await?;
    // Testers are no longer special: the canary gets its weight of everyone.
    wait_share(&sim, "v2", 0.25, false).await?;

    env.act(UserAction::PromoteFull).await?;
    env.wait_healthy_on_new_revision().await?;
    wait_for("the route as the user wrote it", STEP_TIMEOUT, || async {
        Ok(serde_json::to_value(rules(&routes.get("web").await?))? == before)
    })
    .await?;
    env.finish().await
}

#[tokio::test]
async fn nginx_header_route_on_the_canary_ingress_then_abort() -> Result<()> {
    let env = Env::new("hdr-nginx").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(ingress("web", "web-stable")).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "nginx": { "stableIngress": "web" }, "managedRoutes": [{ "name": "testers" }] },
            "steps": [header_step(), { "pause": {} }, { "setWeight": 20 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let ingresses: Api<Ingress> = Api::namespaced(env.client.clone(), env.ns());
    let stable_before = ingresses.get("web").await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.send_testers(testers());

    env.set_version("v2").await?;
    let r = env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r), (0, 100, Some(true)));
    let canary = ingresses.get("web-web-canary").await?;
    let ann = canary.annotations();
    let get = |k: &str| {
        ann.get(&format!("nginx.ingress.kubernetes.io/{k}"))
            .cloned()
    };
    assert_eq!(get("canary").as_deref(), Some("true"));
    assert_eq!(
        get("canary-weight").as_deref(),
        Some("0"),
        "the header alone reaches the canary"
    );
    assert_eq!(get("canary-by-header").as_deref(), Some("X-Canary"));
    assert_eq!(get("canary-by-header-value").as_deref(), Some("yes"));
    assert!(
        ann.get("sluice.dev/managed-routes")
            .is_some_and(|v| v.starts_with("testers="))
    );
    wait_share(&sim, "v2", TESTERS, false).await?;

    env.act(UserAction::Promote).await?;
    let r = env.wait_step(3, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r), (20, 80, Some(true)));
    let ann = ingresses.get("web-web-canary").await?.annotations().clone();
    assert_eq!(
        ann.get("nginx.ingress.kubernetes.io/canary-weight")
            .map(String::as_str),
        Some("20")
    );
    assert_eq!(
        ann.get("nginx.ingress.kubernetes.io/canary-by-header")
            .map(String::as_str),
        Some("X-Canary")
    );
    wait_share(&sim, "v2", TESTERS + (1.0 - TESTERS) * 0.2, false).await?;

    env.act(UserAction::Abort).await?;
    env.wait("aborted with no managed route", |r| {
        let s = r.status.clone().unwrap_or_default();
        s.phase == Some(RolloutPhase::Degraded)
            && s.canary
                .as_ref()
                .is_some_and(|c| c.managed_routes.is_empty())
    })
    .await?;
    wait_for("the canary Ingress gone", STEP_TIMEOUT, || async {
        Ok(ingresses.get_opt("web-web-canary").await?.is_none())
    })
    .await?;
    wait_share(&sim, "v2", 0.0, false).await?;
    let stable_after = ingresses.get("web").await?;
    assert_eq!(
        stable_after.metadata.resource_version, stable_before.metadata.resource_version,
        "the user's Ingress is never written"
    );
    env.finish().await
}

#[tokio::test]
async fn nginx_mirror_route_is_an_invalid_spec_naming_the_router_and_step() -> Result<()> {
    let env = Env::new("hdr-nginx-mirror").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(ingress("web", "web-stable")).await?;
    env.rollout(
        2,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "nginx": { "stableIngress": "web" }, "managedRoutes": [{ "name": "mirror" }] },
            "steps": [{ "setMirrorRoute": { "name": "mirror", "match": [{ "path": { "prefix": "/" } }] } }],
        }),
    )
    .await?;
    let r = env
        .wait("InvalidSpec", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "InvalidSpec"
                        && c.status == "True"
                        && c.message
                            .contains("steps[0].setMirrorRoute: the nginx router cannot mirror")
                })
            })
        })
        .await?;
    assert_eq!(r.status.unwrap().phase, Some(RolloutPhase::Degraded));
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.finish().await
}
