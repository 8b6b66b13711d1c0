//! kube-apiserver restarted in the middle of a rollout. Alone in its test binary: every
//! other test would see the outage too (cargo runs test binaries one after another).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;
use sluice_api::rollout::RolloutPhase;
use sluice_e2e::repo_root;
use sluice_e2e::rollout_env::{Env, hashes, weights};

#[tokio::test]
async fn the_running_controller_recovers_from_an_apiserver_restart_and_completes() -> Result<()> {
    let mut env = Env::new("apiserver").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [
                { "setWeight": 25 },
                { "pause": { "duration": "3s" } },
                { "setWeight": 50 },
                { "pause": { "duration": "3s" } },
                { "setWeight": 75 },
            ],
        }),
    )
    .await?;
    let (v1, _) = hashes(&env.wait_healthy_on_new_revision().await?);
    env.set_version("v2").await?;
    let paused = env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(weights(&paused).0, 25);

    let restart_started = Instant::now();
    let out = Command::new(repo_root().join("e2e/controlplane/plane.sh"))
        .arg("restart-apiserver")
        .output()
        .context("running plane.sh restart-apiserver")?;
    anyhow::ensure!(
        out.status.success(),
        "plane.sh restart-apiserver failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "apiserver restart: ready again after {:?}",
        restart_started.elapsed()
    );

    // The same controller process, never restarted, finishes the rollout: the steps
    // after the pause need it to scale and re-point Services through the new apiserver.
    let r = env.wait_healthy_on_new_revision().await?;
    let (v2, stable) = hashes(&r);
    assert_ne!(v2, v1);
    assert_eq!(stable, v2);
    env.wait_sizes(&v2, &v1, (4, 0)).await?;
    println!(
        "apiserver restart: rollout completed {:?} after the restart began",
        restart_started.elapsed()
    );
    let controller = env.controller.as_mut().context("controller")?;
    assert!(
        controller.running(),
        "the controller exited instead of reconnecting:\n{}",
        controller.log_tail()
    );
    env.finish().await
}
