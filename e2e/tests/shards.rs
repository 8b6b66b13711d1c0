//! Two controllers sharing a namespace by `--instance-id`: each serves only the Rollouts
//! of its shard, so neither ever writes to the other's.

use std::time::Duration;

use anyhow::Result;
use kube::Api;
use serde_json::json;
use sluice_api::Rollout;
use sluice_api::labels::CONTROLLER_INSTANCE_LABEL;
use sluice_api::rollout::RolloutPhase;
use sluice_e2e::rollout_env::{Env, STEP_TIMEOUT, pod_template};
use sluice_e2e::{ControllerProcess, wait_for};

fn rollout(name: &str, shard: Option<&str>) -> serde_json::Value {
    let labels = match shard {
        Some(id) => json!({ CONTROLLER_INSTANCE_LABEL: id }),
        None => json!({}),
    };
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": pod_template("v1")["spec"],
            },
            "strategy": { "canary": { "steps": [{ "setWeight": 50 }] } },
        },
    })
}

async fn healthy(api: &Api<Rollout>, name: &str) -> Result<()> {
    wait_for(&format!("{name} Healthy"), STEP_TIMEOUT, || async {
        let r = api.get(name).await?;
        Ok(r.status.and_then(|s| s.phase) == Some(RolloutPhase::Healthy))
    })
    .await
}

#[tokio::test]
async fn each_controller_serves_only_its_own_shard() -> Result<()> {
    // The Env's controller is the default one (no --instance-id); shard "blue" gets its own.
    let env = Env::new("shards").await?;
    let blue = ControllerProcess::start_with(env.ns(), &["--instance-id", "blue"])?;
    env.apply(rollout("plain", None)).await?;
    env.apply(rollout("in-blue", Some("blue"))).await?;
    env.apply(rollout("in-green", Some("green"))).await?;
    let api = env.rollouts();
    healthy(&api, "plain").await?;
    healthy(&api, "in-blue").await?;

    // No controller serves shard "green": its Rollout is never reconciled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let green = api.get("in-green").await?;
    assert!(green.status.is_none(), "{:?}", green.status);

    let ns = env.ns().to_string();
    let reconciled = |log: &str, name: &str| log.contains(&format!("rollout={ns}/{name} "));
    let default_log = std::fs::read_to_string(&env.controller.as_ref().unwrap().log)?;
    let blue_log = std::fs::read_to_string(&blue.log)?;
    assert!(reconciled(&default_log, "plain"), "{default_log}");
    assert!(!reconciled(&default_log, "in-blue"), "{default_log}");
    assert!(reconciled(&blue_log, "in-blue"), "{blue_log}");
    assert!(!reconciled(&blue_log, "plain"), "{blue_log}");
    assert!(!reconciled(&default_log, "in-green") && !reconciled(&blue_log, "in-green"));
    blue.kill();
    env.finish().await
}
