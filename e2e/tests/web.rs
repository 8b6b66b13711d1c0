//! The `web` analysis provider end to end: a Rollout's analysis step asks a JSON endpoint
//! the test runs on 127.0.0.1 (the controller is a local process), with the canary's
//! hash in the URL, and the Rollout completes or aborts on what the endpoint answers.

use anyhow::Result;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sluice_api::analysis::{AnalysisPhase, AnalysisRun};
use sluice_api::rollout::RolloutPhase;
use sluice_e2e::rollout_env::{Env, hashes};
use sluice_e2e::web_endpoint::WebEndpoint;

const HEALTHY: &str = r#"{"data":{"ok":true,"successPercent":0.97}}"#;
const UNHEALTHY: &str = r#"{"data":{"ok":false,"successPercent":0.41}}"#;

fn template() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": { "name": "health" },
        "spec": {
            "args": [{ "name": "health-url" }, { "name": "canary-hash" }],
            "metrics": [{
                "name": "health",
                "interval": "2s",
                "count": 3,
                "successCondition": "result.ok && result.successPercent >= 0.9",
                "provider": { "web": {
                    "url": "{{args.health-url}}/status?revision={{args.canary-hash}}",
                    "timeoutSeconds": 2,
                    "jsonPath": "{$.data}",
                } },
            }],
        },
    })
}

async fn canary_with_web_analysis(env: &Env, endpoint: &WebEndpoint) -> Result<()> {
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(template()).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [
                { "setWeight": 50 },
                { "analysis": {
                    "templates": [{ "templateName": "health" }],
                    "args": [
                        { "name": "health-url", "value": endpoint.url },
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

#[tokio::test]
async fn a_healthy_endpoint_lets_the_rollout_complete() -> Result<()> {
    let env = Env::new("web-ok").await?;
    let endpoint = WebEndpoint::start(200, HEALTHY).await?;
    canary_with_web_analysis(&env, &endpoint).await?;
    env.set_version("v2").await?;
    let (v2, _) = hashes(&env.wait_step(1, RolloutPhase::Progressing).await?);
    let r = env.wait_healthy_on_new_revision().await?;
    assert_eq!(r.status.unwrap().stable_rs.as_deref(), Some(v2.as_str()));

    let status = the_run(&env).await?.status.unwrap();
    assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:#?}");
    let metric = &status.metric_results[0];
    assert_eq!(metric.successful, 3, "{metric:#?}");
    for m in &metric.measurements {
        // The value the conditions saw: the part jsonPath picked, as JSON.
        assert_eq!(
            m.value.as_deref(),
            Some(r#"{"ok":true,"successPercent":0.97}"#),
            "{m:#?}"
        );
    }
    // The URL carried the canary's hash: `{{args.canary-hash}}` was substituted.
    let asked = endpoint.requests();
    assert!(
        asked.len() >= 3 && asked.iter().all(|t| *t == format!("/status?revision={v2}")),
        "{asked:?}"
    );
    env.finish().await
}

#[tokio::test]
async fn an_unhealthy_endpoint_aborts_the_rollout() -> Result<()> {
    let env = Env::new("web-bad").await?;
    let endpoint = WebEndpoint::start(200, HEALTHY).await?;
    canary_with_web_analysis(&env, &endpoint).await?;
    endpoint.set(200, UNHEALTHY);
    env.set_version("v2").await?;
    let r = env
        .wait("aborted", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.abort && s.phase == Some(RolloutPhase::Degraded))
        })
        .await?;
    let (v2, _) = hashes(&r);
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
    assert_ne!(
        status.stable_rs.as_deref(),
        Some(v2.as_str()),
        "never promoted"
    );

    let run = the_run(&env).await?.status.unwrap();
    assert_eq!(run.phase, Some(AnalysisPhase::Failed), "{run:#?}");
    let m = &run.metric_results[0].measurements[0];
    assert_eq!(m.phase, AnalysisPhase::Failed, "{m:#?}");
    assert_eq!(
        m.value.as_deref(),
        Some(r#"{"ok":false,"successPercent":0.41}"#)
    );
    assert_eq!(
        m.message.as_deref(),
        Some("successCondition does not hold"),
        "{m:#?}"
    );
    env.finish().await
}
