//! User actions racing the controller's own status writes, hundreds of times, on the real
//! plane: no promote, abort, retry or promote-full may ever be lost (overwritten by a
//! status the controller planned before it saw the action).
//!
//! Each action is sent the moment the Rollout reaches the state it acts on, which is when
//! the controller is still writing (conditions, replica counts as pods come up), and some
//! come right after another (an abort followed at once by a retry). Each action's effect
//! is then required: a lost promote leaves the Rollout paused for ever, a lost abort
//! leaves it progressing, a lost retry leaves it Degraded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use sluice_api::Rollout;
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::{self, UserAction};
use sluice_e2e::rollout_env::{Env, pod_template};

/// Rollouts acted on at once, and rollouts each walks (6 actions each).
const ROLLOUTS: usize = 10;
const CYCLES: usize = 5;
/// Long enough for a few steps on a loaded 2-core machine, short of "never".
const EFFECT_TIMEOUT: Duration = Duration::from_secs(60);

struct Race {
    client: Client,
    namespace: String,
    cache: Store<Rollout>,
    actions: AtomicUsize,
}

impl Race {
    fn get(&self, name: &str) -> Option<Arc<Rollout>> {
        self.cache
            .get(&ObjectRef::new(name).within(&self.namespace))
    }

    /// Waits (on the watch cache, no API reads) until `name` satisfies `pred`.
    async fn wait(&self, name: &str, what: &str, pred: impl Fn(&Rollout) -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(r) = self.get(name)
                && pred(&r)
            {
                return Ok(());
            }
            if start.elapsed() > EFFECT_TIMEOUT {
                let status = self.get(name).and_then(|r| r.status.clone());
                bail!("{name}: {what} not seen within {EFFECT_TIMEOUT:?}; status: {status:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn act(&self, name: &str, action: UserAction) -> Result<()> {
        actions::apply(&self.client, &self.namespace, name, action)
            .await
            .with_context(|| format!("{name}: {action:?}"))?;
        self.actions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn status(r: &Rollout) -> sluice_api::rollout::RolloutStatus {
    r.status.clone().unwrap_or_default()
}

fn paused_at(index: i32) -> impl Fn(&Rollout) -> bool {
    move |r| {
        let s = status(r);
        r.metadata.generation == s.observed_generation
            && s.current_step_index == Some(index)
            && s.phase == Some(RolloutPhase::Paused)
            && !s.abort
    }
}

/// Healthy on the template of `version` (the `version` annotation of `pod_template`).
fn healthy_on(version: &str) -> impl Fn(&Rollout) -> bool {
    let version = version.to_string();
    move |r| {
        let s = status(r);
        let annotations = r
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref());
        annotations.and_then(|a| a.get("version")) == Some(&version)
            && r.metadata.generation == s.observed_generation
            && s.phase == Some(RolloutPhase::Healthy)
            && s.stable_rs.is_some()
            && s.stable_rs == s.current_pod_hash
    }
}

/// One Rollout's cycles: each a new version walked through every kind of action.
async fn walk(race: Arc<Race>, name: String) -> Result<()> {
    let api: Api<Rollout> = Api::namespaced(race.client.clone(), &race.namespace);
    for cycle in 0..CYCLES {
        let version = format!("v{}", cycle + 2);
        let template = pod_template(&version);
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "template": template } })),
        )
        .await?;

        // Promote the moment the first pause is reached: the Rollout must move on.
        race.wait(&name, "paused at step 1", paused_at(1)).await?;
        race.act(&name, UserAction::Promote).await?;
        race.wait(&name, "past step 1 after a promote", |r| {
            status(r).current_step_index.unwrap_or(0) >= 2
        })
        .await?;

        // Abort at the second pause: the Rollout must go Degraded and stay aborted.
        race.wait(&name, "paused at step 3", paused_at(3)).await?;
        race.act(&name, UserAction::Abort).await?;
        race.wait(&name, "aborted after an abort", |r| {
            let s = status(r);
            s.abort && s.phase == Some(RolloutPhase::Degraded)
        })
        .await?;

        // Retry: back to the pause it was aborted at.
        race.act(&name, UserAction::Retry).await?;
        race.wait(&name, "paused at step 3 after a retry", paused_at(3))
            .await?;

        // Abort and retry back to back, while the controller is still writing the
        // first: the retry is the last word and must win.
        race.act(&name, UserAction::Abort).await?;
        race.act(&name, UserAction::Retry).await?;
        race.wait(&name, "paused at step 3 after abort + retry", paused_at(3))
            .await?;

        // Promote fully: done, on the new version.
        race.act(&name, UserAction::PromoteFull).await?;
        race.wait(&name, "Healthy after a promote-full", healthy_on(&version))
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn no_user_action_is_lost_to_the_controllers_own_writes() -> Result<()> {
    let env = Env::new("race").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    let names: Vec<String> = (0..ROLLOUTS).map(|i| format!("web-{i}")).collect();
    for name in &names {
        env.apply(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": name },
            "spec": {
                "replicas": 4,
                "selector": { "matchLabels": { "app": "web" } },
                "template": pod_template("v1"),
                "strategy": { "canary": {
                    "scaleDownDelaySeconds": 0,
                    "abortScaleDownDelaySeconds": 0,
                    "steps": [
                        { "setWeight": 25 }, { "pause": {} },
                        { "setWeight": 50 }, { "pause": {} },
                        { "setWeight": 75 },
                    ],
                } },
            },
        }))
        .await?;
    }

    let (cache, writer) = reflector::store();
    let watch = tokio::spawn(
        watcher(env.rollouts(), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .for_each(|_| async {}),
    );
    let race = Arc::new(Race {
        client: env.client.clone(),
        namespace: env.ns().to_string(),
        cache,
        actions: AtomicUsize::new(0),
    });
    race.cache.wait_until_ready().await?;
    for name in &names {
        race.wait(name, "Healthy on v1", healthy_on("v1")).await?;
    }

    let started = Instant::now();
    let walks: Vec<_> = names
        .iter()
        .map(|name| tokio::spawn(walk(race.clone(), name.clone())))
        .collect();
    let mut failures = Vec::new();
    for walk in walks {
        if let Err(e) = walk.await? {
            failures.push(format!("{e:#}"));
        }
    }
    watch.abort();
    let acted = race.actions.load(Ordering::Relaxed);
    println!(
        "{acted} user actions on {ROLLOUTS} Rollouts in {:?}, {} lost",
        started.elapsed(),
        failures.len()
    );
    if !failures.is_empty() {
        let log = env
            .controller
            .as_ref()
            .map(|c| c.log_tail())
            .unwrap_or_default();
        bail!("{}\ncontroller log:\n{log}", failures.join("\n"));
    }
    assert_eq!(acted, ROLLOUTS * CYCLES * 6, "every action was sent");
    env.finish().await
}
