//! GitOps health: what Argo CD (the shipped Lua health check, run in gopher-lua as Argo
//! CD runs it) and Flux / Helm 4 (kstatus' `status.Compute`) report for a Rollout in each
//! state, evaluated on real Rollouts captured from the local control plane.
//!
//! Both evaluators are `sluice-gitops-health` (`e2e/gitops-health`, built and cached by
//! `e2e/controlplane/build.sh`). The captured objects are also committed as fixtures, so
//! `health_of_the_committed_fixtures` checks the script without a plane; refresh them
//! with `SLUICE_GITOPS_CAPTURE=e2e/tests/fixtures/gitops-health` on the e2e run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_api::Rollout;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::{Env, STEP_TIMEOUT, pod_template};
use sluice_e2e::{repo_root, wait_for};

/// Each state a Rollout can be in, with what Argo CD and kstatus must say about it.
const EXPECTED: &[(&str, &str, &str)] = &[
    // (state, Argo CD health, kstatus status)
    // Created, before the controller's first status write. kstatus has nothing to go on
    // (no observedGeneration, no conditions) and falls back to Current; a controller
    // cannot write status before it sees the object, so this is pinned, not fixed.
    ("created", "Progressing", "Current"),
    ("healthy", "Healthy", "Current"),
    ("observing", "Progressing", "InProgress"),
    ("progressing", "Progressing", "InProgress"),
    ("paused", "Suspended", "InProgress"),
    ("aborted", "Degraded", "Failed"),
    ("deadline", "Degraded", "Failed"),
    ("invalid", "Degraded", "Failed"),
];

const LUA_SCRIPT: &str = "charts/sluice/files/argocd-health.lua";
const FIXTURES: &str = "e2e/tests/fixtures/gitops-health";

#[derive(Debug, Clone, PartialEq)]
struct Health {
    status: String,
    message: String,
}

/// The cached `sluice-gitops-health` binary: `SLUICE_GITOPS_HEALTH_BIN`, else where
/// `e2e/controlplane/lib.sh` says build.sh put it.
fn tool() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SLUICE_GITOPS_HEALTH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(". e2e/controlplane/lib.sh && echo \"$GITOPS_HEALTH_BIN/sluice-gitops-health\"")
        .current_dir(repo_root())
        .output()
        .context("running bash to source e2e/controlplane/lib.sh")?;
    let path = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    if !path.is_file() {
        bail!(
            "{} is not built: run e2e/controlplane/build.sh (make binaries)",
            path.display()
        );
    }
    Ok(path)
}

fn evaluate(tool: &Path, object: &Value, args: &[&str]) -> Result<Health> {
    let mut child = Command::new(tool)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", tool.display()))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(&serde_json::to_vec(object)?)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} {args:?} failed: {}",
            tool.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(Health {
        status: v["status"].as_str().unwrap_or_default().to_string(),
        message: v["message"].as_str().unwrap_or_default().to_string(),
    })
}

/// Argo CD's and kstatus' verdicts on one object.
fn judge(tool: &Path, object: &Value) -> Result<(Health, Health)> {
    Ok((
        evaluate(tool, object, &["argocd", LUA_SCRIPT])?,
        evaluate(tool, object, &["kstatus"])?,
    ))
}

/// Checks every state's verdicts against [`EXPECTED`]; returns the table as text.
fn check_all(tool: &Path, objects: &[(String, Value)]) -> Result<String> {
    let mut table = String::from("state | Argo CD (Lua) | kstatus\n");
    let mut wrong = Vec::new();
    for (state, argo_want, kstatus_want) in EXPECTED {
        let (_, object) = objects
            .iter()
            .find(|(s, _)| s == state)
            .with_context(|| format!("no object captured in state {state}"))?;
        let (argo, kstatus) = judge(tool, object)?;
        table.push_str(&format!(
            "{state} | {} ({}) | {} ({})\n",
            argo.status, argo.message, kstatus.status, kstatus.message
        ));
        if argo.status != *argo_want || argo.message.is_empty() {
            wrong.push(format!("{state}: Argo CD {argo:?}, want {argo_want}"));
        }
        if kstatus.status != *kstatus_want {
            wrong.push(format!("{state}: kstatus {kstatus:?}, want {kstatus_want}"));
        }
    }
    if !wrong.is_empty() {
        bail!("{}\n{table}", wrong.join("\n"));
    }
    Ok(table)
}

#[test]
fn health_of_the_committed_fixtures() -> Result<()> {
    let tool = tool()?;
    let dir = repo_root().join(FIXTURES);
    let mut objects = Vec::new();
    for (state, _, _) in EXPECTED {
        let path = dir.join(format!("{state}.json"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        objects.push((state.to_string(), serde_json::from_str(&text)?));
    }
    let table = check_all(&tool, &objects)?;
    eprintln!("{table}");
    Ok(())
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is(object: &Value, type_: &str, status: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == status)
}

fn observed(object: &Value) -> bool {
    object["metadata"]["generation"].as_i64().is_some()
        && object["status"]["observedGeneration"] == object["metadata"]["generation"]
}

fn rollout(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["selector"] = json!({ "matchLabels": { "app": name } });
    spec["template"] = pod_template("v1");
    spec["template"]["metadata"]["labels"]["app"] = json!(name);
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": name },
        "spec": spec,
    })
}

/// Every version of every Rollout of the namespace, as the apiserver serves it.
struct Capture {
    seen: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Capture {
    /// Returns once the watch is established, so no later version is missed.
    async fn start(env: &Env) -> Result<Self> {
        use futures::StreamExt;
        use kube::runtime::watcher::{self, Event};
        let api: Api<DynamicObject> = Api::namespaced_with(
            env.client.clone(),
            env.ns(),
            &ApiResource::erase::<Rollout>(&()),
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let (ready, listed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready);
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::InitDone) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Apply(obj) | Event::InitApply(obj)) => {
                        if let Ok(v) = serde_json::to_value(&obj) {
                            sink.lock().unwrap().push(v);
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(STEP_TIMEOUT, listed)
            .await
            .context("the Rollout watch did not start")??;
        Ok(Capture { seen, task })
    }

    /// Waits for the first version of Rollout `name` that satisfies `pred`.
    async fn first(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let find = || {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .find(|o| o["metadata"]["name"] == name && pred(o))
                .cloned()
        };
        let result = wait_for(&format!("{name}: {what}"), STEP_TIMEOUT, || async {
            Ok(find().is_some())
        })
        .await;
        if let Err(e) = result {
            let last = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|o| o["metadata"]["name"] == name)
                .map(|o| o["status"].clone());
            bail!("{e:#}\nlast status of {name}: {last:#?}");
        }
        Ok(find().unwrap())
    }
}

/// What a fixture keeps: the object without the fields that only say when and where it
/// was captured.
fn fixture(mut object: Value) -> Value {
    if let Some(meta) = object["metadata"].as_object_mut() {
        for key in [
            "managedFields",
            "uid",
            "resourceVersion",
            "creationTimestamp",
        ] {
            meta.remove(key);
        }
        meta.insert("namespace".into(), json!("demo"));
    }
    object
}

#[tokio::test]
async fn argo_cd_and_kstatus_read_every_state_of_real_rollouts() -> Result<()> {
    let tool = tool()?;
    let env = Env::new("gitops").await?;
    let capture = Capture::start(&env).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        env.ns(),
        &ApiResource::erase::<Rollout>(&()),
    );

    // web: healthy, then a new version observed late, paused at a step, then aborted.
    env.rollout(
        4,
        json!({ "steps": [{ "setWeight": 50 }, { "pause": {} }] }),
    )
    .await?;
    // late: its new version's pods are never scheduled, so it misses its deadline.
    env.apply(rollout(
        "late",
        json!({ "replicas": 2, "progressDeadlineSeconds": 5,
                "strategy": { "canary": { "steps": [{ "setWeight": 50 }, { "pause": {} }] } } }),
    ))
    .await?;
    // orphan: its Services do not exist, which only the controller can tell.
    env.apply(rollout(
        "orphan",
        json!({ "replicas": 1, "strategy": { "canary": {
            "canaryService": "orphan-canary", "stableService": "orphan-stable", "steps": [] } } }),
    ))
    .await?;

    let healthy_at = |o: &Value| {
        observed(o)
            && o["status"]["phase"] == "Healthy"
            && o["status"]["stableRS"] == o["status"]["currentPodHash"]
    };
    let created = capture
        .first("web", "created, no status yet", |o| o["status"].is_null())
        .await?;
    let healthy = capture.first("web", "Healthy", healthy_at).await?;
    capture.first("late", "Healthy", healthy_at).await?;

    env.set_version("v2").await?;
    let generation = healthy["metadata"]["generation"].as_i64().unwrap_or(0);
    let observing = capture
        .first("web", "a new generation not yet observed", |o| {
            o["metadata"]["generation"].as_i64() > Some(generation) && !observed(o)
        })
        .await?;
    let paused = capture
        .first("web", "Paused at the pause step", |o| {
            observed(o) && o["status"]["phase"] == "Paused" && is(o, "Paused", "True")
        })
        .await?;
    env.act(UserAction::Abort).await?;
    let aborted = capture
        .first("web", "Degraded by the abort", |o| {
            observed(o)
                && o["status"]["phase"] == "Degraded"
                && is(o, "Stalled", "True")
                && condition(o, "Progressing").is_some_and(|c| c["reason"] == "RolloutAborted")
        })
        .await?;

    let patch = json!({ "spec": { "template": {
        "metadata": { "annotations": { "version": "v2" } },
        // No node has this label: the new pods stay Pending, never ready.
        "spec": { "nodeSelector": { "sluice.dev/no-such-node": "true" } },
    } } });
    api.patch("late", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let progressing = capture
        .first("late", "Progressing on the new revision", |o| {
            observed(o)
                && o["status"]["phase"] == "Progressing"
                && o["status"]["stableRS"] != o["status"]["currentPodHash"]
                && is(o, "Reconciling", "True")
        })
        .await?;
    let deadline = capture
        .first("late", "past its progress deadline", |o| {
            observed(o)
                && o["status"]["phase"] == "Degraded"
                && condition(o, "Progressing")
                    .is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded")
        })
        .await?;
    let invalid = capture
        .first("orphan", "InvalidSpec", |o| {
            observed(o) && is(o, "InvalidSpec", "True")
        })
        .await?;
    capture.task.abort();

    let objects: Vec<(String, Value)> = [
        ("created", created),
        ("healthy", healthy),
        ("observing", observing),
        ("progressing", progressing),
        ("paused", paused),
        ("aborted", aborted),
        ("deadline", deadline),
        ("invalid", invalid),
    ]
    .into_iter()
    .map(|(s, o)| (s.to_string(), fixture(o)))
    .collect();
    if let Some(dir) = std::env::var_os("SLUICE_GITOPS_CAPTURE") {
        let dir = repo_root().join(dir);
        std::fs::create_dir_all(&dir)?;
        for (state, object) in &objects {
            let mut text = serde_json::to_string_pretty(object)?;
            text.push('\n');
            std::fs::write(dir.join(format!("{state}.json")), text)?;
        }
    }
    let table = check_all(&tool, &objects)?;
    eprintln!("{table}");
    // The fixtures stay readable by the typed client too.
    for (state, object) in &objects {
        serde_json::from_value::<Rollout>(object.clone())
            .with_context(|| format!("{state} is not a Rollout"))?;
    }
    env.finish().await
}
