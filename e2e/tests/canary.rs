//! Canary rollouts end to end: a real `sluice-controller` process against the real local
//! control plane, asserting on the real ReplicaSets, Services, Ingresses and HTTPRoutes at
//! each step.

use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::{Env, STEP_TIMEOUT, hashes, ingress, weights};
use sluice_e2e::{ControllerProcess, kubectl, wait_for};

#[tokio::test]
async fn replica_ratio_canary_walks_its_steps_and_promotes() -> Result<()> {
    let env = Env::new("ratio").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.rollout(
        5,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [{ "setWeight": 20 }, { "pause": { "duration": "5s" } }, { "setWeight": 50 }, { "pause": {} }, { "setWeight": 100 }],
        }),
    )
    .await?;
    let first = env.wait_healthy_on_new_revision().await?;
    let (v1, _) = hashes(&first);
    assert_eq!(
        env.service_hash("web-stable").await?.as_deref(),
        Some(v1.as_str())
    );

    env.set_version("v2").await?;
    let at_pause = env.wait_step(1, RolloutPhase::Paused).await?;
    let (v2, stable) = hashes(&at_pause);
    assert_eq!(stable, v1);
    env.wait_sizes(&v2, &v1, (1, 4)).await?;
    assert_eq!(weights(&at_pause).0, 20);
    assert_eq!(
        env.service_hash("web-canary").await?.as_deref(),
        Some(v2.as_str())
    );
    let paused_since = Instant::now();

    // The timed pause ends by itself; the indefinite one does not.
    let at_indefinite = env.wait_step(3, RolloutPhase::Paused).await?;
    assert!(
        paused_since.elapsed() >= Duration::from_secs(3),
        "the 5s pause ended after {:?}",
        paused_since.elapsed()
    );
    env.wait_sizes(&v2, &v1, (3, 2)).await?;
    assert_eq!(
        at_indefinite.status.unwrap().step_progress.as_deref(),
        Some("4/5")
    );
    let out = kubectl(&[
        "wait",
        "-n",
        env.ns(),
        "--for=condition=Paused",
        "rollout/web",
        "--timeout=10s",
    ])?;
    assert!(out.success, "kubectl wait Paused: {}", out.stderr);

    env.act(UserAction::Promote).await?;
    let done = env.wait_healthy_on_new_revision().await?;
    assert_eq!(hashes(&done), (v2.clone(), v2.clone()));
    env.wait_sizes(&v2, &v1, (5, 0)).await?;
    assert_eq!(
        env.service_hash("web-stable").await?.as_deref(),
        Some(v2.as_str())
    );
    let out = kubectl(&[
        "wait",
        "-n",
        env.ns(),
        "--for=condition=Ready",
        "rollout/web",
        "--timeout=10s",
    ])?;
    assert!(out.success, "kubectl wait Ready: {}", out.stderr);

    // The scale subresource reaches the pods.
    let out = kubectl(&["scale", "-n", env.ns(), "rollout/web", "--replicas=3"])?;
    assert!(out.success, "{}", out.stderr);
    env.wait_sizes(&v2, &v1, (3, 0)).await?;
    let scaled = env
        .wait("status replicas 3", |r| {
            r.status.as_ref().is_some_and(|s| s.hpa_replicas == Some(3))
        })
        .await?;
    assert_eq!(scaled.status.unwrap().selector.as_deref(), Some("app=web"));
    env.finish().await
}

#[tokio::test]
async fn nginx_canary_ingress_follows_the_steps_and_is_removed_at_the_end() -> Result<()> {
    let env = Env::new("nginx").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(ingress("web", "web-stable")).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "nginx": { "stableIngress": "web" } },
            "steps": [{ "setWeight": 20 }, { "pause": {} }, { "setWeight": 50 }, { "pause": {} }],
        }),
    )
    .await?;
    let (v1, _) = hashes(&env.wait_healthy_on_new_revision().await?);
    let ingresses: Api<Ingress> = Api::namespaced(env.client.clone(), env.ns());

    env.set_version("v2").await?;
    let r = env.wait_step(1, RolloutPhase::Paused).await?;
    let (v2, _) = hashes(&r);
    assert_eq!(weights(&r), (20, 80, Some(true)));
    env.wait_sizes(&v2, &v1, (1, 4)).await?; // the stable ReplicaSet stays at full size
    let canary = ingresses.get("web-web-canary").await?;
    let ann = canary.annotations();
    assert_eq!(
        ann.get("nginx.ingress.kubernetes.io/canary")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        ann.get("nginx.ingress.kubernetes.io/canary-weight")
            .map(String::as_str),
        Some("20")
    );
    let spec = canary.spec.clone().unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let rules = spec.rules.unwrap();
    let backend = &rules[0].http.as_ref().unwrap().paths[0].backend;
    assert_eq!(backend.service.as_ref().unwrap().name, "web-canary");

    // Routes that drift are rebuilt, not only weights: the user adds a host to the stable
    // Ingress mid-pause, then another writer edits the canary Ingress' path.
    let hosts = |i: &Ingress| -> Vec<(String, String)> {
        let rules = i
            .spec
            .as_ref()
            .and_then(|s| s.rules.clone())
            .unwrap_or_default();
        rules
            .iter()
            .flat_map(|r| {
                let host = r.host.clone().unwrap_or_default();
                let paths = r.http.iter().flat_map(|h| h.paths.clone());
                paths.map(move |p| (host.clone(), p.path.unwrap_or_default()))
            })
            .collect()
    };
    let mut two_hosts = ingress("web", "web-stable");
    let first_rule = two_hosts["spec"]["rules"][0].clone();
    let mut second_rule = first_rule.clone();
    second_rule["host"] = json!("api.web.example");
    two_hosts["spec"]["rules"] = json!([first_rule, second_rule]);
    let wanted = vec![
        ("web.example".to_string(), "/".to_string()),
        ("api.web.example".to_string(), "/".to_string()),
    ];
    let edited = Instant::now();
    sluice_e2e::apply(&env.client, env.ns(), two_hosts).await?;
    wait_for(
        "the new host on the canary Ingress",
        Duration::from_secs(10),
        || async { Ok(hosts(&ingresses.get("web-web-canary").await?) == wanted) },
    )
    .await?;
    let rebuilt = edited.elapsed();
    let patch = json!({"spec": {"rules": [{"host": "web.example", "http": {"paths": [{
        "path": "/elsewhere", "pathType": "Prefix",
        "backend": {"service": {"name": "web-canary", "port": {"number": 80}}},
    }]}}]}});
    let edited = Instant::now();
    ingresses
        .patch(
            "web-web-canary",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    wait_for(
        "the canary Ingress put back",
        Duration::from_secs(10),
        || async { Ok(hosts(&ingresses.get("web-web-canary").await?) == wanted) },
    )
    .await?;
    let put_back = edited.elapsed();
    println!(
        "drift: canary Ingress rebuilt {rebuilt:?} after the stable Ingress changed, put back {put_back:?} after an edit"
    );
    assert!(
        rebuilt < Duration::from_secs(2),
        "rebuilt only after {rebuilt:?}"
    );
    assert!(
        put_back < Duration::from_secs(2),
        "put back only after {put_back:?}"
    );
    let r = env
        .wait("verified again", |r| weights(r) == (20, 80, Some(true)))
        .await?;
    assert_eq!(r.status.unwrap().current_step_index, Some(1));
    let users_before = ingresses.get("web").await?;

    env.act(UserAction::Promote).await?;
    let r = env.wait_step(3, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r), (50, 50, Some(true)));
    let canary = ingresses.get("web-web-canary").await?;
    assert_eq!(
        canary
            .annotations()
            .get("nginx.ingress.kubernetes.io/canary-weight")
            .map(String::as_str),
        Some("50")
    );
    env.wait_sizes(&v2, &v1, (2, 4)).await?;

    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    wait_for("the canary Ingress to be removed", STEP_TIMEOUT, || async {
        Ok(ingresses.get_opt("web-web-canary").await?.is_none())
    })
    .await?;
    assert_eq!(
        env.service_hash("web-stable").await?.as_deref(),
        Some(v2.as_str())
    );
    // The user's Ingress was never touched.
    let users_after = ingresses.get("web").await?;
    assert_eq!(users_after.spec, users_before.spec);
    assert_eq!(
        users_after.metadata.resource_version,
        users_before.metadata.resource_version
    );
    env.finish().await
}

fn route_weights(route: &DynamicObject) -> (i64, i64) {
    let refs = route.data["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let w = |name: &str| {
        refs.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["weight"].as_i64())
            .unwrap_or(1)
    };
    (w("web-canary"), w("web-stable"))
}

#[tokio::test]
async fn gateway_api_httproute_weights_follow_the_steps() -> Result<()> {
    let env = Env::new("gateway").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "web" },
        "spec": {
            "parentRefs": [{ "name": "gateway" }],
            "rules": [{ "backendRefs": [
                { "name": "web-stable", "port": 80, "weight": 100 },
                { "name": "web-canary", "port": 80, "weight": 0 },
            ] }],
        },
    }))
    .await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "gatewayAPI": { "httpRoute": "web" } },
            "steps": [{ "setWeight": 20 }, { "pause": {} }, { "setWeight": 50 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), env.ns(), &ApiResource::from_gvk(&gvk));
    assert_eq!(route_weights(&routes.get("web").await?), (0, 100));

    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(route_weights(&routes.get("web").await?), (20, 80));
    env.act(UserAction::Promote).await?;
    env.wait_step(3, RolloutPhase::Paused).await?;
    assert_eq!(route_weights(&routes.get("web").await?), (50, 50));
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    assert_eq!(route_weights(&routes.get("web").await?), (0, 100));
    env.finish().await
}

#[tokio::test]
async fn abort_returns_traffic_at_once_then_retry_and_promote_full() -> Result<()> {
    let env = Env::new("abort").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(ingress("web", "web-stable")).await?;
    env.rollout(
        5,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "nginx": { "stableIngress": "web" } },
            "abortScaleDownDelaySeconds": 4,
            "steps": [{ "setWeight": 40 }, { "pause": {} }, { "setWeight": 80 }, { "pause": {} }],
        }),
    )
    .await?;
    let (v1, _) = hashes(&env.wait_healthy_on_new_revision().await?);
    env.set_version("v2").await?;
    let (v2, _) = hashes(&env.wait_step(1, RolloutPhase::Paused).await?);
    env.wait_sizes(&v2, &v1, (2, 5)).await?;
    let ingresses: Api<Ingress> = Api::namespaced(env.client.clone(), env.ns());
    assert!(ingresses.get_opt("web-web-canary").await?.is_some());

    let aborted_at = Instant::now();
    env.act(UserAction::Abort).await?;
    wait_for(
        "canary traffic to stop",
        Duration::from_secs(10),
        || async { Ok(ingresses.get_opt("web-web-canary").await?.is_none()) },
    )
    .await?;
    let traffic_back = aborted_at.elapsed();
    println!("abort: traffic back on stable {traffic_back:?} after the abort action");
    // The canary pods are still there (abortScaleDownDelaySeconds), then go.
    let sizes = env.sizes().await?;
    let canary_pods = sizes.iter().find(|s| s.0 == v2).map_or(0, |s| s.1);
    if traffic_back < Duration::from_secs(3) {
        assert_eq!(
            canary_pods, 2,
            "canary scaled down before the delay: {sizes:?}"
        );
    }
    env.wait_sizes(&v2, &v1, (0, 5)).await?;
    assert!(
        aborted_at.elapsed() >= Duration::from_secs(3),
        "scaled down after {:?}",
        aborted_at.elapsed()
    );
    let r = env
        .wait("Degraded", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let conditions = r.status.unwrap().conditions;
    let stalled = conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "RolloutAborted")
    );

    env.act(UserAction::Retry).await?;
    let r = env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r).0, 40);
    env.wait_sizes(&v2, &v1, (2, 5)).await?;

    env.act(UserAction::PromoteFull).await?;
    env.wait_healthy_on_new_revision().await?;
    env.finish().await
}

#[tokio::test]
async fn spec_paused_holds_and_set_canary_scale_sizes_the_canary() -> Result<()> {
    let env = Env::new("paused").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(ingress("web", "web-stable")).await?;
    env.rollout(
        10,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "nginx": { "stableIngress": "web" } },
            "steps": [{ "setCanaryScale": { "replicas": 3 } }, { "setWeight": 10 }, { "pause": {} }],
        }),
    )
    .await?;
    let (v1, _) = hashes(&env.wait_healthy_on_new_revision().await?);
    env.act(UserAction::Pause).await?;
    env.set_version("v2").await?;
    let r = env
        .wait("Paused by spec", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(RolloutPhase::Paused) && s.current_pod_hash != s.stable_rs
            })
        })
        .await?;
    let (v2, _) = hashes(&r);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.sizes().await?.iter().all(|s| s.0 != v2 || s.1 == 0),
        "a paused rollout started the canary"
    );

    env.act(UserAction::Resume).await?;
    let r = env.wait_step(2, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r).0, 10);
    env.wait_sizes(&v2, &v1, (3, 10)).await?; // 3 canary pods for 10% of the traffic
    env.finish().await
}

#[tokio::test]
async fn pods_that_never_become_ready_hit_the_progress_deadline() -> Result<()> {
    let env = Env::new("deadline").await?;
    env.rollout(
        3,
        json!({ "steps": [{ "setWeight": 50 }, { "pause": {} }] }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let patch = json!({ "spec": {
        "progressDeadlineSeconds": 5,
        // No node has this label: the new pods stay Pending, never ready.
        "template": { "metadata": { "annotations": { "version": "v2" } }, "spec": { "nodeSelector": { "sluice.dev/no-such-node": "true" } } },
    } });
    env.rollouts()
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let r = env
        .wait("ProgressDeadlineExceeded", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Progressing"
                        && c.status == "False"
                        && c.reason == "ProgressDeadlineExceeded"
                })
            })
        })
        .await?;
    let s = r.status.unwrap();
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );
    // The Event says so too.
    let out = kubectl(&[
        "get",
        "events",
        "-n",
        env.ns(),
        "-o",
        "jsonpath={.items[*].reason}",
    ])?;
    assert!(
        out.stdout.contains("ProgressDeadlineExceeded"),
        "{}",
        out.stdout
    );
    env.finish().await
}

#[tokio::test]
async fn going_back_to_the_stable_template_skips_the_steps() -> Result<()> {
    let env = Env::new("rollback").await?;
    env.rollout(4, json!({ "steps": [{ "setWeight": 50 }, { "pause": {} }, { "setWeight": 75 }, { "pause": {} }] })).await?;
    let (v1, _) = hashes(&env.wait_healthy_on_new_revision().await?);
    env.set_version("v2").await?;
    let (v2, _) = hashes(&env.wait_step(1, RolloutPhase::Paused).await?);
    env.wait_sizes(&v2, &v1, (2, 2)).await?;
    env.set_version("v1").await?;
    let r = env.wait_healthy_on_new_revision().await?;
    let s = r.status.unwrap();
    assert_eq!(s.stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(
        s.current_step_index,
        Some(4),
        "no step was run for the rollback"
    );
    env.wait_sizes(&v2, &v1, (0, 4)).await?;
    env.finish().await
}

#[tokio::test]
async fn a_killed_controller_resumes_at_the_same_step() -> Result<()> {
    let mut env = Env::new("restart").await?;
    env.rollout(4, json!({ "steps": [{ "setWeight": 25 }, { "pause": { "duration": "12s" } }, { "setWeight": 75 }, { "pause": {} }] })).await?;
    let (v1, _) = hashes(&env.wait_healthy_on_new_revision().await?);
    env.set_version("v2").await?;
    let before = env.wait_step(1, RolloutPhase::Paused).await?;
    let pause_started = before.status.clone().unwrap().pause_conditions[0]
        .start_time
        .clone();

    env.controller.take().unwrap().kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.controller = Some(ControllerProcess::start(env.ns())?);

    // The new process picks the pause up where it was: same step, same start (not
    // re-entered, so not lengthened), and it still ends on time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = env.rollouts().get("web").await?;
    let s = r.status.clone().unwrap();
    assert_eq!(s.current_step_index, Some(1));
    assert_eq!(
        s.pause_conditions.first().map(|p| p.start_time.clone()),
        Some(pause_started.clone())
    );
    let after = env.wait_step(3, RolloutPhase::Paused).await?;
    let (v2, _) = hashes(&after);
    env.wait_sizes(&v2, &v1, (3, 1)).await?;
    // No step was completed twice: each StepCompleted note (one per step reached) was
    // recorded once, never as a repeated series, and the last one is step 3 of 4.
    let steps = env.steps_completed().await?;
    assert!(
        steps.iter().all(|(_, count)| *count == 1),
        "a step completed twice: {steps:?}"
    );
    let mut notes: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    notes.sort();
    let before_dedup = notes.len();
    notes.dedup();
    assert_eq!(notes.len(), before_dedup, "{steps:?}");
    assert_eq!(
        notes.last().copied(),
        Some("completed step 3/4"),
        "{steps:?}"
    );
    env.finish().await
}

#[tokio::test]
async fn a_missing_service_is_reported_and_resolves_when_created() -> Result<()> {
    let env = Env::new("missing").await?;
    env.rollout(
        2,
        json!({ "canaryService": "web-canary", "stableService": "web-stable", "steps": [] }),
    )
    .await?;
    let r = env
        .wait("InvalidSpec for the missing Services", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "InvalidSpec" && c.status == "True")
            })
        })
        .await?;
    let s = r.status.unwrap();
    let invalid = s
        .conditions
        .iter()
        .find(|c| c.type_ == "InvalidSpec")
        .unwrap();
    assert_eq!(invalid.reason, "ReferenceNotFound");
    assert!(
        invalid.message.contains("web-stable"),
        "{}",
        invalid.message
    );
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    let out = kubectl(&[
        "get",
        "events",
        "-n",
        env.ns(),
        "-o",
        "jsonpath={.items[*].reason}",
    ])?;
    assert!(out.stdout.contains("ReferenceNotFound"), "{}", out.stdout);
    // Creating the Services is enough: the controller watches them.
    env.services(&["web-stable", "web-canary"]).await?;
    env.wait_healthy_on_new_revision().await?;
    env.finish().await
}

#[tokio::test]
async fn gateway_api_weights_put_back_by_another_writer_are_reasserted_and_reported() -> Result<()>
{
    let env = Env::new("drift").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    let route = |canary: i64| {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": { "name": "web" },
            "spec": {
                "parentRefs": [{ "name": "gateway" }],
                "rules": [{ "backendRefs": [
                    { "name": "web-stable", "port": 80, "weight": 100 - canary },
                    { "name": "web-canary", "port": 80, "weight": canary },
                ] }],
            },
        })
    };
    env.apply(route(0)).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "gatewayAPI": { "httpRoute": "web" } },
            "steps": [{ "setWeight": 25 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    env.set_version("v2").await?;
    let paused = env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(weights(&paused), (25, 75, Some(true)));
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), env.ns(), &ApiResource::from_gvk(&gvk));
    assert_eq!(route_weights(&routes.get("web").await?), (25, 75));

    // Every status from now on, to see the unverified one however briefly it lasts.
    let (mut rx, watch) = env.watch_rollout();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A GitOps sync applies the route as it is in Git: all traffic to stable.
    let synced = Instant::now();
    sluice_e2e::apply(&env.client, env.ns(), route(0)).await?;
    wait_for("the weights put back", Duration::from_secs(10), || async {
        Ok(route_weights(&routes.get("web").await?) == (25, 75))
    })
    .await?;
    let put_back = synced.elapsed();
    println!("drift: HTTPRoute weights re-asserted {put_back:?} after the other writer");
    assert!(
        put_back < Duration::from_secs(2),
        "re-asserted only after {put_back:?}"
    );
    let r = env
        .wait("verified again", |r| weights(r) == (25, 75, Some(true)))
        .await?;
    assert_eq!(r.status.unwrap().phase, Some(RolloutPhase::Paused));
    watch.abort();
    let mut statuses = Vec::new();
    while let Ok((_, r)) = rx.try_recv() {
        statuses.push(weights(&r));
    }
    assert!(
        statuses.contains(&(25, 75, Some(false))),
        "the status never said the weight was unverified: {statuses:?}"
    );
    let events = kubectl(&[
        "get",
        "events",
        "-n",
        env.ns(),
        "--field-selector",
        "reason=TrafficDrift",
        "-o",
        "jsonpath={.items[*].message}",
    ])?;
    assert!(
        events.stdout.contains("held canary weight 0 instead of 25"),
        "no TrafficDrift Event: {events:?}"
    );
    env.finish().await
}

/// The role labels of the live pods of revision `hash`, by pod UID.
async fn role_labels(
    env: &Env,
    hash: &str,
) -> Result<std::collections::BTreeMap<String, Option<String>>> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), env.ns());
    let list = pods
        .list(&kube::api::ListParams::default().labels(&format!(
            "{}={hash}",
            sluice_api::labels::POD_TEMPLATE_HASH_LABEL
        )))
        .await?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.uid().unwrap_or_default(), p.labels().get("role").cloned()))
        .collect())
}

#[tokio::test]
async fn canary_and_stable_metadata_follow_the_pods_roles_in_place() -> Result<()> {
    let env = Env::new("podmeta").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.rollout(
        3,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "canaryMetadata": { "labels": { "role": "canary" } },
            "stableMetadata": { "labels": { "role": "stable" } },
            "steps": [{ "setWeight": 34 }, { "pause": {} }],
        }),
    )
    .await?;
    let first = env.wait_healthy_on_new_revision().await?;
    let (v1, _) = hashes(&first);
    let stable_role = Some("stable".to_string());
    wait_for(
        "the first revision's pods labelled stable",
        STEP_TIMEOUT,
        || async {
            let roles = role_labels(&env, &v1).await?;
            Ok(roles.len() == 3 && roles.values().all(|r| *r == stable_role))
        },
    )
    .await?;

    env.set_version("v2").await?;
    let paused = env.wait_step(1, RolloutPhase::Paused).await?;
    let (v2, _) = hashes(&paused);
    let canary_role = Some("canary".to_string());
    wait_for("the canary's pod labelled canary", STEP_TIMEOUT, || async {
        let roles = role_labels(&env, &v2).await?;
        Ok(roles.len() == 1 && roles.values().all(|r| *r == canary_role))
    })
    .await?;
    let canary_pods: Vec<String> = role_labels(&env, &v2).await?.into_keys().collect();
    // The stable pods keep theirs; and the Services still select by the hash only.
    assert!(
        role_labels(&env, &v1)
            .await?
            .values()
            .all(|r| *r == stable_role)
    );

    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    wait_for(
        "the new revision's pods all labelled stable",
        STEP_TIMEOUT,
        || async {
            let roles = role_labels(&env, &v2).await?;
            Ok(roles.len() == 3 && roles.values().all(|r| *r == stable_role))
        },
    )
    .await?;
    // The canary's pod became a stable pod in place: relabelled, not replaced.
    let now = role_labels(&env, &v2).await?;
    for uid in &canary_pods {
        assert_eq!(
            now.get(uid),
            Some(&stable_role),
            "pod {uid} was replaced: {now:?}"
        );
    }
    env.finish().await
}
