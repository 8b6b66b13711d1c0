//! The `job` analysis provider end to end: a Rollout's analysis step runs a Kubernetes Job
//! per measurement, and kube-controller-manager's real Job controller decides it. kwok
//! runs no containers; the plane's e2e stages (e2e/controlplane/kwok-job-stages.yaml) make
//! a Job's pod succeed or fail by the `sluice.dev/e2e-outcome` label its template sets.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sluice_api::analysis::{AnalysisPhase, AnalysisRun};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::{Env, STEP_TIMEOUT, hashes};
use sluice_e2e::wait_for;

/// A template whose one metric runs `count` Jobs, 1 s apart, each pod ending with
/// `outcome` (`succeed` or `fail`) after `delay`. The container gets the canary Service
/// in its env and the canary hash in its args, both from `{{args.*}}`.
fn template(outcome: &str, delay: &str, count: i32) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": { "name": "smoke" },
        "spec": {
            "args": [{ "name": "canary-service" }, { "name": "canary-hash" }],
            "metrics": [{
                "name": "smoke",
                "interval": "1s",
                "count": count,
                "provider": { "job": {
                    "metadata": { "labels": { "team": "shop" } },
                    "spec": {
                        "backoffLimit": 0,
                        "activeDeadlineSeconds": 600,
                        "template": {
                            "metadata": {
                                "labels": { "sluice.dev/e2e-outcome": outcome },
                                "annotations": { "sluice.dev/e2e-outcome-delay": delay },
                            },
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{
                                    "name": "smoke",
                                    "image": "curlimages/curl:8.11.1",
                                    "args": ["-fsS", "http://{{args.canary-service}}/healthz?revision={{args.canary-hash}}"],
                                    "env": [{ "name": "TARGET", "value": "{{args.canary-service}}" }],
                                }],
                            },
                        },
                    },
                } },
            }],
        },
    })
}

async fn canary_with_job_analysis(env: &Env, template: Value) -> Result<()> {
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(template).await?;
    env.rollout(
        2,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [
                { "setWeight": 50 },
                { "analysis": {
                    "templates": [{ "templateName": "smoke" }],
                    "args": [
                        { "name": "canary-service", "value": "web-canary" },
                        { "name": "canary-hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
                    ],
                } },
            ],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    Ok(())
}

async fn the_run(env: &Env) -> Result<AnalysisRun> {
    let runs: Api<AnalysisRun> = Api::namespaced(env.client.clone(), env.ns());
    let mut items = runs.list(&ListParams::default()).await?.items;
    anyhow::ensure!(
        items.len() == 1,
        "expected one AnalysisRun, found {}",
        items.len()
    );
    Ok(items.remove(0))
}

/// sluice's Jobs in the test's namespace, by name.
async fn jobs(env: &Env) -> Result<Vec<Job>> {
    let api: Api<Job> = Api::namespaced(env.client.clone(), env.ns());
    let mut items = api
        .list(&ListParams::default().labels("sluice.dev/analysis-run-uid"))
        .await?
        .items;
    items.sort_by_key(|j| j.name_any());
    Ok(items)
}

fn condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

#[tokio::test]
async fn succeeding_jobs_let_the_rollout_complete_and_carry_the_args() -> Result<()> {
    let env = Env::new("job-ok").await?;
    canary_with_job_analysis(&env, template("succeed", "1s", 2)).await?;
    env.set_version("v2").await?;
    let (v2, _) = hashes(&env.wait_step(1, RolloutPhase::Progressing).await?);
    let r = env.wait_healthy_on_new_revision().await?;
    assert_eq!(r.status.unwrap().stable_rs.as_deref(), Some(v2.as_str()));

    let run = the_run(&env).await?;
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:#?}");
    let metric = &status.metric_results[0];
    assert_eq!(
        (metric.count, metric.successful, metric.error),
        (2, 2, 0),
        "{metric:#?}"
    );
    let run_name = run.name_any();
    for (i, m) in metric.measurements.iter().enumerate() {
        assert_eq!(m.phase, AnalysisPhase::Successful, "{m:#?}");
        assert_eq!(
            m.message.as_deref(),
            Some(format!("Job {run_name}-smoke-{} completed", i + 1).as_str())
        );
    }

    // One Job per measurement, named after the run, controlled by it, finished by the
    // real Job controller, with the args substituted.
    let jobs = jobs(&env).await?;
    let names: Vec<String> = jobs.iter().map(|j| j.name_any()).collect();
    assert_eq!(
        names,
        [format!("{run_name}-smoke-1"), format!("{run_name}-smoke-2")]
    );
    for job in &jobs {
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("AnalysisRun", run_name.as_str(), Some(true))
        );
        assert_eq!(Some(&owner.uid), run.metadata.uid.as_ref());
        assert!(condition(job, "Complete"), "{:#?}", job.status);
        assert_eq!(job.labels()["team"], "shop");
        assert_eq!(job.labels()["sluice.dev/rollout"], "web");
        assert_eq!(job.annotations()["sluice.dev/metric"], "smoke");
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        let env_var = &container.env.as_ref().unwrap()[0];
        assert_eq!(
            (env_var.name.as_str(), env_var.value.as_deref()),
            ("TARGET", Some("web-canary"))
        );
        assert_eq!(
            container.args.as_ref().unwrap()[1],
            format!("http://web-canary/healthz?revision={v2}")
        );
    }
    env.finish().await
}

#[tokio::test]
async fn a_failing_job_aborts_the_rollout_and_says_why() -> Result<()> {
    let env = Env::new("job-fail").await?;
    canary_with_job_analysis(&env, template("succeed", "1s", 1)).await?;
    env.apply(template("fail", "1s", 1)).await?;
    env.set_version("v2").await?;
    let r = env
        .wait("aborted", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let (v2, _) = hashes(&r);
    assert_ne!(r.status.unwrap().stable_rs.as_deref(), Some(v2.as_str()));

    let run = the_run(&env).await?;
    let status = run.status.unwrap();
    assert_eq!(status.phase, Some(AnalysisPhase::Failed), "{status:#?}");
    let m = &status.metric_results[0].measurements[0];
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:#?}");
    let message = m.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("-smoke-1 failed: BackoffLimitExceeded"),
        "{message}"
    );
    let jobs = jobs(&env).await?;
    assert_eq!(jobs.len(), 1);
    assert!(condition(&jobs[0], "Failed"), "{:#?}", jobs[0].status);
    env.finish().await
}

#[tokio::test]
async fn aborting_the_rollout_deletes_the_job_still_running() -> Result<()> {
    let env = Env::new("job-abort").await?;
    canary_with_job_analysis(&env, template("succeed", "1s", 1)).await?;
    // The next Job would run for ten minutes.
    env.apply(template("succeed", "10m", 1)).await?;
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Progressing).await?;
    let job_api: Api<Job> = Api::namespaced(env.client.clone(), env.ns());
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), env.ns());
    wait_for("the Job and its pod running", STEP_TIMEOUT, || async {
        let Some(job) = jobs(&env).await?.into_iter().next() else {
            return Ok(false);
        };
        let selector = format!("batch.kubernetes.io/job-name={}", job.name_any());
        let running = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        Ok(running)
    })
    .await?;
    let job_name = jobs(&env).await?[0].name_any();
    let run = the_run(&env).await?.status.unwrap();
    let m = &run.metric_results[0].measurements[0];
    assert_eq!(m.phase, AnalysisPhase::Running, "{m:#?}");

    env.act(UserAction::Abort).await?;
    let selector = format!("batch.kubernetes.io/job-name={job_name}");
    wait_for("the Job and its pods deleted", STEP_TIMEOUT, || async {
        let job_gone = job_api.get_opt(&job_name).await?.is_none();
        let pods_gone = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .is_empty();
        Ok(job_gone && pods_gone)
    })
    .await?;
    let status = the_run(&env).await?.status.unwrap();
    assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:#?}");
    assert_eq!(status.message.as_deref(), Some("terminated"));
    let m = &status.metric_results[0].measurements[0];
    assert_eq!(m.phase, AnalysisPhase::Inconclusive, "{m:#?}");
    assert_eq!(
        m.message.as_deref(),
        Some(format!("the run ended before Job {job_name} finished; the Job was deleted").as_str())
    );
    assert_eq!(status.metric_results[0].inconclusive, 0, "counted nowhere");
    env.finish().await
}

/// A Job the apiserver refuses (a container without an image passes the CRD's schema but
/// not the Job API's validation) is an Error measurement with the apiserver's reason;
/// with no errors tolerated, the run ends in Error and the rollout aborts.
#[tokio::test]
async fn a_job_the_apiserver_refuses_is_an_error_with_its_reason() -> Result<()> {
    let env = Env::new("job-refused").await?;
    canary_with_job_analysis(&env, template("succeed", "1s", 1)).await?;
    let mut refused = template("succeed", "1s", 1);
    let metric = &mut refused["spec"]["metrics"][0];
    metric["consecutiveErrorLimit"] = json!(0);
    metric["provider"]["job"]["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    env.apply(refused).await?;
    env.set_version("v2").await?;
    env.wait("aborted", |r| r.status.as_ref().is_some_and(|s| s.abort))
        .await?;
    let status = the_run(&env).await?.status.unwrap();
    assert_eq!(status.phase, Some(AnalysisPhase::Error), "{status:#?}");
    let m = &status.metric_results[0].measurements[0];
    assert_eq!(m.phase, AnalysisPhase::Error, "{m:#?}");
    let message = m.message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("the apiserver refused Job ")
            && message.contains("spec.template.spec.containers[0].image: Required value"),
        "{message}"
    );
    assert!(jobs(&env).await?.is_empty(), "no Job was made");
    // Give a wrongly repeating controller the chance to show it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = the_run(&env).await?.status.unwrap();
    assert_eq!(again.metric_results[0].error, 1, "{again:#?}");
    env.finish().await
}
