//! The ready-made templates in `analysis-templates/`: each is applied to the real
//! apiserver (so the CRD's rules accept it) and evaluated by the controller against the
//! real Prometheus, fed by the simulator with a healthy canary beside its stable version.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use sluice_api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunArgument, AnalysisRunSpec, ClusterAnalysisTemplate,
};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::adapters::analysis::merge;
use sluice_e2e::rollout_env::{Env, hashes};
use sluice_e2e::simulator::{Behaviour, Simulator};
use sluice_e2e::web_endpoint::WebEndpoint;
use sluice_e2e::{apply, repo_root, wait_for};

fn template_files() -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("analysis-templates"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

#[tokio::test]
async fn every_ready_made_template_is_admitted_and_evaluates_against_prometheus() -> Result<()> {
    let prometheus = std::env::var("SLUICE_PROMETHEUS_URL").context("SLUICE_PROMETHEUS_URL")?;
    let env = Env::new("templates").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.rollout(4, json!({ "canaryService": "web-canary", "stableService": "web-stable", "steps": [{ "setWeight": 50 }, { "pause": {} }] }))
        .await?;
    env.wait_healthy_on_new_revision().await?;
    let sim = Simulator::start(env.client.clone(), env.ns(), "web", "web").await?;
    sim.set("v1", Behaviour::default());
    sim.set("v2", Behaviour::default());
    env.set_version("v2").await?;
    let r = env.wait_step(1, RolloutPhase::Paused).await?;
    let (canary_hash, stable_hash) = hashes(&r);

    // Admission: every file is accepted as it is.
    let files = template_files()?;
    assert!(files.len() >= 10, "{files:?}");
    let templates: Api<ClusterAnalysisTemplate> = Api::all(env.client.clone());
    let mut names = Vec::new();
    for file in &files {
        let doc: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(file)?)?;
        apply(&env.client, env.ns(), doc.clone())
            .await
            .with_context(|| format!("{}", file.display()))?;
        names.push(
            doc["metadata"]["name"]
                .as_str()
                .context("name")?
                .to_string(),
        );
    }

    // The web template's health endpoint: the controller is a local process, so a
    // loopback server stands in for the canary's `/healthz`.
    let health = WebEndpoint::start(200, r#"{"status":"pass","checks":{"db":"pass"}}"#).await?;
    let health_url = format!("{}/healthz", health.url);

    // Twenty seconds of traffic for the rates and the judge's window.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let args: Vec<AnalysisRunArgument> = serde_json::from_value(json!([
        { "name": "namespace", "value": env.ns() },
        { "name": "canary-hash", "value": canary_hash },
        { "name": "baseline-hash", "value": stable_hash },
        { "name": "canary-service", "value": "web-canary" },
        { "name": "canary-revision", "value": "v2" },
        { "name": "health-url", "value": health_url },
        { "name": "service", "value": "web-canary" },
    ]))?;
    let runs: Api<AnalysisRun> = Api::namespaced(env.client.clone(), env.ns());
    for name in &names {
        let mut spec = templates.get(name).await?.spec.analysis;
        // Measure once, now, against the local Prometheus; the queries and conditions
        // are the templates' own.
        for metric in &mut spec.metrics {
            metric.initial_delay = None;
            metric.interval = None;
            metric.count = None;
            if let Some(s) = metric.provider.sequential.as_mut() {
                // One look, at its last, over one 10 s slice: the verdict without evidence.
                s.connection.address = prometheus.clone();
                metric.interval = Some(sluice_api::HumanDuration::Text("10s".into()));
                metric.count = Some(1);
            }
            if let Some(p) = metric.provider.prometheus.as_mut() {
                p.connection.address = prometheus.clone();
            }
            if let Some(j) = metric.provider.job.as_mut() {
                // kwok runs no container: the plane's e2e stage makes the pod succeed.
                j.spec
                    .template
                    .metadata
                    .get_or_insert_with(Default::default)
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert("sluice.dev/e2e-outcome".into(), "succeed".into());
            }
            if let Some(j) = metric.provider.judge.as_mut() {
                j.connection.address = prometheus.clone();
                j.lookback = sluice_api::HumanDuration::Text("20s".into());
                j.step = sluice_api::HumanDuration::Text("1s".into());
            }
        }
        let declared: Vec<String> = spec.args.iter().map(|a| a.name.clone()).collect();
        let own_args: Vec<AnalysisRunArgument> = args
            .iter()
            .filter(|a| declared.contains(&a.name))
            .cloned()
            .collect();
        let analysis = merge(&[spec], &own_args, &stable_hash, &canary_hash)?;
        let run = AnalysisRun {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            spec: AnalysisRunSpec {
                analysis,
                terminate: false,
            },
            status: None,
        };
        runs.create(&PostParams::default(), &run).await?;
    }

    let mut verdicts = Vec::new();
    for name in &names {
        wait_for(
            &format!("AnalysisRun {name} to finish"),
            Duration::from_secs(60),
            || async {
                let run = runs.get(name).await?;
                Ok(run.status.and_then(|s| s.completed_at).is_some())
            },
        )
        .await?;
        let status = runs.get(name).await?.status.unwrap();
        let m = &status.metric_results[0].measurements[0];
        println!(
            "template {name}: {:?} value {:?} {}",
            status.phase,
            m.value,
            m.message.clone().unwrap_or_default()
        );
        verdicts.push((
            name.clone(),
            status.phase,
            m.value.clone().unwrap_or_default(),
        ));
    }
    let value = |n: &str| {
        verdicts
            .iter()
            .find(|v| v.0 == n)
            .map(|v| v.2.clone())
            .unwrap_or_default()
    };
    for (name, phase, value) in &verdicts {
        assert_eq!(*phase, Some(AnalysisPhase::Successful), "{name}: {value}");
    }
    // The values are the real answers for a healthy canary with ~20 ms latency.
    for n in [
        "http-success-rate",
        "nginx-success-rate",
        "istio-success-rate",
    ] {
        assert_eq!(value(n), "[1]", "{n}");
    }
    assert_eq!(value("slo-burn-rate"), "[0]");
    let p99: f64 = value("http-p99-latency")
        .trim_matches(|c| c == '[' || c == ']')
        .parse()?;
    assert!(p99 > 0.0 && p99 <= 0.05, "p99 {p99}");
    assert_eq!(value("latency-judge"), "100.0");
    // The sequential templates: an e-value well below 1/alpha for identical versions.
    for n in ["sequential-error-rate", "sequential-latency"] {
        let e: f64 = value(n)
            .parse()
            .with_context(|| format!("{n}: {}", value(n)))?;
        assert!(e > 0.0 && e < 10.0, "{n}: e-value {e}");
    }
    // The job template's Job asked the canary Service at the defaults' port and path,
    // and the real Job controller completed it.
    let job_name = "http-smoke-test-http-smoke-test-1";
    let smoke = verdicts.iter().find(|v| v.0 == "http-smoke-test");
    assert!(smoke.is_some(), "{verdicts:?}");
    let run = runs.get("http-smoke-test").await?.status.unwrap();
    assert_eq!(
        run.metric_results[0].measurements[0].message.as_deref(),
        Some(format!("Job {job_name} completed").as_str())
    );
    let job: k8s_openapi::api::batch::v1::Job = Api::namespaced(env.client.clone(), env.ns())
        .get(job_name)
        .await?;
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        container
            .args
            .as_ref()
            .and_then(|a| a.last())
            .map(String::as_str),
        Some(format!("http://web-canary.{}.svc:80/healthz", env.ns()).as_str())
    );
    // The web template judged the endpoint's own answer, asked at its own path.
    assert_eq!(value("web-health"), r#""pass""#);
    assert!(
        health.requests().iter().any(|t| t == "/healthz"),
        "{:?}",
        health.requests()
    );
    env.finish().await
}
