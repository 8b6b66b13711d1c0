//! A namespace, a real controller process and helpers to drive one Rollout named `web`
//! through a rollout and wait on what it does. Shared by the canary and analysis tests.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use sluice_api::Rollout;
use sluice_api::labels::POD_TEMPLATE_HASH_LABEL;
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::{self, UserAction};

use crate::{ControllerProcess, TestNamespace, apply, client, install_crds, wait_for};

pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// One test's world.
pub struct Env {
    pub client: Client,
    pub ns: TestNamespace,
    pub controller: Option<ControllerProcess>,
}

impl Env {
    pub async fn new(prefix: &str) -> Result<Self> {
        Self::with_controller_args(prefix, &[]).await
    }

    /// As `new`, with extra controller arguments (e.g. `--dashboard-addr`).
    pub async fn with_controller_args(prefix: &str, extra: &[&str]) -> Result<Self> {
        Self::with_controller(prefix, |ns| ControllerProcess::start_with(ns, extra)).await
    }

    /// As `new`, with the controller `start` starts in the test's namespace (e.g.
    /// [`ControllerProcess::start_as_identity`] another identity).
    pub async fn with_controller(
        prefix: &str,
        start: impl FnOnce(&str) -> Result<ControllerProcess>,
    ) -> Result<Self> {
        let client = client().await?;
        install_crds(&client).await?;
        let ns = TestNamespace::create(&client, prefix).await?;
        let controller = Some(start(&ns.name)?);
        Ok(Env {
            client,
            ns,
            controller,
        })
    }

    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    pub fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    pub async fn apply(&self, manifest: Value) -> Result<()> {
        apply(&self.client, self.ns(), manifest).await
    }

    pub async fn services(&self, names: &[&str]) -> Result<()> {
        for name in names {
            self.apply(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": name },
                "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] },
            }))
            .await?;
        }
        Ok(())
    }

    pub async fn rollout(&self, replicas: i32, canary: Value) -> Result<()> {
        self.apply(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web" },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": "web" } },
                "template": pod_template("v1"),
                "strategy": { "canary": canary },
            },
        }))
        .await
    }

    /// Changes the pod template (a new version), as a GitOps sync would.
    pub async fn set_version(&self, version: &str) -> Result<()> {
        let patch = json!({ "spec": { "template": pod_template(version) } });
        self.rollouts()
            .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    pub async fn act(&self, action: UserAction) -> Result<()> {
        actions::apply(&self.client, self.ns(), "web", action).await?;
        Ok(())
    }

    /// Waits until the Rollout satisfies `pred`, and returns it.
    pub async fn wait(&self, what: &str, pred: impl Fn(&Rollout) -> bool) -> Result<Rollout> {
        let api = self.rollouts();
        let result = wait_for(what, STEP_TIMEOUT, || async {
            Ok(pred(&api.get("web").await?))
        })
        .await;
        if let Err(e) = result {
            let status = api.get("web").await.ok().and_then(|r| r.status);
            let log = self
                .controller
                .as_ref()
                .map(|c| c.log_tail())
                .unwrap_or_default();
            anyhow::bail!("{e:#}\nstatus: {status:#?}\ncontroller log:\n{log}");
        }
        Ok(api.get("web").await?)
    }

    pub async fn wait_step(&self, index: i32, phase: RolloutPhase) -> Result<Rollout> {
        self.wait(&format!("step index {index} in phase {phase:?}"), |r| {
            let s = r.status.clone().unwrap_or_default();
            s.current_step_index == Some(index) && s.phase == Some(phase)
        })
        .await
    }

    pub async fn wait_healthy_on_new_revision(&self) -> Result<Rollout> {
        self.wait("Healthy on the new revision", |r| {
            let s = r.status.clone().unwrap_or_default();
            s.phase == Some(RolloutPhase::Healthy)
                && s.stable_rs.is_some()
                && s.stable_rs == s.current_pod_hash
                && r.metadata.generation == s.observed_generation
        })
        .await
    }

    /// `spec.replicas` and available pods of each revision's ReplicaSet.
    pub async fn sizes(&self) -> Result<Vec<(String, i32, i32)>> {
        let rs: Api<ReplicaSet> = Api::namespaced(self.client.clone(), self.ns());
        Ok(rs
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|rs| {
                (
                    rs.labels()
                        .get(POD_TEMPLATE_HASH_LABEL)
                        .cloned()
                        .unwrap_or_default(),
                    rs.spec.replicas.unwrap_or(0),
                    rs.status
                        .as_ref()
                        .and_then(|s| s.available_replicas)
                        .unwrap_or(0),
                )
            })
            .collect())
    }

    /// Waits until the ReplicaSets of `new` and `old` have these sizes, all available.
    pub async fn wait_sizes(&self, new: &str, old: &str, want: (i32, i32)) -> Result<()> {
        let what = format!("ReplicaSets new={} old={}", want.0, want.1);
        let result = wait_for(&what, STEP_TIMEOUT, || async {
            let sizes = self.sizes().await?;
            let of = |h: &str| {
                sizes
                    .iter()
                    .find(|s| s.0 == h)
                    .map_or((0, 0), |s| (s.1, s.2))
            };
            let (n, o) = (of(new), of(old));
            Ok((n.0, o.0) == want && n.1 == n.0 && o.1 == o.0)
        })
        .await;
        let now = self.sizes().await.unwrap_or_default();
        result.with_context(|| format!("ReplicaSets (hash, replicas, available) now: {now:?}"))
    }

    pub async fn service_hash(&self, name: &str) -> Result<Option<String>> {
        let svc: Api<Service> = Api::namespaced(self.client.clone(), self.ns());
        Ok(svc
            .get(name)
            .await?
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL).cloned()))
    }

    /// Every version of the Rollout from now on, from a watch (a poll would miss a
    /// status that lasts less than its period), with when it arrived. Abort the handle
    /// when done.
    pub fn watch_rollout(
        &self,
    ) -> (
        tokio::sync::mpsc::UnboundedReceiver<(std::time::Instant, Rollout)>,
        tokio::task::JoinHandle<()>,
    ) {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let api = self.rollouts();
        let handle = tokio::spawn(async move {
            let config = watcher::Config::default().fields("metadata.name=web");
            let mut stream = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(r)) = stream.next().await {
                let _ = tx.send((std::time::Instant::now(), r));
            }
        });
        (rx, handle)
    }

    /// The StepCompleted Events of the namespace: (note, how often its series counted).
    pub async fn steps_completed(&self) -> Result<Vec<(String, i32)>> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), self.ns());
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("StepCompleted"))
            .map(|e| (e.note.unwrap_or_default(), e.series.map_or(1, |s| s.count)))
            .collect())
    }

    /// Stops the controller and deletes the namespace. Under a restricted identity
    /// (`SLUICE_E2E_CONTROLLER_AS=chart`), fails when the apiserver refused it anything.
    pub async fn finish(mut self) -> Result<()> {
        let refused = match &self.controller {
            Some(c) if c.restricted => c.assert_no_forbidden(),
            _ => Ok(()),
        };
        if let Some(c) = self.controller.take() {
            c.kill();
        }
        self.ns.delete().await?;
        refused
    }
}

/// An Ingress `name` routing `web.example/` to `service` (class nginx): the stable
/// Ingress of the NGINX tests.
pub fn ingress(name: &str, service: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": name },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{ "host": "web.example", "http": { "paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": service, "port": { "number": 80 } } },
            }] } }],
        },
    })
}

pub fn pod_template(version: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": "web" }, "annotations": { "version": version } },
        "spec": { "containers": [{ "name": "web", "image": "registry.k8s.io/pause:3.10" }] },
    })
}

pub fn hashes(r: &Rollout) -> (String, String) {
    let s = r.status.clone().unwrap_or_default();
    (
        s.current_pod_hash.unwrap_or_default(),
        s.stable_rs.unwrap_or_default(),
    )
}

pub fn weights(r: &Rollout) -> (i32, i32, Option<bool>) {
    let w = r
        .status
        .clone()
        .unwrap_or_default()
        .canary
        .and_then(|c| c.weights)
        .unwrap_or_default();
    (w.canary, w.stable, w.verified)
}
