//! `kubectl sluice convert` end to end: each convertible application of the Argo corpus
//! (`e2e/tests/fixtures/argo/`, written from Argo Rollouts' docs) is converted by the real
//! `kubectl-sluice` binary, applied with the plane's `kubectl apply --server-side` as a
//! user would (so the CRDs' CEL rules admit it, and kubectl's YAML 1.1 reads the stream),
//! then its pod template is changed and the rollout walked through its steps to Healthy
//! by a real controller; the analyses run against the real Prometheus, fed by the traffic
//! simulator.
//!
//! The corpus names Argo's usual Prometheus address; the test replaces that address in
//! the converted text with the plane's (`SLUICE_PROMETHEUS_URL`), as a user would point it
//! at their own.

use std::path::PathBuf;
use std::process::Output;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_api::Rollout;
use sluice_api::analysis::{AnalysisPhase, AnalysisRun};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::{self, UserAction};
use sluice_e2e::rollout_env::{Env, STEP_TIMEOUT};
use sluice_e2e::simulator::Simulator;
use sluice_e2e::{kubectl, repo_root, wait_for};

/// The address the corpus's templates name.
const CORPUS_PROMETHEUS: &str = "http://prometheus.monitoring.svc.cluster.local:9090";

fn plugin_bin() -> Result<PathBuf> {
    Ok(PathBuf::from(std::env::var("SLUICE_CONTROLLER_BIN")?).with_file_name("kubectl-sluice"))
}

fn corpus(app: &str) -> PathBuf {
    repo_root().join("e2e/tests/fixtures/argo").join(app)
}

/// Runs `kubectl-sluice convert <args>`.
fn convert(args: &[&str]) -> Result<Output> {
    let out = std::process::Command::new(plugin_bin()?)
        .arg("convert")
        .args(args)
        .output()
        .context("running kubectl-sluice convert")?;
    println!(
        "kubectl-sluice convert {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// Converts one corpus application (exit 0 required) and applies the result to the test's
/// namespace with kubectl, the Prometheus address replaced by the plane's.
fn convert_and_apply(env: &Env, app: &str) -> Result<String> {
    let out = convert(&[corpus(app).to_str().context("path")?])?;
    ensure!(
        out.status.code() == Some(0),
        "convert {app}: {}",
        out.status
    );
    let prometheus = std::env::var("SLUICE_PROMETHEUS_URL")
        .context("SLUICE_PROMETHEUS_URL (eval \"$(e2e/controlplane/plane.sh env)\")")?;
    let text = String::from_utf8(out.stdout)?.replace(CORPUS_PROMETHEUS, &prometheus);
    let dir = repo_root().join("e2e/artifacts");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("converted-{}.yaml", env.ns()));
    std::fs::write(&file, &text)?;
    let applied = kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=sluice-e2e",
        "-n",
        env.ns(),
        "-f",
        file.to_str().context("path")?,
    ])?;
    println!("kubectl apply:\n{}{}", applied.stdout, applied.stderr);
    ensure!(
        applied.success,
        "kubectl apply of converted {app}: {}",
        applied.stderr
    );
    Ok(text)
}

/// Waits until Rollout `name` satisfies `pred`; the status and the controller's log on
/// failure.
async fn wait(
    env: &Env,
    name: &str,
    what: &str,
    pred: impl Fn(&Rollout) -> bool,
) -> Result<Rollout> {
    let api = env.rollouts();
    let result = wait_for(what, STEP_TIMEOUT, || async {
        Ok(pred(&api.get(name).await?))
    })
    .await;
    if let Err(e) = result {
        let status = api.get(name).await.ok().and_then(|r| r.status);
        let log = env
            .controller
            .as_ref()
            .map(|c| c.log_tail())
            .unwrap_or_default();
        bail!("{e:#}\nstatus: {status:#?}\ncontroller log:\n{log}");
    }
    Ok(api.get(name).await?)
}

fn healthy(r: &Rollout) -> bool {
    let s = r.status.clone().unwrap_or_default();
    s.phase == Some(RolloutPhase::Healthy)
        && s.stable_rs.is_some()
        && s.stable_rs == s.current_pod_hash
        && r.metadata.generation == s.observed_generation
}

async fn wait_healthy(env: &Env, name: &str) -> Result<Rollout> {
    wait(
        env,
        name,
        &format!("{name} Healthy on its revision"),
        healthy,
    )
    .await
}

async fn wait_step(env: &Env, name: &str, index: i32, phase: RolloutPhase) -> Result<Rollout> {
    wait(
        env,
        name,
        &format!("{name} at step {index} {phase:?}"),
        |r| {
            let s = r.status.clone().unwrap_or_default();
            s.current_step_index == Some(index) && s.phase == Some(phase)
        },
    )
    .await
}

/// A new revision, as a GitOps sync of a changed template would bring.
async fn new_revision(env: &Env, name: &str) -> Result<String> {
    let before = env.rollouts().get(name).await?;
    let old = before
        .status
        .and_then(|s| s.current_pod_hash)
        .unwrap_or_default();
    let patch =
        json!({ "spec": { "template": { "metadata": { "annotations": { "version": "v2" } } } } });
    env.rollouts()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let r = wait(env, name, "a new revision", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.current_pod_hash.as_ref())
            .is_some_and(|h| *h != old)
    })
    .await?;
    Ok(r.status
        .and_then(|s| s.current_pod_hash)
        .unwrap_or_default())
}

async fn promote(env: &Env, name: &str) -> Result<()> {
    actions::apply(&env.client, env.ns(), name, UserAction::Promote).await?;
    Ok(())
}

fn weight(r: &Rollout) -> i32 {
    r.status
        .clone()
        .and_then(|s| s.canary)
        .and_then(|c| c.weights)
        .map_or(-1, |w| w.canary)
}

fn routes(env: &Env) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(env.client.clone(), env.ns(), &ApiResource::from_gvk(&gvk))
}

/// (service, weight) of the HTTPRoute's first rule.
async fn route_weights(env: &Env, route: &str) -> Result<Vec<(String, i64)>> {
    let r = routes(env).get(route).await?;
    Ok(r.data["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or_default().to_string(),
                b["weight"].as_i64().unwrap_or(1),
            )
        })
        .collect())
}

async fn analysis_runs(env: &Env) -> Result<Vec<AnalysisRun>> {
    let runs: Api<AnalysisRun> = Api::namespaced(env.client.clone(), env.ns());
    Ok(runs.list(&ListParams::default()).await?.items)
}

fn run_phase(run: &AnalysisRun) -> Option<AnalysisPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test]
async fn basic_canary_by_replica_ratio() -> Result<()> {
    let env = Env::new("convert-basic").await?;
    convert_and_apply(&env, "canary-basic")?;
    let name = "rollout-canary";
    wait_healthy(&env, name).await?;
    new_revision(&env, name).await?;
    let r = wait_step(&env, name, 3, RolloutPhase::Paused).await?;
    assert_eq!(weight(&r), 50, "replicas 2 of 4 at setWeight 50");
    promote(&env, name).await?;
    wait_healthy(&env, name).await?;
    env.finish().await
}

#[tokio::test]
async fn nginx_canary_through_the_canary_ingress() -> Result<()> {
    let env = Env::new("convert-nginx").await?;
    convert_and_apply(&env, "canary-nginx")?;
    let name = "rollouts-demo";
    wait_healthy(&env, name).await?;
    new_revision(&env, name).await?;
    wait_step(&env, name, 1, RolloutPhase::Paused).await?;
    let ingresses: Api<Ingress> = Api::namespaced(env.client.clone(), env.ns());
    let canary = ingresses
        .get("rollouts-demo-rollouts-demo-stable-canary")
        .await?;
    let a = canary.metadata.annotations.unwrap_or_default();
    assert_eq!(
        a.get("nginx.ingress.kubernetes.io/canary-weight")
            .map(String::as_str),
        Some("5")
    );
    // Argo's additionalIngressAnnotations, prefixed; canaryIngressAnnotations as they were.
    assert_eq!(
        a.get("nginx.ingress.kubernetes.io/canary-by-header")
            .map(String::as_str),
        Some("X-Canary")
    );
    assert_eq!(
        a.get("my-custom-annotation.mygroup.com/key")
            .map(String::as_str),
        Some("value")
    );
    promote(&env, name).await?;
    wait_healthy(&env, name).await?;
    env.finish().await
}

#[tokio::test]
async fn gateway_api_plugin_canary_through_the_httproute() -> Result<()> {
    let env = Env::new("convert-gateway").await?;
    convert_and_apply(&env, "canary-gatewayapi")?;
    let name = "rollouts-demo";
    wait_healthy(&env, name).await?;
    new_revision(&env, name).await?;
    let r = wait_step(&env, name, 1, RolloutPhase::Paused).await?;
    assert_eq!(weight(&r), 30);
    let weights = route_weights(&env, "argo-rollouts-http-route").await?;
    assert_eq!(
        weights,
        [
            ("argo-rollouts-stable-service".to_string(), 70),
            ("argo-rollouts-canary-service".to_string(), 30),
        ]
    );
    promote(&env, name).await?;
    wait_healthy(&env, name).await?;
    let weights = route_weights(&env, "argo-rollouts-http-route").await?;
    assert_eq!(
        weights[0].1, 100,
        "all on stable after promotion: {weights:?}"
    );
    env.finish().await
}

#[tokio::test]
async fn header_route_through_the_gateway_api_plugin() -> Result<()> {
    let env = Env::new("convert-header").await?;
    convert_and_apply(&env, "canary-header-route")?;
    let name = "rollouts-demo";
    wait_healthy(&env, name).await?;
    new_revision(&env, name).await?;
    wait_step(&env, name, 2, RolloutPhase::Paused).await?;
    let route = routes(&env).get("argo-rollouts-http-route").await?;
    let header_rule = route.data["spec"]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|r| r["matches"].to_string().contains("X-Canary"))
        .with_context(|| format!("no rule matching X-Canary: {:#}", route.data["spec"]))?;
    assert_eq!(
        header_rule["matches"][0]["headers"][0],
        json!({ "name": "X-Canary", "type": "Exact", "value": "yes" }),
        "the header value stayed the string yes through kubectl's YAML"
    );
    assert_eq!(
        header_rule["backendRefs"][0]["name"],
        "argo-rollouts-canary-service"
    );
    promote(&env, name).await?;
    wait_healthy(&env, name).await?;
    let route = routes(&env).get("argo-rollouts-http-route").await?;
    assert!(
        !route.data["spec"]["rules"].to_string().contains("X-Canary"),
        "header route removed: {:#}",
        route.data["spec"]
    );
    env.finish().await
}

fn istio_api(env: &Env, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", kind);
    Api::namespaced_with(
        env.client.clone(),
        env.ns(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

#[tokio::test]
async fn istio_canary_through_the_virtual_service_and_subsets_with_managed_routes() -> Result<()> {
    let env = Env::new("convert-istio").await?;
    convert_and_apply(&env, "canary-istio")?;
    let name = "rollout-example";
    wait_healthy(&env, name).await?;
    let new = new_revision(&env, name).await?;
    let r = wait_step(&env, name, 3, RolloutPhase::Paused).await?;
    assert_eq!(weight(&r), 20);
    let vss = istio_api(&env, "VirtualService", "virtualservices");
    let drs = istio_api(&env, "DestinationRule", "destinationrules");
    let vs = vss.get("rollout-vsvc").await?;
    let http = vs.data["spec"]["http"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let primary = http
        .iter()
        .find(|r| r["name"] == "primary")
        .context("the primary route")?;
    assert_eq!(
        primary["route"],
        json!([
            { "destination": { "host": "rollout-example", "subset": "stable" }, "weight": 80 },
            { "destination": { "host": "rollout-example", "subset": "canary" }, "weight": 20 },
        ])
    );
    let ours: Vec<&Value> = http
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("sluice-")))
        .collect();
    assert_eq!(ours.len(), 2, "{:#}", vs.data["spec"]);
    assert_eq!(
        ours[0]["match"],
        json!([{ "headers": { "x-canary": { "exact": "yes" } } }]),
        "the header value stayed the string yes through kubectl's YAML"
    );
    assert_eq!(
        ours[1]["mirror"],
        json!({ "host": "rollout-example", "subset": "canary" })
    );
    let dr = drs.get("rollout-destrule").await?;
    let canary_subset = dr.data["spec"]["subsets"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "canary").cloned())
        .context("the canary subset")?;
    assert_eq!(
        canary_subset["labels"]["sluice.dev/pod-template-hash"],
        json!(new)
    );
    promote(&env, name).await?;
    wait_healthy(&env, name).await?;
    let vs = vss.get("rollout-vsvc").await?;
    assert!(
        !vs.data["spec"]["http"].to_string().contains("sluice-"),
        "managed routes removed: {:#}",
        vs.data["spec"]
    );
    assert_eq!(vs.data["spec"]["http"][0]["route"][0]["weight"], 100);
    env.finish().await
}

#[tokio::test]
async fn blue_green_with_pre_and_post_promotion_analysis() -> Result<()> {
    let env = Env::new("convert-bluegreen").await?;
    convert_and_apply(&env, "bluegreen-analysis")?;
    let name = "rollout-bluegreen";
    let _sim = Simulator::start(env.client.clone(), env.ns(), name, "rollout-bluegreen").await?;
    wait_healthy(&env, name).await?;
    let v2 = new_revision(&env, name).await?;
    // autoPromotionEnabled: false, so after the pre-promotion analysis passes it waits.
    let r = wait(&env, name, "paused in preview", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.phase == Some(RolloutPhase::Paused)
                && s.blue_green
                    .as_ref()
                    .is_some_and(|b| b.pre_promotion_analysis_run.is_some())
        })
    })
    .await?;
    let runs = analysis_runs(&env).await?;
    let pre = r
        .status
        .unwrap()
        .blue_green
        .unwrap()
        .pre_promotion_analysis_run
        .unwrap();
    let pre = runs
        .iter()
        .find(|a| a.metadata.name.as_deref() == Some(&pre))
        .context("pre run")?;
    assert_eq!(
        run_phase(pre),
        Some(AnalysisPhase::Successful),
        "{:#?}",
        pre.status
    );
    assert_ne!(
        env.service_hash("rollout-bluegreen-active")
            .await?
            .as_deref(),
        Some(v2.as_str())
    );
    promote(&env, name).await?;
    wait_healthy(&env, name).await?;
    assert_eq!(
        env.service_hash("rollout-bluegreen-active")
            .await?
            .as_deref(),
        Some(v2.as_str())
    );
    let runs = analysis_runs(&env).await?;
    assert_eq!(runs.len(), 2, "pre and post");
    for run in &runs {
        assert_eq!(
            run_phase(run),
            Some(AnalysisPhase::Successful),
            "{:#?}",
            run.status
        );
        let m = &run.status.as_ref().unwrap().metric_results[0];
        assert!(m.successful >= 2, "{m:#?}");
    }
    env.finish().await
}

#[tokio::test]
async fn background_analysis_from_a_cluster_template_with_a_secret_arg() -> Result<()> {
    let env = Env::new("convert-background").await?;
    convert_and_apply(&env, "background-analysis")?;
    let name = "guestbook";
    let _sim = Simulator::start(env.client.clone(), env.ns(), name, "guestbook").await?;
    wait_healthy(&env, name).await?;
    new_revision(&env, name).await?;
    let r = wait(&env, name, "the background run started at step 1", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.canary
                .as_ref()
                .is_some_and(|c| c.current_background_analysis_run.is_some())
        })
    })
    .await?;
    assert!(
        r.status.unwrap().current_step_index.unwrap_or(0) >= 1,
        "not before startingStep"
    );
    wait_healthy(&env, name).await?;
    let runs = analysis_runs(&env).await?;
    assert_eq!(runs.len(), 1, "one background run");
    let status = runs[0].status.clone().unwrap_or_default();
    let m = &status.metric_results[0];
    // Real PromQL over the simulator: no errors, so every measurement that had data passed.
    assert!(m.successful >= 2 && m.failed == 0, "{m:#?}");
    // Cluster-scoped: not deleted with the namespace.
    kubectl(&[
        "delete",
        "clusteranalysistemplate",
        "error-rate",
        "--ignore-not-found",
    ])?;
    env.finish().await
}

/// The whole corpus: the refused application exits 1 and writes nothing of it; every
/// converted object of the others (warned fields included) is admitted by the CRDs.
#[tokio::test]
async fn the_whole_corpus_is_admitted_and_the_refusals_exit_1() -> Result<()> {
    let out = convert(&[corpus("not-convertible").to_str().context("path")?])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.strategy.canary.trafficRouting.alb"),
        "{stderr}"
    );

    let out = convert(&[corpus("unsupported-fields").to_str().context("path")?])?;
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: Rollout shop/checkout: spec.strategy.canary.antiAffinity"),
        "{stderr}"
    );

    let env = Env::new("convert-admit").await?;
    let dirs = [
        "canary-basic",
        "canary-nginx",
        "canary-gatewayapi",
        "canary-header-route",
        "canary-istio",
        "bluegreen-analysis",
        "background-analysis",
        "unsupported-fields",
    ];
    for dir in dirs {
        let out = convert(&[corpus(dir).to_str().context("path")?])?;
        ensure!(out.status.code() == Some(0), "{dir}");
        // unsupported-fields names its namespace; admit it in the test's.
        let text = String::from_utf8(out.stdout)?.replace("\n  namespace: shop\n", "\n");
        let file = repo_root().join(format!("e2e/artifacts/admit-{}-{dir}.yaml", env.ns()));
        std::fs::write(&file, text)?;
        let applied = kubectl(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-n",
            env.ns(),
            "-f",
            file.to_str().context("path")?,
        ])?;
        assert!(applied.success, "{dir}: {}", applied.stderr);
        assert!(
            applied.stdout.contains("rollout.sluice.dev/"),
            "{dir}: {}",
            applied.stdout
        );
    }
    env.finish().await
}
