//! Blue-green rollouts end to end on the real control plane: a real controller process
//! switches real Service selectors between ReplicaSets whose pods kwok runs, and the
//! analysis cases read the traffic simulator's metrics through the real Prometheus.
//!
//! A watcher samples `activeService` and the ReplicaSets throughout each test, so the
//! promise that matters most is checked on the live system, not only in the core's
//! tables: activeService never selects a revision that is not at full size and fully
//! available.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice_api::analysis::{AnalysisPhase, AnalysisRun};
use sluice_api::labels::{POD_TEMPLATE_HASH_LABEL, SCALE_DOWN_DEADLINE_ANNOTATION};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::kubectl;
use sluice_e2e::rollout_env::{Env, hashes, pod_template};
use sluice_e2e::simulator::{Behaviour, Simulator};

const ACTIVE: &str = "web-active";
const PREVIEW: &str = "web-preview";

fn blue_green(extra: Value) -> Value {
    let mut bg = json!({ "activeService": ACTIVE, "previewService": PREVIEW });
    bg.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({ "blueGreen": bg })
}

/// A Rollout at v1, Healthy, both Services on it. Pods count as available a second
/// after they are ready (`minReadySeconds`), so that a switch to pods that are ready but
/// not yet available would be seen by the [`Watcher`] (kwok readies pods in milliseconds).
async fn at_v1(env: &Env, replicas: i32, extra: Value) -> Result<String> {
    env.services(&[ACTIVE, PREVIEW]).await?;
    env.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("v1"),
            "strategy": blue_green(extra),
        },
    }))
    .await?;
    let r = env.wait_healthy_on_new_revision().await?;
    let (v1, _) = hashes(&r);
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v1.as_str())
    );
    assert_eq!(
        env.service_hash(PREVIEW).await?.as_deref(),
        Some(v1.as_str())
    );
    Ok(v1)
}

/// What the watcher saw, in the apiserver's order: every version of activeService (its
/// resourceVersion, the hash it selects, when the watch delivered it) and every version
/// of each ReplicaSet (resourceVersion, hash, replicas, available pods).
#[derive(Debug, Default)]
struct Timeline {
    active: Vec<(u64, Option<String>, Timestamp)>,
    replica_sets: Vec<(u64, String, i32, i32)>,
}

impl Timeline {
    /// The ReplicaSet of `hash` as it was just before the write with resourceVersion
    /// `rv`: resourceVersions are etcd revisions, one total order over all objects, so
    /// this is what the controller could at best have seen when it made that write.
    fn replica_set_before(&self, hash: &str, rv: u64) -> Option<(i32, i32)> {
        self.replica_sets
            .iter()
            .filter(|(at, h, _, _)| h == hash && *at < rv)
            .max_by_key(|(at, ..)| *at)
            .map(|(_, _, replicas, available)| (*replicas, *available))
    }
}

/// Watches activeService and the ReplicaSets until dropped. Watches, not polls: every
/// version is seen however slow the apiserver is, and ordered by resourceVersion.
struct Watcher {
    timeline: Arc<Mutex<Timeline>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn resource_version(meta: &kube::api::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("an integer resourceVersion")
}

/// Spawns a watch of `api` that records each version with `record`, and returns once
/// the initial list is in, so no later version is missed.
async fn watch<K, F>(api: Api<K>, record: F) -> Result<tokio::task::JoinHandle<()>>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(&K) + Send + 'static,
{
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    let (ready, listed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready);
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(obj) | Event::InitApply(obj)) => record(&obj),
                Ok(Event::InitDone) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                _ => {}
            }
        }
    });
    listed.await?;
    Ok(task)
}

impl Watcher {
    async fn start(env: &Env) -> Result<Self> {
        let timeline = Arc::new(Mutex::new(Timeline::default()));
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(env.client.clone(), env.ns());
        let t = timeline.clone();
        let active = watch(services, move |svc| {
            if svc.metadata.name.as_deref() != Some(ACTIVE) {
                return;
            }
            let hash = svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL).cloned());
            t.lock().expect("not poisoned").active.push((
                resource_version(&svc.metadata),
                hash,
                Timestamp::now(),
            ));
        })
        .await?;
        let replica_sets: Api<ReplicaSet> = Api::namespaced(env.client.clone(), env.ns());
        let t = timeline.clone();
        let sets = watch(replica_sets, move |rs| {
            let Some(hash) = rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
            else {
                return;
            };
            t.lock().expect("not poisoned").replica_sets.push((
                resource_version(&rs.metadata),
                hash.clone(),
                rs.spec.replicas.unwrap_or(0),
                rs.status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0),
            ));
        })
        .await?;
        Ok(Watcher {
            timeline,
            tasks: vec![active, sets],
        })
    }

    /// The hashes activeService selected, in order, and a check that each revision it
    /// was switched to (other than `v1`, where it starts) was then at `replicas` pods, all
    /// available.
    fn active_history(&self, v1: &str, replicas: i32) -> Vec<String> {
        let t = self.timeline.lock().expect("not poisoned");
        let mut history: Vec<String> = Vec::new();
        for (rv, hash, _) in &t.active {
            let Some(h) = hash else { continue };
            if history.last() == Some(h) {
                continue;
            }
            history.push(h.clone());
            if h != v1 {
                let (size, available) = t.replica_set_before(h, *rv).unwrap_or((0, 0));
                assert!(
                    size >= replicas && available >= replicas,
                    "activeService selected {h} (resourceVersion {rv}) with {available}/{size} \
                     pods available: {t:?}"
                );
            }
        }
        history
    }

    /// When activeService was first seen selecting `hash` after `after`.
    fn switched_to_at(&self, hash: &str, after: Timestamp) -> Option<Timestamp> {
        let t = self.timeline.lock().expect("not poisoned");
        t.active
            .iter()
            .find(|(_, h, at)| h.as_deref() == Some(hash) && *at >= after)
            .map(|(.., at)| *at)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn replica_set(env: &Env, hash: &str) -> Result<ReplicaSet> {
    let rs: Api<ReplicaSet> = Api::namespaced(env.client.clone(), env.ns());
    rs.list(&ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}")))
        .await?
        .items
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no ReplicaSet of {hash}"))
}

fn kubectl_wait(env: &Env, condition: &str) -> Result<()> {
    let out = kubectl(&[
        "wait",
        "-n",
        env.ns(),
        &format!("--for=condition={condition}"),
        "rollout/web",
        "--timeout=60s",
    ])?;
    anyhow::ensure!(out.success, "kubectl wait {condition}: {}", out.stderr);
    Ok(())
}

async fn wait_paused(env: &Env) -> Result<sluice_api::Rollout> {
    env.wait("Paused in preview", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(RolloutPhase::Paused))
    })
    .await
}

async fn wait_degraded(env: &Env) -> Result<sluice_api::Rollout> {
    env.wait("Degraded (aborted)", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(RolloutPhase::Degraded) && s.abort)
    })
    .await
}

#[tokio::test]
async fn auto_promotion_switches_once_the_new_revision_is_fully_available() -> Result<()> {
    let env = Env::new("bg-auto").await?;
    let v1 = at_v1(&env, 3, json!({ "scaleDownDelaySeconds": 6 })).await?;
    let watcher = Watcher::start(&env).await?;
    env.set_version("v2").await?;
    let r = env.wait_healthy_on_new_revision().await?;
    let (v2, _) = hashes(&r);
    let switched_at = Instant::now();
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        env.service_hash(PREVIEW).await?.as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        watcher.active_history(&v1, 3),
        vec![v1.clone(), v2.clone()],
        "one switch, from v1 to v2"
    );
    let bg = r.status.clone().unwrap().blue_green.unwrap();
    assert_eq!(bg.active_selector.as_deref(), Some(v2.as_str()));

    // The previous revision stays up behind a deadline recorded on its ReplicaSet...
    let old = replica_set(&env, &v1).await?;
    assert_eq!(
        old.spec.replicas,
        Some(3),
        "kept up for scaleDownDelaySeconds"
    );
    let deadline = old
        .metadata
        .annotations
        .unwrap_or_default()
        .get(SCALE_DOWN_DEADLINE_ANNOTATION)
        .cloned();
    assert!(
        deadline.is_some(),
        "deadline annotation on the old ReplicaSet"
    );
    // ...and goes to zero once it has passed.
    env.wait_sizes(&v2, &v1, (3, 0)).await?;
    let waited = switched_at.elapsed();
    println!("old revision scaled down {waited:?} after the switch (delay 6 s)");
    assert!(
        waited >= Duration::from_secs(3),
        "scaled down before its delay: {waited:?}"
    );
    env.finish().await
}

#[tokio::test]
async fn manual_promotion_pauses_in_preview_until_promoted() -> Result<()> {
    let env = Env::new("bg-manual").await?;
    let v1 = at_v1(&env, 2, json!({ "autoPromotionEnabled": false })).await?;
    let watcher = Watcher::start(&env).await?;
    env.set_version("v2").await?;
    kubectl_wait(&env, "Paused")?;
    let r = wait_paused(&env).await?;
    let (v2, _) = hashes(&r);
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v1.as_str())
    );
    assert_eq!(
        env.service_hash(PREVIEW).await?.as_deref(),
        Some(v2.as_str())
    );
    env.wait_sizes(&v2, &v1, (2, 2)).await?;
    // `kubectl get` shows the stage.
    assert_eq!(
        r.status.clone().unwrap().step_progress.as_deref(),
        Some("2/3")
    );

    env.act(UserAction::Promote).await?;
    kubectl_wait(&env, "Ready")?;
    env.wait_healthy_on_new_revision().await?;
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v2.as_str())
    );

    // promote-full from the preview goes straight to the switch.
    env.set_version("v3").await?;
    let r = wait_paused(&env).await?;
    let (v3, _) = hashes(&r);
    env.act(UserAction::PromoteFull).await?;
    env.wait_healthy_on_new_revision().await?;
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v3.as_str())
    );
    assert_eq!(watcher.active_history(&v1, 2), vec![v1, v2, v3]);
    env.finish().await
}

#[tokio::test]
async fn preview_replica_count_then_full_size_before_the_switch() -> Result<()> {
    let env = Env::new("bg-preview-count").await?;
    let v1 = at_v1(
        &env,
        4,
        json!({ "autoPromotionEnabled": false, "previewReplicaCount": 1 }),
    )
    .await?;
    let watcher = Watcher::start(&env).await?;
    env.set_version("v2").await?;
    let r = wait_paused(&env).await?;
    let (v2, _) = hashes(&r);
    env.wait_sizes(&v2, &v1, (1, 4)).await?;
    assert_eq!(
        env.service_hash(PREVIEW).await?.as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v1.as_str())
    );

    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    // The watcher asserts v2 had all 4 pods available whenever active selected it.
    assert_eq!(watcher.active_history(&v1, 4), vec![v1, v2.clone()]);
    assert_eq!(replica_set(&env, &v2).await?.spec.replicas, Some(4));
    env.finish().await
}

/// An error-rate template over one revision's requests in the simulator's metrics.
fn error_rate_template(prometheus: &str) -> Value {
    let selector = "namespace=\"{{args.namespace}}\",pod_template_hash=\"{{args.hash}}\"";
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": { "name": "error-rate" },
        "spec": {
            "args": [{ "name": "namespace" }, { "name": "hash" }],
            "metrics": [{
                "name": "error-rate",
                "initialDelay": "4s",
                "interval": "2s",
                "count": 3,
                "successCondition": "result[0] <= 0.05",
                "provider": { "prometheus": {
                    "address": prometheus,
                    "query": format!(
                        "sum(rate(http_requests_total{{{selector},code=\"500\"}}[10s])) / sum(rate(http_requests_total{{{selector}}}[10s]))"
                    ),
                } },
            }],
        },
    })
}

fn analysis_of_latest(env: &Env) -> Value {
    json!({
        "templates": [{ "templateName": "error-rate" }],
        "args": [
            { "name": "namespace", "value": env.ns() },
            { "name": "hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
        ],
    })
}

async fn analysis_env(prefix: &str) -> Result<Env> {
    let env = Env::new(prefix).await?;
    let prometheus = std::env::var("SLUICE_PROMETHEUS_URL")
        .expect("SLUICE_PROMETHEUS_URL (eval \"$(e2e/controlplane/plane.sh env)\")");
    env.apply(error_rate_template(&prometheus)).await?;
    Ok(env)
}

async fn only_run(env: &Env) -> Result<AnalysisRun> {
    let runs: Api<AnalysisRun> = Api::namespaced(env.client.clone(), env.ns());
    let mut items = runs.list(&ListParams::default()).await?.items;
    anyhow::ensure!(items.len() == 1, "expected one AnalysisRun: {items:#?}");
    Ok(items.remove(0))
}

/// Starts the simulator with v2 failing half its requests and the watcher, then rolls out
/// v2. The simulator runs as long as the returned value is kept.
async fn roll_out_failing_v2(env: &Env) -> Result<(Simulator, Watcher)> {
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", ACTIVE).await?;
    sim.set(
        "v2",
        Behaviour {
            error_rate: 0.5,
            latency: 0.02,
        },
    );
    let watcher = Watcher::start(env).await?;
    env.set_version("v2").await?;
    Ok((sim, watcher))
}

#[tokio::test]
async fn failed_pre_promotion_analysis_never_switches_and_degrades() -> Result<()> {
    let env = analysis_env("bg-pre-fail").await?;
    let v1 = at_v1(
        &env,
        2,
        json!({ "prePromotionAnalysis": analysis_of_latest(&env), "abortScaleDownDelaySeconds": 2 }),
    )
    .await?;
    let (_sim, watcher) = roll_out_failing_v2(&env).await?;
    let r = wait_degraded(&env).await?;
    let (v2, _) = hashes(&r);
    let status = r.status.clone().unwrap();
    let run = only_run(&env).await?;
    let run_name = run.metadata.name.clone().unwrap();
    assert_eq!(
        status
            .blue_green
            .unwrap()
            .pre_promotion_analysis_run
            .as_deref(),
        Some(run_name.as_str())
    );
    let run_status = run.status.unwrap();
    assert_eq!(run_status.phase, Some(AnalysisPhase::Failed));
    // It measured the preview's test traffic: about half of v2's requests failed.
    let failed: Vec<f64> = run_status.metric_results[0]
        .measurements
        .iter()
        .filter(|m| m.phase == AnalysisPhase::Failed)
        .filter_map(|m| m.value.as_deref()?.trim_matches(['[', ']']).parse().ok())
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|v| (0.3..=0.7).contains(v)),
        "{run_status:#?}"
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&run_name),
        "{:?}",
        status.message
    );
    kubectl_wait(&env, "Stalled")?;
    env.wait_sizes(&v2, &v1, (0, 2)).await?;
    assert_eq!(
        watcher.active_history(&v1, 2),
        vec![v1.clone()],
        "active never switched"
    );
    assert_eq!(
        env.service_hash(PREVIEW).await?.as_deref(),
        Some(v1.as_str())
    );
    env.finish().await
}

#[tokio::test]
async fn failed_post_promotion_analysis_switches_back() -> Result<()> {
    let env = analysis_env("bg-post-fail").await?;
    let v1 = at_v1(
        &env,
        2,
        json!({ "postPromotionAnalysis": analysis_of_latest(&env), "scaleDownDelaySeconds": 30 }),
    )
    .await?;
    let (_sim, watcher) = roll_out_failing_v2(&env).await?;
    let r = env
        .wait("switched to v2 with post-promotion analysis running", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.blue_green
                    .as_ref()
                    .is_some_and(|b| b.post_promotion_analysis_run.is_some())
            })
        })
        .await?;
    let (v2, _) = hashes(&r);
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v2.as_str())
    );
    let r = wait_degraded(&env).await?;
    let run = only_run(&env).await?.status.unwrap();
    assert_eq!(run.phase, Some(AnalysisPhase::Failed), "{run:#?}");
    // How long after the failing measurement production traffic was back on v1.
    let failed_at = run.metric_results[0]
        .measurements
        .iter()
        .filter(|m| m.phase == AnalysisPhase::Failed)
        .filter_map(|m| m.finished_at.as_ref())
        .map(|t| t.0)
        .min()
        .expect("a failed measurement");
    // The switch back is written before the Degraded status.
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v1.as_str())
    );
    let back_at = watcher.switched_to_at(&v1, failed_at).unwrap_or_else(|| {
        let t = watcher.timeline.lock().expect("not poisoned");
        panic!(
            "the watcher saw no switch back after {failed_at}: {:?}; run {run:#?}",
            t.active
        )
    });
    println!(
        "activeService back on the previous revision {:.3}s after the failing measurement",
        back_at.duration_since(failed_at).as_secs_f64()
    );
    assert_eq!(
        watcher.active_history(&v1, 2),
        vec![v1.clone(), v2.clone(), v1.clone()]
    );
    // The previous revision was never scaled down: it is the one that serves again.
    let old = replica_set(&env, &v1).await?;
    assert_eq!(old.spec.replicas, Some(2));
    assert_eq!(
        r.status
            .unwrap()
            .blue_green
            .unwrap()
            .active_selector
            .as_deref(),
        Some(v1.as_str())
    );
    env.finish().await
}

#[tokio::test]
async fn abort_in_preview_then_retry() -> Result<()> {
    let env = Env::new("bg-abort").await?;
    let v1 = at_v1(
        &env,
        2,
        json!({ "autoPromotionEnabled": false, "abortScaleDownDelaySeconds": 3 }),
    )
    .await?;
    let watcher = Watcher::start(&env).await?;
    env.set_version("v2").await?;
    let r = wait_paused(&env).await?;
    let (v2, _) = hashes(&r);
    env.wait_sizes(&v2, &v1, (2, 2)).await?;

    let aborted = Instant::now();
    env.act(UserAction::Abort).await?;
    wait_degraded(&env).await?;
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v1.as_str())
    );
    assert_eq!(
        env.service_hash(PREVIEW).await?.as_deref(),
        Some(v1.as_str())
    );
    env.wait_sizes(&v2, &v1, (0, 2)).await?;
    println!(
        "new revision scaled down {:?} after the abort (abortScaleDownDelaySeconds 3)",
        aborted.elapsed()
    );
    assert!(aborted.elapsed() >= Duration::from_secs(2));

    env.act(UserAction::Retry).await?;
    wait_paused(&env).await?;
    env.wait_sizes(&v2, &v1, (2, 2)).await?;
    assert_eq!(
        env.service_hash(PREVIEW).await?.as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        env.service_hash(ACTIVE).await?.as_deref(),
        Some(v1.as_str())
    );
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    assert_eq!(watcher.active_history(&v1, 2), vec![v1, v2]);
    env.finish().await
}
