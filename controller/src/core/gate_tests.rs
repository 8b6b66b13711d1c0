//! Walks of both strategies through the simulated cluster with gates: where each holds,
//! what it keeps while holding, how it passes (an answer, a promote), fails (its
//! timeout) and what it is told after the fact.

use serde_json::{Value, json};
use sluice_api::gate::{GatePhase, GatePoint, GateStatus};
use sluice_api::rollout::{PauseReason, Rollout, RolloutPhase};

use super::Plan;
use super::gate::{GateAnswer, key};
use super::testkit::{World, after, hash_of, phase, promote, set_image, settle, step_index, t0};

fn rollout(strategy: Value, gates: Value) -> Rollout {
    let mut strategy = strategy;
    strategy["gates"] = gates;
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "shop", "uid": "u-1", "generation": 1 },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "app:v1" }] },
            },
            "strategy": strategy,
        },
    }))
    .unwrap()
}

fn gates(r: &Rollout) -> Vec<GateStatus> {
    r.status.as_ref().unwrap().gates.clone()
}

fn gate_conditions(r: &Rollout) -> Vec<String> {
    let status = r.status.as_ref().unwrap();
    status
        .pause_conditions
        .iter()
        .filter(|c| c.reason == PauseReason::Gate)
        .map(|c| c.gate.clone().unwrap_or_default())
        .collect()
}

fn pass(w: &mut World, key: String) {
    w.gate_answers.insert(
        key,
        GateAnswer {
            passed: true,
            message: "HTTP 200".into(),
        },
    );
}

fn refuse(w: &mut World, key: String, message: &str) {
    w.gate_answers.insert(
        key,
        GateAnswer {
            passed: false,
            message: message.into(),
        },
    );
}

fn message(r: &Rollout) -> String {
    r.status
        .as_ref()
        .unwrap()
        .message
        .clone()
        .unwrap_or_default()
}

fn called(p: &Plan) -> Vec<(GatePoint, Option<i32>, String)> {
    p.gate_calls
        .iter()
        .map(|c| {
            (
                c.request.point,
                c.request.step.map(|s| s.index),
                c.request.gate.clone(),
            )
        })
        .collect()
}

#[test]
fn a_weight_increase_waits_for_its_gate_with_the_weight_before_it() {
    let mut w = World::new();
    let mut r = rollout(
        json!({ "canary": { "steps": [
            { "setWeight": 25 },
            { "pause": { "duration": "10s" } },
            { "setWeight": 25 },
            { "setWeight": 50 },
        ] } }),
        json!([{ "name": "approve", "points": ["weightIncrease"], "url": "http://gate", "timeout": "10m" }]),
    );
    let v1 = {
        settle(&mut r, &mut w, t0(), None);
        hash_of(&r)
    };
    assert!(gates(&r).is_empty(), "a first revision passes no gate");

    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    let p = settle(&mut r, &mut w, t0(), None);
    assert_eq!(phase(&r), RolloutPhase::Paused);
    assert_eq!(step_index(&r), 0);
    assert_eq!(
        w.sizes(&r, &v1),
        (0, 4),
        "held before step 1: no canary pod yet"
    );
    assert_eq!(gate_conditions(&r), ["approve"]);
    assert_eq!(
        called(&p),
        [(GatePoint::WeightIncrease, Some(0), "approve".to_string())]
    );
    let body = serde_json::to_value(&p.gate_calls[0]).unwrap();
    assert_eq!(body["point"], "weightIncrease");
    assert_eq!(body["namespace"], "shop");
    assert_eq!(body["revision"], v2.as_str());
    assert_eq!(body["stableRevision"], v1.as_str());
    assert_eq!(
        body["step"],
        json!({ "index": 0, "count": 4, "weight": 0, "nextWeight": 25 })
    );
    assert!(
        message(&r).starts_with("held by gate approve at weightIncrease step 1: no answer yet"),
        "{}",
        message(&r)
    );

    // A refusal is shown, the hold goes on, the record keeps its start.
    refuse(
        &mut w,
        key(&v2, GatePoint::WeightIncrease, Some(0), "approve"),
        "HTTP 503: busy",
    );
    settle(&mut r, &mut w, after(60), None);
    assert_eq!(step_index(&r), 0);
    assert!(message(&r).contains("HTTP 503: busy"), "{}", message(&r));
    let held = gates(&r);
    assert_eq!(held.len(), 1);
    assert_eq!(
        (held[0].phase, held[0].started_at.0),
        (GatePhase::Pending, t0())
    );

    pass(
        &mut w,
        key(&v2, GatePoint::WeightIncrease, Some(0), "approve"),
    );
    let p = settle(&mut r, &mut w, after(61), None);
    assert_eq!(w.sizes(&r, &v1), (1, 3), "step 1's weight once passed");
    assert_eq!(step_index(&r), 1, "in the timed pause");
    assert!(p.gate_calls.is_empty(), "nothing to call during the pause");

    // Step 3 sets the weight in force: no increase, no gate. Step 4 raises it.
    let p = settle(&mut r, &mut w, after(75), None);
    assert_eq!(step_index(&r), 3);
    assert_eq!(w.sizes(&r, &v1), (1, 3), "held before step 4 at weight 25");
    assert_eq!(
        called(&p),
        [(GatePoint::WeightIncrease, Some(3), "approve".to_string())]
    );
    assert_eq!(phase(&r), RolloutPhase::Paused);

    pass(
        &mut w,
        key(&v2, GatePoint::WeightIncrease, Some(3), "approve"),
    );
    settle(&mut r, &mut w, after(80), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert!(gate_conditions(&r).is_empty());
    let done = gates(&r);
    assert_eq!(done.len(), 2);
    assert!(
        done.iter().all(|g| g.phase == GatePhase::Passed),
        "{done:?}"
    );
}

#[test]
fn a_gate_past_its_timeout_aborts_and_a_retry_asks_again() {
    let mut w = World::new();
    let mut r = rollout(
        json!({ "canary": { "steps": [{ "setWeight": 50 }, { "pause": {} }] } }),
        json!([
            { "name": "freeze", "points": ["preRollout"], "url": "http://gate", "timeout": "5m" },
            { "name": "pager", "points": ["rollback"], "url": "http://pager" },
        ]),
    );
    settle(&mut r, &mut w, t0(), None);
    let v1 = hash_of(&r);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    let p = settle(&mut r, &mut w, t0(), None);
    assert_eq!(
        called(&p),
        [(GatePoint::PreRollout, None, "freeze".to_string())]
    );
    assert_eq!(p.requeue_after, Some(std::time::Duration::from_secs(300)));
    refuse(
        &mut w,
        key(&v2, GatePoint::PreRollout, None, "freeze"),
        "HTTP 423: frozen",
    );

    let p = settle(&mut r, &mut w, after(300), None);
    assert_eq!(phase(&r), RolloutPhase::Degraded);
    assert!(
        message(&r).contains("gate freeze (preRollout) did not pass within 5m: HTTP 423: frozen"),
        "{}",
        message(&r)
    );
    assert!(w.events.contains(&"RolloutAborted".to_string()));
    assert!(gate_conditions(&r).is_empty());
    assert_eq!(w.sizes(&r, &v1), (0, 4));
    // The rollback gate is told; the held gate's record is gone with the abort.
    assert_eq!(
        called(&p),
        [(GatePoint::Rollback, None, "pager".to_string())]
    );
    let records = gates(&r);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].point, records[0].phase),
        (GatePoint::Rollback, GatePhase::Pending)
    );

    pass(&mut w, key(&v2, GatePoint::Rollback, None, "pager"));
    let p = settle(&mut r, &mut w, after(301), None);
    assert!(p.gate_calls.is_empty(), "told once");
    assert_eq!(gates(&r)[0].phase, GatePhase::Passed);

    // retry: the preRollout gate is asked again, from a fresh start.
    let status = r.status.as_mut().unwrap();
    status.abort = false;
    status.aborted_at = None;
    let p = settle(&mut r, &mut w, after(400), None);
    assert_eq!(
        called(&p),
        [(GatePoint::PreRollout, None, "freeze".to_string())]
    );
    let fresh = gates(&r)
        .into_iter()
        .find(|g| g.point == GatePoint::PreRollout)
        .unwrap();
    assert_eq!(fresh.started_at.0, after(400));
    assert_eq!(phase(&r), RolloutPhase::Paused);
}

#[test]
fn a_promote_passes_the_gate_that_holds() {
    let mut w = World::new();
    let mut r = rollout(
        json!({ "canary": { "steps": [{ "setWeight": 25 }] } }),
        json!([{ "name": "approve", "points": ["weightIncrease", "prePromotion"], "url": "http://gate" }]),
    );
    settle(&mut r, &mut w, t0(), None);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(gate_conditions(&r), ["approve"]);

    promote(&mut r);
    let p = settle(&mut r, &mut w, after(5), None);
    let first = &gates(&r)[0];
    assert_eq!(first.phase, GatePhase::Passed);
    assert_eq!(first.message.as_deref(), Some("passed by a promote"));
    // After the last step, the same gate holds again before promotion, at weight 25.
    assert_eq!(
        called(&p),
        [(GatePoint::PrePromotion, None, "approve".to_string())]
    );
    assert_eq!(phase(&r), RolloutPhase::Paused);
    let weights = r
        .status
        .as_ref()
        .unwrap()
        .canary
        .as_ref()
        .unwrap()
        .weights
        .clone()
        .unwrap();
    assert_eq!(weights.canary, 25);

    let v2 = hash_of(&r);
    pass(&mut w, key(&v2, GatePoint::PrePromotion, None, "approve"));
    settle(&mut r, &mut w, after(10), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v2.as_str())
    );
    let promoted = w
        .notices
        .iter()
        .filter(|n| n.trigger.name() == "promoted")
        .count();
    assert_eq!(promoted, 1, "the promotion after the gate is noticed once");
}

#[test]
fn post_rollout_is_told_once_and_holds_nothing() {
    let mut w = World::new();
    let mut r = rollout(
        json!({ "canary": { "steps": [{ "setWeight": 50 }] } }),
        json!([{ "name": "smoke", "points": ["postRollout"], "url": "http://gate", "timeout": "2m" }]),
    );
    settle(&mut r, &mut w, t0(), None);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    let p = settle(&mut r, &mut w, t0(), None);
    assert_eq!(
        phase(&r),
        RolloutPhase::Healthy,
        "postRollout holds nothing"
    );
    assert_eq!(
        called(&p),
        [(GatePoint::PostRollout, None, "smoke".to_string())]
    );

    // Not answered within its timeout: failed, one Warning Event, no more calls.
    refuse(
        &mut w,
        key(&v2, GatePoint::PostRollout, None, "smoke"),
        "cannot connect",
    );
    let p = settle(&mut r, &mut w, after(120), None);
    assert!(p.gate_calls.is_empty());
    assert_eq!(gates(&r)[0].phase, GatePhase::Failed);
    assert_eq!(w.events.iter().filter(|e| *e == "GateFailed").count(), 1);
    settle(&mut r, &mut w, after(600), None);
    assert_eq!(w.events.iter().filter(|e| *e == "GateFailed").count(), 1);
    assert_eq!(phase(&r), RolloutPhase::Healthy);

    // The next revision keeps no record of this one's.
    set_image(&mut r, "app:v3");
    settle(&mut r, &mut w, after(700), None);
    let records = gates(&r);
    assert!(
        records.iter().all(|g| g.revision == hash_of(&r)),
        "{records:?}"
    );
}

#[test]
fn a_blue_green_gate_holds_the_switch_with_the_preview_at_full_size() {
    let mut w = World::new().with_services(&["active", "preview"]);
    let mut r = rollout(
        json!({ "blueGreen": { "activeService": "active", "previewService": "preview" } }),
        json!([{ "name": "smoke", "points": ["preRollout", "prePromotion"], "url": "http://gate" }]),
    );
    settle(&mut r, &mut w, t0(), None);
    let v1 = hash_of(&r);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    let p = settle(&mut r, &mut w, t0(), None);
    assert_eq!(
        called(&p),
        [(GatePoint::PreRollout, None, "smoke".to_string())]
    );
    let body = serde_json::to_value(&p.gate_calls[0]).unwrap();
    assert_eq!(
        body["services"],
        json!({ "active": "active", "preview": "preview" })
    );
    assert_eq!(
        w.services["preview"].as_deref(),
        Some(v2.as_str()),
        "the preview is up"
    );
    assert_eq!(w.services["active"].as_deref(), Some(v1.as_str()));

    pass(&mut w, key(&v2, GatePoint::PreRollout, None, "smoke"));
    let p = settle(&mut r, &mut w, after(5), None);
    assert_eq!(
        called(&p),
        [(GatePoint::PrePromotion, None, "smoke".to_string())]
    );
    assert_eq!(
        w.sizes(&r, &v1),
        (4, 4),
        "the new revision at full size beside the old"
    );
    assert_eq!(
        w.services["active"].as_deref(),
        Some(v1.as_str()),
        "not switched yet"
    );
    assert_eq!(phase(&r), RolloutPhase::Paused);

    pass(&mut w, key(&v2, GatePoint::PrePromotion, None, "smoke"));
    settle(&mut r, &mut w, after(10), None);
    assert_eq!(w.services["active"].as_deref(), Some(v2.as_str()));
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v2.as_str())
    );
}

#[test]
fn a_gate_removed_from_the_spec_stops_holding() {
    let mut w = World::new();
    let mut r = rollout(
        json!({ "canary": { "steps": [{ "setWeight": 50 }] } }),
        json!([{ "name": "approve", "points": ["weightIncrease"], "url": "http://gate" }]),
    );
    settle(&mut r, &mut w, t0(), None);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(gate_conditions(&r), ["approve"]);

    r.spec.strategy.gates.clear();
    let p = settle(&mut r, &mut w, after(5), None);
    assert!(p.gate_calls.is_empty());
    assert!(
        gate_conditions(&r).is_empty(),
        "no pause condition names a gate gone"
    );
    assert!(gates(&r).is_empty(), "{:?}", gates(&r));
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}
