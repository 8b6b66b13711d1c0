//! Role metadata (`canaryMetadata` / `stableMetadata`, `previewMetadata` /
//! `activeMetadata`): walks over a simulated cluster whose ReplicaSets make pods from
//! their template, checking the labels each revision's pods carry at every stage.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sluice_api::rollout::{Rollout, RolloutPhase};

use super::testkit::{World, hash_of, phase, promote, set_image, settle, t0};
use super::{Action, plan};

fn rollout(strategy: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "default", "generation": 1 },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web", "tier": "front" } },
                "spec": { "containers": [{ "name": "web", "image": "app:v1" }] },
            },
            "strategy": strategy,
        },
    }))
    .unwrap()
}

fn canary(extra: Value) -> Value {
    let mut c = json!({
        "canaryService": "web-canary", "stableService": "web-stable",
        "steps": [{ "setWeight": 50 }, { "pause": {} }],
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({ "canary": c })
}

fn world() -> World {
    World {
        model_pods: true,
        ..World::new().with_services(&["web-canary", "web-stable", "web-active", "web-preview"])
    }
}

/// The value of label `key` on every live pod of revision `hash` (None where absent).
fn label_of(w: &World, hash: &str, key: &str) -> Vec<Option<String>> {
    w.pod_labels(hash)
        .values()
        .map(|l| l.get(key).cloned())
        .collect()
}

fn annotation_of(w: &World, hash: &str, key: &str) -> Vec<Option<String>> {
    w.pods
        .iter()
        .filter(|p| p.replica_set == format!("web-{hash}") && !p.terminating)
        .map(|p| p.annotations.get(key).cloned())
        .collect()
}

fn relabels(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::PatchPodMetadata { .. } | Action::SetReplicaSetPodMetadata { .. }
            )
        })
        .count()
}

#[test]
fn canary_pods_carry_canary_metadata_and_are_relabelled_in_place_when_promoted() {
    let mut r = rollout(canary(json!({
        "canaryMetadata": { "labels": { "role": "canary" }, "annotations": { "canary-since": "v2" } },
        "stableMetadata": { "labels": { "role": "stable" } },
    })));
    let mut w = world();
    settle(&mut r, &mut w, t0(), None);
    let v1 = hash_of(&r);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    // A first revision is stable from the start: its pods are made with the stable role.
    assert_eq!(
        label_of(&w, &v1, "role"),
        vec![Some("stable".to_string()); 2]
    );

    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(phase(&r), RolloutPhase::Paused);
    assert_eq!(label_of(&w, &v2, "role"), vec![Some("canary".to_string())]);
    assert_eq!(
        annotation_of(&w, &v2, "canary-since"),
        vec![Some("v2".to_string())]
    );
    // At 50% without a router, one pod each.
    assert_eq!(label_of(&w, &v1, "role"), vec![Some("stable".to_string())]);
    // The template's own labels stay, the hash too.
    let canary_pod = w.pod_labels(&v2).into_values().next().unwrap();
    assert_eq!(canary_pod.get("tier").map(String::as_str), Some("front"));

    let canary_pods: Vec<String> = w.pod_labels(&v2).into_keys().collect();
    promote(&mut r);
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v2.as_str())
    );
    // The canary's pods became stable pods in place: the same pods, the stable role, and
    // the canary's annotation gone.
    let now: Vec<String> = w.pod_labels(&v2).into_keys().collect();
    assert!(
        canary_pods.iter().all(|p| now.contains(p)),
        "a canary pod was replaced: {canary_pods:?} → {now:?}"
    );
    assert_eq!(
        label_of(&w, &v2, "role"),
        vec![Some("stable".to_string()); 2]
    );
    assert_eq!(annotation_of(&w, &v2, "canary-since"), [None, None]);
    // Its ReplicaSet's template has the stable role for the pods it makes from now on.
    let rs = w.rs.iter().find(|rs| rs.hash == v2).unwrap();
    assert_eq!(
        rs.pod_metadata.as_ref().map(|m| m.labels.clone()),
        Some(BTreeMap::from([("role".into(), "stable".into())]))
    );
    assert_eq!(
        w.rs_pod_metadata[&rs.name]
            .0
            .get("role")
            .map(String::as_str),
        Some("stable")
    );
    // Settled: nothing more to relabel.
    let p = plan(&r, &w.observed(), t0());
    assert_eq!(relabels(&p.actions), 0, "{:?}", p.actions);
}

#[test]
fn without_role_metadata_no_pod_or_template_is_ever_relabelled() {
    let mut r = rollout(canary(json!({})));
    let mut w = world();
    let mut seen = 0;
    for step in 0..3 {
        if step == 1 {
            set_image(&mut r, "app:v2");
        }
        if step == 2 {
            promote(&mut r);
        }
        for _ in 0..20 {
            let p = plan(&r, &w.observed(), t0());
            seen += relabels(&p.actions);
            w.apply(&p.actions);
            w.tick();
            r.status = Some(p.status);
        }
    }
    assert_eq!(seen, 0);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}

#[test]
fn a_key_dropped_from_the_spec_mid_rollout_comes_off_the_pods() {
    let mut r = rollout(canary(json!({
        "canaryMetadata": { "labels": { "role": "canary", "track": "experiment" } },
    })));
    let mut w = world();
    settle(&mut r, &mut w, t0(), None);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(
        label_of(&w, &v2, "track"),
        vec![Some("experiment".to_string())]
    );

    // The user edits canaryMetadata: `track` is no longer wanted.
    r.spec.strategy.canary.as_mut().unwrap().canary_metadata =
        Some(serde_json::from_value(json!({ "labels": { "role": "canary" } })).unwrap());
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(label_of(&w, &v2, "track"), [None]);
    assert_eq!(label_of(&w, &v2, "role"), vec![Some("canary".to_string())]);
    assert!(
        !w.rs_pod_metadata[&format!("web-{v2}")]
            .0
            .contains_key("track")
    );
}

#[test]
fn a_template_label_a_role_overrode_gets_the_templates_value_back() {
    let mut r = rollout(canary(json!({
        "canaryMetadata": { "labels": { "tier": "canary-front" } },
    })));
    let mut w = world();
    settle(&mut r, &mut w, t0(), None);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(
        label_of(&w, &v2, "tier"),
        vec![Some("canary-front".to_string())]
    );
    promote(&mut r);
    settle(&mut r, &mut w, t0(), None);
    // Stable without stableMetadata: the template's `tier` again, not no tier at all.
    assert_eq!(
        label_of(&w, &v2, "tier"),
        vec![Some("front".to_string()); 2]
    );
}

#[test]
fn a_role_label_that_is_a_selector_key_is_an_invalid_spec() {
    let r = rollout(canary(json!({
        "stableMetadata": { "labels": { "app": "other" } },
    })));
    let p = plan(&r, &World::new().observed(), t0());
    let invalid = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "InvalidSpec")
        .unwrap();
    assert_eq!(invalid.status, "True");
    assert!(
        invalid
            .message
            .contains("spec.strategy.canary.stableMetadata.labels.app is a key of spec.selector"),
        "{}",
        invalid.message
    );
    assert!(p.actions.is_empty());
}

#[test]
fn blue_green_preview_pods_get_preview_metadata_then_active_metadata() {
    let mut r = rollout(json!({ "blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false,
        "previewMetadata": { "labels": { "role": "preview" } },
        "activeMetadata": { "labels": { "role": "active" } },
    } }));
    let mut w = world();
    settle(&mut r, &mut w, t0(), None);
    let v1 = hash_of(&r);
    assert_eq!(
        label_of(&w, &v1, "role"),
        vec![Some("active".to_string()); 2]
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(phase(&r), RolloutPhase::Paused);
    assert_eq!(
        label_of(&w, &v2, "role"),
        vec![Some("preview".to_string()); 2]
    );
    assert_eq!(
        label_of(&w, &v1, "role"),
        vec![Some("active".to_string()); 2]
    );
    promote(&mut r);
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(
        label_of(&w, &v2, "role"),
        vec![Some("active".to_string()); 2]
    );
}

#[test]
fn dropping_role_metadata_from_the_spec_takes_its_keys_off_and_the_pods_are_still_read() {
    let mut r = rollout(canary(json!({
        "stableMetadata": { "labels": { "role": "stable" } },
    })));
    let mut w = world();
    settle(&mut r, &mut w, t0(), None);
    let v1 = hash_of(&r);
    assert_eq!(
        label_of(&w, &v1, "role"),
        vec![Some("stable".to_string()); 2]
    );
    assert!(super::pod_metadata::reads_pod_metadata(&r, &w.rs));

    // The user removes stableMetadata: nothing is wanted, but the ReplicaSet still
    // records what was applied, so the runtime must go on reading the pods' labels.
    r.spec.strategy.canary.as_mut().unwrap().stable_metadata = None;
    assert!(super::pod_metadata::reads_pod_metadata(&r, &w.rs));
    settle(&mut r, &mut w, t0(), None);
    assert_eq!(label_of(&w, &v1, "role"), vec![None, None]);
    let rs = w.rs.iter().find(|rs| rs.hash == v1).unwrap();
    assert_eq!(rs.pod_metadata, None, "the record is gone with the keys");
    assert!(!w.rs_pod_metadata[&rs.name].0.contains_key("role"));
    // Nothing left to take off: the pods need not be read any more.
    assert!(!super::pod_metadata::reads_pod_metadata(&r, &w.rs));
}
