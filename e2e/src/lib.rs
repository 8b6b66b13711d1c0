//! Harness for sluice's end-to-end tests against the real local control plane
//! (`e2e/controlplane/plane.sh up`).
//!
//! The tests only ever talk to the cluster named by `SLUICE_E2E_KUBECONFIG`, never to
//! whatever `KUBECONFIG` happens to point at, so they cannot touch a real cluster by
//! accident. `make test` sets it from `plane.sh env`.

pub mod bench;
pub mod catalogue;
pub mod chart;
pub mod rollout_env;
pub mod simulator;
pub mod web_endpoint;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

/// Field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "sluice-e2e";

/// The kubeconfig of the local control plane.
pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os("SLUICE_E2E_KUBECONFIG") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "SLUICE_E2E_KUBECONFIG is not set. The end-to-end tests run against the local \
             control plane only: run `make test`, or `e2e/controlplane/plane.sh up` and \
             `eval \"$(e2e/controlplane/plane.sh env)\"` before `cargo test -p sluice-e2e`."
        ),
    }
}

/// A client for the local control plane.
pub async fn client() -> Result<Client> {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("building client config")?;
    Ok(Client::try_from(config)?)
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    sluice_api::crdgen::manifest_dir(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the control plane's own kubectl (`SLUICE_E2E_KUBECTL`, else `kubectl` on PATH)
/// against the local control plane.
pub fn kubectl(args: &[&str]) -> Result<Output> {
    let kubectl = std::env::var("SLUICE_E2E_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(args)
        .output()
        .with_context(|| format!("running {kubectl}"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Server-side applies sluice's CRDs from `crds/yaml/` and waits until they are served.
pub async fn install_crds(client: &Client) -> Result<Vec<String>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    let dir = repo_root().join("crds/yaml");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying {}", file.display()))?;
        names.push(name);
    }
    for name in &names {
        wait_crd_established(client, name).await?;
    }
    Ok(names)
}

/// Waits until a CRD reports `Established=True`.
pub async fn wait_crd_established(client: &Client, name: &str) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_for(
        &format!("CRD {name} to be established"),
        Duration::from_secs(30),
        || async {
            let crd = api.get(name).await?;
            Ok(crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"))
        },
    )
    .await
}

/// Polls `check` every 200 ms until it returns true, failing after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() > timeout {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A namespace of its own for one test, so tests run in parallel without meeting.
/// Delete it with [`TestNamespace::delete`] at the end of the test.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Result<Self> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
        let name = format!("e2e-{prefix}-{:x}", nanos ^ std::process::id());
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": { "sluice.dev/e2e": "true" } },
        }))?;
        api.create(&PostParams::default(), &ns).await?;
        Ok(TestNamespace {
            name,
            client: client.clone(),
        })
    }

    pub async fn delete(self) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client);
        api.delete(&self.name, &DeleteParams::background()).await?;
        Ok(())
    }
}

/// A `sluice-controller` process scoped to one namespace, killed (SIGKILL) when dropped.
/// A real process, so a test can kill it mid-step and start another.
pub struct ControllerProcess {
    child: std::process::Child,
    pub log: PathBuf,
    /// Runs under a kubeconfig other than the plane's admin one (the chart's identity).
    pub restricted: bool,
}

impl ControllerProcess {
    /// Starts the controller binary named by `SLUICE_CONTROLLER_BIN` (set by `make e2e`).
    pub fn start(namespace: &str) -> Result<Self> {
        Self::start_with(namespace, &[])
    }

    /// Starts the controller with extra arguments (e.g. `--dashboard-addr`), as the
    /// plane's admin or, with `SLUICE_E2E_CONTROLLER_AS=chart`, as the chart's
    /// ServiceAccount ([`chart::controller_kubeconfig`]).
    pub fn start_with(namespace: &str, extra: &[&str]) -> Result<Self> {
        let (kubeconfig, restricted) = chart::controller_kubeconfig()?;
        Self::spawn(namespace, &kubeconfig, restricted, extra)
    }

    /// As [`start_with`](Self::start_with), through another kubeconfig (another identity,
    /// or a proxy in front of the apiserver).
    pub fn start_as(namespace: &str, kubeconfig: &Path, extra: &[&str]) -> Result<Self> {
        Self::spawn(namespace, kubeconfig, false, extra)
    }

    /// As [`start_as`](Self::start_as) with a kubeconfig of a restricted identity (the
    /// chart's ServiceAccount): [`ControllerProcess::assert_no_forbidden`] then says
    /// whether it lacked a permission, and [`crate::rollout_env::Env::finish`] checks it.
    pub fn start_as_identity(namespace: &str, kubeconfig: &Path, extra: &[&str]) -> Result<Self> {
        Self::spawn(namespace, kubeconfig, true, extra)
    }

    fn spawn(namespace: &str, kubeconfig: &Path, restricted: bool, extra: &[&str]) -> Result<Self> {
        let bin = std::env::var("SLUICE_CONTROLLER_BIN").context(
            "SLUICE_CONTROLLER_BIN is not set: run the e2e tests with `make e2e` (it builds the \
             controller and points this at it)",
        )?;
        let dir = repo_root().join("e2e/artifacts");
        std::fs::create_dir_all(&dir)?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
        let log = dir.join(format!("controller-{namespace}-{nanos:x}.log"));
        let file = std::fs::File::create(&log)?;
        // As the chart deploys it: its notifications ConfigMap is in the release's
        // namespace, the only one its Role lets it watch.
        let notifications = format!(
            "--notifications-configmap={}/sluice-notifications",
            chart::IDENTITY_NAMESPACE
        );
        let notifications = (restricted
            && !extra
                .iter()
                .any(|a| a.starts_with("--notifications-configmap")))
        .then_some(notifications.as_str());
        let child = Command::new(&bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--namespace", namespace])
            .args(notifications)
            .args(extra)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        Ok(ControllerProcess {
            child,
            log,
            restricted,
        })
    }

    /// Fails, with the lines, when the apiserver refused the controller anything (a
    /// permission missing from the identity it runs as).
    pub fn assert_no_forbidden(&self) -> Result<()> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines = chart::forbidden_lines(&text);
        if !lines.is_empty() {
            bail!(
                "the controller was refused (403) {} time(s); log {}:\n{}",
                lines.len(),
                self.log.display(),
                lines.join("\n")
            );
        }
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as the kubelet does to a pod being stopped; waits for the exit.
    pub fn terminate(mut self) -> Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(self.child.wait()?)
    }

    /// Kills the process at once, as a node failure or OOM kill would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until a log line contains `marker` and returns that line.
    pub async fn wait_log(&self, marker: &str, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(marker)) {
                return Ok(line.to_string());
            }
            if start.elapsed() > timeout {
                bail!(
                    "no log line with {marker:?} after {timeout:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The controller's log so far, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Server-side applies a manifest (Service, Ingress, HTTPRoute, Rollout, ...) into a
/// namespace, finding its resource through discovery.
pub async fn apply(client: &Client, namespace: &str, manifest: serde_json::Value) -> Result<()> {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    use kube::discovery::{ApiCapabilities, Scope, pinned_kind};
    let api_version = manifest["apiVersion"]
        .as_str()
        .context("apiVersion")?
        .to_string();
    let kind = manifest["kind"].as_str().context("kind")?.to_string();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let (resource, caps): (ApiResource, ApiCapabilities) = pinned_kind(client, &gvk).await?;
    let obj: DynamicObject = serde_json::from_value(manifest)?;
    let name = obj.metadata.name.clone().context("metadata.name")?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}
