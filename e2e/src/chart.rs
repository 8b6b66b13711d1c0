//! The Helm chart on the local control plane: `helm` against the plane, and the chart's
//! ServiceAccount as an identity a controller process can run under (a kubeconfig with a
//! TokenRequest token for it), so that the e2e scenarios prove the chart's RBAC.
//!
//! `SLUICE_E2E_CONTROLLER_AS=chart` makes every [`crate::ControllerProcess`] run under that
//! identity: `make e2e-rbac` runs the canary, analysis and blue-green suites so.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{Output, kubeconfig_path, kubectl, repo_root};

/// Release and namespace of the chart whose ServiceAccount the scenarios run as.
pub const IDENTITY_RELEASE: &str = "sluice-rbac";
pub const IDENTITY_NAMESPACE: &str = "sluice-e2e-rbac";

/// The chart in the repository.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/sluice")
}

/// Runs the plane's Helm (`SLUICE_E2E_HELM`, else the one `e2e/controlplane/lib.sh`
/// builds) against the local control plane.
pub fn helm(args: &[&str]) -> Result<Output> {
    let bin = match std::env::var("SLUICE_E2E_HELM") {
        Ok(bin) => bin,
        Err(_) => {
            let out = Command::new("bash")
                .arg("-c")
                .arg(". e2e/controlplane/lib.sh && echo \"$HELM_BIN/helm\"")
                .current_dir(repo_root())
                .output()
                .context("locating helm through e2e/controlplane/lib.sh")?;
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    let out = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(args)
        .output()
        .with_context(|| format!("running {bin}"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs helm and fails with its output unless it succeeds.
pub fn helm_ok(args: &[&str]) -> Result<String> {
    let out = helm(args)?;
    if !out.success {
        bail!(
            "helm {} failed:\n{}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
    }
    Ok(out.stdout)
}

/// Runs kubectl and fails with its output unless it succeeds.
pub fn kubectl_ok(args: &[&str]) -> Result<String> {
    let out = kubectl(args)?;
    if !out.success {
        bail!(
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
    }
    Ok(out.stdout)
}

/// The documents `helm template` renders for these arguments, as JSON values.
pub fn render(args: &[&str]) -> Result<Vec<Value>> {
    let mut all = vec!["template", "sluice"];
    let chart = chart_dir();
    let chart = chart.to_str().context("chart path")?.to_string();
    all.push(&chart);
    all.extend_from_slice(args);
    let text = helm_ok(&all)?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// A kubeconfig for `system:serviceaccount:<namespace>:<name>`: the plane's server and CA,
/// and a token from a TokenRequest (`kubectl create token`), written to `out`.
pub fn service_account_kubeconfig(namespace: &str, name: &str, out: &Path) -> Result<()> {
    let token = kubectl_ok(&["-n", namespace, "create", "token", name, "--duration=2h"])?;
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(kubeconfig_path())?)?;
    let cluster = &admin["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().context("kubeconfig server")?;
    let ca = cluster["certificate-authority-data"]
        .as_str()
        .context("kubeconfig certificate-authority-data")?;
    let user = format!("system:serviceaccount:{namespace}:{name}");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "plane", "cluster": {
            "server": server, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token.trim()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "plane", "user": user}}],
        "current-context": "sa",
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_yaml::to_string(&config)?)?;
    Ok(())
}

/// Installs (or upgrades) a release of the chart without CRDs (the tests apply those) and
/// without replicas (the controller runs out-of-cluster, as a test process), so that
/// only its ServiceAccount and RBAC matter.
pub fn install_identity_release(release: &str, namespace: &str, extra: &[&str]) -> Result<()> {
    let chart = chart_dir();
    let mut args = vec![
        "upgrade",
        "--install",
        release,
        chart.to_str().context("chart path")?,
        "--namespace",
        namespace,
        "--create-namespace",
        "--wait",
        "--timeout=60s",
        "--set",
        "crds.install=false",
        "--set",
        "replicaCount=0",
        "--set",
        "podDisruptionBudget.enabled=false",
    ];
    args.extend_from_slice(extra);
    helm_ok(&args)?;
    Ok(())
}

/// The kubeconfig of the shared chart identity (release [`IDENTITY_RELEASE`] in
/// [`IDENTITY_NAMESPACE`], cluster-wide mode), installed once per test process.
pub fn chart_identity_kubeconfig() -> Result<PathBuf> {
    static KUBECONFIG: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    KUBECONFIG
        .get_or_init(|| {
            let setup = || -> Result<PathBuf> {
                install_identity_release(IDENTITY_RELEASE, IDENTITY_NAMESPACE, &[])?;
                let out = repo_root().join(format!(
                    "e2e/artifacts/kubeconfig-{IDENTITY_RELEASE}-{}",
                    std::process::id()
                ));
                service_account_kubeconfig(IDENTITY_NAMESPACE, IDENTITY_RELEASE, &out)?;
                Ok(out)
            };
            setup().map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("setting up the chart's identity: {e}"))
}

/// The kubeconfig controller processes run with: the chart's identity when
/// `SLUICE_E2E_CONTROLLER_AS=chart`, else the plane's admin kubeconfig.
pub fn controller_kubeconfig() -> Result<(PathBuf, bool)> {
    match std::env::var("SLUICE_E2E_CONTROLLER_AS").as_deref() {
        Ok("chart") => Ok((chart_identity_kubeconfig()?, true)),
        Ok("") | Err(_) => Ok((kubeconfig_path(), false)),
        Ok(other) => bail!("SLUICE_E2E_CONTROLLER_AS={other}: only `chart` is known"),
    }
}

/// The lines of a controller log that say the apiserver refused a request for lack of a
/// permission (kube prints the Status: `reason: "Forbidden"`, `code: 403`).
pub fn forbidden_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            lower.contains("forbidden") || lower.contains("code: 403")
        })
        .map(str::to_string)
        .collect()
}
