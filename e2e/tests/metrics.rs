//! The controller's `/metrics`, `/healthz` and `/readyz`, scraped by the real Prometheus:
//! the queried series follow a rollout as it progresses.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::Env;
use sluice_e2e::wait_for;

/// The value of an instant PromQL query (0 when it returns nothing).
async fn query(prometheus: &str, promql: &str) -> Result<f64> {
    let text = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await?
        .text()
        .await?;
    let body: Value = serde_json::from_str(&text)?;
    let result = &body["data"]["result"];
    Ok(result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0))
}

#[tokio::test]
async fn prometheus_scrapes_the_controller_and_its_series_follow_a_rollout() -> Result<()> {
    let prometheus = std::env::var("SLUICE_PROMETHEUS_URL").context("SLUICE_PROMETHEUS_URL")?;
    let targets =
        std::env::var("SLUICE_PROMETHEUS_TARGETS").context("SLUICE_PROMETHEUS_TARGETS")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let env = Env::with_controller_args("metrics", &["--metrics-addr", &addr]).await?;
    let http = reqwest::Client::new();
    wait_for("/readyz answers 200", Duration::from_secs(30), || async {
        Ok(http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await?
            .status()
            == 200)
    })
    .await?;
    assert_eq!(
        http.get(format!("http://{addr}/healthz"))
            .send()
            .await?
            .status(),
        200
    );

    // Registered with Prometheus under a job of its own.
    let job = env.ns().to_string();
    let target = std::path::Path::new(&targets).join(format!("{job}.json"));
    let tmp = target.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(&json!([{ "targets": [addr], "labels": { "job": job } }]))?,
    )?;
    std::fs::rename(&tmp, &target)?;

    env.services(&["web-stable", "web-canary"]).await?;
    env.rollout(
        2,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [{ "setWeight": 50 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let phase =
        |p: &str| format!("sluice_rollouts{{job=\"{job}\",phase=\"{p}\",strategy=\"canary\"}}");
    let reconciles = format!(
        "sum(sluice_reconciles_total{{job=\"{job}\",controller=\"rollout\",result=\"success\"}})"
    );
    let scraped = |promql: String, want: f64| {
        let prometheus = prometheus.clone();
        async move {
            wait_for(
                &format!("{promql} = {want}"),
                Duration::from_secs(30),
                || async { Ok(query(&prometheus, &promql).await? == want) },
            )
            .await
        }
    };
    scraped(phase("Healthy"), 1.0).await?;
    scraped(format!("sluice_leader{{job=\"{job}\"}}"), 1.0).await?;
    let before = query(&prometheus, &reconciles).await?;
    assert!(before >= 1.0, "reconciles counted: {before}");

    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    scraped(phase("Paused"), 1.0).await?;
    scraped(phase("Healthy"), 0.0).await?;
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    scraped(phase("Healthy"), 1.0).await?;
    let after = query(&prometheus, &reconciles).await?;
    assert!(
        after > before,
        "more reconciles after the rollout: {before} -> {after}"
    );
    // Every reconcile's wait in the queue is observed; nothing waits once it is Healthy.
    let waits =
        format!("sum(sluice_queue_wait_seconds_count{{job=\"{job}\",controller=\"rollout\"}})");
    wait_for(
        "queue waits observed for the reconciles",
        Duration::from_secs(30),
        || async { Ok(query(&prometheus, &waits).await? >= after) },
    )
    .await?;
    scraped(
        format!("sluice_queue_depth{{job=\"{job}\",controller=\"rollout\"}}"),
        0.0,
    )
    .await?;

    // The exposition itself, with the histogram and the help texts.
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for name in [
        "sluice_reconcile_duration_seconds_bucket",
        "# HELP sluice_cache_waits",
        // Exported from the start, whether or not a reconcile has waited yet.
        "sluice_cache_waits_total{controller=\"rollout\"}",
        "sluice_queue_depth{controller=\"analysisrun\"} 0",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let _ = std::fs::remove_file(&target);
    env.finish().await
}
