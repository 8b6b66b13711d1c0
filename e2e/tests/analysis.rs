//! Analysis end to end: the traffic simulator feeds per-version metrics to the real
//! Prometheus, the controller's AnalysisRuns query them through real PromQL, and the
//! Rollout continues or rolls back on the verdict.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice_api::analysis::{AnalysisPhase, AnalysisRun};
use sluice_api::labels::{BASELINE_ROLE, POD_ROLE_LABEL, POD_TEMPLATE_HASH_LABEL};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::{Env, STEP_TIMEOUT, hashes, ingress, weights};
use sluice_e2e::simulator::{Behaviour, Simulator, baseline_version};
use sluice_e2e::wait_for;

fn prometheus_url() -> String {
    std::env::var("SLUICE_PROMETHEUS_URL")
        .expect("SLUICE_PROMETHEUS_URL (eval \"$(e2e/controlplane/plane.sh env)\")")
}

/// A success-rate template over the simulator's counters for one revision.
fn success_rate_template(interval: &str, count: i32) -> Value {
    let selector = "namespace=\"{{args.namespace}}\",pod_template_hash=\"{{args.canary-hash}}\"";
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": { "name": "success-rate" },
        "spec": {
            "args": [{ "name": "namespace" }, { "name": "canary-hash" }],
            "metrics": [{
                "name": "success-rate",
                "initialDelay": "6s",
                "interval": interval,
                "count": count,
                "successCondition": "result[0] >= 0.95",
                "provider": { "prometheus": {
                    "address": prometheus_url(),
                    "query": format!(
                        "sum(rate(http_requests_total{{{selector},code!~\"5..\"}}[10s])) / sum(rate(http_requests_total{{{selector}}}[10s]))"
                    ),
                } },
            }],
        },
    })
}

async fn canary_with_analysis(env: &Env) -> Result<()> {
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(ingress("web", "web-stable")).await?;
    env.apply(success_rate_template("2s", 3)).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "nginx": { "stableIngress": "web" } },
            "steps": [
                { "setWeight": 30 },
                { "analysis": {
                    "templates": [{ "templateName": "success-rate" }],
                    "args": [
                        { "name": "namespace", "value": env.ns() },
                        { "name": "canary-hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
                    ],
                } },
                { "setWeight": 60 },
                { "pause": {} },
            ],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    Ok(())
}

/// The one AnalysisRun of the test; more than one means a decision was taken twice.
async fn step_run(env: &Env) -> Result<AnalysisRun> {
    let runs: Api<AnalysisRun> = Api::namespaced(env.client.clone(), env.ns());
    let mut items = runs.list(&ListParams::default()).await?.items;
    let names: Vec<String> = items
        .iter()
        .map(|r| r.metadata.name.clone().unwrap_or_default())
        .collect();
    anyhow::ensure!(
        items.len() == 1,
        "expected exactly one AnalysisRun, found {names:?}"
    );
    Ok(items.remove(0))
}

#[tokio::test]
async fn a_healthy_canary_passes_its_analysis_step() -> Result<()> {
    let env = Env::new("analysis-ok").await?;
    canary_with_analysis(&env).await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.set(
        "v2",
        Behaviour {
            error_rate: 0.0,
            latency: 0.02,
        },
    );
    env.set_version("v2").await?;
    let r = env.wait_step(3, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r).0, 60, "past the analysis step");
    let run = step_run(&env).await?;
    let status = run.status.unwrap();
    assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:#?}");
    let metric = &status.metric_results[0];
    assert_eq!(metric.failed, 0, "{metric:#?}");
    assert!(metric.successful >= 2, "{metric:#?}");
    for m in &metric.measurements {
        match m.phase {
            // Real PromQL answers: a success rate of 1.
            AnalysisPhase::Successful => assert_eq!(m.value.as_deref(), Some("[1]"), "{m:#?}"),
            // A measurement taken before Prometheus had two samples of the new revision is
            // reported as such, never counted as a pass.
            AnalysisPhase::Error => assert!(m.message.is_some(), "{m:#?}"),
            other => panic!("unexpected measurement {other:?}: {m:#?}"),
        }
    }
    env.finish().await
}

#[tokio::test]
async fn a_canary_failing_a_fifth_of_its_requests_is_rolled_back() -> Result<()> {
    let env = Env::new("analysis-bad").await?;
    canary_with_analysis(&env).await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.set(
        "v2",
        Behaviour {
            error_rate: 0.2,
            latency: 0.02,
        },
    );
    env.set_version("v2").await?;
    let (v2, _) = hashes(&env.wait_step(1, RolloutPhase::Progressing).await?);

    let runs: Api<AnalysisRun> = Api::namespaced(env.client.clone(), env.ns());
    wait_for("the AnalysisRun to fail", STEP_TIMEOUT, || async {
        Ok(runs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|r| r.status.as_ref().and_then(|s| s.phase) == Some(AnalysisPhase::Failed)))
    })
    .await?;
    let failed_seen = Instant::now();
    let ingresses: Api<Ingress> = Api::namespaced(env.client.clone(), env.ns());
    wait_for(
        "canary traffic to stop",
        Duration::from_secs(20),
        || async { Ok(ingresses.get_opt("web-web-canary").await?.is_none()) },
    )
    .await?;
    println!(
        "analysis: traffic back on stable {:?} after the failed run was observed",
        failed_seen.elapsed()
    );
    let r = env
        .wait("aborted", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let status = r.status.unwrap();
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("analysis"),
        "{:?}",
        status.message
    );
    assert_eq!(weights_of(&status), 0);
    let run = step_run(&env).await?.status.unwrap();
    let m = &run.metric_results[0];
    assert!(m.failed >= 1, "{m:#?}");
    // The failing value is the real rate: about 0.8.
    let value = m
        .measurements
        .last()
        .and_then(|m| m.value.clone())
        .unwrap_or_default();
    assert!(
        value.starts_with("[0.8") || value.starts_with("[0.7"),
        "{value}"
    );
    assert_ne!(
        status.stable_rs.as_deref(),
        Some(v2.as_str()),
        "never promoted"
    );

    // Replaying the template over the live run's window reaches the same verdict, with
    // real past PromQL values, both through the library and `kubectl sluice analyze`.
    let from = run.started_at.clone().unwrap().0;
    let to = run.completed_at.clone().unwrap().0 + k8s_openapi::jiff::SignedDuration::from_secs(2);
    let template: sluice_api::AnalysisTemplate = Api::namespaced(env.client.clone(), env.ns())
        .get("success-rate")
        .await?;
    let args: Vec<sluice_api::analysis::AnalysisRunArgument> = serde_json::from_value(json!([
        { "name": "namespace", "value": env.ns() },
        { "name": "canary-hash", "value": v2 },
    ]))?;
    let spec =
        sluice_controller::adapters::analysis::merge(&[template.spec.analysis], &args, "", "")?;
    let measurer = sluice_controller::runtime::analysis::Measurer {
        client: env.client.clone(),
        prometheus: sluice_controller::adapters::prometheus::PrometheusClient::new()?,
        web: sluice_controller::adapters::web::WebClient::new()?,
    };
    let replayed = sluice_controller::runtime::replay::replay(
        &measurer,
        env.ns(),
        &spec,
        &spec.args,
        from,
        to,
    )
    .await
    .map_err(anyhow::Error::msg)?;
    println!(
        "replay: {:?} after {} measurements: {}",
        replayed.phase,
        replayed.measurements.len(),
        replayed.message
    );
    assert_eq!(replayed.phase, AnalysisPhase::Failed, "{replayed:#?}");
    // The deciding measurement carries the real past success rate, about 0.8.
    let deciding = replayed
        .measurements
        .last()
        .and_then(|m| m.measurement.value.clone())
        .unwrap_or_default();
    assert!(
        deciding.starts_with("[0.8") || deciding.starts_with("[0.7"),
        "{deciding}"
    );

    let bin = std::path::PathBuf::from(std::env::var("SLUICE_CONTROLLER_BIN")?)
        .with_file_name("kubectl-sluice");
    let out = std::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(sluice_e2e::kubeconfig_path())
        .args(["-n", env.ns(), "analyze", "success-rate"])
        .args([
            "--arg",
            &format!("namespace={}", env.ns()),
            "--arg",
            &format!("canary-hash={v2}"),
        ])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verdict: Failed"), "{stdout}");
    env.finish().await
}

fn weights_of(status: &sluice_api::rollout::RolloutStatus) -> i32 {
    status
        .canary
        .as_ref()
        .and_then(|c| c.weights.as_ref())
        .map_or(-1, |w| w.canary)
}

#[tokio::test]
async fn a_condition_that_does_not_compile_fails_the_run_with_the_reason() -> Result<()> {
    let env = Env::new("analysis-invalid").await?;
    canary_with_analysis(&env).await?;
    let mut template = success_rate_template("2s", 3);
    template["spec"]["metrics"][0]["successCondition"] = json!("result[0] >= ");
    env.apply(template).await?;
    env.set_version("v2").await?;
    let r = env
        .wait("aborted by the invalid analysis", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let message = r.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("invalid analysis") && message.contains("successCondition"),
        "{message}"
    );
    let run = step_run(&env).await?.status.unwrap();
    assert_eq!(run.phase, Some(AnalysisPhase::Error));
    assert!(
        run.metric_results.is_empty(),
        "nothing was measured: {run:#?}"
    );
    env.finish().await
}

/// A TCP proxy to the real Prometheus that the test can cut, so that "Prometheus is gone"
/// can be tested without stopping the Prometheus other tests use.
struct PrometheusProxy {
    address: String,
    /// The accept loop and every open connection: a cut must close pooled keep-alive
    /// connections too, or the client would go on querying through them.
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl PrometheusProxy {
    async fn start() -> Result<Self> {
        let upstream = prometheus_url().trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns
                    .lock()
                    .expect("not poisoned")
                    .push(conn.abort_handle());
            }
        });
        tasks
            .lock()
            .expect("not poisoned")
            .push(accept.abort_handle());
        Ok(PrometheusProxy { address, tasks })
    }

    /// Closes the listener and every open connection: from now on Prometheus is gone.
    fn cut(&self) {
        for task in self.tasks.lock().expect("not poisoned").drain(..) {
            task.abort();
        }
    }
}

#[tokio::test]
async fn prometheus_going_away_ends_in_error_and_never_promotes() -> Result<()> {
    let env = Env::new("analysis-down").await?;
    let proxy = PrometheusProxy::start().await?;
    canary_with_analysis(&env).await?;
    // Many measurements at a short interval, through the proxy.
    let mut template = success_rate_template("1s", 30);
    template["spec"]["metrics"][0]["provider"]["prometheus"]["address"] = json!(proxy.address);
    template["spec"]["metrics"][0]["provider"]["prometheus"]["timeout"] = json!("2s");
    env.apply(template).await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.set("v2", Behaviour::default());
    env.set_version("v2").await?;
    let runs: Api<AnalysisRun> = Api::namespaced(env.client.clone(), env.ns());
    wait_for("a successful measurement", STEP_TIMEOUT, || async {
        Ok(runs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.metric_results.iter().any(|m| m.successful > 0))
            }))
    })
    .await?;
    proxy.cut();
    let r = env
        .wait("aborted after consecutive errors", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let run = step_run(&env).await?.status.unwrap();
    assert_eq!(run.phase, Some(AnalysisPhase::Error), "{run:#?}");
    let m = &run.metric_results[0];
    // consecutiveErrorLimit defaults to 4: the fifth error in a row decides.
    assert_eq!(m.consecutive_error, 5, "{m:#?}");
    assert!(
        m.measurements
            .last()
            .unwrap()
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("prometheus"),
        "{m:#?}"
    );
    let s = r.status.unwrap();
    assert_ne!(s.stable_rs, s.current_pod_hash, "never promoted");
    assert_eq!(weights_of(&s), 0);
    env.finish().await
}

#[tokio::test]
async fn an_inconclusive_step_pauses_for_a_human_and_promote_continues() -> Result<()> {
    let env = Env::new("analysis-maybe").await?;
    canary_with_analysis(&env).await?;
    // 0.8 is neither a success (>= 0.95) nor a failure (< 0.5): inconclusive.
    let mut template = success_rate_template("1s", 2);
    template["spec"]["metrics"][0]["failureCondition"] = json!("result[0] < 0.5");
    env.apply(template).await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.set(
        "v2",
        Behaviour {
            error_rate: 0.2,
            latency: 0.02,
        },
    );
    env.set_version("v2").await?;
    let r = env
        .wait("paused on the inconclusive analysis", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(RolloutPhase::Paused)
                    && s.pause_conditions
                        .iter()
                        .any(|p| p.reason == sluice_api::rollout::PauseReason::InconclusiveAnalysis)
            })
        })
        .await?;
    assert_eq!(r.status.unwrap().current_step_index, Some(1));
    assert_eq!(
        step_run(&env).await?.status.unwrap().phase,
        Some(AnalysisPhase::Inconclusive)
    );
    env.act(sluice_controller::actions::UserAction::Promote)
        .await?;
    let r = env.wait_step(3, RolloutPhase::Paused).await?;
    assert_eq!(weights(&r).0, 60, "promoted past the inconclusive analysis");
    env.finish().await
}

#[tokio::test]
async fn a_healthy_canary_passes_background_analysis_and_completes() -> Result<()> {
    let env = Env::new("analysis-bg").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(success_rate_template("2s", 100)).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "analysis": {
                "templates": [{ "templateName": "success-rate" }],
                "args": [
                    { "name": "namespace", "value": env.ns() },
                    { "name": "canary-hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
                ],
            },
            "steps": [{ "setWeight": 50 }, { "pause": { "duration": "12s" } }, { "setWeight": 100 }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.set("v2", Behaviour::default());
    env.set_version("v2").await?;
    let done = env.wait_healthy_on_new_revision().await?;
    let (v2, stable) = hashes(&done);
    assert_eq!(v2, stable);
    // The background run measured while the canary ran, then was ended by the promotion.
    let run = step_run(&env).await?;
    let status = run.status.unwrap();
    assert!(status.metric_results[0].successful >= 1, "{status:#?}");
    assert_eq!(status.metric_results[0].failed, 0, "{status:#?}");
    assert!(
        run.spec.terminate,
        "promotion terminates the background run"
    );
    env.finish().await
}

/// A judge template comparing the canary's mean latency with the stable pods' over the
/// last 20 s, one sample a second, from the simulator's histogram.
fn latency_judge_template() -> Value {
    let mean = |hash: &str| {
        format!(
            "sum(rate(http_request_duration_seconds_sum{{namespace=\"{{{{args.namespace}}}}\",pod_template_hash=\"{{{{args.{hash}}}}}\"}}[4s])) / sum(rate(http_request_duration_seconds_count{{namespace=\"{{{{args.namespace}}}}\",pod_template_hash=\"{{{{args.{hash}}}}}\"}}[4s]))"
        )
    };
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": { "name": "latency-judge" },
        "spec": {
            "args": [{ "name": "namespace" }, { "name": "canary-hash" }, { "name": "stable-hash" }],
            "metrics": [{
                "name": "latency-vs-baseline",
                "initialDelay": "24s",
                "provider": { "judge": {
                    "address": prometheus_url(),
                    "lookback": "20s",
                    "step": "1s",
                    "signals": [{
                        "name": "mean-latency",
                        "canaryQuery": mean("canary-hash"),
                        "baselineQuery": mean("stable-hash"),
                        "direction": "Increase",
                        "allowedIncrease": 1.2,
                        "critical": true,
                    }],
                } },
            }],
        },
    })
}

async fn judged_canary(prefix: &str, canary_latency: f64) -> Result<(Env, Simulator)> {
    let env = Env::new(prefix).await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(latency_judge_template()).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [
                { "setWeight": 50 },
                { "analysis": {
                    "templates": [{ "templateName": "latency-judge" }],
                    "args": [
                        { "name": "namespace", "value": env.ns() },
                        { "name": "canary-hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
                        { "name": "stable-hash", "valueFrom": { "podTemplateHashValue": "Stable" } },
                    ],
                } },
                { "pause": {} },
            ],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.set(
        "v1",
        Behaviour {
            error_rate: 0.0,
            latency: 0.02,
        },
    );
    sim.set(
        "v2",
        Behaviour {
            error_rate: 0.0,
            latency: canary_latency,
        },
    );
    env.set_version("v2").await?;
    Ok((env, sim))
}

#[tokio::test]
async fn the_judge_passes_a_canary_identical_to_its_baseline() -> Result<()> {
    let (env, _sim) = judged_canary("judge-same", 0.02).await?;
    env.wait_step(2, RolloutPhase::Paused).await?;
    let run = step_run(&env).await?.status.unwrap();
    assert_eq!(run.phase, Some(AnalysisPhase::Successful), "{run:#?}");
    let m = &run.metric_results[0].measurements[0];
    println!(
        "judge, identical versions: score {:?}: {}",
        m.value,
        m.message.clone().unwrap_or_default()
    );
    assert_eq!(m.value.as_deref(), Some("100.0"), "{m:#?}");
    env.finish().await
}

#[tokio::test]
async fn the_judge_fails_a_canary_with_doubled_latency() -> Result<()> {
    let (env, _sim) = judged_canary("judge-slow", 0.04).await?;
    let r = env
        .wait("aborted by the judge", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let run = step_run(&env).await?.status.unwrap();
    assert_eq!(run.phase, Some(AnalysisPhase::Failed), "{run:#?}");
    let m = &run.metric_results[0].measurements[0];
    println!(
        "judge, doubled latency: score {:?}: {}",
        m.value,
        m.message.clone().unwrap_or_default()
    );
    assert_eq!(m.value.as_deref(), Some("0.0"), "{m:#?}");
    assert!(
        m.message.as_deref().unwrap_or_default().contains("High"),
        "{m:#?}"
    );
    let s = r.status.unwrap();
    assert_ne!(s.stable_rs, s.current_pod_hash, "never promoted");
    env.finish().await
}

/// A judge template comparing the canary's mean latency with the dedicated baseline's:
/// the baseline series are the stable revision's pods that carry the baseline role.
fn dedicated_baseline_judge_template() -> Value {
    let mean = |selector: &str| {
        format!(
            "sum(rate(http_request_duration_seconds_sum{{{selector}}}[4s])) / sum(rate(http_request_duration_seconds_count{{{selector}}}[4s]))"
        )
    };
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": { "name": "latency-vs-dedicated-baseline" },
        "spec": {
            "args": [{ "name": "namespace" }, { "name": "canary-hash" }, { "name": "baseline-hash" }],
            "metrics": [{
                "name": "latency-vs-baseline",
                "initialDelay": "24s",
                "provider": { "judge": {
                    "address": prometheus_url(),
                    "lookback": "20s",
                    "step": "1s",
                    "signals": [{
                        "name": "mean-latency",
                        "canaryQuery": mean("namespace=\"{{args.namespace}}\",pod_template_hash=\"{{args.canary-hash}}\""),
                        "baselineQuery": mean("namespace=\"{{args.namespace}}\",pod_template_hash=\"{{args.baseline-hash}}\",role=\"baseline\""),
                        "direction": "Increase",
                        "allowedIncrease": 1.2,
                        "critical": true,
                    }],
                } },
            }],
        },
    })
}

/// The Rollout's baseline ReplicaSets: (name, replicas, available, pod labels).
async fn baseline_sets(env: &Env) -> Result<Vec<(String, i32, i32, BTreeMap<String, String>)>> {
    let api: Api<ReplicaSet> = Api::namespaced(env.client.clone(), env.ns());
    Ok(api
        .list(&ListParams::default().labels(&format!("{POD_ROLE_LABEL}={BASELINE_ROLE}")))
        .await?
        .items
        .into_iter()
        .map(|rs| {
            let labels = rs
                .spec
                .template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            (
                rs.metadata.name.clone().unwrap_or_default(),
                rs.spec.replicas.unwrap_or(0),
                rs.status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0),
                labels,
            )
        })
        .collect())
}

async fn wait_baseline_gone(env: &Env) -> Result<()> {
    let result = wait_for(
        "the baseline ReplicaSet to be deleted",
        STEP_TIMEOUT,
        || async { Ok(baseline_sets(env).await?.is_empty()) },
    )
    .await;
    let left = baseline_sets(env).await.unwrap_or_default();
    result.with_context(|| format!("baseline ReplicaSets left: {left:?}"))
}

/// A Rollout with a dedicated baseline and a judge step against it. The stable pods are
/// made twice as fast as the baseline's, so a judge that compared the canary with them
/// instead would see the canary's latency doubled.
async fn canary_judged_against_a_dedicated_baseline(
    prefix: &str,
    canary_latency: f64,
) -> Result<(Env, Simulator, String)> {
    let env = Env::new(prefix).await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(dedicated_baseline_judge_template()).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "baseline": {},
            "steps": [
                { "setWeight": 50 },
                { "analysis": {
                    "templates": [{ "templateName": "latency-vs-dedicated-baseline" }],
                    "args": [
                        { "name": "namespace", "value": env.ns() },
                        { "name": "canary-hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
                        { "name": "baseline-hash", "valueFrom": { "podTemplateHashValue": "Baseline" } },
                    ],
                } },
                { "pause": {} },
            ],
        }),
    )
    .await?;
    let r = env.wait_healthy_on_new_revision().await?;
    let (_, v1_hash) = hashes(&r);
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    let behaviour = |latency| Behaviour {
        error_rate: 0.0,
        latency,
    };
    sim.set("v1", behaviour(0.01));
    sim.set(&baseline_version("v1"), behaviour(0.02));
    sim.set("v2", behaviour(canary_latency));
    env.set_version("v2").await?;

    // The baseline comes up with the canary, at its size (50% of 4), with the role label
    // and the stable hash on its pods.
    let up = wait_for(
        "the baseline at the canary's size",
        STEP_TIMEOUT,
        || async {
            Ok(baseline_sets(&env)
                .await?
                .iter()
                .any(|b| b.1 == 2 && b.2 == 2))
        },
    )
    .await;
    let now = format!(
        "revisions {:?}, baselines {:?}",
        env.sizes().await.unwrap_or_default(),
        baseline_sets(&env).await.unwrap_or_default()
    );
    up.with_context(|| now)?;
    let sets = baseline_sets(&env).await?;
    assert_eq!(sets.len(), 1, "{sets:?}");
    let (name, _, _, labels) = &sets[0];
    assert_eq!(
        labels.get(POD_ROLE_LABEL).map(String::as_str),
        Some(BASELINE_ROLE)
    );
    assert_eq!(labels.get(POD_TEMPLATE_HASH_LABEL), Some(&v1_hash));
    let r = env
        .wait("status.canary.baseline", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.canary.as_ref())
                .and_then(|c| c.baseline.as_ref())
                .is_some_and(|b| b.available_replicas == 2)
        })
        .await?;
    let status = r.status.unwrap().canary.unwrap().baseline.unwrap();
    assert_eq!(&status.replica_set, name);
    assert_eq!(status.pod_template_hash, v1_hash);
    println!("baseline ReplicaSet {name}: {} pods", status.replicas);
    Ok((env, sim, name.clone()))
}

#[tokio::test]
async fn the_judge_passes_a_canary_identical_to_its_dedicated_baseline_and_the_baseline_goes()
-> Result<()> {
    let (env, sim, _) = canary_judged_against_a_dedicated_baseline("judge-baseline", 0.02).await?;
    env.wait_step(2, RolloutPhase::Paused).await?;
    let split = sim.split();
    println!("traffic split with the baseline: {split:?}");
    assert!(
        split.get("v1-baseline").is_some_and(|s| *s > 0.0),
        "{split:?}"
    );
    let run = step_run(&env).await?.status.unwrap();
    assert_eq!(run.phase, Some(AnalysisPhase::Successful), "{run:#?}");
    let m = &run.metric_results[0].measurements[0];
    println!(
        "judge vs dedicated baseline, identical versions (stable pods twice as fast): score {:?}: {}",
        m.value,
        m.message.clone().unwrap_or_default()
    );
    assert_eq!(m.value.as_deref(), Some("100.0"), "{m:#?}");

    // Analysis done; promotion removes the baseline and the rollout completes.
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    wait_baseline_gone(&env).await?;
    let r = env.rollouts().get("web").await?;
    let s = r.status.unwrap();
    assert_eq!(s.canary.and_then(|c| c.baseline), None);
    env.finish().await
}

#[tokio::test]
async fn the_judge_fails_a_slower_canary_against_its_dedicated_baseline_and_the_baseline_goes()
-> Result<()> {
    let (env, _sim, _) =
        canary_judged_against_a_dedicated_baseline("judge-baseline-slow", 0.04).await?;
    let r = env
        .wait("aborted by the judge", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let run = step_run(&env).await?.status.unwrap();
    assert_eq!(run.phase, Some(AnalysisPhase::Failed), "{run:#?}");
    let m = &run.metric_results[0].measurements[0];
    println!(
        "judge vs dedicated baseline, doubled latency: score {:?}: {}",
        m.value,
        m.message.clone().unwrap_or_default()
    );
    assert_eq!(m.value.as_deref(), Some("0.0"), "{m:#?}");
    let s = r.status.unwrap();
    assert_ne!(s.stable_rs, s.current_pod_hash, "never promoted");
    wait_baseline_gone(&env).await?;
    env.finish().await
}

#[tokio::test]
async fn a_template_with_a_broken_condition_is_marked_invalid_when_applied() -> Result<()> {
    let env = Env::new("template-invalid").await?;
    let mut template = success_rate_template("1m", 3);
    template["spec"]["metrics"][0]["successCondition"] = json!("result[0] >= ");
    env.apply(template.clone()).await?;
    let templates: Api<sluice_api::AnalysisTemplate> =
        Api::namespaced(env.client.clone(), env.ns());
    let invalid = |t: &sluice_api::AnalysisTemplate| {
        t.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "InvalidSpec"))
            .map(|c| (c.status.clone(), c.message.clone()))
    };
    wait_for("InvalidSpec=True on the template", STEP_TIMEOUT, || async {
        Ok(invalid(&templates.get("success-rate").await?).is_some_and(|(s, _)| s == "True"))
    })
    .await?;
    let (_, message) = invalid(&templates.get("success-rate").await?).unwrap();
    assert!(message.contains("successCondition"), "{message}");
    // Fixed: the condition clears.
    template["spec"]["metrics"][0]["successCondition"] = json!("result[0] >= 0.95");
    env.apply(template).await?;
    wait_for(
        "InvalidSpec=False on the fixed template",
        STEP_TIMEOUT,
        || async {
            Ok(invalid(&templates.get("success-rate").await?).is_some_and(|(s, _)| s == "False"))
        },
    )
    .await?;
    env.finish().await
}
