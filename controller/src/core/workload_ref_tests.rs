//! `workloadRef`: a Rollout whose template the runtime took from a Deployment, and what
//! `scaleDown` does to that Deployment, walked over the simulated cluster.

use serde_json::{Value, json};
use sluice_api::rollout::{Rollout, RolloutPhase};

use super::testkit::{World, after, phase, set_image, settle, settle_checking, t0};
use super::{Action, Observed, WorkloadState, plan};

/// A canary Rollout as the runtime hands it to the planner: `workloadRef` set and the
/// Deployment's template and selector filled in.
fn rollout(replicas: i32, scale_down: Option<&str>) -> Rollout {
    let mut reference = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" });
    if let Some(mode) = scale_down {
        reference["scaleDown"] = Value::from(mode);
    }
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "default", "generation": 1 },
        "spec": {
            "replicas": replicas,
            "workloadRef": reference,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "app:v1" }] },
            },
            "strategy": { "canary": { "steps": [{ "setWeight": 50 }, { "pause": {} }] } },
        },
    }))
    .unwrap()
}

fn world(deployment_replicas: i32) -> World {
    let mut w = World::new();
    w.workload = Some(WorkloadState {
        name: "web".into(),
        replicas: deployment_replicas,
    });
    w
}

fn deployment(w: &World) -> i32 {
    w.workload.as_ref().unwrap().replicas
}

fn scales(actions: &[Action]) -> Vec<i32> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ScaleDeployment { replicas, .. } => Some(*replicas),
            _ => None,
        })
        .collect()
}

#[test]
fn without_its_deployment_nothing_is_done_and_the_reference_is_reported() {
    let r = rollout(3, Some("onsuccess"));
    let observed = Observed {
        missing: vec!["Deployment web".into()],
        ..Observed::default()
    };
    let p = plan(&r, &observed, t0());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.status.phase, Some(RolloutPhase::Degraded));
    let invalid = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "InvalidSpec")
        .unwrap();
    assert_eq!(invalid.reason, "ReferenceNotFound");
    assert_eq!(invalid.message, "not found: Deployment web");
    assert_eq!(p.events.len(), 1);
}

#[test]
fn onsuccess_scales_the_deployment_to_zero_once_healthy_and_not_before() {
    let mut r = rollout(3, Some("onsuccess"));
    let mut w = world(3);
    let last = settle_checking(&mut r, &mut w, t0(), None, &|w| {
        // Before the Rollout's pods are all available, the Deployment keeps its own.
        let available: i32 = w.rs.iter().map(|rs| rs.available).sum();
        if available < 3 {
            assert_eq!(
                deployment(w),
                3,
                "scaled down before the Rollout could serve"
            );
        }
    });
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert_eq!(deployment(&w), 0);
    assert!(scales(&last.actions).is_empty(), "settled: no write left");
    assert_eq!(
        w.events
            .iter()
            .filter(|e| *e == "DeploymentScaledDown")
            .count(),
        1,
        "{:?}",
        w.events
    );
}

#[test]
fn onsuccess_puts_the_deployment_back_to_zero_when_someone_scales_it_up() {
    let mut r = rollout(3, Some("onsuccess"));
    let mut w = world(3);
    settle(&mut r, &mut w, t0(), None);
    w.workload.as_mut().unwrap().replicas = 2;
    let p = plan(&r, &w.observed(), after(60));
    assert_eq!(scales(&p.actions), [0]);
}

#[test]
fn progressively_gives_up_one_deployment_pod_per_ready_rollout_pod() {
    let r = rollout(4, Some("progressively"));
    let mut w = world(4);
    // The first revision is created and not ready yet: the Deployment keeps all four.
    let first = plan(&r, &w.observed(), t0());
    assert!(scales(&first.actions).is_empty());
    w.apply(&first.actions);
    let mut r = r;
    r.status = Some(first.status);
    // One of the Rollout's pods is ready: the Deployment goes to three.
    w.rs[0].current = 4;
    w.rs[0].ready = 1;
    w.rs[0].available = 1;
    let p = plan(&r, &w.observed(), after(1));
    assert_eq!(p.status.ready_replicas, 1);
    assert_eq!(scales(&p.actions), [3]);
    assert!(p.events.is_empty(), "an Event only at zero");
    w.apply(&p.actions);
    r.status = Some(p.status);
    // All ready: Healthy, and the Deployment is gone to zero.
    w.tick();
    let last = settle(&mut r, &mut w, after(2), None);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert_eq!(deployment(&w), 0);
    assert!(last.actions.is_empty());
}

#[test]
fn progressively_never_adds_deployment_pods_after_the_migration() {
    let mut r = rollout(3, Some("progressively"));
    let mut w = world(3);
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(deployment(&w), 0);
    // The Deployment's template changes (the runtime resolves it into the Rollout): a
    // canary whose pods never become ready, so the Rollout lacks ready pods for a while.
    w.pods_become_ready = false;
    set_image(&mut r, "app:v2");
    r.metadata.generation = Some(1);
    settle(&mut r, &mut w, after(10), None);
    assert_ne!(phase(&r), RolloutPhase::Healthy);
    assert_eq!(deployment(&w), 0, "no Deployment pod runs the new template");
}

#[test]
fn never_and_the_default_leave_the_deployment_alone() {
    for mode in [Some("never"), None] {
        let mut r = rollout(3, mode);
        let mut w = world(3);
        settle(&mut r, &mut w, t0(), None);
        assert_eq!(phase(&r), RolloutPhase::Healthy);
        assert_eq!(deployment(&w), 3, "{mode:?}");
    }
}

#[test]
fn a_rollout_without_workload_ref_plans_no_deployment_write() {
    let mut r = rollout(3, Some("onsuccess"));
    r.spec.workload_ref = None;
    let mut w = world(3);
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(deployment(&w), 3);
}
