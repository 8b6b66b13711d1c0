//! Tables and walks of the canary planner: (spec, observed, now) → (actions, status),
//! driven through the simulated cluster of [`super::testkit`].

use std::time::Duration;

use serde_json::{Value, json};
use sluice_api::analysis::AnalysisPhase;
use sluice_api::rollout::{PauseReason, Rollout, RolloutPhase};

use super::conditions::{get, is_true, types};
use super::testkit::{
    World, after, hash_of, phase, promote, set_image, settle, settle_checking, step_index, t0,
};
use super::{Action, AnalysisRunState, BaselineState, Observed, plan};

fn rollout_json(image: &str, replicas: i32, canary: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "default", "generation": 1 },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": image }] },
            },
            "strategy": { "canary": canary },
        },
    })
}

fn rollout(image: &str, replicas: i32, canary: Value) -> Rollout {
    serde_json::from_value(rollout_json(image, replicas, canary)).unwrap()
}

fn standard_steps() -> Value {
    json!([
        { "setWeight": 20 },
        { "pause": { "duration": "5s" } },
        { "setWeight": 50 },
        { "pause": {} },
        { "setWeight": 100 },
    ])
}

/// A Rollout at v1, fully rolled out in `w`.
fn stable_at_v1(canary: Value, replicas: i32, w: &mut World) -> (Rollout, String) {
    let mut r = rollout("app:v1", replicas, canary);
    let p = settle(&mut r, w, t0(), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy, "{p:#?}");
    let h = hash_of(&r);
    (r, h)
}

#[test]
fn first_revision_becomes_stable_directly() {
    let mut w = World::new().with_services(&["web-stable", "web-canary"]);
    let mut r = rollout(
        "app:v1",
        5,
        json!({ "canaryService": "web-canary", "stableService": "web-stable", "steps": standard_steps() }),
    );
    let first = plan(&r, &w.observed(), t0());
    let h = hash_of(&r);
    assert_eq!(
        first.actions,
        vec![Action::CreateReplicaSet {
            hash: h.clone(),
            revision: 1,
            replicas: 5,
            pod_metadata: Default::default(),
        }],
        "no steps for the first revision"
    );
    assert_eq!(first.status.stable_rs.as_deref(), Some(h.as_str()));
    settle(&mut r, &mut w, t0(), None);
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(RolloutPhase::Healthy));
    assert_eq!(s.current_step_index, Some(5));
    assert_eq!(s.step_progress.as_deref(), Some("5/5"));
    assert!(is_true(&s.conditions, types::READY));
    assert!(!is_true(&s.conditions, types::RECONCILING));
    // Both Services point at the only revision.
    assert_eq!(w.services["web-stable"].as_deref(), Some(h.as_str()));
    assert_eq!(w.services["web-canary"].as_deref(), Some(h.as_str()));
    assert_eq!(s.selector.as_deref(), Some("app=web"));
    assert_eq!(s.available_replicas, 5);
}

#[test]
fn replica_ratio_canary_walks_the_steps() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(json!({ "steps": standard_steps() }), 5, &mut w);
    set_image(&mut r, "app:v2");
    // replicas 5, maxSurge 25% → 2, maxUnavailable 25% → 1.
    let budget = Some((7, 4));

    settle(&mut r, &mut w, t0(), budget);
    // Step 1 (setWeight 20) done: 1 canary pod of 5; now in the timed pause.
    assert_eq!(w.sizes(&r, &v1), (1, 4));
    assert_eq!(step_index(&r), 1);
    assert_eq!(phase(&r), RolloutPhase::Paused);
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.pause_conditions[0].reason, PauseReason::CanaryPauseStep);
    assert_eq!(s.step_progress.as_deref(), Some("2/5"));
    assert_eq!(
        s.canary.as_ref().unwrap().weights.as_ref().unwrap().canary,
        20
    );
    assert!(is_true(&s.conditions, types::PAUSED));

    // Before the pause ends nothing moves, and the plan asks to be woken at its end.
    let p = settle(&mut r, &mut w, after(3), budget);
    assert_eq!(step_index(&r), 1);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(2)));

    // After 5s: setWeight 50 → 3 of 5 (2.5 rounds up), then the indefinite pause.
    let p = settle(&mut r, &mut w, after(5), budget);
    assert_eq!(w.sizes(&r, &v1), (3, 2));
    assert_eq!(step_index(&r), 3);
    assert_eq!(phase(&r), RolloutPhase::Paused);
    assert_eq!(
        p.requeue_after, None,
        "an indefinite pause waits for a human, not a timer"
    );

    // It stays there however long we wait.
    settle(&mut r, &mut w, after(3600), budget);
    assert_eq!(step_index(&r), 3);

    // Promote: setWeight 100, then the canary becomes stable.
    promote(&mut r);
    settle(&mut r, &mut w, after(3601), budget);
    let v2 = hash_of(&r);
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(w.sizes(&r, &v1), (5, 0));
    assert_eq!(s.phase, Some(RolloutPhase::Healthy));
    assert_eq!(s.step_progress.as_deref(), Some("5/5"));
    assert!(is_true(&s.conditions, types::READY));
}

#[test]
fn a_walk_records_each_transition_once_and_no_phase_event_another_already_tells() {
    let mut w = World::new().with_services(&["web-stable", "web-canary"]);
    let canary = json!({
        "canaryService": "web-canary", "stableService": "web-stable",
        "steps": standard_steps(),
    });
    let (mut r, _) = stable_at_v1(canary, 5, &mut w);
    assert_eq!(
        w.events,
        ["RolloutHealthy"],
        "a first revision has no completion"
    );
    w.events.clear();

    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    settle(&mut r, &mut w, after(5), None);
    promote(&mut r);
    settle(&mut r, &mut w, after(10), None);
    settle(&mut r, &mut w, after(60), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert_eq!(
        w.events,
        [
            "NewRevision",
            "StepCompleted",
            "StepCompleted",
            "StepCompleted",
            "RolloutPaused",
            "StepCompleted",
            "StepCompleted",
            "RolloutCompleted",
        ],
        "entering Progressing is told by NewRevision and StepCompleted, Healthy by \
         RolloutCompleted, the timed pause by the StepCompleted that reached it; only the \
         pause that waits for a promote is RolloutPaused"
    );

    // An abort is told, and so is the retry that leaves Degraded.
    set_image(&mut r, "app:v3");
    settle(&mut r, &mut w, after(70), None);
    w.events.clear();
    r.status.as_mut().unwrap().abort = true;
    settle(&mut r, &mut w, after(71), None);
    assert_eq!(phase(&r), RolloutPhase::Degraded);
    r.status.as_mut().unwrap().abort = false;
    settle(&mut r, &mut w, after(72), None);
    assert_eq!(
        &w.events[..2],
        ["RolloutAborted", "RolloutProgressing"],
        "{:?}",
        w.events
    );
}

#[test]
fn surge_and_unavailability_bound_every_transition() {
    for (surge, unavailable, max_total, min_available) in [
        (json!(1), json!(0), 11, 10),
        (json!(0), json!(1), 10, 9),
        (json!("50%"), json!("20%"), 15, 8),
    ] {
        let mut w = World::new();
        let canary = json!({
            "steps": [{ "setWeight": 30 }, { "setWeight": 70 }, { "setWeight": 100 }],
            "maxSurge": surge,
            "maxUnavailable": unavailable,
        });
        let (mut r, v1) = stable_at_v1(canary, 10, &mut w);
        set_image(&mut r, "app:v2");
        // `settle` checks the budget after every single round.
        settle(&mut r, &mut w, t0(), Some((max_total, min_available)));
        assert_eq!(w.sizes(&r, &v1), (10, 0));
        assert_eq!(phase(&r), RolloutPhase::Healthy);
    }
}

#[test]
fn router_keeps_stable_full_and_sets_weights_after_pods_are_ready() {
    let mut w = World::new()
        .with_services(&["web-stable", "web-canary"])
        .with_router();
    let canary = json!({
        "canaryService": "web-canary",
        "stableService": "web-stable",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [{ "setWeight": 20 }, { "pause": {} }, { "setWeight": 60 }, { "pause": {} }],
    });
    let (mut r, v1) = stable_at_v1(canary, 5, &mut w);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);

    // First round: the canary is created, but gets no traffic before its pods are ready.
    let p = plan(&r, &w.observed(), t0());
    assert!(
        p.actions
            .iter()
            .all(|a| !matches!(a, Action::SetCanaryWeight { weight } if *weight > 0)),
        "{p:#?}"
    );

    settle(&mut r, &mut w, t0(), None);
    assert_eq!(
        w.sizes(&r, &v1),
        (1, 5),
        "stable stays at full size with a router"
    );
    assert_eq!(w.router, Some(20));
    assert_eq!(w.services["web-canary"].as_deref(), Some(v2.as_str()));
    assert_eq!(w.services["web-stable"].as_deref(), Some(v1.as_str()));
    let weights = r
        .status
        .as_ref()
        .unwrap()
        .canary
        .clone()
        .unwrap()
        .weights
        .unwrap();
    assert_eq!(
        (weights.canary, weights.stable, weights.verified),
        (20, 80, Some(true))
    );

    promote(&mut r);
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(w.sizes(&r, &v1), (3, 5));
    assert_eq!(w.router, Some(60));

    // Last pause promoted: canary to full size, then it becomes stable; the old stable
    // stays up for scaleDownDelaySeconds (30s by default) behind a deadline annotation.
    promote(&mut r);
    let p = settle(&mut r, &mut w, after(2), None);
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(w.router, Some(0));
    assert_eq!(w.services["web-stable"].as_deref(), Some(v2.as_str()));
    let old = w.rs.iter().find(|rs| rs.hash == v1).unwrap();
    assert_eq!(old.replicas, 5);
    assert_eq!(old.scale_down_at, Some(after(32)));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(30)));
    assert_eq!(
        phase(&r),
        RolloutPhase::Healthy,
        "done while the old revision drains"
    );

    // A restarted controller (a fresh plan from the observed annotation) honours it.
    settle(&mut r, &mut w, after(20), None);
    assert_eq!(w.rs.iter().find(|rs| rs.hash == v1).unwrap().replicas, 5);
    settle(&mut r, &mut w, after(32), None);
    assert_eq!(w.rs.iter().find(|rs| rs.hash == v1).unwrap().replicas, 0);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}

/// The old revision going to zero at its deadline is cleanup of a finished rollout: while
/// its pods take their grace period to go, the rollout stays Healthy (no flip to
/// Progressing and back, which kstatus and Argo CD would show, and no second Event and
/// status writes for it).
#[test]
fn the_old_revision_draining_to_zero_keeps_a_done_rollout_healthy() {
    let mut w = World::new().with_services(&["s", "c"]);
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "steps": [{ "setWeight": 50 }, { "pause": {} }],
    });
    let (mut r, v1) = stable_at_v1(canary, 2, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    promote(&mut r);
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    let events_before = w.events.len();

    // Past scaleDownDelaySeconds: the old revision is scaled to zero, and its pods are
    // still terminating when the next plans run.
    for (i, now) in [after(40), after(41), after(42)].into_iter().enumerate() {
        let p = plan(&r, &w.observed(), now);
        w.apply(&p.actions);
        let old = w.rs.iter_mut().find(|rs| rs.hash == v1).unwrap();
        assert_eq!(old.replicas, 0, "round {i}");
        old.current = 2;
        assert_eq!(
            p.status.phase,
            Some(RolloutPhase::Healthy),
            "round {i}: {}",
            p.status.message.clone().unwrap_or_default()
        );
        assert!(p.events.is_empty(), "round {i}: {:?}", p.events);
        r.status = Some(p.status);
    }
    w.tick();
    w.rs.iter_mut().for_each(|rs| rs.current = rs.replicas);
    let p = settle(&mut r, &mut w, after(43), None);
    assert_eq!(p.status.phase, Some(RolloutPhase::Healthy));
    assert_eq!(
        w.events.len(),
        events_before,
        "{:?}",
        &w.events[events_before..]
    );
}

#[test]
fn dynamic_stable_scale_shrinks_stable_with_its_weight() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "gatewayAPI": { "httpRoute": "web" } },
        "dynamicStableScale": true,
        "steps": [{ "setWeight": 40 }, { "pause": {} }],
    });
    let (mut r, v1) = stable_at_v1(canary, 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(w.sizes(&r, &v1), (2, 3));
    assert_eq!(w.router, Some(40));
}

#[test]
fn set_canary_scale_sizes_the_canary_independently_of_its_weight() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [
            { "setCanaryScale": { "replicas": 3 } }, { "setWeight": 10 }, { "pause": {} },
            { "setCanaryScale": { "weight": 80 } }, { "pause": {} },
            { "setCanaryScale": { "matchTrafficWeight": true } }, { "pause": {} },
        ],
    });
    let (mut r, v1) = stable_at_v1(canary, 10, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(
        w.sizes(&r, &v1),
        (3, 10),
        "3 canary pods although the weight is 10%"
    );
    assert_eq!(w.router, Some(10));
    promote(&mut r);
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(w.sizes(&r, &v1), (8, 10));
    promote(&mut r);
    settle(&mut r, &mut w, after(2), None);
    assert_eq!(w.sizes(&r, &v1), (1, 10), "back to 10% of 10");
}

#[test]
fn abort_returns_traffic_first_then_scales_canary_down_after_the_delay() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "abortScaleDownDelaySeconds": 10,
        "steps": [{ "setWeight": 40 }, { "pause": {} }, { "setWeight": 80 }],
    });
    let (mut r, v1) = stable_at_v1(canary, 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(w.router, Some(40));

    // The abort action: a status patch.
    r.status.as_mut().unwrap().abort = true;
    let p = plan(&r, &w.observed(), after(1));
    assert_eq!(
        p.actions.first(),
        Some(&Action::SetCanaryWeight { weight: 0 }),
        "traffic first"
    );
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleReplicaSet { replicas: 0, .. })),
        "nothing scaled down in the same breath: {p:#?}"
    );
    settle(&mut r, &mut w, after(1), None);
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    assert!(is_true(&s.conditions, types::STALLED));
    assert_eq!(
        get(&s.conditions, types::PROGRESSING).unwrap().reason,
        "RolloutAborted"
    );
    assert_eq!(w.router, Some(0));
    assert_eq!(
        w.sizes(&r, &v1),
        (2, 5),
        "canary kept for abortScaleDownDelaySeconds"
    );

    settle(&mut r, &mut w, after(12), None);
    assert_eq!(w.sizes(&r, &v1), (0, 5));
    assert_eq!(phase(&r), RolloutPhase::Degraded);

    // Retry clears the abort: the rollout resumes at the step it was on.
    r.status.as_mut().unwrap().abort = false;
    settle(&mut r, &mut w, after(13), None);
    assert_eq!(w.sizes(&r, &v1), (2, 5));
    assert_eq!(w.router, Some(40));
    assert_eq!(step_index(&r), 1);
    assert_eq!(phase(&r), RolloutPhase::Paused);

    // promote-full skips the remaining steps.
    r.status.as_mut().unwrap().promote_full = true;
    settle(&mut r, &mut w, after(14), None);
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(hash_of(&r).as_str())
    );
    assert!(
        !r.status.as_ref().unwrap().promote_full,
        "cleared once done"
    );
}

#[test]
fn abort_without_router_scales_canary_away_within_the_budget() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(
        json!({ "steps": [{ "setWeight": 60 }, { "pause": {} }] }),
        5,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), Some((7, 4)));
    assert_eq!(w.sizes(&r, &v1), (3, 2));
    r.status.as_mut().unwrap().abort = true;
    settle(&mut r, &mut w, after(1), Some((7, 4)));
    assert_eq!(w.sizes(&r, &v1), (0, 5));
    assert_eq!(
        r.status
            .as_ref()
            .unwrap()
            .canary
            .clone()
            .unwrap()
            .weights
            .unwrap()
            .canary,
        0
    );
}

#[test]
fn promote_skips_past_a_timed_pause_too() {
    let mut w = World::new();
    let (mut r, _) = stable_at_v1(
        json!({ "steps": [{ "pause": { "duration": "1h" } }, { "setWeight": 20 }, { "pause": {} }] }),
        5,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(step_index(&r), 0);
    promote(&mut r);
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(step_index(&r), 2);
}

#[test]
fn spec_paused_holds_the_rollout_at_its_step() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(
        json!({ "steps": [{ "setWeight": 20 }, { "setWeight": 60 }, { "pause": {} }] }),
        5,
        &mut w,
    );
    r.spec.paused = true;
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(w.sizes(&r, &v1), (0, 5));
    assert_eq!(step_index(&r), 0);
    assert_eq!(phase(&r), RolloutPhase::Paused);
    assert_eq!(
        get(&r.status.as_ref().unwrap().conditions, types::PROGRESSING)
            .unwrap()
            .status,
        "Unknown"
    );
    r.spec.paused = false;
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(w.sizes(&r, &v1), (3, 2));
    assert_eq!(step_index(&r), 2);
}

#[test]
fn template_back_to_stable_rolls_back_at_once() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(
        json!({ "steps": [{ "setWeight": 40 }, { "pause": {} }, { "setWeight": 80 }] }),
        5,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(w.sizes(&r, &v1), (2, 3));
    set_image(&mut r, "app:v1");
    let p = settle(&mut r, &mut w, after(1), Some((7, 4)));
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.current_pod_hash.as_deref(), Some(v1.as_str()));
    assert_eq!(s.stable_rs.as_deref(), Some(v1.as_str()));
    assert_eq!(s.current_step_index, Some(3), "steps skipped");
    assert_eq!(s.phase, Some(RolloutPhase::Healthy));
    assert_eq!(w.rs.iter().find(|rs| rs.hash == v1).unwrap().replicas, 5);
    assert!(
        w.rs.iter()
            .filter(|rs| rs.hash != v1)
            .all(|rs| rs.replicas == 0),
        "{:?}",
        w.rs
    );
    assert!(p.actions.is_empty());
}

#[test]
fn a_new_template_mid_canary_supersedes_the_old_canary() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(
        json!({ "steps": [{ "setWeight": 40 }, { "pause": {} }, { "setWeight": 80 }] }),
        5,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    let v2 = hash_of(&r);
    set_image(&mut r, "app:v3");
    let v3 = hash_of(&r);
    settle(&mut r, &mut w, after(1), Some((7, 4)));
    let size = |h: &str| {
        w.rs.iter()
            .find(|rs| rs.hash == h)
            .map_or(0, |rs| rs.replicas)
    };
    assert_eq!((size(&v3), size(&v2), size(&v1)), (2, 0, 3));
    assert_eq!(
        step_index(&r),
        1,
        "steps restarted for v3 and stopped at its pause"
    );
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v1.as_str())
    );
}

#[test]
fn progress_deadline_degrades_and_optionally_aborts() {
    for abort in [false, true] {
        let mut w = World::new();
        let canary = json!({ "steps": [{ "setWeight": 40 }, { "pause": {} }] });
        let mut r = rollout("app:v1", 5, canary);
        r.spec.progress_deadline_seconds = 60;
        r.spec.progress_deadline_abort = abort;
        settle(&mut r, &mut w, t0(), None);
        let v1 = hash_of(&r);
        w.pods_become_ready = false; // v2's pods never become ready
        set_image(&mut r, "app:v2");
        let p = settle(&mut r, &mut w, after(1), None);
        assert_eq!(phase(&r), RolloutPhase::Progressing);
        assert_eq!(
            p.requeue_after,
            Some(Duration::from_secs(60)),
            "woken at the deadline"
        );
        settle(&mut r, &mut w, after(61), None);
        let s = r.status.as_ref().unwrap();
        assert_eq!(s.phase, Some(RolloutPhase::Degraded), "abort={abort}");
        assert!(is_true(&s.conditions, types::STALLED));
        let progressing = get(&s.conditions, types::PROGRESSING).unwrap();
        assert_eq!(progressing.status, "False");
        if abort {
            assert!(s.abort);
            assert_eq!(progressing.reason, "RolloutAborted");
            assert_eq!(w.sizes(&r, &v1).0, 0, "aborted canary scaled away");
        } else {
            assert!(!s.abort);
            assert_eq!(progressing.reason, "ProgressDeadlineExceeded");
        }
    }
}

#[test]
fn a_settled_rollout_plans_no_writes_and_a_stable_status() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [{ "setWeight": 50 }, { "pause": {} }],
    });
    let (mut r, _) = stable_at_v1(canary, 4, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    // Paused at a step and steady: later reconciles change nothing, not even timestamps.
    let a = plan(&r, &w.observed(), after(100));
    let b = plan(&r, &w.observed(), after(200));
    assert!(a.actions.is_empty() && b.actions.is_empty(), "{a:#?}");
    assert_eq!(a.status, b.status);
    assert_eq!(Some(&a.status), r.status.as_ref());
    assert!(a.events.is_empty(), "events only on transitions");
}

#[test]
fn analysis_step_blocks_until_verdict_and_failure_aborts() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [
            { "setWeight": 20 },
            { "analysis": { "templates": [{ "templateName": "success-rate" }] } },
            { "setWeight": 50 },
            { "pause": {} },
        ],
    });
    let (mut r, _) = stable_at_v1(canary, 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(step_index(&r), 1);
    let run = r
        .status
        .as_ref()
        .unwrap()
        .canary
        .clone()
        .unwrap()
        .current_step_analysis_run
        .unwrap();
    assert_eq!(w.runs.len(), 1);
    assert_eq!(w.runs[0].name, run);
    // Still running: the step holds.
    settle(&mut r, &mut w, after(30), None);
    assert_eq!(step_index(&r), 1);
    // The run fails: abort, traffic back to stable.
    w.runs[0].phase = Some(AnalysisPhase::Failed);
    w.runs[0].message = Some("error rate 0.2 > 0.05".into());
    settle(&mut r, &mut w, after(31), None);
    let s = r.status.as_ref().unwrap();
    assert!(s.abort);
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    assert!(
        s.message
            .as_ref()
            .unwrap()
            .contains("error rate 0.2 > 0.05"),
        "{:?}",
        s.message
    );
    assert_eq!(w.router, Some(0));
    // Retry starts a fresh run, never reusing the failed one.
    let s = r.status.as_mut().unwrap();
    s.abort = false;
    s.canary.as_mut().unwrap().current_step_analysis_run = None;
    settle(&mut r, &mut w, after(32), None);
    assert_eq!(w.runs.len(), 2);
    assert_ne!(w.runs[1].name, w.runs[0].name);
    w.runs[1].phase = Some(AnalysisPhase::Successful);
    settle(&mut r, &mut w, after(33), None);

    assert_eq!(w.router, Some(50));
}

#[test]
fn unusable_references_are_reported_and_nothing_is_touched() {
    let r = rollout(
        "app:v1",
        3,
        json!({ "canaryService": "c", "stableService": "s", "steps": [] }),
    );
    let observed = Observed {
        unusable: vec!["Service s is of type ExternalName".into()],
        ..Observed::default()
    };
    let p = plan(&r, &observed, t0());
    assert!(p.actions.is_empty());
    let invalid = get(&p.status.conditions, types::INVALID_SPEC).unwrap();
    assert_eq!(
        (invalid.status.as_str(), invalid.reason.as_str()),
        ("True", "InvalidReference")
    );
    assert_eq!(
        invalid.message,
        "cannot use: Service s is of type ExternalName"
    );
    assert_eq!(p.events.len(), 1);
}

#[test]
fn missing_references_are_reported_and_nothing_is_touched() {
    let r = rollout(
        "app:v1",
        3,
        json!({ "canaryService": "c", "stableService": "s", "steps": [] }),
    );
    let observed = Observed {
        missing: vec!["Service s".into()],
        ..Observed::default()
    };
    let p = plan(&r, &observed, t0());
    assert!(p.actions.is_empty());
    assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));
    let invalid = get(&p.status.conditions, types::INVALID_SPEC).unwrap();
    assert_eq!(
        (invalid.status.as_str(), invalid.reason.as_str()),
        ("True", "ReferenceNotFound")
    );
    assert!(invalid.message.contains("Service s"));
    assert_eq!(p.events.len(), 1);
    assert!(p.events[0].warning);
}

#[test]
fn a_selector_that_misses_the_template_is_invalid() {
    let mut v = rollout_json("app:v1", 3, json!({ "steps": [] }));
    v["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    let r: Rollout = serde_json::from_value(v).unwrap();
    let p = plan(&r, &Observed::default(), t0());
    assert!(p.actions.is_empty());
    assert!(is_true(&p.status.conditions, types::INVALID_SPEC));
}

#[test]
fn old_revisions_are_pruned_past_the_history_limit() {
    let mut w = World::new();
    let mut r = rollout("app:v1", 2, json!({ "steps": [] }));
    r.spec.revision_history_limit = 2;
    for (i, image) in ["app:v1", "app:v2", "app:v3", "app:v4", "app:v5"]
        .iter()
        .enumerate()
    {
        set_image(&mut r, image);
        settle(&mut r, &mut w, after(i as i64), None);
    }
    // The current revision plus two old ones remain; v1 and v2 were deleted.
    let mut revisions: Vec<i64> = w.rs.iter().map(|rs| rs.revision).collect();
    revisions.sort();
    assert_eq!(revisions, vec![3, 4, 5]);
}

fn background_canary() -> Value {
    json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "analysis": { "templates": [{ "templateName": "error-rate" }], "startingStep": 2 },
        "steps": [{ "setWeight": 20 }, { "pause": {} }, { "setWeight": 40 }, { "pause": {} }, { "setWeight": 60 }, { "pause": {} }],
    })
}

fn background_run(r: &Rollout) -> Option<String> {
    r.status
        .as_ref()?
        .canary
        .as_ref()?
        .current_background_analysis_run
        .clone()
}

#[test]
fn background_analysis_starts_at_its_step_and_a_failure_aborts() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let (mut r, _) = stable_at_v1(background_canary(), 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(step_index(&r), 1);
    assert!(w.runs.is_empty(), "no background run before startingStep");
    promote(&mut r);
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(step_index(&r), 3);
    let run = background_run(&r).expect("background run started at step 2");
    assert_eq!(w.runs.len(), 1);
    assert_eq!(w.runs[0].name, run);

    w.runs[0].phase = Some(AnalysisPhase::Error);
    w.runs[0].message = Some("prometheus at http://p: query timed out".into());
    settle(&mut r, &mut w, after(2), None);
    let s = r.status.as_ref().unwrap();
    assert!(s.abort);
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    assert!(
        s.message.as_ref().unwrap().contains("background analysis"),
        "{:?}",
        s.message
    );
    assert_eq!(w.router, Some(0));
    assert_eq!(
        background_run(&r),
        None,
        "an aborted rollout ends its background run"
    );
}

#[test]
fn inconclusive_background_analysis_pauses_until_promoted_then_measures_afresh() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let (mut r, _) = stable_at_v1(background_canary(), 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    promote(&mut r);
    settle(&mut r, &mut w, after(1), None);
    promote(&mut r); // past the pause at step 3, on to setWeight 60
    w.runs[0].phase = Some(AnalysisPhase::Inconclusive);
    settle(&mut r, &mut w, after(2), None);
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(RolloutPhase::Paused));
    assert!(
        s.pause_conditions
            .iter()
            .any(|c| c.reason == PauseReason::BackgroundAnalysisInconclusive)
    );
    let held_at = step_index(&r);
    // Held: time passing does not move the steps.
    settle(&mut r, &mut w, after(600), None);
    assert_eq!(step_index(&r), held_at);
    // A promote ends the pause and starts a fresh background run.
    promote(&mut r);
    settle(&mut r, &mut w, after(601), None);
    assert_eq!(w.runs.len(), 2);
    assert_ne!(w.runs[1].name, w.runs[0].name);
    assert_eq!(background_run(&r).as_deref(), Some(w.runs[1].name.as_str()));
}

#[test]
fn promotion_ends_the_background_run() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let (mut r, _) = stable_at_v1(background_canary(), 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    promote(&mut r);
    settle(&mut r, &mut w, after(1), None);
    assert!(background_run(&r).is_some());
    r.status.as_mut().unwrap().promote_full = true;
    let p = settle(&mut r, &mut w, after(2), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy, "{p:#?}");
    assert_eq!(background_run(&r), None);
}

#[test]
fn promote_past_a_running_analysis_step_stops_its_run() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [{ "setWeight": 20 }, { "analysis": { "templates": [{ "templateName": "t" }] } }, { "pause": {} }],
    });
    let (mut r, _) = stable_at_v1(canary, 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(step_index(&r), 1);
    assert!(!w.runs[0].terminating);
    // The promote action when not paused: skip the current step, forget its run.
    let s = r.status.as_mut().unwrap();
    s.current_step_index = Some(2);
    s.canary.as_mut().unwrap().current_step_analysis_run = None;
    settle(&mut r, &mut w, after(1), None);
    assert_eq!(step_index(&r), 2);
    assert!(
        w.runs[0].terminating,
        "the skipped step's run no longer measures"
    );
}

#[test]
fn only_the_newest_finished_runs_are_kept() {
    let r = rollout("app:v1", 1, json!({ "steps": [] }));
    let mut w = World::new();
    let mut rr = r.clone();
    settle(&mut rr, &mut w, t0(), None);
    for (i, phase) in [AnalysisPhase::Successful; 7]
        .into_iter()
        .chain([AnalysisPhase::Failed; 6])
        .enumerate()
    {
        w.runs.push(AnalysisRunState {
            name: format!("run-{i:02}"),
            phase: Some(phase),
            message: None,
            created: Some(after(i as i64)),
            terminating: false,
        });
    }
    settle(&mut rr, &mut w, after(100), None);
    let names: Vec<&str> = w.runs.iter().map(|r| r.name.as_str()).collect();
    // 5 newest successful (run-02..06) and 5 newest failed (run-08..12).
    assert_eq!(
        names,
        [
            "run-02", "run-03", "run-04", "run-05", "run-06", "run-08", "run-09", "run-10",
            "run-11", "run-12"
        ]
    );
}

// --- dedicated baseline -------------------------------------------------------------------

fn baseline_canary() -> Value {
    json!({
        "stableService": "web-stable", "canaryService": "web-canary",
        "baseline": {},
        "steps": [
            { "setWeight": 20 },
            { "pause": {} },
            { "setWeight": 50 },
            { "pause": {} },
        ],
    })
}

fn baseline_status(r: &Rollout) -> Option<sluice_api::rollout::BaselineStatus> {
    r.status.as_ref()?.canary.as_ref()?.baseline.clone()
}

/// The baseline never needs more room than its own size on top of the surge budget, and
/// never has more pods than the canary is heading for.
fn baseline_within(max_total: i32, max_canary: i32) -> impl Fn(&World) {
    move |w: &World| {
        let baseline: i32 = w.baselines.iter().map(|b| b.replicas).sum();
        let revisions: i32 = w.rs.iter().map(|rs| rs.replicas).sum();
        assert!(
            baseline <= max_canary,
            "baseline {baseline} > canary {max_canary}"
        );
        assert!(
            revisions + baseline <= max_total + max_canary,
            "{revisions} + {baseline} pods: {:?} {:?}",
            w.rs,
            w.baselines
        );
    }
}

#[test]
fn baseline_is_created_from_the_stable_template_at_canary_size_and_follows_it() {
    let mut w = World::new().with_services(&["web-stable", "web-canary"]);
    let (mut r, v1) = stable_at_v1(baseline_canary(), 5, &mut w);
    assert!(w.baselines.is_empty(), "no baseline without a canary");
    assert_eq!(baseline_status(&r), None);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);

    // The first plan of the canary creates it beside the canary, from the v1 template.
    w.stable = Some(v1.clone());
    let p = plan(&r, &w.observed(), t0());
    let created = p.actions.iter().find_map(|a| match a {
        Action::CreateBaselineReplicaSet {
            stable_hash,
            canary_hash,
            replicas,
            template,
        } => Some((stable_hash, canary_hash, *replicas, template)),
        _ => None,
    });
    let (stable_hash, canary_hash, replicas, template) = created.expect("baseline created");
    assert_eq!((stable_hash, canary_hash, replicas), (&v1, &v2, 1));
    assert_eq!(
        template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("app:v1"),
        "the baseline runs the stable version"
    );

    // replicas 5, maxSurge 25% → 2, maxUnavailable 25% → 1; canary at most 3.
    let budget = Some((7, 4));
    settle_checking(&mut r, &mut w, t0(), budget, &baseline_within(7, 3));
    assert_eq!(w.sizes(&r, &v1), (1, 4));
    assert_eq!(step_index(&r), 1);
    let name = format!("web-{v1}-baseline-{v2}");
    assert_eq!(w.baselines.len(), 1);
    assert_eq!(
        (w.baselines[0].name.as_str(), w.baselines[0].replicas),
        (name.as_str(), 1)
    );
    assert_eq!(
        baseline_status(&r),
        Some(sluice_api::rollout::BaselineStatus {
            replica_set: name.clone(),
            pod_template_hash: v1.clone(),
            replicas: 1,
            available_replicas: 1,
        })
    );
    // Not a revision: the Rollout's pod counts are those of its revisions.
    assert_eq!(r.status.as_ref().unwrap().replicas, 5);

    // setWeight 50: the baseline grows with the canary, to 3.
    promote(&mut r);
    settle_checking(&mut r, &mut w, after(1), budget, &baseline_within(7, 3));
    assert_eq!(w.sizes(&r, &v1), (3, 2));
    assert_eq!(step_index(&r), 3);
    assert_eq!(w.baselines[0].replicas, 3);
    assert_eq!(baseline_status(&r).unwrap().available_replicas, 3);
}

#[test]
fn a_step_waits_for_the_baseline_to_be_available() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(baseline_canary(), 5, &mut w);
    w.baselines_become_ready = false;
    set_image(&mut r, "app:v2");
    let p = settle(&mut r, &mut w, t0(), Some((7, 4)));
    assert_eq!(w.sizes(&r, &v1), (1, 4));
    assert_eq!(step_index(&r), 0, "setWeight 20 waits for the baseline");
    assert_eq!(phase(&r), RolloutPhase::Progressing);
    assert_eq!(baseline_status(&r).unwrap().available_replicas, 0);
    assert!(
        p.requeue_after.is_some(),
        "the progress deadline still runs"
    );

    // Its pods become available: the status change is what wakes the controller.
    w.baselines_become_ready = true;
    w.tick();
    settle(&mut r, &mut w, after(1), Some((7, 4)));
    assert_eq!(step_index(&r), 1);
}

#[test]
fn baseline_is_removed_when_the_canary_completes() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(baseline_canary(), 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), Some((7, 4)));
    assert_eq!(w.baselines.len(), 1);
    promote(&mut r);
    settle(&mut r, &mut w, after(1), Some((7, 4)));
    assert_eq!(w.baselines[0].replicas, 3);

    // The last promote: the baseline goes as soon as promotion starts, before the canary
    // becomes stable, and is deleted once its pods are gone.
    promote(&mut r);
    let first = plan(&r, &w.observed(), after(2));
    let name = w.baselines[0].name.clone();
    assert!(
        first.actions.contains(&Action::ScaleReplicaSet {
            name: name.clone(),
            replicas: 0,
            scale_down_at: None
        }),
        "{first:#?}"
    );
    settle(&mut r, &mut w, after(2), Some((7, 4)));
    let v2 = hash_of(&r);
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.stable_rs.as_deref(), Some(v2.as_str()));
    assert_eq!(w.sizes(&r, &v1).0, 5);
    assert!(w.baselines.is_empty(), "deleted: {:?}", w.baselines);
    assert_eq!(baseline_status(&r), None);
    assert_eq!(s.phase, Some(RolloutPhase::Healthy));
}

#[test]
fn a_leftover_baseline_keeps_the_rollout_from_being_healthy_until_it_is_gone() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(baseline_canary(), 5, &mut w);
    // A baseline whose pods are still terminating (spec at zero, pods not yet gone).
    w.baselines.push(BaselineState {
        name: format!("web-{v1}-baseline-old"),
        stable_hash: v1.clone(),
        canary_hash: "old".into(),
        replicas: 0,
        current: 2,
        available: 2,
    });
    let p = plan(&r, &w.observed(), after(1));
    assert!(p.actions.is_empty(), "waits for its pods: {p:#?}");
    assert_eq!(p.status.phase, Some(RolloutPhase::Progressing));
    w.baselines[0].current = 0;
    let p = plan(&r, &w.observed(), after(2));
    assert_eq!(
        p.actions,
        vec![Action::DeleteReplicaSet {
            name: format!("web-{v1}-baseline-old")
        }]
    );
    w.apply(&p.actions);
    settle(&mut r, &mut w, after(3), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}

#[test]
fn abort_removes_the_baseline_within_the_budget() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(baseline_canary(), 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), Some((7, 4)));
    promote(&mut r);
    settle(&mut r, &mut w, after(1), Some((7, 4)));
    assert_eq!((w.sizes(&r, &v1), w.baselines[0].replicas), ((3, 2), 3));

    r.status.as_mut().unwrap().abort = true;
    settle_checking(
        &mut r,
        &mut w,
        after(2),
        Some((7, 4)),
        &baseline_within(7, 3),
    );
    assert_eq!(w.sizes(&r, &v1), (0, 5));
    assert!(w.baselines.is_empty(), "{:?}", w.baselines);
    assert_eq!(baseline_status(&r), None);
    assert_eq!(phase(&r), RolloutPhase::Degraded);

    // Retry: the canary resumes at its step with a fresh baseline.
    r.status.as_mut().unwrap().abort = false;
    settle(&mut r, &mut w, after(3), Some((7, 4)));
    assert_eq!(w.sizes(&r, &v1), (3, 2));
    assert_eq!(w.baselines.len(), 1);
    assert_eq!(w.baselines[0].replicas, 3);
}

#[test]
fn a_new_revision_gets_a_fresh_baseline_and_the_old_one_goes() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(baseline_canary(), 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), Some((7, 4)));
    let old = w.baselines[0].name.clone();

    set_image(&mut r, "app:v3");
    let v3 = hash_of(&r);
    settle_checking(
        &mut r,
        &mut w,
        after(1),
        Some((7, 4)),
        &baseline_within(7, 1),
    );
    assert_eq!(w.baselines.len(), 1, "{:?}", w.baselines);
    let fresh = &w.baselines[0];
    assert_ne!(
        fresh.name, old,
        "never the superseded canary's warmed-up pods"
    );
    assert_eq!(
        (
            fresh.stable_hash.as_str(),
            fresh.canary_hash.as_str(),
            fresh.replicas
        ),
        (v1.as_str(), v3.as_str(), 1)
    );
    assert_eq!(w.sizes(&r, &v1), (1, 4));
}

#[test]
fn a_rollback_to_the_stable_template_removes_the_baseline() {
    let mut w = World::new();
    let (mut r, v1) = stable_at_v1(baseline_canary(), 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), Some((7, 4)));
    assert_eq!(w.baselines.len(), 1);
    set_image(&mut r, "app:v1");
    settle(&mut r, &mut w, after(1), Some((7, 4)));
    assert!(w.baselines.is_empty());
    assert_eq!(w.sizes(&r, &v1), (5, 5));
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}

#[test]
fn spec_paused_holds_the_baseline_as_it_stands() {
    let mut w = World::new();
    let (mut r, _) = stable_at_v1(baseline_canary(), 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), Some((7, 4)));
    r.spec.paused = true;
    promote(&mut r);
    let p = settle(&mut r, &mut w, after(1), Some((7, 4)));
    assert!(p.actions.is_empty(), "{p:#?}");
    assert_eq!(w.baselines[0].replicas, 1);
}

#[test]
fn with_a_router_the_baseline_runs_beside_a_full_stable() {
    let mut w = World::new()
        .with_services(&["web-stable", "web-canary"])
        .with_router();
    let mut canary = baseline_canary();
    canary["trafficRouting"] = json!({ "nginx": { "stableIngress": "web" } });
    let (mut r, v1) = stable_at_v1(canary, 4, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(w.sizes(&r, &v1), (1, 4));
    assert_eq!(w.baselines[0].replicas, 1);
    assert_eq!(
        w.router,
        Some(20),
        "the weight is the canary's: the baseline shares stable's"
    );
}

#[test]
fn no_baseline_unless_asked_for() {
    for block in [Value::Null, json!({ "enabled": false })] {
        let mut w = World::new();
        let mut canary = baseline_canary();
        canary["baseline"] = block;
        let (mut r, _) = stable_at_v1(canary, 5, &mut w);
        set_image(&mut r, "app:v2");
        settle(&mut r, &mut w, t0(), Some((7, 4)));
        assert_eq!(step_index(&r), 1);
        assert!(w.baselines.is_empty());
        assert_eq!(baseline_status(&r), None);
    }
}

#[test]
fn a_weight_changed_by_another_writer_is_reported_and_put_back() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "gatewayAPI": { "httpRoute": "web" } },
        "steps": [{ "setWeight": 25 }, { "pause": {} }],
    });
    let (mut r, _) = stable_at_v1(canary, 4, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!((phase(&r), w.router), (RolloutPhase::Paused, Some(25)));
    let verified = |r: &Rollout| {
        r.status
            .as_ref()
            .and_then(|s| s.canary.as_ref()?.weights.as_ref()?.verified)
    };
    assert_eq!(verified(&r), Some(true));

    // A GitOps sync puts the route back to all-stable.
    w.router = Some(0);
    let p = plan(&r, &w.observed(), after(5));
    assert_eq!(p.actions, vec![Action::SetCanaryWeight { weight: 25 }]);
    let weights = p.status.canary.as_ref().unwrap().weights.clone().unwrap();
    assert_eq!((weights.canary, weights.verified), (25, Some(false)));
    let drift: Vec<_> = p
        .events
        .iter()
        .filter(|e| e.reason == "TrafficDrift")
        .collect();
    assert_eq!(drift.len(), 1, "{:?}", p.events);
    assert!(
        drift[0].warning
            && drift[0]
                .message
                .contains("held canary weight 0 instead of 25")
    );

    // Put back, the next reconcile verifies it and says nothing more.
    w.apply(&p.actions);
    r.status = Some(p.status);
    let p = plan(&r, &w.observed(), after(6));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(
        p.status.canary.unwrap().weights.unwrap().verified,
        Some(true)
    );
    assert!(p.events.iter().all(|e| e.reason != "TrafficDrift"));
    assert_eq!(p.status.phase, Some(RolloutPhase::Paused));
}

#[test]
fn a_retry_comes_back_through_the_steps_weight_before_pausing() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "abortScaleDownDelaySeconds": 0,
        "steps": [{ "setWeight": 40 }, { "pause": { "duration": "30s" } }, { "setWeight": 80 }, { "pause": {} }],
    });
    let (mut r, v1) = stable_at_v1(canary, 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    r.status.as_mut().unwrap().abort = true;
    settle(&mut r, &mut w, after(10), None);
    assert_eq!((w.sizes(&r, &v1), w.router), ((0, 5), Some(0)));
    assert!(
        r.status.as_ref().unwrap().pause_conditions.is_empty(),
        "the abort ended the pause"
    );

    // Retry: the first plan scales the canary back up and is not paused yet.
    r.status.as_mut().unwrap().abort = false;
    let p = plan(&r, &w.observed(), after(20));
    assert_eq!(p.status.phase, Some(RolloutPhase::Progressing), "{p:#?}");
    assert_eq!(p.status.current_step_index, Some(1));
    assert!(p.status.pause_conditions.is_empty());
    settle(&mut r, &mut w, after(20), None);
    assert_eq!((phase(&r), w.router), (RolloutPhase::Paused, Some(40)));
    // The timed pause counts from when the step was entered again, not from before.
    let started = r.status.as_ref().unwrap().pause_conditions[0].start_time.0;
    assert_eq!(started, after(20));
    settle(&mut r, &mut w, after(45), None);
    assert_eq!(step_index(&r), 1, "30 s are not over at 45 s");
    settle(&mut r, &mut w, after(51), None);
    assert_eq!((step_index(&r), w.router), (3, Some(80)));
}

#[test]
fn a_run_created_just_before_a_crash_is_taken_up_not_duplicated() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [
            { "setWeight": 20 },
            { "analysis": { "templates": [{ "templateName": "success-rate" }] } },
            { "setWeight": 50 },
        ],
        "analysis": { "templates": [{ "templateName": "errors" }] },
    });
    let (mut r, _) = stable_at_v1(canary, 5, &mut w);
    set_image(&mut r, "app:v2");
    // Walk until the plan that creates the step's run, then "crash": its actions are
    // carried out but its status is never written.
    let crash_plan = (0..20)
        .find_map(|_| {
            let p = plan(&r, &w.observed(), t0());
            let creates = p
                .actions
                .iter()
                .any(|a| matches!(a, Action::CreateAnalysisRun { role, .. } if role == "step-1"));
            w.apply(&p.actions);
            w.tick();
            if creates {
                return Some(p);
            }
            r.status = Some(p.status);
            None
        })
        .expect("a plan creates the step's run");
    let created: Vec<String> = w.runs.iter().map(|r| r.name.clone()).collect();
    assert!(
        r.status
            .as_ref()
            .and_then(|s| s.canary.as_ref()?.current_step_analysis_run.clone())
            .is_none(),
        "the stored status does not name the run: {crash_plan:#?}"
    );

    // The restarted controller plans from the stored status and the cluster.
    let p = plan(&r, &w.observed(), after(1));
    assert!(
        !p.actions.iter().any(|a| matches!(
            a,
            Action::CreateAnalysisRun { .. } | Action::TerminateAnalysisRun { .. }
        )),
        "no second run, and the first is not stopped: {:?}",
        p.actions
    );
    let c = p.status.canary.clone().unwrap();
    let named = [
        c.current_step_analysis_run,
        c.current_background_analysis_run,
    ];
    let mut named: Vec<String> = named.into_iter().flatten().collect();
    named.sort();
    let mut created = created;
    created.sort();
    assert_eq!(named, created, "the status takes up the runs that exist");
}

#[test]
fn abort_stops_a_step_run_still_measuring_and_a_retry_measures_afresh() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [
            { "setWeight": 20 },
            { "analysis": { "templates": [{ "templateName": "success-rate" }] } },
        ],
    });
    let (mut r, _) = stable_at_v1(canary, 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!((w.runs.len(), w.runs[0].terminating), (1, false));
    r.status.as_mut().unwrap().abort = true;
    settle(&mut r, &mut w, after(1), None);
    assert!(
        w.runs[0].terminating,
        "the aborted canary is not measured on"
    );
    let s = r.status.as_mut().unwrap();
    assert_eq!(s.canary.as_ref().unwrap().current_step_analysis_run, None);
    s.abort = false;
    settle(&mut r, &mut w, after(2), None);
    assert_eq!(w.runs.len(), 2, "a retry measures afresh: {:?}", w.runs);
    assert!(!w.runs[1].terminating);
}

/// Found by the property tests: a Rollout created at zero replicas got no ReplicaSet, so
/// its Services never selected anything and it went Degraded at the progress deadline
/// instead of Healthy.
#[test]
fn a_rollout_created_at_zero_replicas_is_healthy() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let mut r = rollout(
        "app:v1",
        0,
        json!({
            "canaryService": "c", "stableService": "s",
            "trafficRouting": { "nginx": { "stableIngress": "web" } },
            "steps": [],
        }),
    );
    let v1 = hash_of(&r);
    settle(&mut r, &mut w, t0(), None);
    settle(&mut r, &mut w, after(3600), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy, "{:?}", r.status);
    assert_eq!(w.sizes(&r, &v1), (0, 0));
    assert_eq!(w.rs.len(), 1, "the revision's ReplicaSet exists at 0");
    assert_eq!(w.services["s"].as_deref(), Some(v1.as_str()));
}

/// Found by the property tests: the router kept a canary's weight while all its pods
/// crash-looped, and set one for a canary sized to zero (a setCanaryScale of 0 beside a
/// weight, a Rollout scaled to 0): that share of requests had no pod to go to.
#[test]
fn a_canary_without_available_pods_gets_no_traffic() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let router = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [{ "setWeight": 40 }, { "pause": {} }, { "setCanaryScale": { "replicas": 0 } }, { "pause": {} }],
    });
    let (mut r, v1) = stable_at_v1(router, 5, &mut w);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(w.router, Some(40));
    // Every canary pod crash-loops: its share goes back to stable at once.
    for rs in w.rs.iter_mut().filter(|rs| rs.hash == v2) {
        rs.available = 0;
        rs.ready = 0;
    }
    let p = plan(&r, &w.observed(), after(1));
    assert!(
        p.actions.contains(&Action::SetCanaryWeight { weight: 0 }),
        "{:?}",
        p.actions
    );
    // Pods back: the step's weight returns; a canary scaled to 0 beside the weight keeps
    // one pod to take it.
    settle(&mut r, &mut w, after(2), None);
    assert_eq!(w.router, Some(40));
    promote(&mut r);
    settle(&mut r, &mut w, after(3), None);
    assert_eq!(step_index(&r), 3);
    assert_eq!(w.sizes(&r, &v1), (1, 5));
    assert_eq!(w.router, Some(40));
}

/// Found by the property tests: a retry of a rollout aborted at its progress deadline
/// (progressDeadlineAbort) kept the old progressedAt, so the next plan found the deadline
/// passed and aborted again at once; retrying could never resume it. The retry action
/// clears progressedAt, so the deadline counts from the retry.
#[test]
fn a_retry_after_a_progress_deadline_abort_gets_a_fresh_deadline() {
    let mut w = World::new();
    let mut r = rollout(
        "app:v1",
        2,
        json!({ "steps": [{ "setWeight": 50 }, { "pause": {} }] }),
    );
    r.spec.progress_deadline_seconds = 60;
    r.spec.progress_deadline_abort = true;
    settle(&mut r, &mut w, t0(), None);
    w.pods_become_ready = false;
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, after(1), None);
    settle(&mut r, &mut w, after(61), None);
    assert!(r.status.as_ref().unwrap().abort, "aborted at the deadline");
    // Retry, as `kubectl sluice retry` patches it; the pods are fixed.
    let (_, patch) = crate::actions::patch_for(crate::actions::UserAction::Retry, &r);
    let s = r.status.as_mut().unwrap();
    let fields = patch["status"].as_object().unwrap();
    assert!(fields.contains_key("progressedAt"));
    s.abort = false;
    s.aborted_at = None;
    s.progressed_at = None;
    w.pods_become_ready = true;
    settle(&mut r, &mut w, after(62), None);
    let s = r.status.as_ref().unwrap();
    assert!(!s.abort, "not aborted again: {:?}", s.message);
    assert_eq!(s.phase, Some(RolloutPhase::Paused), "{:?}", s.message);
}

/// Found by the property tests: the router's weight was raised before canaryService was
/// pointed at the new canary; a reconcile killed between the two writes left the share on
/// whatever canaryService selected before (the stable revision, with no pod at 0
/// replicas). A raised weight now follows the Service, a lowered one precedes it.
#[test]
fn a_raised_weight_is_written_after_the_canary_service_points_at_the_canary() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let router = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [{ "setWeight": 20 }, { "pause": {} }],
    });
    let (mut r, _) = stable_at_v1(router, 5, &mut w);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    let p = plan(&r, &w.observed(), t0());
    w.apply(&p.actions);
    w.tick();
    r.status = Some(p.status);
    let p = plan(&r, &w.observed(), t0());
    let service = p.actions.iter().position(
        |a| matches!(a, Action::SetServiceSelector { service, hash } if service == "c" && *hash == v2),
    );
    let weight = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::SetCanaryWeight { weight: 20 }));
    assert!(service.is_some() && weight.is_some(), "{:?}", p.actions);
    assert!(service < weight, "{:?}", p.actions);
}

#[test]
fn a_retry_in_an_inconclusive_step_measures_afresh_and_still_stops_at_the_next_pause() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let canary = json!({
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [
            { "setWeight": 20 }, { "analysis": { "templates": [{ "templateName": "t" }] } },
            { "setWeight": 50 }, { "pause": {} }, { "setWeight": 80 },
        ],
    });
    let (mut r, _) = stable_at_v1(canary, 5, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    w.runs[0].phase = Some(AnalysisPhase::Inconclusive);
    settle(&mut r, &mut w, after(1), None);
    assert_eq!((step_index(&r), phase(&r)), (1, RolloutPhase::Paused));
    // The retry action: measure afresh.
    let s = r.status.as_mut().unwrap();
    s.abort = false;
    s.aborted_at = None;
    s.progressed_at = None;
    s.canary.as_mut().unwrap().current_step_analysis_run = None;
    settle(&mut r, &mut w, after(2), None);
    assert_eq!(w.runs.len(), 2, "a fresh run");
    w.runs[1].phase = Some(AnalysisPhase::Successful);
    settle(&mut r, &mut w, after(3), None);
    assert_eq!(
        (step_index(&r), phase(&r)),
        (3, RolloutPhase::Paused),
        "the pause step waits for a human: {:?}",
        r.status
    );
}
