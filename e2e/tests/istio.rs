//! The Istio router end to end: a real controller against the real plane (Istio's CRDs
//! from the istio.io/api module; the simulator plays the mesh, resolving the
//! VirtualService's destinations to revisions through the Services' selectors or the
//! DestinationRule's subsets). Weights step by step and back, subsets following the
//! revisions, header and mirror routes in place during their steps and gone at the end,
//! abort in the middle of a header route, a spec edit dropping the header step, and the
//! user's own fields left as they were.

use anyhow::Result;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::{Env, STEP_TIMEOUT, hashes, weights};
use sluice_e2e::simulator::{Simulator, Testers};
use sluice_e2e::wait_for;

const TESTERS: f64 = 0.1;
const HASH_LABEL: &str = "sluice.dev/pod-template-hash";

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

fn istio_api(env: &Env, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", kind);
    Api::namespaced_with(
        env.client.clone(),
        env.ns(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn virtual_services(env: &Env) -> Api<DynamicObject> {
    istio_api(env, "VirtualService", "virtualservices")
}

fn destination_rules(env: &Env) -> Api<DynamicObject> {
    istio_api(env, "DestinationRule", "destinationrules")
}

fn http(vs: &DynamicObject) -> Vec<Value> {
    vs.data["spec"]["http"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn is_sluices(route: &Value) -> bool {
    route["name"]
        .as_str()
        .is_some_and(|n| n.starts_with("sluice-"))
}

fn sluice_routes(vs: &DynamicObject) -> Vec<Value> {
    http(vs).into_iter().filter(is_sluices).collect()
}

/// The user's routes without the weights (sluice sets those).
fn user_routes_unweighted(routes: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = routes.iter().filter(|r| !is_sluices(r)).cloned().collect();
    for r in &mut out {
        for d in r["route"].as_array_mut().into_iter().flatten() {
            d.as_object_mut().unwrap().remove("weight");
        }
    }
    out
}

/// (canary, stable) weights of the user route `name`, by destination subset or host.
fn route_weights(vs: &DynamicObject, name: &str, canary: &str, stable: &str) -> (i64, i64) {
    let route = http(vs)
        .into_iter()
        .find(|r| r["name"] == name)
        .expect("the route");
    let weight = |which: &str| {
        route["route"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| {
                d["destination"]["subset"] == which
                    || (d["destination"]["subset"].is_null() && d["destination"]["host"] == which)
            })
            .and_then(|d| d["weight"].as_i64())
            .unwrap_or(0)
    };
    (weight(canary), weight(stable))
}

fn subset_hash(dr: &DynamicObject, subset: &str) -> Option<String> {
    dr.data["spec"]["subsets"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == subset)?["labels"][HASH_LABEL]
        .as_str()
        .map(str::to_string)
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

/// A VirtualService by the Services' hosts: an admin route to the stable Service alone
/// (with the user's retries), and the primary split (with the user's timeout).
async fn by_host_env(prefix: &str, steps: Value) -> Result<(Env, Vec<Value>)> {
    let env = Env::new(prefix).await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": { "name": "web" },
        "spec": {
            "hosts": ["web.example.com"],
            "http": [
                { "name": "admin", "match": [{ "uri": { "prefix": "/admin" } }],
                  "retries": { "attempts": 3 },
                  "route": [{ "destination": { "host": "web-stable" } }] },
                { "name": "primary", "timeout": "5s", "route": [
                    { "destination": { "host": "web-stable", "port": { "number": 80 } }, "weight": 100 },
                    { "destination": { "host": "web-canary", "port": { "number": 80 } }, "weight": 0 },
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
                "istio": { "virtualService": { "name": "web", "routes": ["primary"] } },
                "managedRoutes": [{ "name": "testers" }, { "name": "mirror" }],
            },
            "steps": steps,
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let before = http(&virtual_services(&env).get("web").await?);
    Ok((env, before))
}

#[tokio::test]
async fn istio_weights_and_destination_rule_subsets_follow_the_steps_and_the_users_fields_stay()
-> Result<()> {
    let env = Env::new("istio-dr").await?;
    env.services(&["web", "web-stable", "web-canary"]).await?;
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": { "name": "web" },
        "spec": {
            "host": "web",
            "trafficPolicy": { "loadBalancer": { "simple": "LEAST_REQUEST" } },
            "subsets": [
                { "name": "stable", "labels": { "app": "web" } },
                { "name": "canary", "labels": { "app": "web" } },
            ],
        },
    }))
    .await?;
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": { "name": "web" },
        "spec": {
            "hosts": ["web"],
            "http": [
                { "name": "primary", "retries": { "attempts": 2 }, "route": [
                    { "destination": { "host": "web", "subset": "stable" }, "weight": 100 },
                    { "destination": { "host": "web", "subset": "canary" }, "weight": 0 },
                ] },
            ],
        },
    }))
    .await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "istio": {
                "virtualService": { "name": "web" },
                "destinationRule": { "name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable" },
            } },
            "steps": [{ "setWeight": 20 }, { "pause": {} }, { "setWeight": 60 }, { "pause": {} }],
        }),
    )
    .await?;
    let r = env.wait_healthy_on_new_revision().await?;
    let (v1, _) = hashes(&r);
    let (vss, drs) = (virtual_services(&env), destination_rules(&env));
    // Both subsets select the only revision.
    wait_for("both subsets at v1", STEP_TIMEOUT, || async {
        let dr = drs.get("web").await?;
        Ok(subset_hash(&dr, "stable").as_deref() == Some(v1.as_str())
            && subset_hash(&dr, "canary").as_deref() == Some(v1.as_str()))
    })
    .await?;
    let vs_before = vss.get("web").await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;

    env.set_version("v2").await?;
    let r = env.wait_step(1, RolloutPhase::Paused).await?;
    let (v2, _) = hashes(&r);
    assert_eq!(weights(&r), (20, 80, Some(true)));
    assert_eq!(
        route_weights(&vss.get("web").await?, "primary", "canary", "stable"),
        (20, 80)
    );
    let dr = drs.get("web").await?;
    assert_eq!(
        subset_hash(&dr, "canary"),
        Some(v2.clone()),
        "the canary subset selects v2"
    );
    assert_eq!(subset_hash(&dr, "stable"), Some(v1.clone()));
    // The mesh (the simulator) sends the canary subset's share to v2's pods.
    wait_share(&sim, "v2", 0.2, false).await?;

    env.act(UserAction::Promote).await?;
    let r = env.wait_step(3, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r), (60, 40, Some(true)));
    assert_eq!(
        route_weights(&vss.get("web").await?, "primary", "canary", "stable"),
        (60, 40)
    );
    wait_share(&sim, "v2", 0.6, false).await?;

    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    wait_for(
        "weights back to 0/100 and both subsets at v2",
        STEP_TIMEOUT,
        || async {
            let dr = drs.get("web").await?;
            Ok(
                route_weights(&vss.get("web").await?, "primary", "canary", "stable") == (0, 100)
                    && subset_hash(&dr, "stable").as_deref() == Some(v2.as_str())
                    && subset_hash(&dr, "canary").as_deref() == Some(v2.as_str()),
            )
        },
    )
    .await?;
    wait_share(&sim, "v2", 1.0, false).await?;

    // The user's fields: the VirtualService is as it was (weights included, now back),
    // the DestinationRule's policy and the subsets' own labels are untouched.
    let vs_after = vss.get("web").await?;
    assert_eq!(vs_after.data["spec"], vs_before.data["spec"]);
    let dr = drs.get("web").await?;
    assert_eq!(
        dr.data["spec"]["trafficPolicy"],
        json!({ "loadBalancer": { "simple": "LEAST_REQUEST" } })
    );
    for s in dr.data["spec"]["subsets"].as_array().unwrap() {
        assert_eq!(s["labels"]["app"], "web");
        assert_eq!(s["labels"].as_object().unwrap().len(), 2, "{s}");
    }
    env.finish().await
}

#[tokio::test]
async fn istio_header_and_mirror_routes_then_abort_leaves_the_users_routes_as_they_were()
-> Result<()> {
    let (env, before) = by_host_env(
        "istio-hdr",
        json!([
            header_step(), { "pause": {} },
            { "setMirrorRoute": { "name": "mirror", "percentage": 50, "match": [{ "path": { "prefix": "/" } }] } },
            { "pause": {} },
            { "setWeight": 20 }, { "pause": {} },
        ]),
    )
    .await?;
    let vss = virtual_services(&env);
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.send_testers(testers());

    env.set_version("v2").await?;
    let r = env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r), (0, 100, Some(true)));
    let managed = &r
        .status
        .as_ref()
        .unwrap()
        .canary
        .as_ref()
        .unwrap()
        .managed_routes;
    assert_eq!(
        managed
            .iter()
            .map(|m| (m.name.as_str(), m.kind.as_str(), m.verified))
            .collect::<Vec<_>>(),
        [("testers", "header", true)]
    );
    let vs = vss.get("web").await?;
    let ours = sluice_routes(&vs);
    assert_eq!(
        ours.len(),
        1,
        "one route per weighted user route: {ours:#?}"
    );
    assert_eq!(http(&vs)[0], ours[0], "sluice's routes come first");
    assert_eq!(
        ours[0]["match"],
        json!([{ "headers": { "x-canary": { "exact": "yes" } } }])
    );
    assert_eq!(
        ours[0]["route"],
        json!([{ "destination": { "host": "web-canary", "port": { "number": 80 } }, "weight": 100 }])
    );
    assert_eq!(ours[0]["timeout"], "5s", "served as the user's route");
    assert_eq!(
        user_routes_unweighted(&http(&vs)),
        user_routes_unweighted(&before)
    );
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
    let ours = sluice_routes(&vss.get("web").await?);
    assert_eq!(ours.len(), 2);
    assert_eq!(
        ours[1]["mirror"],
        json!({ "host": "web-canary", "port": { "number": 80 } })
    );
    assert_eq!(ours[1]["mirrorPercentage"]["value"].as_f64(), Some(50.0));
    assert_eq!(ours[1]["match"], json!([{ "uri": { "prefix": "/" } }]));
    // Half of the non-testers' requests are copied to the canary; it still serves only
    // the testers.
    wait_share(&sim, "v2", (1.0 - TESTERS) * 0.5, true).await?;
    wait_share(&sim, "v2", TESTERS, false).await?;
    assert!(sim.mirrored().get("v2").copied().unwrap_or(0.0) > 0.0);

    env.act(UserAction::Promote).await?;
    let r = env.wait_step(5, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r), (20, 80, Some(true)));
    let vs = vss.get("web").await?;
    assert_eq!(
        route_weights(&vs, "primary", "web-canary", "web-stable"),
        (20, 80)
    );
    // The mirror route serves as the user's route, so its weights moved too.
    let mirror = &sluice_routes(&vs)[1];
    assert_eq!(mirror["route"][0]["weight"], 80);
    assert_eq!(mirror["route"][1]["weight"], 20);
    wait_share(&sim, "v2", TESTERS + (1.0 - TESTERS) * 0.2, false).await?;

    // Abort in the middle of the routes: all removed, traffic back to stable, and the
    // VirtualService's routes are the user's again, byte for byte.
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
    wait_for(
        "the routes as the user wrote them",
        STEP_TIMEOUT,
        || async { Ok(http(&vss.get("web").await?) == before) },
    )
    .await?;
    wait_share(&sim, "v2", 0.0, false).await?;
    wait_share(&sim, "v2", 0.0, true).await?;
    env.finish().await
}

#[tokio::test]
async fn istio_spec_edit_dropping_the_header_step_removes_the_route_and_completion_is_clean()
-> Result<()> {
    let (env, before) = by_host_env(
        "istio-edit",
        json!([header_step(), { "pause": {} }, { "setWeight": 50 }, { "pause": {} }]),
    )
    .await?;
    let vss = virtual_services(&env);
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.send_testers(testers());
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(sluice_routes(&vss.get("web").await?).len(), 1);
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
    wait_for("no sluice route left", STEP_TIMEOUT, || async {
        Ok(sluice_routes(&vss.get("web").await?).is_empty())
    })
    .await?;
    // Testers are no longer special: the canary gets its weight of everyone.
    wait_share(&sim, "v2", 0.25, false).await?;

    env.act(UserAction::PromoteFull).await?;
    env.wait_healthy_on_new_revision().await?;
    wait_for(
        "the routes as the user wrote them",
        STEP_TIMEOUT,
        || async { Ok(http(&vss.get("web").await?) == before) },
    )
    .await?;
    env.finish().await
}

#[tokio::test]
async fn istio_missing_virtual_service_then_created_resumes() -> Result<()> {
    let env = Env::new("istio-missing").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.rollout(
        2,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "istio": { "virtualService": { "name": "web" } } },
            "steps": [{ "setWeight": 50 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait("ReferenceNotFound naming the VirtualService", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.reason == "ReferenceNotFound" && c.message.contains("VirtualService"))
        })
    })
    .await?;
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": { "name": "web" },
        "spec": { "hosts": ["web"], "http": [{ "name": "primary", "route": [
            { "destination": { "host": "web-stable.{ns}.svc.cluster.local".replace("{ns}", env.ns()) }, "weight": 100 },
            { "destination": { "host": "web-canary" }, "weight": 0 },
        ] }] },
    }))
    .await?;
    env.wait_healthy_on_new_revision().await?;
    env.set_version("v2").await?;
    let r = env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r), (50, 50, Some(true)));
    let vs = virtual_services(&env).get("web").await?;
    let fqdn = format!("web-stable.{}.svc.cluster.local", env.ns());
    assert_eq!(route_weights(&vs, "primary", "web-canary", &fqdn), (50, 50));
    env.finish().await
}
