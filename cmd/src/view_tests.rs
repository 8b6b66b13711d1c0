use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::*;

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

/// An RFC 3339 time `secs` before [`now`].
fn ago(secs: i64) -> String {
    (now() - SignedDuration::from_secs(secs)).to_string()
}

fn rollout(spec_strategy: Value, status: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "shop", "creationTimestamp": ago(3600) },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                          "spec": { "containers": [{ "name": "web", "image": "app:v2" }] } },
            "strategy": spec_strategy,
        },
        "status": status,
    }))
    .unwrap()
}

fn canary_steps() -> Value {
    json!({ "canary": { "steps": [
        { "setWeight": 25 }, { "pause": {} }, { "setWeight": 75 }, { "pause": { "duration": "30s" } },
    ] } })
}

fn replica_set(
    hash: &str,
    revision: i64,
    image: &str,
    desired: i32,
    ready: i32,
    age: i64,
) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("web-{hash}"), "namespace": "shop", "uid": format!("uid-{hash}"),
            "creationTimestamp": ago(age),
            "labels": { "app": "web", POD_TEMPLATE_HASH_LABEL: hash, "sluice.dev/rollout": "web" },
            "annotations": { REVISION_ANNOTATION: revision.to_string() },
        },
        "spec": {
            "replicas": desired,
            "selector": { "matchLabels": { POD_TEMPLATE_HASH_LABEL: hash } },
            "template": { "spec": { "containers": [{ "name": "web", "image": image }] } },
        },
        "status": { "replicas": desired, "readyReplicas": ready, "availableReplicas": ready },
    }))
    .unwrap()
}

fn pod(hash: &str, suffix: &str, ready: bool, restarts: i32, age: i64) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("web-{hash}-{suffix}"), "namespace": "shop",
            "creationTimestamp": ago(age),
            "labels": { "app": "web", POD_TEMPLATE_HASH_LABEL: hash },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                                  "name": format!("web-{hash}"), "uid": format!("uid-{hash}") }],
        },
        "spec": { "containers": [{ "name": "web", "image": "x" }] },
        "status": {
            "phase": "Running",
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            "containerStatuses": [{ "name": "web", "ready": ready, "restartCount": restarts,
                                    "image": "x", "imageID": "" }],
        },
    }))
    .unwrap()
}

fn run(name: &str, phase: &str, values: &[&str]) -> AnalysisRun {
    let measurements: Vec<Value> = values
        .iter()
        .map(|v| json!({ "phase": "Successful", "value": v }))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": { "name": name, "namespace": "shop", "creationTimestamp": ago(90) },
        "spec": { "metrics": [] },
        "status": {
            "phase": phase,
            "metricResults": [{ "name": "error-rate", "phase": phase, "measurements": measurements,
                                "successful": values.len() }],
        },
    }))
    .unwrap()
}

fn paused_canary(index: i32, verified: Option<bool>) -> RolloutTree {
    let rollout = rollout(
        canary_steps(),
        json!({
            "phase": "Paused", "message": "CanaryPauseStep", "strategy": "Canary",
            "currentStepIndex": index, "stepProgress": format!("{}/4", index + 1),
            "currentPodHash": "bbb", "stableRS": "aaa",
            "replicas": 5, "updatedReplicas": 1, "readyReplicas": 4, "availableReplicas": 4,
            "canary": { "weights": { "canary": 25, "stable": 75, "verified": verified } },
        }),
    );
    RolloutTree {
        rollout,
        replica_sets: vec![
            replica_set("aaa", 1, "app:v1", 4, 4, 3600),
            replica_set("bbb", 2, "app:v2", 1, 0, 100),
        ],
        pods: vec![
            pod("aaa", "p1", true, 0, 3600),
            pod("aaa", "p2", true, 2, 3600),
            pod("bbb", "q1", false, 0, 100),
        ],
        runs: vec![run(
            "web-bbb-0-1",
            "Successful",
            &["0.01", "0.02", "0.015", "0.03"],
        )],
    }
}

#[test]
fn ages_read_like_kubectl() {
    let cases = [
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (125, "2m5s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600 + 600, "3h10m"),
        (8 * 3600, "8h"),
        (2 * 86_400 + 5 * 3600, "2d5h"),
        (12 * 86_400, "12d"),
    ];
    for (secs, want) in cases {
        let t = Time(now() - SignedDuration::from_secs(secs));
        assert_eq!(age(Some(&t), now()), want, "{secs}s ago");
    }
    assert_eq!(age(None, now()), "-");
}

/// The whole view of a canary paused at its second step: summary, steps with the marker,
/// then revisions with ReplicaSets, pods and the analysis run's latest measurements.
#[test]
fn a_paused_canary_renders_as_a_tree() {
    let lines = render_tree(&paused_canary(1, Some(true)), now());
    let want = [
        "Name:           web",
        "Namespace:      shop",
        "Status:         ॥ Paused",
        "Message:        CanaryPauseStep",
        "Strategy:       Canary",
        "  Step:         2/4",
        "  SetWeight:    25",
        "  ActualWeight: 25 (verified: the router shows it)",
        "Steps:",
        "  ✔  1. Set weight 25%",
        "  ▶  2. Pause until promoted",
        "     3. Set weight 75%",
        "     4. Pause 30s",
        "Images:         app:v2 (canary)",
        "                app:v1 (stable)",
        "Replicas:",
        "  Desired:      4",
        "  Current:      5",
        "  Updated:      1",
        "  Ready:        4",
        "  Available:    4",
        "",
        "NAME                   KIND         STATUS                 AGE     INFO",
        "⟳ web                  Rollout      ॥ Paused               60m",
        "├──# revision:2",
        "│  ├──⧉ web-bbb        ReplicaSet   ◌ Progressing          100s    canary  ready:0/1",
        "│  │  └──□ web-bbb-q1  Pod          ◌ Running (not ready)  100s    ready:0/1",
        "│  └──α web-bbb-0-1    AnalysisRun  ✔ Successful           90s     ✔ 4 ✖ 0",
        "│     └──⊞ error-rate  Metric       ✔ Successful                   latest: 0.03, 0.015, 0.02",
        "└──# revision:1",
        "   └──⧉ web-aaa        ReplicaSet   ✔ Healthy              60m     stable  ready:4/4",
        "      ├──□ web-aaa-p1  Pod          ✔ Running              60m     ready:1/1",
        "      └──□ web-aaa-p2  Pod          ✔ Running              60m     ready:1/1,restarts:2",
    ];
    assert_eq!(lines, want, "\n{}", lines.join("\n"));
}

/// The marker follows `currentStepIndex`; done steps are ticked, and a finished rollout
/// has every step ticked and asks for 100%.
#[test]
fn the_step_marker_follows_the_current_step() {
    let marks = |index: i32| -> Vec<String> {
        let mut t = paused_canary(index, None);
        if index >= 4 {
            t.rollout.status.as_mut().unwrap().step_progress = Some("4/4".into());
        }
        render_tree(&t, now())
            .into_iter()
            .skip_while(|l| l != "Steps:")
            .skip(1)
            .take(4)
            .map(|l| l.chars().nth(2).unwrap().to_string())
            .collect()
    };
    let set_weight = |index: i32| -> String {
        render_tree(&paused_canary(index, None), now())
            .into_iter()
            .find(|l| l.starts_with("  SetWeight:"))
            .unwrap()
    };
    assert_eq!(marks(0), ["▶", " ", " ", " "]);
    assert_eq!(marks(2), ["✔", "✔", "▶", " "]);
    assert_eq!(marks(3), ["✔", "✔", "✔", "▶"]);
    assert_eq!(marks(4), ["✔", "✔", "✔", "✔"]);
    assert_eq!(set_weight(0), "  SetWeight:    25");
    assert_eq!(set_weight(2), "  SetWeight:    75");
    assert_eq!(set_weight(4), "  SetWeight:    100");
}

#[test]
fn the_weight_says_whether_the_router_confirmed_it() {
    let cases = [
        (
            Some(true),
            "  ActualWeight: 25 (verified: the router shows it)",
        ),
        (
            Some(false),
            "  ActualWeight: 25 (not yet verified by the router)",
        ),
        (None, "  ActualWeight: 25"),
    ];
    for (verified, want) in cases {
        let lines = render_tree(&paused_canary(1, verified), now());
        assert!(lines.iter().any(|l| l == want), "{verified:?}: {lines:#?}");
    }
}

#[test]
fn blue_green_shows_active_and_preview_and_no_weights() {
    let r = rollout(
        json!({ "blueGreen": { "activeService": "web-active", "previewService": "web-preview",
                               "autoPromotionEnabled": false } }),
        json!({
            "phase": "Paused", "strategy": "BlueGreen", "currentStepIndex": 1,
            "currentPodHash": "bbb", "stableRS": "aaa",
            "blueGreen": { "activeSelector": "aaa", "previewSelector": "bbb" },
        }),
    );
    let t = RolloutTree {
        rollout: r,
        replica_sets: vec![
            replica_set("aaa", 1, "app:v1", 4, 4, 600),
            replica_set("bbb", 2, "app:v2", 4, 4, 60),
        ],
        pods: vec![],
        runs: vec![],
    };
    let lines = render_tree(&t, now());
    assert!(
        lines.contains(&"Strategy:       BlueGreen".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"Images:         app:v2 (preview)".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"                app:v1 (stable, active)".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("  ▶  2. ")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("Weight")), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("web-aaa") && l.ends_with("stable,active  ready:4/4")),
        "{lines:#?}"
    );
}

/// A baseline ReplicaSet shares the stable hash but is labelled; it is a baseline, not
/// a second stable.
#[test]
fn a_baseline_is_told_apart_from_stable() {
    let mut t = paused_canary(1, None);
    let mut baseline = replica_set("aaa", 1, "app:v1", 1, 1, 60);
    baseline.metadata.name = Some("web-aaa-baseline".into());
    baseline
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_ROLE_LABEL.into(), BASELINE_ROLE.into());
    t.replica_sets.push(baseline);
    let lines = render_tree(&t, now());
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("⧉ {name} ")))
            .cloned()
    };
    assert!(
        row("web-aaa-baseline")
            .unwrap()
            .ends_with("baseline  ready:1/1"),
        "{lines:#?}"
    );
    assert!(
        row("web-aaa").unwrap().ends_with("stable  ready:4/4"),
        "{lines:#?}"
    );
}

#[test]
fn list_has_a_namespace_column_only_for_all_namespaces() {
    let a = paused_canary(1, None).rollout;
    let mut b = rollout(
        json!({ "blueGreen": { "activeService": "x" } }),
        json!({ "phase": "Healthy", "strategy": "BlueGreen", "readyReplicas": 4, "availableReplicas": 4 }),
    );
    b.metadata.name = Some("api".into());
    b.metadata.namespace = Some("core".into());
    let one = render_list(std::slice::from_ref(&a), false, now());
    assert_eq!(
        one,
        [
            "NAME  STRATEGY  STATUS  STEP  WEIGHT  DESIRED  READY  AVAILABLE  AGE",
            "web   Canary    Paused  2/4   25      4        4      4          60m",
        ]
    );
    let all = render_list(&[a, b], true, now());
    assert_eq!(
        all,
        [
            "NAMESPACE  NAME  STRATEGY   STATUS   STEP  WEIGHT  DESIRED  READY  AVAILABLE  AGE",
            "core       api   BlueGreen  Healthy  -     -       4        4      4          60m",
            "shop       web   Canary     Paused   2/4   25      4        4      4          60m",
        ]
    );
}

#[test]
fn the_gates_of_the_revision_are_listed_with_their_last_answer() {
    let rollout = rollout(
        canary_steps(),
        json!({
            "phase": "Paused", "strategy": "Canary",
            "message": "held by gate load-test at weightIncrease step 3: HTTP 503: busy",
            "currentStepIndex": 2, "currentPodHash": "bbb", "stableRS": "aaa",
            "pauseConditions": [{ "reason": "Gate", "gate": "load-test", "startTime": ago(90) }],
            "gates": [
                { "name": "freeze", "point": "preRollout", "revision": "bbb", "phase": "Passed",
                  "startedAt": ago(600), "finishedAt": ago(590), "message": "answered 2xx" },
                { "name": "load-test", "point": "weightIncrease", "revision": "bbb", "step": 2,
                  "phase": "Pending", "startedAt": ago(90), "message": "HTTP 503: busy" },
            ],
        }),
    );
    let tree = RolloutTree {
        rollout,
        replica_sets: Vec::new(),
        pods: Vec::new(),
        runs: Vec::new(),
    };
    let lines = render_tree(&tree, now());
    let at = lines
        .iter()
        .position(|l| l == "Gates:")
        .expect("a Gates block");
    assert_eq!(
        lines[at + 1..at + 3],
        [
            "  freeze        Passed at preRollout for 10s: answered 2xx".to_string(),
            "  load-test     Pending at weightIncrease step 3 for 90s: HTTP 503: busy".to_string(),
        ]
    );
}
