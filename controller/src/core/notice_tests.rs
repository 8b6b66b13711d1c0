//! Walks of both strategies through the simulated cluster, checking the notices their
//! plans make: each transition once, in order, and nothing while nothing happens.

use serde_json::{Value, json};
use sluice_api::analysis::AnalysisPhase;
use sluice_api::rollout::Rollout;

use super::notice::{StepPosition, Trigger};
use super::testkit::{World, after, hash_of, promote, set_image, settle, t0};

fn rollout(strategy: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "default", "generation": 1 },
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

/// The triggers noticed since `from`, by name.
fn triggers(w: &World, from: usize) -> Vec<&'static str> {
    w.notices[from..].iter().map(|n| n.trigger.name()).collect()
}

#[test]
fn trigger_names_are_pinned_and_parse_back() {
    let names: Vec<&str> = Trigger::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        [
            "updated",
            "step-completed",
            "paused",
            "promoted",
            "analysis-failed",
            "aborted",
            "progress-deadline-exceeded",
            "completed",
        ]
    );
    for t in Trigger::ALL {
        assert_eq!(Trigger::parse(t.name()), Some(t));
    }
    assert_eq!(Trigger::parse("on-rollout-aborted"), None);
}

#[test]
fn a_canary_notices_each_transition_once_in_order() {
    let mut w = World::new();
    let mut r = rollout(json!({ "canary": { "steps": [
        { "setWeight": 25 },
        { "pause": { "duration": "5s" } },
        { "setWeight": 50 },
        { "pause": {} },
    ] } }));
    settle(&mut r, &mut w, t0(), None);
    assert!(
        w.notices.is_empty(),
        "a first revision has no transition to tell: {:?}",
        w.notices
    );

    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, t0(), None);
    // The timed pause that follows step 1 is under way, not a wait for someone.
    assert_eq!(triggers(&w, 0), ["updated", "step-completed"]);
    assert_eq!(
        w.notices[1].step,
        Some(StepPosition {
            completed: 1,
            count: 4
        })
    );
    assert!(w.notices.iter().all(|n| n.revision == v2));

    // Nothing happens before the pause ends: nothing is noticed.
    settle(&mut r, &mut w, after(2), None);
    assert_eq!(w.notices.len(), 2);

    settle(&mut r, &mut w, after(6), None);
    assert_eq!(
        triggers(&w, 2),
        ["step-completed", "step-completed", "paused"],
        "the timed pause and setWeight 50 done, then `pause: {{}}` waits"
    );
    settle(&mut r, &mut w, after(60), None);
    assert_eq!(w.notices.len(), 5, "a pause waiting is not noticed again");

    promote(&mut r);
    settle(&mut r, &mut w, after(61), None);
    assert_eq!(triggers(&w, 5), ["step-completed", "promoted", "completed"]);
    assert_eq!(
        w.notices[6].message,
        format!("completed all 4 steps: revision {v2} goes to full weight")
    );

    let keys: std::collections::BTreeSet<String> = w.notices.iter().map(|n| n.key()).collect();
    assert_eq!(keys.len(), w.notices.len(), "every notice has its own key");
    settle(&mut r, &mut w, after(600), None);
    assert_eq!(w.notices.len(), 8, "a settled rollout notices nothing");
}

#[test]
fn a_failed_analysis_is_noticed_then_the_abort() {
    let mut w = World::new().with_services(&["s", "c"]).with_router();
    let mut r = rollout(json!({ "canary": {
        "canaryService": "c", "stableService": "s",
        "trafficRouting": { "nginx": { "stableIngress": "web" } },
        "steps": [
            { "setWeight": 20 },
            { "analysis": { "templates": [{ "templateName": "success-rate" }] } },
            { "setWeight": 50 },
        ],
    } }));
    settle(&mut r, &mut w, t0(), None);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(triggers(&w, 0), ["updated", "step-completed"]);

    w.runs[0].phase = Some(AnalysisPhase::Failed);
    w.runs[0].message = Some("error rate 0.2 > 0.05".into());
    settle(&mut r, &mut w, after(30), None);
    assert_eq!(triggers(&w, 2), ["analysis-failed", "aborted"]);
    assert!(
        w.notices[2].message.contains("error rate 0.2 > 0.05"),
        "{}",
        w.notices[2].message
    );
    assert_eq!(
        w.notices[2].step,
        Some(StepPosition {
            completed: 1,
            count: 3
        }),
        "the analysis of step 2 failed with one step done"
    );
    settle(&mut r, &mut w, after(300), None);
    assert_eq!(w.notices.len(), 4, "an aborted rollout is noticed once");
}

#[test]
fn a_user_abort_is_noticed_without_an_analysis_failure() {
    let mut w = World::new();
    let mut r = rollout(json!({ "canary": { "steps": [{ "setWeight": 25 }, { "pause": {} }] } }));
    settle(&mut r, &mut w, t0(), None);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(triggers(&w, 0), ["updated", "step-completed", "paused"]);
    r.status.as_mut().unwrap().abort = true;
    settle(&mut r, &mut w, after(10), None);
    assert_eq!(triggers(&w, 3), ["aborted"]);
}

#[test]
fn promote_full_is_noticed_as_a_promotion_once() {
    let mut w = World::new();
    let mut r = rollout(json!({ "canary": { "steps": [
        { "setWeight": 25 }, { "pause": {} }, { "setWeight": 50 }, { "pause": {} },
    ] } }));
    settle(&mut r, &mut w, t0(), None);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    let before = w.notices.len();
    r.status.as_mut().unwrap().promote_full = true;
    settle(&mut r, &mut w, after(10), None);
    assert_eq!(triggers(&w, before), ["promoted", "completed"]);
    assert!(
        w.notices[before]
            .message
            .starts_with("promoted in full with 1 of 4 steps done"),
        "{}",
        w.notices[before].message
    );
}

#[test]
fn a_blue_green_notices_its_stages_the_switch_and_completion() {
    let mut w = World::new().with_services(&["web-active", "web-preview"]);
    let mut r = rollout(json!({ "blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false,
    } }));
    settle(&mut r, &mut w, t0(), None);
    assert!(w.notices.is_empty(), "{:?}", w.notices);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(triggers(&w, 0), ["updated", "step-completed", "paused"]);
    promote(&mut r);
    settle(&mut r, &mut w, after(5), None);
    let tail = triggers(&w, 3);
    assert_eq!(tail.first(), Some(&"step-completed"), "{tail:?}");
    assert!(
        tail.ends_with(&["promoted", "completed"]),
        "the active Service switches, then the revision is stable: {tail:?}"
    );
    assert_eq!(
        tail.iter().filter(|t| **t == "promoted").count(),
        1,
        "{tail:?}"
    );
}
