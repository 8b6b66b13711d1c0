//! The runtime's reconcile against a mocked API server: what it writes when its cache is
//! behind the stored Rollout, and what a conflict does. The cluster is a few canned
//! objects; the assertions are on the writes a user would see.

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use sluice_api::rollout::Rollout;

use super::{Context, ReconcileError, Requeue, backoff, reconcile_inner};
use crate::adapters::cache::testing::caches;
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
        let mut rs = build_replica_set(r, hash, revision, n, &Default::default());
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
    context_with_rollouts(client, replica_sets).0
}

/// A context, and the writer of its Rollout cache, for tests that move that cache on.
fn reporter() -> Reporter {
    Reporter {
        controller: "sluice".into(),
        instance: None,
    }
}

fn context_with_rollouts(
    client: kube::Client,
    replica_sets: Vec<ReplicaSet>,
) -> (Arc<Context>, Writer<DeserializeGuard<Rollout>>) {
    let mut rollout_writer = Writer::default();
    rollout_writer.apply_watcher_event(&watcher::Event::Init);
    rollout_writer.apply_watcher_event(&watcher::Event::InitDone);
    let (rs_store, mut rs_writer) = reflector::store();
    rs_writer.apply_watcher_event(&watcher::Event::Init);
    for rs in replica_sets {
        rs_writer.apply_watcher_event(&watcher::Event::InitApply(rs));
    }
    rs_writer.apply_watcher_event(&watcher::Event::InitDone);
    let (run_store, mut run_writer) = reflector::store();
    run_writer.apply_watcher_event(&watcher::Event::Init);
    run_writer.apply_watcher_event(&watcher::Event::InitDone);
    let ctx = Arc::new(Context {
        client: client.clone(),
        rollouts: rollout_writer.as_reader(),
        replica_sets: rs_store,
        pods: reflector::store::Writer::default().as_reader(),
        analysis_runs: run_store,
        caches: caches(Vec::new()),
        caches_ready: async { true }.boxed().shared(),
        recorder: Recorder::new(client.clone(), reporter()),
        reporter: reporter(),
        failures: backoff::Failures::default(),
        expectations: Default::default(),
        stale: Default::default(),
        queue: Arc::default(),
        gate: super::queue::Gate::new(1),
        deployments: reflector::store::Writer::default().as_reader(),
        want_deployments: tokio::sync::watch::channel(false).0,
        want_istio: tokio::sync::watch::channel(false).0,
        notifier: super::notifier::Notifier::disabled(),
        gatekeeper: super::gates::Gatekeeper::new(
            client.clone(),
            crate::adapters::web::WebClient::new().unwrap(),
            futures::channel::mpsc::unbounded().0,
        ),
    });
    (ctx, rollout_writer)
}

fn rollout_path() -> String {
    format!("/apis/sluice.dev/v1alpha1/namespaces/{NS}/rollouts/web")
}

/// The answers of a small cluster: `fresh` is the Rollout as stored, `status_write` the
/// answer to a status replace, which also conflicts (as the API does) when the write is
/// conditioned on another resourceVersion than the stored one. An accepted status write
/// answers with the next resourceVersion.
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
            "PUT" if path == format!("{}/status", rollout_path()) => {
                let sent = seen.body.clone().unwrap_or(json!({}));
                let stored = fresh.metadata.resource_version.clone().unwrap_or_default();
                if status_write == 409 || sent["metadata"]["resourceVersion"] != stored.as_str() {
                    return (
                        409,
                        json!({
                            "kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "Conflict", "code": 409,
                            "message": "the object has been modified; please apply your changes to the latest version and try again",
                        }),
                    );
                }
                let mut answer = sent;
                let next = stored.parse::<u64>().unwrap_or(0) + 1;
                answer["metadata"]["resourceVersion"] = json!(next.to_string());
                (200, answer)
            }
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

fn status_writes(log: &[Seen]) -> Vec<&Seen> {
    log.iter()
        .filter(|s| s.method == "PUT" && s.path.ends_with("/status"))
        .collect()
}

#[tokio::test]
async fn a_status_planned_from_a_stale_cache_cannot_overwrite_the_users_abort() {
    let scene = scene();
    // The user aborted after the cache's copy: the stored Rollout is newer.
    let mut fresh = scene.cached.clone();
    fresh.metadata.resource_version = Some("2".into());
    fresh.status.as_mut().unwrap().abort = true;
    let (client, log) = mock_api::serve(cluster(fresh.clone(), scene.replica_sets.clone(), 200));
    let ctx = context(client, scene.replica_sets.clone());

    // Planned from the stale copy, the status write is conditioned on its version and
    // refused: the abort stays as the user wrote it.
    let stale = reconcile_inner(
        Arc::new(DeserializeGuard(Ok(scene.cached.clone()))),
        ctx.clone(),
    )
    .await;
    assert_eq!(stale.expect_err("refused").category(), "conflict");
    {
        let log = log.lock().unwrap();
        let writes = status_writes(&log);
        assert_eq!(writes.len(), 1, "{log:#?}");
        assert_eq!(
            writes[0].body.as_ref().unwrap()["metadata"]["resourceVersion"],
            "1"
        );
    }
    log.lock().unwrap().clear();

    // The watch event of the abort brings the stored copy: the canary goes, the stable
    // stays at 2, and the status says aborted.
    let result = reconcile_inner(Arc::new(DeserializeGuard(Ok(fresh))), ctx).await;
    assert!(result.is_ok(), "{result:?}");
    let log = log.lock().unwrap();
    let v1_rs = format!("web-{}", scene.v1);
    let v2_rs = format!("web-{}", scene.v2);
    assert_eq!(scaled_to(&log, &v1_rs), Vec::<i64>::new(), "{log:#?}");
    assert_eq!(scaled_to(&log, &v2_rs), vec![0], "{log:#?}");
    let writes = status_writes(&log);
    assert_eq!(writes.len(), 1, "{log:#?}");
    let body = writes[0].body.as_ref().unwrap();
    assert_eq!(
        body["metadata"]["resourceVersion"], "2",
        "written over the stored copy"
    );
    assert_eq!(body["status"]["abort"], true, "the user's abort is kept");
    assert_eq!(body["status"]["phase"], "Degraded");
}

#[tokio::test]
async fn after_a_conflict_the_retry_reads_the_stored_rollout_instead_of_conflicting_again() {
    let scene = scene();
    let mut fresh = scene.cached.clone();
    fresh.metadata.resource_version = Some("2".into());
    fresh.status.as_mut().unwrap().abort = true;
    let (client, log) = mock_api::serve(cluster(fresh.clone(), scene.replica_sets.clone(), 200));
    let ctx = context(client, scene.replica_sets.clone());
    let cached = Arc::new(DeserializeGuard(Ok(scene.cached.clone())));
    let error = reconcile_inner(cached.clone(), ctx.clone())
        .await
        .expect_err("refused");
    let _ = super::error_policy(cached.clone(), &error, ctx.clone());
    log.lock().unwrap().clear();

    // The watch has not brought the abort yet: the retry still gets the cached copy, and
    // reads the stored one rather than sending version 1 again.
    let result = reconcile_inner(cached.clone(), ctx.clone()).await;
    assert!(result.is_ok(), "{result:?}");
    {
        let log = log.lock().unwrap();
        let reads = log
            .iter()
            .filter(|s| s.method == "GET" && s.path == rollout_path())
            .count();
        assert_eq!(reads, 1, "{log:#?}");
        let writes = status_writes(&log);
        assert_eq!(writes.len(), 1, "{log:#?}");
        let body = writes[0].body.as_ref().unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], "2");
        assert_eq!(body["status"]["abort"], true, "the user's abort is kept");
    }
    // Once: the next reconcile plans from the cache again (and waits for it to show the
    // write just made).
    log.lock().unwrap().clear();
    let _ = reconcile_inner(cached, ctx).await;
    let log = log.lock().unwrap();
    assert!(
        log.iter().all(|s| s.path != rollout_path()),
        "no second read: {log:#?}"
    );
}

#[tokio::test]
async fn a_rollout_is_not_planned_again_until_its_cache_shows_our_own_last_write() {
    let scene = scene();
    let (client, log) = mock_api::serve(cluster(
        scene.cached.clone(),
        scene.replica_sets.clone(),
        200,
    ));
    let (ctx, mut rollouts) = context_with_rollouts(client, scene.replica_sets.clone());
    rollouts.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(scene
        .cached
        .clone()))));

    let first = reconcile_inner(
        Arc::new(DeserializeGuard(Ok(scene.cached.clone()))),
        ctx.clone(),
    )
    .await;
    assert!(first.is_ok(), "{first:?}");
    let requests = log.lock().unwrap().len();
    let written = {
        let log = log.lock().unwrap();
        let writes = status_writes(&log);
        assert_eq!(writes.len(), 1, "the step's status is written: {log:#?}");
        writes[0].body.clone().unwrap()
    };

    // Another trigger (a ReplicaSet event) comes while the Rollout's cache still holds
    // version 1: nothing is planned, read or written, and no conflict is provoked.
    let early = reconcile_inner(
        Arc::new(DeserializeGuard(Ok(scene.cached.clone()))),
        ctx.clone(),
    )
    .await;
    let wait = match early {
        Ok(action) => action,
        other => panic!("a wait, not an error: {other:?}"),
    };
    assert_ne!(wait, Requeue::await_change(), "the wait is bounded");
    // The queue metrics know of that requeue: due within the bound, not yet.
    let now = std::time::Instant::now();
    assert_eq!(ctx.queue.depth(now, |_| true), 0);
    assert_eq!(
        ctx.queue
            .depth(now + std::time::Duration::from_secs(11), |_| true),
        1
    );
    assert_eq!(
        log.lock().unwrap().len(),
        requests,
        "no request while the cache is behind"
    );

    // The watch event of our write arrives: the Rollout is planned again, from it.
    let mut shown: Rollout = serde_json::from_value(written).unwrap();
    shown.metadata.resource_version = Some("2".into());
    rollouts.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(shown.clone()))));
    let again = reconcile_inner(Arc::new(DeserializeGuard(Ok(shown))), ctx.clone()).await;
    assert!(again.is_ok(), "{again:?}");
    assert_eq!(ctx.expectations.len(), 0, "nothing left to wait for");
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
        let observed = super::observe(&ctx, &old);
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
        (ReconcileError::CacheSyncing("Deployment"), "cache_syncing"),
    ];
    for (error, category) in cases {
        assert_eq!(error.category(), category, "{error}");
    }
}

#[test]
fn a_shard_selects_its_own_label_and_the_default_controller_the_unlabelled() {
    let selector = |instance_id: Option<&str>| {
        super::Settings {
            instance_id: instance_id.map(str::to_string),
            ..super::Settings::default()
        }
        .instance_selector(watcher::Config::default())
        .label_selector
    };
    assert_eq!(
        selector(Some("blue")).as_deref(),
        Some("sluice.dev/controller-instance=blue")
    );
    assert_eq!(
        selector(None).as_deref(),
        Some("!sluice.dev/controller-instance")
    );
}
