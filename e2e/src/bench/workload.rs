//! The workload both controllers get: N Rollouts of a basic canary (no traffic router, so
//! the split is a replica ratio for both), the same steps, the same pod template; and
//! what "Healthy" and "at step i" mean in each controller's status.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::api::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

/// The controller under test.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Controller {
    Sluice,
    ArgoRollouts,
}

impl Controller {
    pub fn name(self) -> &'static str {
        match self {
            Controller::Sluice => "sluice",
            Controller::ArgoRollouts => "argo-rollouts",
        }
    }

    pub fn rollout_resource(self) -> ApiResource {
        let gvk = match self {
            Controller::Sluice => GroupVersionKind::gvk("sluice.dev", "v1alpha1", "Rollout"),
            Controller::ArgoRollouts => GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"),
        };
        ApiResource::from_gvk_with_plural(&gvk, "rollouts")
    }
}

/// One canary step, in the syntax both controllers share.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Step {
    SetWeight(u8),
    /// A timed pause; the benchmark never waits on a human.
    Pause(Duration),
}

/// Parses `setWeight=20,pause=5s,setWeight=50,pause=5s`.
pub fn parse_steps(text: &str) -> Result<Vec<Step>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (key, value) = s
                .split_once('=')
                .with_context(|| format!("step {s:?}: want key=value"))?;
            match key {
                "setWeight" => {
                    let w: u8 = value.parse().with_context(|| format!("step {s:?}"))?;
                    if w > 100 {
                        bail!("step {s:?}: weight above 100");
                    }
                    Ok(Step::SetWeight(w))
                }
                "pause" => Ok(Step::Pause(
                    humantime::parse_duration(value).with_context(|| format!("step {s:?}"))?,
                )),
                _ => bail!("step {s:?}: only setWeight=N and pause=DURATION"),
            }
        })
        .collect()
}

fn steps_json(steps: &[Step]) -> Value {
    steps
        .iter()
        .map(|s| match s {
            Step::SetWeight(w) => json!({ "setWeight": w }),
            Step::Pause(d) => json!({ "pause": { "duration": format!("{}s", d.as_secs()) } }),
        })
        .collect()
}

pub fn pod_template(app: &str, version: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": app }, "annotations": { "bench.sluice.dev/version": version } },
        "spec": { "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10" }] },
    })
}

/// The same Rollout for either controller: only the apiVersion differs.
pub fn rollout(controller: Controller, name: &str, replicas: i32, steps: &[Step]) -> Value {
    let api_version = controller.rollout_resource().api_version;
    json!({
        "apiVersion": api_version, "kind": "Rollout",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": pod_template(name, "v1"),
            "strategy": { "canary": { "steps": steps_json(steps) } },
        },
    })
}

/// What the benchmark reads from a Rollout's status (both controllers use these names).
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub generation: i64,
    /// sluice stores an integer, Argo Rollouts a string; both mean metadata.generation.
    pub observed_generation: Option<i64>,
    pub phase: Option<String>,
    pub step_index: Option<i64>,
    pub paused: bool,
    /// `startTime` of the step's pause condition as the controller recorded it (both
    /// controllers store whole seconds, and time the pause from this value).
    pub pause_start: Option<jiff::Timestamp>,
    pub stable_rs: Option<String>,
    pub current_pod_hash: Option<String>,
}

impl Seen {
    pub fn of(obj: &Value) -> Seen {
        let s = &obj["status"];
        let observed_generation = match &s["observedGeneration"] {
            Value::Number(n) => n.as_i64(),
            Value::String(t) => t.parse().ok(),
            _ => None,
        };
        let text = |v: &Value| v.as_str().filter(|t| !t.is_empty()).map(String::from);
        Seen {
            generation: obj["metadata"]["generation"].as_i64().unwrap_or(0),
            observed_generation,
            phase: text(&s["phase"]),
            step_index: s["currentStepIndex"].as_i64(),
            paused: s["pauseConditions"]
                .as_array()
                .is_some_and(|a| !a.is_empty()),
            pause_start: s["pauseConditions"].as_array().and_then(|a| {
                a.iter()
                    .find(|c| c["reason"] == "CanaryPauseStep")
                    .and_then(|c| c["startTime"].as_str()?.parse().ok())
            }),
            stable_rs: text(&s["stableRS"]),
            current_pod_hash: text(&s["currentPodHash"]),
        }
    }

    /// The status describes the object's current generation, and that is at least `g`.
    /// (At least: Argo Rollouts writes its Rollouts' spec on first sight, adding
    /// `resources: {}` to containers, which bumps the generation once more.)
    pub fn is_current(&self, g: i64) -> bool {
        self.generation >= g && self.observed_generation == Some(self.generation)
    }

    /// Healthy at generation `g` or later: phase Healthy, the status is of the current
    /// generation, and the stable ReplicaSet is the current template's (the rollout is
    /// complete, not merely reporting on an old revision).
    pub fn healthy(&self, g: i64) -> bool {
        self.is_current(g)
            && self.phase.as_deref() == Some("Healthy")
            && self.stable_rs.is_some()
            && self.stable_rs == self.current_pod_hash
    }
}
