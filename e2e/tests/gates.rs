//! Gates end to end: a Rollout's `strategy.gates` POST to an endpoint the test runs on
//! 127.0.0.1 (the controller is a local process). A gate that answers anything but 2xx
//! holds the rollout where it is (a `Gate` pause condition naming it, the weight before
//! the step) and is retried with backoff; a 2xx lets it go on; a timeout aborts; a promote
//! passes it; `postRollout` and `rollback` are told once, after the fact.

use anyhow::Result;
use serde_json::{Value, json};
use sluice_api::gate::{GatePhase, GatePoint};
use sluice_api::rollout::{PauseReason, Rollout, RolloutPhase};
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::{Env, hashes, pod_template};
use sluice_e2e::web_endpoint::WebEndpoint;

fn rollout(strategy: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("v1"),
            "strategy": strategy,
        },
    })
}

/// The gate a `Gate` pause condition names, if one holds the rollout.
fn held_by(r: &Rollout) -> Option<String> {
    let status = r.status.as_ref()?;
    status
        .pause_conditions
        .iter()
        .find(|c| c.reason == PauseReason::Gate)
        .and_then(|c| c.gate.clone())
}

fn gate_phase(r: &Rollout, name: &str, point: GatePoint) -> Option<GatePhase> {
    let status = r.status.as_ref()?;
    status
        .gates
        .iter()
        .find(|g| g.name == name && g.point == point)
        .map(|g| g.phase)
}

#[tokio::test]
async fn a_gate_holds_each_weight_increase_until_it_answers_2xx() -> Result<()> {
    let env = Env::new("gate-hold").await?;
    let endpoint = WebEndpoint::start(503, r#"{"approved":false}"#).await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(rollout(json!({
        "canary": {
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [{ "setWeight": 25 }, { "setWeight": 75 }],
        },
        "gates": [
            { "name": "approve", "points": ["weightIncrease"], "url": format!("{}/approve", endpoint.url), "timeout": "10m" },
            { "name": "smoke", "points": ["postRollout"], "url": format!("{}/smoke", endpoint.url),
              "metadata": { "cmd": "hey -z 1m http://web-canary/" } },
        ],
    })))
    .await?;
    env.wait_healthy_on_new_revision().await?;
    assert!(
        endpoint.requests().is_empty(),
        "a first revision calls no gate"
    );

    env.set_version("v2").await?;
    let r = env
        .wait("held by gate approve before step 1", |r| {
            held_by(r).as_deref() == Some("approve")
                && r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Paused)
        })
        .await?;
    let (v2, v1) = hashes(&r);
    assert_eq!(r.status.as_ref().unwrap().current_step_index, Some(0));
    // Retried with backoff while it says no; the hold shows its answer.
    let r = env
        .wait("the gate asked again and its answer shown", |r| {
            endpoint.bodies("/approve").len() >= 3
                && r.status
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .is_some_and(|m| m.contains("HTTP 503"))
        })
        .await?;
    let message = r.status.as_ref().unwrap().message.clone().unwrap();
    assert!(
        message.starts_with("held by gate approve at weightIncrease step 1"),
        "{message}"
    );
    env.wait_sizes(&v2, &v1, (0, 4)).await?;
    let first = &endpoint.bodies("/approve")[0];
    assert_eq!(first["point"], "weightIncrease");
    assert_eq!(first["name"], "web");
    assert_eq!(first["namespace"], env.ns());
    assert_eq!(first["revision"], v2.as_str());
    assert_eq!(first["stableRevision"], v1.as_str());
    assert_eq!(
        first["step"],
        json!({ "index": 0, "count": 2, "weight": 0, "nextWeight": 25 })
    );
    assert_eq!(
        first["services"],
        json!({ "canary": "web-canary", "stable": "web-stable" })
    );

    endpoint.set(200, r#"{"approved":true}"#);
    let r = env.wait_healthy_on_new_revision().await?;
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v2.as_str())
    );
    let steps: Vec<i64> = endpoint
        .bodies("/approve")
        .iter()
        .map(|b| b["step"]["index"].as_i64().unwrap())
        .collect();
    assert_eq!(
        steps.last(),
        Some(&1),
        "asked again before step 2: {steps:?}"
    );
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "never back to step 1: {steps:?}"
    );

    // postRollout: told once the revision is stable, once.
    let r = env
        .wait("postRollout passed", |r| {
            gate_phase(r, "smoke", GatePoint::PostRollout) == Some(GatePhase::Passed)
        })
        .await?;
    assert_eq!(
        gate_phase(&r, "approve", GatePoint::WeightIncrease),
        Some(GatePhase::Passed)
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let smoke = endpoint.bodies("/smoke");
    assert_eq!(smoke.len(), 1, "{smoke:?}");
    assert_eq!(smoke[0]["point"], "postRollout");
    assert_eq!(
        smoke[0]["metadata"],
        json!({ "cmd": "hey -z 1m http://web-canary/" })
    );
    env.finish().await
}

#[tokio::test]
async fn a_gate_past_its_timeout_aborts_and_the_rollback_gate_is_told() -> Result<()> {
    let env = Env::new("gate-timeout").await?;
    let endpoint = WebEndpoint::start(500, "{}").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(rollout(json!({
        "canary": {
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [{ "setWeight": 50 }, { "pause": {} }],
        },
        "gates": [
            { "name": "freeze", "points": ["preRollout"], "url": format!("{}/freeze", endpoint.url), "timeout": "8s" },
            { "name": "pager", "points": ["rollback"], "url": format!("{}/pager", endpoint.url) },
        ],
    })))
    .await?;
    env.wait_healthy_on_new_revision().await?;
    env.set_version("v2").await?;
    let r = env
        .wait("aborted by the gate's timeout", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let (v2, v1) = hashes(&r);
    let message = r
        .status
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap_or_default();
    assert!(
        message.contains("gate freeze (preRollout) did not pass within 8s: HTTP 500"),
        "{message}"
    );
    assert!(held_by(&r).is_none());
    env.wait_sizes(&v2, &v1, (0, 4)).await?;
    assert!(!endpoint.bodies("/freeze").is_empty());

    // The rollback gate is told, retried while it fails, and passes once it answers.
    env.wait("the rollback gate called", |_| {
        !endpoint.bodies("/pager").is_empty()
    })
    .await?;
    endpoint.set(200, "{}");
    let r = env
        .wait("the rollback gate passed", |r| {
            gate_phase(r, "pager", GatePoint::Rollback) == Some(GatePhase::Passed)
        })
        .await?;
    let pager = endpoint.bodies("/pager");
    assert!(
        pager
            .iter()
            .all(|b| b["point"] == "rollback" && b["revision"] == v2.as_str())
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        endpoint.bodies("/pager").len(),
        pager.len(),
        "not called after passing"
    );
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v1.as_str())
    );
    env.finish().await
}

#[tokio::test]
async fn a_promote_passes_the_blue_green_gate_holding_the_switch() -> Result<()> {
    let env = Env::new("gate-bg").await?;
    let endpoint = WebEndpoint::start(403, r#"{"reason":"change not approved"}"#).await?;
    env.services(&["web-active", "web-preview"]).await?;
    env.apply(rollout(json!({
        "blueGreen": { "activeService": "web-active", "previewService": "web-preview" },
        "gates": [{ "name": "cab", "points": ["prePromotion"], "url": format!("{}/cab", endpoint.url) }],
    })))
    .await?;
    env.wait_healthy_on_new_revision().await?;
    env.set_version("v2").await?;
    let r = env
        .wait("held by gate cab before the switch", |r| {
            held_by(r).as_deref() == Some("cab")
                && r.status
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .is_some_and(|m| m.contains("HTTP 403"))
        })
        .await?;
    let (v2, v1) = hashes(&r);
    env.wait_sizes(&v2, &v1, (4, 4)).await?;
    assert_eq!(env.service_hash("web-active").await?, Some(v1.clone()));
    assert_eq!(env.service_hash("web-preview").await?, Some(v2.clone()));
    assert_eq!(
        endpoint.bodies("/cab")[0]["services"],
        json!({ "active": "web-active", "preview": "web-preview" })
    );

    env.act(UserAction::Promote).await?;
    let r = env.wait_healthy_on_new_revision().await?;
    assert_eq!(env.service_hash("web-active").await?, Some(v2.clone()));
    let cab = r
        .status
        .as_ref()
        .unwrap()
        .gates
        .iter()
        .find(|g| g.name == "cab")
        .cloned()
        .unwrap();
    assert_eq!(cab.phase, GatePhase::Passed);
    assert_eq!(cab.message.as_deref(), Some("passed by a promote"));
    // Its caller stopped: no more calls once passed.
    let calls = endpoint.bodies("/cab").len();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(endpoint.bodies("/cab").len(), calls);
    env.finish().await
}
