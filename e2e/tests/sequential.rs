//! The sequential provider end to end: the simulator's request counters and latency
//! histogram in the real Prometheus, read by the controller per slice through real PromQL
//! (`sum(increase(...[10s]))`), tested at every look; the Rollout aborts on evidence of a
//! regression and continues without.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::jiff::SignedDuration;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice_api::analysis::{AnalysisPhase, AnalysisRun, AnalysisRunStatus};
use sluice_api::rollout::RolloutPhase;
use sluice_e2e::rollout_env::{Env, hashes};
use sluice_e2e::simulator::{Behaviour, Simulator};

fn prometheus_url() -> String {
    std::env::var("SLUICE_PROMETHEUS_URL")
        .expect("SLUICE_PROMETHEUS_URL (eval \"$(e2e/controlplane/plane.sh env)\")")
}

fn selector(hash: &str, extra: &str) -> String {
    format!(
        "{{namespace=\"{{{{args.namespace}}}}\",pod_template_hash=\"{{{{args.{hash}}}}}\"{extra}}}"
    )
}

/// Counts (5xx among requests) or the latency histogram, canary against the stable pods,
/// in 10 s slices, three looks.
fn template(histogram: bool) -> Value {
    let source = if histogram {
        json!({ "histogram": {
            "canary": format!("http_request_duration_seconds_bucket{}", selector("canary-hash", "")),
            "baseline": format!("http_request_duration_seconds_bucket{}", selector("stable-hash", "")),
        } })
    } else {
        json!({ "counts": {
            "canary": {
                "events": format!("http_requests_total{}", selector("canary-hash", ",code=~\"5..\"")),
                "total": format!("http_requests_total{}", selector("canary-hash", "")),
            },
            "baseline": {
                "events": format!("http_requests_total{}", selector("stable-hash", ",code=~\"5..\"")),
                "total": format!("http_requests_total{}", selector("stable-hash", "")),
            },
        } })
    };
    let mut provider = json!({ "address": prometheus_url(), "alpha": 0.01 });
    provider
        .as_object_mut()
        .unwrap()
        .extend(source.as_object().unwrap().clone());
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": { "name": "sequential" },
        "spec": {
            "args": [{ "name": "namespace" }, { "name": "canary-hash" }, { "name": "stable-hash" }],
            "metrics": [{
                "name": "sequential",
                "interval": "10s",
                "count": 3,
                "provider": { "sequential": provider },
            }],
        },
    })
}

/// The controller's flags that serve the dashboard, without sign-in, on a free port.
const DASHBOARD: &[&str] = &[
    "--dashboard-addr",
    "127.0.0.1:0",
    "--dashboard-no-auth",
    "--dashboard-read-only",
];

async fn sequential_canary(
    prefix: &str,
    histogram: bool,
    stable: Behaviour,
    canary: Behaviour,
) -> Result<(Env, Simulator)> {
    let env = if histogram {
        Env::new(prefix).await?
    } else {
        Env::with_controller_args(prefix, DASHBOARD).await?
    };
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(template(histogram)).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [
                { "setWeight": 50 },
                { "analysis": {
                    "templates": [{ "templateName": "sequential" }],
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
    sim.set("v1", stable);
    sim.set("v2", canary);
    env.set_version("v2").await?;
    Ok((env, sim))
}

async fn the_run(env: &Env) -> Result<AnalysisRunStatus> {
    let runs: Api<AnalysisRun> = Api::namespaced(env.client.clone(), env.ns());
    let mut items = runs.list(&ListParams::default()).await?.items;
    anyhow::ensure!(
        items.len() == 1,
        "expected one AnalysisRun, found {}",
        items.len()
    );
    items.remove(0).status.context("the run has a status")
}

fn print(label: &str, status: &AnalysisRunStatus) {
    for m in &status.metric_results[0].measurements {
        println!(
            "{label}: {:?} e-value {:?}: {}",
            m.phase,
            m.value,
            m.message.clone().unwrap_or_default()
        );
    }
}

const ERRORS_5: Behaviour = Behaviour {
    error_rate: 0.05,
    latency: 0.02,
};

#[tokio::test]
async fn a_canary_with_twice_the_error_rate_is_aborted_on_the_evidence() -> Result<()> {
    let canary = Behaviour {
        error_rate: 0.10,
        ..ERRORS_5
    };
    let (env, _sim) = sequential_canary("seq-errors", false, ERRORS_5, canary).await?;
    let r = env
        .wait("aborted by the sequential test", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let status = the_run(&env).await?;
    print("errors 2x", &status);
    assert_eq!(status.phase, Some(AnalysisPhase::Failed), "{status:#?}");
    let measurements = &status.metric_results[0].measurements;
    let last = measurements.last().unwrap();
    assert_eq!(last.phase, AnalysisPhase::Failed);
    let e: f64 = last.value.as_deref().unwrap_or_default().parse()?;
    assert!(e >= 100.0, "the e-value crossed 1/alpha: {e}");
    let message = last.message.as_deref().unwrap_or_default();
    assert!(message.starts_with("evidence of a regression"), "{message}");
    // The ratio of the error rates is estimated near 2 (the simulator's counts are
    // expected values; Prometheus' increase() extrapolates).
    let ratio: f64 = message
        .split("event-rate ratio ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .context("ratio in the message")?
        .parse()?;
    assert!((1.6..2.4).contains(&ratio), "{message}");
    // Stopped at the first look that had the evidence, before the count of three.
    assert!(measurements.len() < 3, "{measurements:#?}");
    let s = r.status.clone().unwrap();
    assert_ne!(s.stable_rs, s.current_pod_hash, "never promoted");

    // Replaying the template over the run's window reads the same slices from the same
    // origin and reaches the same verdict, through the library and `kubectl sluice analyze`.
    let (canary_hash, stable_hash) = hashes(&r);
    let from = status.started_at.clone().unwrap().0;
    let to = status.completed_at.clone().unwrap().0 + SignedDuration::from_secs(2);
    let template: sluice_api::AnalysisTemplate = Api::namespaced(env.client.clone(), env.ns())
        .get("sequential")
        .await?;
    let args: Vec<sluice_api::analysis::AnalysisRunArgument> = serde_json::from_value(json!([
        { "name": "namespace", "value": env.ns() },
        { "name": "canary-hash", "value": canary_hash },
        { "name": "stable-hash", "value": stable_hash },
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
    for m in &replayed.measurements {
        println!(
            "replay: {:?} e-value {:?}: {}",
            m.measurement.phase,
            m.measurement.value,
            m.measurement.message.clone().unwrap_or_default()
        );
    }
    assert_eq!(replayed.phase, AnalysisPhase::Failed, "{replayed:#?}");
    let replayed_e: f64 = replayed
        .measurements
        .last()
        .and_then(|m| m.measurement.value.as_deref())
        .unwrap_or_default()
        .parse()?;
    assert!(replayed_e >= 100.0, "{replayed_e}");
    let bin = std::path::PathBuf::from(std::env::var("SLUICE_CONTROLLER_BIN")?)
        .with_file_name("kubectl-sluice");
    let out = std::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(sluice_e2e::kubeconfig_path())
        .args(["-n", env.ns(), "analyze", "sequential"])
        .args(["--arg", &format!("namespace={}", env.ns())])
        .args(["--arg", &format!("canary-hash={canary_hash}")])
        .args(["--arg", &format!("stable-hash={stable_hash}")])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verdict: Failed"), "{stdout}");

    // The dashboard's analysis view draws the evidence: log10 of each look's e-value
    // against the line at log10(1/alpha) = 2, the deciding look marked failed.
    let line = env
        .controller
        .as_ref()
        .context("controller")?
        .wait_log("dashboard listening", Duration::from_secs(30))
        .await?;
    let url = line
        .split("url=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .context("no url= in the dashboard's log line")?
        .trim_end_matches('/')
        .to_string();
    let page = reqwest::get(format!("{url}/rollouts/{}/web", env.ns()))
        .await?
        .text()
        .await?;
    assert!(
        page.contains("sequential (log10 e-value)") && page.contains("failure &gt;= 2"),
        "{page}"
    );
    assert!(page.contains("point bad"), "{page}");
    env.finish().await
}

#[tokio::test]
async fn an_identical_canary_passes_after_its_looks() -> Result<()> {
    let (env, _sim) = sequential_canary("seq-same", false, ERRORS_5, ERRORS_5).await?;
    env.wait_step(2, RolloutPhase::Paused).await?;
    let status = the_run(&env).await?;
    print("errors identical", &status);
    assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:#?}");
    let measurements = &status.metric_results[0].measurements;
    assert_eq!(measurements.len(), 3, "three looks: {measurements:#?}");
    // Two undecided looks, then the pass at the last without evidence.
    for m in &measurements[..2] {
        assert_eq!(m.phase, AnalysisPhase::Inconclusive, "{m:#?}");
        assert!(
            m.message
                .as_deref()
                .unwrap_or_default()
                .starts_with("undecided"),
            "{m:#?}"
        );
    }
    let last = &measurements[2];
    assert_eq!(last.phase, AnalysisPhase::Successful, "{last:#?}");
    let e: f64 = last.value.as_deref().unwrap_or_default().parse()?;
    assert!(e < 10.0, "no evidence: {e}");
    env.finish().await
}

#[tokio::test]
async fn a_slower_canary_is_aborted_on_its_latency_histogram() -> Result<()> {
    let canary = Behaviour {
        latency: 0.04,
        ..ERRORS_5
    };
    let (env, _sim) = sequential_canary("seq-latency", true, ERRORS_5, canary).await?;
    env.wait("aborted by the sequential test", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
    })
    .await?;
    let status = the_run(&env).await?;
    print("latency 2x", &status);
    assert_eq!(status.phase, Some(AnalysisPhase::Failed), "{status:#?}");
    let last = status.metric_results[0].measurements.last().unwrap();
    let message = last.message.as_deref().unwrap_or_default();
    assert!(message.contains("share above le="), "{message}");
    // The quantile view: the canary's median about twice the baseline's.
    assert!(message.contains(", p50 "), "{message}");
    env.finish().await
}

#[tokio::test]
async fn a_blue_green_preview_with_twice_the_error_rate_fails_its_pre_promotion_test() -> Result<()>
{
    let env = Env::new("seq-bg").await?;
    env.services(&["web-active", "web-preview"]).await?;
    env.apply(template(false)).await?;
    let analysis = json!({
        "templates": [{ "templateName": "sequential" }],
        "args": [
            { "name": "namespace", "value": env.ns() },
            { "name": "canary-hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
            { "name": "stable-hash", "valueFrom": { "podTemplateHashValue": "Stable" } },
        ],
    });
    env.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": sluice_e2e::rollout_env::pod_template("v1"),
            "strategy": { "blueGreen": {
                "activeService": "web-active", "previewService": "web-preview",
                "prePromotionAnalysis": analysis, "abortScaleDownDelaySeconds": 2,
            } },
        },
    }))
    .await?;
    let r = env.wait_healthy_on_new_revision().await?;
    let (v1, _) = hashes(&r);
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web-active").await?;
    sim.set("v1", ERRORS_5);
    sim.set(
        "v2",
        Behaviour {
            error_rate: 0.10,
            ..ERRORS_5
        },
    );
    env.set_version("v2").await?;
    env.wait("degraded by the pre-promotion test", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
    })
    .await?;
    let status = the_run(&env).await?;
    print("blue-green preview errors 2x", &status);
    assert_eq!(status.phase, Some(AnalysisPhase::Failed), "{status:#?}");
    let last = status.metric_results[0].measurements.last().unwrap();
    assert!(
        last.message
            .as_deref()
            .unwrap_or_default()
            .starts_with("evidence of a regression"),
        "{last:#?}"
    );
    assert_eq!(
        env.service_hash("web-active").await?.as_deref(),
        Some(v1.as_str()),
        "active never switched"
    );
    env.finish().await
}

#[tokio::test]
async fn a_background_sequential_analysis_aborts_a_canary_with_twice_the_error_rate() -> Result<()>
{
    let env = Env::new("seq-background").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(template(false)).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "analysis": {
                "templates": [{ "templateName": "sequential" }],
                "args": [
                    { "name": "namespace", "value": env.ns() },
                    { "name": "canary-hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
                    { "name": "stable-hash", "valueFrom": { "podTemplateHashValue": "Stable" } },
                ],
            },
            "steps": [{ "setWeight": 50 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.set("v1", ERRORS_5);
    sim.set(
        "v2",
        Behaviour {
            error_rate: 0.10,
            ..ERRORS_5
        },
    );
    env.set_version("v2").await?;
    env.wait("aborted by the background test", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
    })
    .await?;
    let status = the_run(&env).await?;
    print("background errors 2x", &status);
    assert_eq!(status.phase, Some(AnalysisPhase::Failed), "{status:#?}");
    let last = status.metric_results[0].measurements.last().unwrap();
    let e: f64 = last.value.as_deref().unwrap_or_default().parse()?;
    assert!(e >= 100.0, "{e}");
    env.finish().await
}
