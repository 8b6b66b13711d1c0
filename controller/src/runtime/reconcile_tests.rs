//! The runtime's reconcile against a mocked API server: what it writes when its cache is
//! behind the stored Rollout, and what a conflict does. The cluster is a few canned
//! objects; the assertions are on the writes a user would see.

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};
use sluice_api::rollout::Rollout;

use super::{Context, ReconcileError, backoff, reconcile_inner};
use crate::adapters::mock_api::{self, Seen};
use crate::adapters::workload::build_replica_set;
use crate::core::hash::pod_template_hash;

const NS: &str = "shop";

fn rollout(image: &str, resource_version: &str, status: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {
            "name": "web", "namespace": NS, "uid": "uid-web", "generation": 2,
            "resourceVersion": resource_version,
        },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": image }] },
            },
            "strategy": { "canary": { "steps": [{ "setWeight": 50 }, { "pause": {} }] } },
        },
        "status": status,
    }))
    .unwrap()
}

/// v1 stable at 2 pods, v2 (the template now) at 1 pod: step 0 of `setWeight: 50` with
/// the stable side still to scale down.
struct Scene {
    v1: String,
    v2: String,
    cached: Rollout,
    replica_sets: Vec<ReplicaSet>,
}

fn scene() -> Scene {
    let old = rollout("app:v1", "1", json!({}));
    let v1 = pod_template_hash(&old.spec.template);
    let status = |v2: &str| {
        json!({
            "observedGeneration": 2, "currentPodHash": v2, "stableRS": v1,
            "currentStepIndex": 0, "phase": "Progressing",
        })
    };
    let probe = rollout("app:v2", "1", json!({}));
    let v2 = pod_template_hash(&probe.spec.template);
    let cached = rollout("app:v2", "1", status(&v2));
    let sized = |r: &Rollout, hash: &str, revision, n| {
        let mut rs = build_replica_set(r, hash, revision, n);
        rs.metadata.namespace = Some(NS.into());
        rs.status = Some(ReplicaSetStatus {
            replicas: n,
            ready_replicas: Some(n),
            available_replicas: Some(n),
            ..ReplicaSetStatus::default()
        });
        rs
    };
    let replica_sets = vec![sized(&old, &v1, 1, 2), sized(&cached, &v2, 2, 1)];
    Scene {
        v1,
        v2,
        cached,
        replica_sets,
    }
}

fn context(client: kube::Client, replica_sets: Vec<ReplicaSet>) -> Arc<Context> {
    let (rs_store, mut rs_writer) = reflector::store();
    rs_writer.apply_watcher_event(&watcher::Event::Init);
    for rs in replica_sets {
        rs_writer.apply_watcher_event(&watcher::Event::InitApply(rs));
    }
    rs_writer.apply_watcher_event(&watcher::Event::InitDone);
    let (run_store, mut run_writer) = reflector::store();
    run_writer.apply_watcher_event(&watcher::Event::Init);
    run_writer.apply_watcher_event(&watcher::Event::InitDone);
    Arc::new(Context {
        client: client.clone(),
        replica_sets: rs_store,
        analysis_runs: run_store,
        caches_ready: async { true }.boxed().shared(),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "sluice".into(),
                instance: None,
            },
        ),
        failures: backoff::Failures::default(),
    })
}

fn rollout_path() -> String {
    format!("/apis/sluice.dev/v1alpha1/namespaces/{NS}/rollouts/web")
}

/// The answers of a small cluster: `fresh` is the Rollout as stored, `status_write` the
/// answer to a status replace.
fn cluster(
    fresh: Rollout,
    replica_sets: Vec<ReplicaSet>,
    status_write: u16,
) -> impl Fn(&Seen) -> (u16, Value) + Send {
    move |seen: &Seen| {
        let path = seen.path.as_str();
        let replica_set = replica_sets.iter().find(|rs| {
            path.ends_with(&format!(
                "/replicasets/{}",
                rs.metadata.name.as_deref().unwrap()
            ))
        });
        match seen.method.as_str() {
            "PATCH" if replica_set.is_some() => {
                (200, serde_json::to_value(replica_set.unwrap()).unwrap())
            }
            "GET" if path == rollout_path() => (200, serde_json::to_value(&fresh).unwrap()),
            "PUT" if path == format!("{}/status", rollout_path()) && status_write == 409 => (
                409,
                json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "Conflict", "code": 409,
                    "message": "the object has been modified; please apply your changes to the latest version and try again",
                }),
            ),
            // Writes answer with what they were sent (enough for the clients' decoding).
            "PUT" | "PATCH" | "POST" => (200, seen.body.clone().unwrap_or(json!({}))),
            _ => mock_api::not_found("unknown", path),
        }
    }
}

fn scaled_to(log: &[Seen], rs_name: &str) -> Vec<i64> {
    log.iter()
        .filter(|s| s.method == "PATCH" && s.path.ends_with(&format!("/replicasets/{rs_name}")))
        .filter_map(|s| s.body.as_ref()?.pointer("/spec/replicas")?.as_i64())
        .collect()
}

#[tokio::test]
async fn a_stale_cache_is_replanned_from_the_stored_rollout_and_keeps_the_users_abort() {
    let scene = scene();
    // The user aborted after the cache's copy: the stored Rollout is newer.
    let mut fresh = scene.cached.clone();
    fresh.metadata.resource_version = Some("2".into());
    fresh.status.as_mut().unwrap().abort = true;
    let (client, log) = mock_api::serve(cluster(fresh, scene.replica_sets.clone(), 200));
    let ctx = context(client, scene.replica_sets.clone());

    let result = reconcile_inner(Arc::new(DeserializeGuard(Ok(scene.cached.clone()))), ctx).await;
    assert!(result.is_ok(), "{result:?}");
    let log = log.lock().unwrap();
    let v1_rs = format!("web-{}", scene.v1);
    let v2_rs = format!("web-{}", scene.v2);
    // From the stale copy the plan would have shrunk the stable side to 1 for the 50%
    // step; from the stored one it aborts: the canary goes, the stable stays at 2.
    assert_eq!(scaled_to(&log, &v1_rs), Vec::<i64>::new(), "{log:#?}");
    assert_eq!(scaled_to(&log, &v2_rs), vec![0], "{log:#?}");
    let status_writes: Vec<&Seen> = log
        .iter()
        .filter(|s| s.method == "PUT" && s.path.ends_with("/status"))
        .collect();
    assert_eq!(status_writes.len(), 1, "{log:#?}");
    let body = status_writes[0].body.as_ref().unwrap();
    assert_eq!(
        body["metadata"]["resourceVersion"], "2",
        "written over the stored copy"
    );
    assert_eq!(body["status"]["abort"], true, "the user's abort is kept");
    assert_eq!(body["status"]["phase"], "Degraded");
}

#[tokio::test]
async fn a_status_conflict_is_an_error_for_the_backoff_and_is_not_retried_at_once() {
    let scene = scene();
    let fresh = scene.cached.clone();
    let (client, log) = mock_api::serve(cluster(fresh, scene.replica_sets.clone(), 409));
    let ctx = context(client, scene.replica_sets.clone());

    let result = reconcile_inner(
        Arc::new(DeserializeGuard(Ok(scene.cached.clone()))),
        ctx.clone(),
    )
    .await;
    let error = result.expect_err("a conflict is reported");
    assert_eq!(error.category(), "conflict");
    assert!(matches!(error, ReconcileError::Adapter(_)));
    let log = log.lock().unwrap();
    let writes = log
        .iter()
        .filter(|s| s.method == "PUT" && s.path.ends_with("/status"))
        .count();
    assert_eq!(
        writes, 1,
        "one attempt; the backoff decides the next: {log:#?}"
    );
    // The backoff that follows grows with each conflict in a row.
    let key = kube::runtime::reflector::ObjectRef::from_obj(&DeserializeGuard(Ok(scene.cached)));
    assert_eq!(ctx.failures.record(key.clone()), 1);
    assert_eq!(ctx.failures.record(key), 2);
}

#[tokio::test]
async fn nothing_changed_means_no_write_and_no_fresh_read() {
    let scene = scene();
    // Settled on v1: the plan has no action and the status is as stored.
    let old = rollout("app:v1", "7", json!({}));
    let (client, _) = mock_api::serve(|_| (500, json!({})));
    let ctx = context(client, scene.replica_sets[..1].to_vec());
    let settled = {
        let observed = super::observe(&ctx, &old).await.unwrap();
        let plan = crate::core::plan(&old, &observed, k8s_openapi::jiff::Timestamp::now());
        let mut r = old.clone();
        r.status = Some(plan.status);
        r
    };
    let (client, log) = mock_api::serve(|s| mock_api::not_found("unknown", &s.path));
    let ctx = context(client, scene.replica_sets[..1].to_vec());
    let result = reconcile_inner(Arc::new(DeserializeGuard(Ok(settled))), ctx).await;
    assert!(result.is_ok(), "{result:?}");
    let log = log.lock().unwrap();
    assert!(
        log.iter()
            .all(|s| s.method == "GET" && !s.path.ends_with("/rollouts/web")),
        "a settled Rollout is neither re-read nor written: {log:#?}"
    );
}

#[test]
fn error_categories_are_stable_labels() {
    use crate::adapters::AdapterError;
    use std::time::Duration;
    let api = |code: u16| {
        ReconcileError::from(AdapterError::Kube(kube::Error::Api(
            kube::core::Status::failure("x", "y")
                .with_code(code)
                .boxed(),
        )))
    };
    let cases = [
        (api(409), "conflict"),
        (api(404), "not_found"),
        (api(500), "api"),
        (
            AdapterError::NotFound {
                what: "Service shop/web".into(),
            }
            .into(),
            "reference_not_found",
        ),
        (AdapterError::Invalid("bad".into()).into(), "invalid"),
        (ReconcileError::CacheClosed, "shutdown"),
        (ReconcileError::Timeout(Duration::from_secs(30)), "timeout"),
    ];
    for (error, category) in cases {
        assert_eq!(error.category(), category, "{error}");
    }
}
