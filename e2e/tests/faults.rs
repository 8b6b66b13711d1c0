//! Faults end to end: the controller killed over and over while a canary with analysis
//! walks its steps. Whatever moment a kill lands on, the next process must pick up from
//! the stored status and the cluster: no step repeated or skipped, no AnalysisRun made
//! twice, every pause honoured.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use sluice_api::Rollout;
use sluice_api::analysis::{AnalysisPhase, AnalysisRun};
use sluice_api::rollout::RolloutPhase;
use sluice_e2e::ControllerProcess;
use sluice_e2e::rollout_env::{Env, hashes, ingress};

fn prometheus_url() -> String {
    std::env::var("SLUICE_PROMETHEUS_URL")
        .expect("SLUICE_PROMETHEUS_URL (eval \"$(e2e/controlplane/plane.sh env)\")")
}

/// What the Rollout's status said, each time it changed, and when the test saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    index: i32,
    phase: Option<RolloutPhase>,
    weight: i32,
    on_new_revision: bool,
}

const PAUSE_SECS: u64 = 6;
const MEASUREMENTS: i32 = 7;

#[tokio::test]
async fn a_controller_killed_at_every_step_boundary_repeats_and_skips_nothing() -> Result<()> {
    let mut env = Env::new("kills").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(ingress("web", "web-stable")).await?;
    // Always healthy: what is under test is the bookkeeping across restarts, not the
    // verdict. Seven measurements two seconds apart keep each analysis step alive across
    // several kills.
    env.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": { "name": "always-up" },
        "spec": { "metrics": [{
            "name": "up", "interval": "2s", "count": MEASUREMENTS,
            "successCondition": "result[0] == 1.0",
            "provider": { "prometheus": { "address": prometheus_url(), "query": "vector(1)" } },
        }] },
    }))
    .await?;
    let analysis = json!({ "analysis": { "templates": [{ "templateName": "always-up" }] } });
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "nginx": { "stableIngress": "web" } },
            "steps": [
                { "setWeight": 20 },
                analysis,
                { "setWeight": 40 },
                { "pause": { "duration": format!("{PAUSE_SECS}s") } },
                { "setWeight": 70 },
                analysis,
            ],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;

    // Every status change, from a watch (a poll could miss a short-lived index).
    let stable_before = hashes(&env.rollouts().get("web").await?).1;
    let (mut rollouts_seen, watch) = env.watch_rollout();
    let seen = |(at, r): (Instant, Rollout)| {
        let s = r.status.unwrap_or_default();
        Seen {
            at,
            index: s.current_step_index.unwrap_or(-1),
            phase: s.phase,
            weight: s.canary.and_then(|c| c.weights).map_or(0, |w| w.canary),
            on_new_revision: s.current_pod_hash.as_deref() != Some(&stable_before),
        }
    };

    env.set_version("v2").await?;
    let started = Instant::now();
    let mut kills = 0;
    let mut history: Vec<Seen> = Vec::new();
    let mut index_at_start = -1;
    let mut process_started = Instant::now();
    loop {
        while let Ok(item) = rollouts_seen.try_recv() {
            history.push(seen(item));
        }
        let last = history.last().filter(|s| s.on_new_revision);
        let done = last.is_some_and(|s| s.phase == Some(RolloutPhase::Healthy));
        if done {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(240),
            "the rollout did not complete in 240 s under {kills} kills; seen: {history:#?}"
        );
        let index = last.map_or(-1, |s| s.index);
        // At a step boundary (the index moved since this process started), or when the
        // process has had a second and a half: kill it, start the next.
        let boundary = index != index_at_start;
        if boundary || process_started.elapsed() >= Duration::from_millis(1500) {
            if let Some(c) = env.controller.take() {
                c.kill();
                kills += 1;
            }
            env.controller = Some(ControllerProcess::start(env.ns())?);
            process_started = Instant::now();
            index_at_start = index;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    watch.abort();
    println!("faults: rollout completed in {took:?} under {kills} SIGKILLs");
    assert!(kills >= 20, "only {kills} kills landed during the rollout");

    let new: Vec<&Seen> = history.iter().filter(|s| s.on_new_revision).collect();
    // No step repeated: the index never goes back. No step skipped: every index was
    // stood at, 0 to 6 (6 = all done).
    let indices: Vec<i32> = new.iter().map(|s| s.index).collect();
    assert!(
        indices.windows(2).all(|w| w[0] <= w[1]),
        "the step index went back: {indices:?}"
    );
    let mut visited = indices.clone();
    visited.dedup();
    assert_eq!(visited, vec![0, 1, 2, 3, 4, 5, 6], "{new:#?}");

    // The pause: entered once, at its weight, and it lasted its duration.
    let paused: Vec<&&Seen> = new
        .iter()
        .filter(|s| s.index == 3 && s.phase == Some(RolloutPhase::Paused))
        .collect();
    let first_paused = paused.first().context("never seen paused at step 3")?;
    assert!(
        paused.iter().all(|s| s.weight == 40),
        "paused at step 3 with another weight than 40: {paused:#?}"
    );
    let left = new
        .iter()
        .find(|s| s.index == 4)
        .context("never left the pause")?;
    // Stored start times have whole seconds, so the pause can look up to 1 s shorter.
    let held = left.at.duration_since(first_paused.at);
    assert!(
        held >= Duration::from_secs(PAUSE_SECS - 1),
        "a {PAUSE_SECS}s pause ended after {held:?}"
    );

    // One run per analysis step, each measured to its count and successful.
    let runs: Api<AnalysisRun> = Api::namespaced(env.client.clone(), env.ns());
    let mut runs: Vec<AnalysisRun> = runs.list(&ListParams::default()).await?.items;
    runs.sort_by_key(|r| r.metadata.name.clone());
    let summary: Vec<(String, Option<AnalysisPhase>, usize)> = runs
        .iter()
        .map(|r| {
            let s = r.status.clone().unwrap_or_default();
            let taken = s
                .metric_results
                .iter()
                .map(|m| m.count.max(0) as usize)
                .sum();
            (r.metadata.name.clone().unwrap_or_default(), s.phase, taken)
        })
        .collect();
    assert_eq!(
        runs.len(),
        2,
        "one AnalysisRun per analysis step: {summary:#?}"
    );
    for (name, phase, taken) in &summary {
        assert!(name.ends_with("-1"), "a run was made again: {summary:#?}");
        assert_eq!(*phase, Some(AnalysisPhase::Successful), "{summary:#?}");
        assert_eq!(*taken, MEASUREMENTS as usize, "{summary:#?}");
    }

    // Each step completed once: no StepCompleted Event repeated, neither as a series of
    // one process nor as a second Event from the next process. (One may be missing: a
    // process killed after its status write and before its Event.)
    let completed = env.steps_completed().await?;
    let mut notes: Vec<&str> = completed.iter().map(|(n, _)| n.as_str()).collect();
    notes.sort();
    let all = notes.len();
    notes.dedup();
    assert!(
        notes.len() == all && completed.iter().all(|(_, count)| *count == 1),
        "steps completed twice: {completed:?}"
    );
    env.finish().await
}
