//! The Helm chart on the real local control plane: `helm install` makes every object it
//! promises (kwok runs the Deployment's pods; no container runs), `helm upgrade` upgrades
//! the CRDs, `helm uninstall` keeps them; and the controller, run as the chart's
//! ServiceAccount, walks canary and blue-green rollouts without one request refused, while
//! the role grants nothing beyond what the controller uses.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::chart::{
    IDENTITY_NAMESPACE, IDENTITY_RELEASE, chart_dir, chart_identity_kubeconfig, helm_ok,
    install_identity_release, kubectl_ok, render, service_account_kubeconfig,
};
use sluice_e2e::rollout_env::{Env, hashes, pod_template};
use sluice_e2e::{ControllerProcess, TestNamespace, client, install_crds, kubectl, repo_root};

const CRDS: [&str; 4] = [
    "rollouts.sluice.dev",
    "analysistemplates.sluice.dev",
    "clusteranalysistemplates.sluice.dev",
    "analysisruns.sluice.dev",
];

/// The install test owns the CRDs for a while (it changes one and must read its change
/// back); the scenarios here re-apply the CRDs, so they wait for it.
static CRD_OWNER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn get_json(args: &[&str]) -> Result<Value> {
    let mut all = vec!["get", "-o", "json"];
    all.extend_from_slice(args);
    Ok(serde_json::from_str(&kubectl_ok(&all)?)?)
}

fn exists(args: &[&str]) -> Result<bool> {
    let mut all = vec!["get", "--ignore-not-found", "-o", "name"];
    all.extend_from_slice(args);
    Ok(!kubectl_ok(&all)?.trim().is_empty())
}

/// A CRD that exists without Helm's ownership (applied by kubectl, or by the other e2e
/// suites) is adopted by labelling it, as docs/operations.md tells users to.
fn adopt_crds(release: &str, namespace: &str) -> Result<()> {
    for crd in CRDS {
        if !exists(&["crd", crd])? {
            continue;
        }
        kubectl_ok(&[
            "label",
            "--overwrite",
            "crd",
            crd,
            "app.kubernetes.io/managed-by=Helm",
        ])?;
        kubectl_ok(&[
            "annotate",
            "--overwrite",
            "crd",
            crd,
            &format!("meta.helm.sh/release-name={release}"),
            &format!("meta.helm.sh/release-namespace={namespace}"),
        ])?;
    }
    Ok(())
}

/// Every rule of a Role or ClusterRole as (apiGroup, resource, verb, resourceName) rows.
fn rule_rows(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut rows = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let names = list("resourceNames");
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    for name in &names {
                        rows.insert((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    rows
}

fn rows(table: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in table {
        for resource in resources.split(',') {
            for verb in verbs.split(',') {
                out.insert((
                    group.to_string(),
                    resource.into(),
                    verb.into(),
                    String::new(),
                ));
            }
        }
    }
    out
}

/// The namespaced permissions of the controller (docs/operations.md has the reasons).
const NAMESPACED: &[(&str, &str, &str)] = &[
    ("sluice.dev", "rollouts,analysistemplates", "get,list,watch"),
    (
        "sluice.dev",
        "analysisruns",
        "get,list,watch,create,patch,delete",
    ),
    (
        "sluice.dev",
        "rollouts/status,analysisruns/status",
        "update,patch",
    ),
    ("sluice.dev", "analysistemplates/status", "patch"),
    ("sluice.dev", "rollouts/finalizers", "update"),
    ("apps", "replicasets", "list,watch,create,patch,delete"),
    ("apps", "deployments", "list,watch"),
    ("apps", "deployments/scale", "patch"),
    ("", "services", "list,watch,patch"),
    ("", "pods", "list,watch,patch"),
    ("", "pods/eviction", "create"),
    (
        "networking.k8s.io",
        "ingresses",
        "list,watch,create,patch,delete",
    ),
    (
        "gateway.networking.k8s.io",
        "httproutes",
        "list,watch,patch",
    ),
    (
        "networking.istio.io",
        "virtualservices,destinationrules",
        "list,watch,patch",
    ),
    ("", "secrets", "get"),
    ("batch", "jobs", "get,list,watch,create,delete"),
    ("events.k8s.io", "events", "create,patch"),
];
const CLUSTER: &[(&str, &str, &str)] = &[
    ("sluice.dev", "clusteranalysistemplates", "get,list,watch"),
    ("sluice.dev", "clusteranalysistemplates/status", "patch"),
];
const DASHBOARD_NAMESPACED: &[(&str, &str, &str)] = &[
    ("sluice.dev", "rollouts", "patch"),
    ("", "events", "list,watch"),
];
const DASHBOARD_CLUSTER: &[(&str, &str, &str)] = &[
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
];

fn union(tables: &[&[(&str, &str, &str)]]) -> BTreeSet<(String, String, String, String)> {
    tables.iter().flat_map(|t| rows(t)).collect()
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn args(deployment: &Value) -> Vec<String> {
    container(deployment)["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The chart with one CRD description changed: what a new chart version with a changed
/// schema looks like to `helm upgrade`.
fn chart_with_changed_crd(dir: &Path) -> Result<String> {
    let _ = std::fs::remove_dir_all(dir);
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(chart_dir())
        .arg(dir)
        .status()?;
    if !status.success() {
        bail!("copying the chart");
    }
    let file = dir.join("templates/crds/rollouts.yaml");
    let text = std::fs::read_to_string(&file)?;
    let from = "description: Canary or BlueGreen";
    if !text.contains(from) {
        bail!("{from:?} not in {}", file.display());
    }
    std::fs::write(
        &file,
        text.replacen(from, "description: Canary or BlueGreen (chart upgrade)", 1),
    )?;
    Ok(dir.to_str().context("path")?.to_string())
}

fn strategy_column(crd: &Value) -> String {
    crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn install_upgrade_uninstall_makes_every_object_and_keeps_the_crds() -> Result<()> {
    let _owner = CRD_OWNER.lock().await;
    let client = client().await?;
    let ns = TestNamespace::create(&client, "chart").await?;
    let name = ns.name.clone();
    // The restricted Pod Security level: the pods exist only if the chart's
    // securityContext satisfies it.
    kubectl_ok(&[
        "label",
        "ns",
        &name,
        "pod-security.kubernetes.io/enforce=restricted",
    ])?;
    let release = format!("sluice-{}", name.rsplit('-').next().unwrap());
    adopt_crds(&release, &name)?;
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();

    helm_ok(&[
        "install",
        &release,
        chart,
        "-n",
        &name,
        "--wait",
        "--timeout=90s",
    ])?;

    // The Deployment: two replicas (kwok runs them), leader election, metrics, probes.
    let deployment = get_json(&["-n", &name, "deployment", &release])?;
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment:#}");
    let a = args(&deployment);
    for want in [
        "--log-format=json".to_string(),
        "--metrics-addr=0.0.0.0:9090".into(),
        "--leader-elect".into(),
        "--leader-election-namespace=$(POD_NAMESPACE)".into(),
        format!("--leader-election-id={release}"),
        "--lease-duration=15s".into(),
        "--renew-deadline=10s".into(),
        "--retry-period=2s".into(),
    ] {
        assert!(a.contains(&want), "{want} not in {a:?}");
    }
    assert!(
        !a.iter()
            .any(|x| x.starts_with("--namespace") || x.starts_with("--dashboard")),
        "{a:?}"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], release.as_str());
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(&deployment);
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["ports"][0]["containerPort"], 9090);
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let env = c["env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e["name"] == "POD_NAMESPACE"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "{env:?}"
    );
    let pods = get_json(&[
        "-n",
        &name,
        "pods",
        "-l",
        &format!("app.kubernetes.io/instance={release}"),
    ])?;
    let running = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count();
    assert_eq!(running, 2, "two pods admitted as restricted and Running");

    // Identity and RBAC.
    assert!(exists(&["-n", &name, "serviceaccount", &release])?);
    let cluster_role = get_json(&["clusterrole", &release])?;
    assert_eq!(rule_rows(&cluster_role), union(&[NAMESPACED, CLUSTER]));
    let binding = get_json(&["clusterrolebinding", &release])?;
    assert_eq!(binding["roleRef"]["name"], release.as_str());
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": release, "namespace": name }])
    );
    let lease_role = get_json(&["-n", &name, "role", &format!("{release}-leader-election")])?;
    let mut lease_rows = rows(&[("coordination.k8s.io", "leases", "create")]);
    for verb in ["get", "update"] {
        lease_rows.insert((
            "coordination.k8s.io".into(),
            "leases".into(),
            verb.into(),
            release.clone(),
        ));
    }
    assert_eq!(rule_rows(&lease_role), lease_rows);
    assert!(exists(&[
        "-n",
        &name,
        "rolebinding",
        &format!("{release}-leader-election")
    ])?);
    // Notifications: the one ConfigMap by name, and Secrets to read, in the release's
    // namespace only.
    let notify_role = get_json(&["-n", &name, "role", &format!("{release}-notifications")])?;
    let mut notify_rows = rows(&[("", "secrets", "get")]);
    for verb in ["get", "list", "watch"] {
        notify_rows.insert((
            "".into(),
            "configmaps".into(),
            verb.into(),
            "sluice-notifications".into(),
        ));
    }
    assert_eq!(rule_rows(&notify_role), notify_rows);
    assert!(
        a.contains(&"--notifications-configmap=$(POD_NAMESPACE)/sluice-notifications".to_string()),
        "{a:?}"
    );

    // Services and the disruption budget.
    let metrics = get_json(&["-n", &name, "service", &format!("{release}-metrics")])?;
    assert_eq!(metrics["spec"]["ports"][0]["port"], 9090);
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(
        metrics["spec"]["selector"]["app.kubernetes.io/instance"],
        release.as_str()
    );
    assert!(!exists(&[
        "-n",
        &name,
        "service",
        &format!("{release}-dashboard")
    ])?);
    let pdb = get_json(&["-n", &name, "pdb", &release])?;
    assert_eq!(pdb["spec"]["minAvailable"], 1);

    // The CRDs, owned by the release and kept on uninstall.
    for crd in CRDS {
        let stored = get_json(&["crd", crd])?;
        let meta = &stored["metadata"];
        assert_eq!(
            meta["annotations"]["helm.sh/resource-policy"], "keep",
            "{crd}"
        );
        assert_eq!(
            meta["annotations"]["meta.helm.sh/release-name"],
            release.as_str()
        );
        assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "Helm");
    }
    assert_eq!(
        strategy_column(&get_json(&["crd", CRDS[0]])?),
        "Canary or BlueGreen"
    );

    // Upgrade to a chart whose Rollout CRD changed, turning the dashboard on.
    let changed =
        chart_with_changed_crd(&repo_root().join(format!("e2e/artifacts/chart-upgrade-{name}")))?;
    helm_ok(&[
        "upgrade",
        &release,
        &changed,
        "-n",
        &name,
        "--set",
        "dashboard.enabled=true",
        "--wait",
        "--timeout=90s",
    ])?;
    assert_eq!(
        strategy_column(&get_json(&["crd", CRDS[0]])?),
        "Canary or BlueGreen (chart upgrade)",
        "helm upgrade upgrades the CRDs in templates/"
    );
    let deployment = get_json(&["-n", &name, "deployment", &release])?;
    assert!(args(&deployment).contains(&"--dashboard-addr=0.0.0.0:8080".to_string()));
    let dashboard = get_json(&["-n", &name, "service", &format!("{release}-dashboard")])?;
    assert_eq!(dashboard["spec"]["ports"][0]["targetPort"], "dashboard");
    let cluster_role = get_json(&["clusterrole", &release])?;
    assert_eq!(
        rule_rows(&cluster_role),
        union(&[NAMESPACED, CLUSTER, DASHBOARD_NAMESPACED, DASHBOARD_CLUSTER])
    );

    // Uninstall: everything goes but the CRDs (with the upgraded schema).
    helm_ok(&[
        "uninstall",
        &release,
        "-n",
        &name,
        "--wait",
        "--timeout=60s",
    ])?;
    for crd in CRDS {
        assert!(exists(&["crd", crd])?, "{crd} kept on uninstall");
    }
    assert_eq!(
        strategy_column(&get_json(&["crd", CRDS[0]])?),
        "Canary or BlueGreen (chart upgrade)"
    );
    for object in [
        vec!["-n", &name, "deployment", &release],
        vec!["-n", &name, "serviceaccount", &release],
        vec!["-n", &name, "service", &format!("{release}-metrics")],
        vec!["-n", &name, "service", &format!("{release}-dashboard")],
        vec!["-n", &name, "pdb", &release],
        vec!["-n", &name, "role", &format!("{release}-leader-election")],
        vec![
            "-n",
            &name,
            "rolebinding",
            &format!("{release}-leader-election"),
        ],
        vec!["clusterrole", &release],
        vec!["clusterrolebinding", &release],
    ] {
        let object: Vec<&str> = object.iter().map(|s| s.as_ref()).collect();
        assert!(!exists(&object)?, "{object:?} left after uninstall");
    }
    // Give the other suites their CRDs back as crds/yaml has them.
    install_crds(&client).await?;
    let _ = std::fs::remove_dir_all(&changed);
    ns.delete().await
}

/// `kubectl auth can-i` as the chart's ServiceAccount: what it must be allowed, and what
/// it must not.
fn can_i(subject: &str, namespace: Option<&str>, verb: &str, resource: &str) -> Result<bool> {
    // `TYPE/NAME` names an object; a subresource goes in its own flag.
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, sub)) if ["status", "token", "eviction", "scale"].contains(&sub) => (r, Some(sub)),
        _ => (resource, None),
    };
    let mut args = vec!["auth", "can-i", verb, resource, "--as", subject];
    if let Some(sub) = subresource {
        args.extend(["--subresource", sub]);
    }
    match namespace {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let out = kubectl(&args)?;
    match out.stdout.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => bail!("kubectl auth can-i: {other} {}", out.stderr),
    }
}

#[tokio::test]
async fn the_chart_role_grants_what_the_controller_uses_and_nothing_more() -> Result<()> {
    chart_identity_kubeconfig()?;
    let sa = format!("system:serviceaccount:{IDENTITY_NAMESPACE}:{IDENTITY_RELEASE}");
    let ns = Some("some-app");
    let lease_ns = Some(IDENTITY_NAMESPACE);
    let must: &[(Option<&str>, &str, &str)] = &[
        (ns, "list", "rollouts.sluice.dev"),
        (ns, "watch", "rollouts.sluice.dev"),
        (ns, "get", "rollouts.sluice.dev"),
        (ns, "update", "rollouts.sluice.dev/status"),
        (ns, "patch", "rollouts.sluice.dev/status"),
        (ns, "create", "analysisruns.sluice.dev"),
        (ns, "delete", "analysisruns.sluice.dev"),
        (ns, "update", "analysisruns.sluice.dev/status"),
        (ns, "get", "analysistemplates.sluice.dev"),
        (ns, "patch", "analysistemplates.sluice.dev/status"),
        (None, "list", "clusteranalysistemplates.sluice.dev"),
        (None, "patch", "clusteranalysistemplates.sluice.dev/status"),
        (ns, "create", "replicasets.apps"),
        (ns, "patch", "replicasets.apps"),
        (ns, "delete", "replicasets.apps"),
        (None, "watch", "replicasets.apps"),
        (None, "watch", "deployments.apps"),
        (ns, "patch", "deployments.apps/scale"),
        (ns, "patch", "services"),
        (None, "watch", "pods"),
        (ns, "patch", "pods"),
        (ns, "create", "pods/eviction"),
        (ns, "create", "ingresses.networking.k8s.io"),
        (ns, "patch", "httproutes.gateway.networking.k8s.io"),
        (ns, "patch", "virtualservices.networking.istio.io"),
        (ns, "patch", "destinationrules.networking.istio.io"),
        (None, "watch", "virtualservices.networking.istio.io"),
        (None, "watch", "destinationrules.networking.istio.io"),
        (ns, "get", "secrets"),
        (ns, "create", "jobs.batch"),
        (ns, "delete", "jobs.batch"),
        (None, "watch", "jobs.batch"),
        (ns, "create", "events.events.k8s.io"),
        (lease_ns, "create", "leases.coordination.k8s.io"),
        (
            lease_ns,
            "update",
            &format!("leases.coordination.k8s.io/{IDENTITY_RELEASE}"),
        ),
        (lease_ns, "watch", "configmaps/sluice-notifications"),
        (lease_ns, "get", "configmaps/sluice-notifications"),
    ];
    let must_not: &[(Option<&str>, &str, &str)] = &[
        (ns, "list", "secrets"),
        (ns, "watch", "secrets"),
        (ns, "create", "secrets"),
        (ns, "create", "rollouts.sluice.dev"),
        (ns, "update", "rollouts.sluice.dev"),
        (ns, "patch", "rollouts.sluice.dev"),
        (ns, "delete", "rollouts.sluice.dev"),
        (ns, "create", "analysistemplates.sluice.dev"),
        (ns, "patch", "analysistemplates.sluice.dev"),
        (None, "delete", "clusteranalysistemplates.sluice.dev"),
        (ns, "update", "replicasets.apps"),
        (ns, "create", "deployments.apps"),
        (ns, "patch", "deployments.apps"),
        (ns, "update", "deployments.apps"),
        (ns, "update", "deployments.apps/scale"),
        (ns, "create", "services"),
        (ns, "delete", "services"),
        (ns, "update", "services"),
        (ns, "get", "pods"),
        (ns, "delete", "pods"),
        (ns, "update", "jobs.batch"),
        (ns, "patch", "jobs.batch"),
        (ns, "create", "httproutes.gateway.networking.k8s.io"),
        (ns, "delete", "httproutes.gateway.networking.k8s.io"),
        (ns, "create", "virtualservices.networking.istio.io"),
        (ns, "delete", "destinationrules.networking.istio.io"),
        (ns, "update", "virtualservices.networking.istio.io"),
        (ns, "get", "virtualservices.networking.istio.io"),
        (ns, "update", "ingresses.networking.k8s.io"),
        (ns, "list", "events"),
        (ns, "delete", "events.events.k8s.io"),
        (None, "create", "tokenreviews.authentication.k8s.io"),
        (None, "create", "subjectaccessreviews.authorization.k8s.io"),
        (ns, "create", "leases.coordination.k8s.io"),
        (
            lease_ns,
            "update",
            "leases.coordination.k8s.io/someone-else",
        ),
        (
            lease_ns,
            "delete",
            &format!("leases.coordination.k8s.io/{IDENTITY_RELEASE}"),
        ),
        (
            lease_ns,
            "patch",
            &format!("leases.coordination.k8s.io/{IDENTITY_RELEASE}"),
        ),
        (lease_ns, "watch", "configmaps"),
        (lease_ns, "get", "configmaps/someone-elses"),
        (ns, "get", "configmaps/sluice-notifications"),
        (lease_ns, "update", "configmaps/sluice-notifications"),
        (ns, "create", "serviceaccounts/token"),
        (None, "impersonate", "users"),
        (None, "escalate", "clusterroles.rbac.authorization.k8s.io"),
        (None, "bind", "clusterroles.rbac.authorization.k8s.io"),
        (None, "*", "*"),
    ];
    let mut wrong = Vec::new();
    for (namespace, verb, resource) in must {
        if !can_i(&sa, *namespace, verb, resource)? {
            wrong.push(format!("cannot {verb} {resource} in {namespace:?}"));
        }
    }
    for (namespace, verb, resource) in must_not {
        if can_i(&sa, *namespace, verb, resource)? {
            wrong.push(format!("can {verb} {resource} in {namespace:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong permissions:\n{}", wrong.join("\n"));

    // No wildcard in any mode the chart can render.
    for values in [
        vec![],
        vec!["--set", "dashboard.enabled=true"],
        vec![
            "--set",
            "watchNamespace=apps",
            "--set",
            "dashboard.enabled=true",
        ],
    ] {
        for doc in render(&values)? {
            if !doc["kind"].as_str().unwrap_or_default().ends_with("Role") {
                continue;
            }
            for row in rule_rows(&doc) {
                assert!(
                    row.0 != "*" && row.1 != "*" && row.2 != "*",
                    "wildcard in {}: {row:?}",
                    doc["metadata"]["name"]
                );
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn namespaced_mode_grants_one_namespace_and_cluster_templates() -> Result<()> {
    let client = client().await?;
    let watched = TestNamespace::create(&client, "chart-ns").await?;
    let release = "sluice-rbac-ns";
    let home = "sluice-e2e-rbac-ns";
    install_identity_release(
        release,
        home,
        &["--set", &format!("watchNamespace={}", watched.name)],
    )?;
    let sa = format!("system:serviceaccount:{home}:{release}");
    let w = Some(watched.name.as_str());
    assert!(can_i(&sa, w, "list", "rollouts.sluice.dev")?);
    assert!(can_i(&sa, w, "patch", "replicasets.apps")?);
    assert!(can_i(&sa, w, "get", "secrets")?);
    assert!(can_i(
        &sa,
        None,
        "watch",
        "clusteranalysistemplates.sluice.dev"
    )?);
    assert!(!can_i(
        &sa,
        Some("elsewhere"),
        "list",
        "rollouts.sluice.dev"
    )?);
    assert!(!can_i(&sa, Some("elsewhere"), "get", "secrets")?);
    assert!(!can_i(&sa, None, "list", "rollouts.sluice.dev")?);
    let deployment = get_json(&["-n", home, "deployment", release])?;
    assert!(args(&deployment).contains(&format!("--namespace={}", watched.name)));

    // And the controller, scoped so, runs a canary under that identity.
    let kubeconfig = repo_root().join(format!("e2e/artifacts/kubeconfig-{release}"));
    service_account_kubeconfig(home, release, &kubeconfig)?;
    let _crds = CRD_OWNER.lock().await;
    install_crds(&client).await?;
    // Its notifications ConfigMap is in its own release's namespace, as the chart passes it.
    let notifications = format!("--notifications-configmap={home}/sluice-notifications");
    let mut controller =
        ControllerProcess::start_as_identity(&watched.name, &kubeconfig, &[&notifications])?;
    let env = Env {
        client: client.clone(),
        ns: watched,
        controller: None,
    };
    env.services(&["web-stable", "web-canary"]).await?;
    env.rollout(
        2,
        json!({ "canaryService": "web-canary", "stableService": "web-stable",
                "steps": [{ "setWeight": 50 }, { "pause": {} }] }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    assert!(controller.running());
    let refused = controller.assert_no_forbidden();
    controller.kill();
    helm_ok(&["uninstall", release, "-n", home, "--wait"])?;
    env.finish().await?;
    refused
}

/// An Env whose controller runs as the chart's ServiceAccount (cluster-wide release).
async fn as_chart(prefix: &str) -> Result<Env> {
    let kubeconfig = chart_identity_kubeconfig()?;
    let _crds = CRD_OWNER.lock().await;
    Env::with_controller(prefix, |ns| {
        ControllerProcess::start_as_identity(ns, &kubeconfig, &[])
    })
    .await
}

fn route_weights(route: &DynamicObject) -> (i64, i64) {
    let refs = &route.data["spec"]["rules"][0]["backendRefs"];
    let weight = |name: &str| {
        refs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["weight"].as_i64())
            .unwrap_or(-1)
    };
    (weight("web-canary"), weight("web-stable"))
}

#[tokio::test]
async fn as_the_chart_identity_a_gateway_api_canary_walks_its_steps() -> Result<()> {
    let env = as_chart("chart-gw").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "web" },
        "spec": {
            "parentRefs": [{ "name": "gateway" }],
            "rules": [{ "backendRefs": [
                { "name": "web-stable", "port": 80, "weight": 100 },
                { "name": "web-canary", "port": 80, "weight": 0 },
            ] }],
        },
    }))
    .await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "gatewayAPI": { "httpRoute": "web" } },
            "steps": [{ "setWeight": 20 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(env.client.clone(), env.ns(), &ApiResource::from_gvk(&gvk));
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    assert_eq!(route_weights(&routes.get("web").await?), (20, 80));
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    assert_eq!(route_weights(&routes.get("web").await?), (0, 100));
    env.finish().await
}

/// Istio's objects are read from caches only (list, watch) and written by patches: the
/// chart grants exactly that, and no `get`.
#[tokio::test]
async fn as_the_chart_identity_an_istio_canary_weights_the_virtual_service_and_points_the_subsets()
-> Result<()> {
    let env = as_chart("chart-istio").await?;
    env.services(&["web", "web-stable", "web-canary"]).await?;
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": { "name": "web" },
        "spec": { "host": "web", "subsets": [
            { "name": "stable", "labels": { "app": "web" } },
            { "name": "canary", "labels": { "app": "web" } },
        ] },
    }))
    .await?;
    env.apply(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": { "name": "web" },
        "spec": { "hosts": ["web"], "http": [{ "name": "primary", "route": [
            { "destination": { "host": "web", "subset": "stable" }, "weight": 100 },
            { "destination": { "host": "web", "subset": "canary" }, "weight": 0 },
        ] }] },
    }))
    .await?;
    env.rollout(
        4,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "istio": {
                "virtualService": { "name": "web", "routes": ["primary"] },
                "destinationRule": { "name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable" },
            } },
            "steps": [{ "setWeight": 20 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let api = |kind: &str, plural: &str| -> kube::Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", kind);
        kube::Api::namespaced_with(
            env.client.clone(),
            env.ns(),
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        )
    };
    let (vss, drs) = (
        api("VirtualService", "virtualservices"),
        api("DestinationRule", "destinationrules"),
    );
    let weights = |vs: &DynamicObject| {
        let route = &vs.data["spec"]["http"][0]["route"];
        (route[1]["weight"].as_i64(), route[0]["weight"].as_i64())
    };
    let canary_subset = |dr: &DynamicObject| {
        dr.data["spec"]["subsets"][1]["labels"]["sluice.dev/pod-template-hash"]
            .as_str()
            .map(str::to_string)
    };
    env.set_version("v2").await?;
    let r = env.wait_step(1, RolloutPhase::Paused).await?;
    let (v2, _) = sluice_e2e::rollout_env::hashes(&r);
    assert_eq!(weights(&vss.get("web").await?), (Some(20), Some(80)));
    assert_eq!(canary_subset(&drs.get("web").await?), Some(v2));
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    assert_eq!(weights(&vss.get("web").await?), (Some(0), Some(100)));
    env.finish().await
}

#[tokio::test]
async fn as_the_chart_identity_an_nginx_canary_makes_and_removes_its_ingress() -> Result<()> {
    let env = as_chart("chart-nginx").await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.apply(sluice_e2e::rollout_env::ingress("web", "web-stable"))
        .await?;
    env.rollout(
        2,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": { "nginx": { "stableIngress": "web" } },
            "steps": [{ "setWeight": 30 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    let ingresses: kube::Api<k8s_openapi::api::networking::v1::Ingress> =
        kube::Api::namespaced(env.client.clone(), env.ns());
    let canary: Vec<_> = ingresses
        .list(&Default::default())
        .await?
        .into_iter()
        .filter(|i| i.name_any() != "web")
        .collect();
    assert_eq!(canary.len(), 1, "one canary Ingress");
    assert_eq!(
        canary[0]
            .annotations()
            .get("nginx.ingress.kubernetes.io/canary-weight")
            .map(String::as_str),
        Some("30")
    );
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    sluice_e2e::wait_for("the canary Ingress to go", Duration::from_secs(30), || {
        let ingresses = ingresses.clone();
        async move { Ok(ingresses.list(&Default::default()).await?.items.len() == 1) }
    })
    .await?;
    env.finish().await
}

#[tokio::test]
async fn as_the_chart_identity_a_blue_green_rollout_switches_after_promotion() -> Result<()> {
    let env = as_chart("chart-bg").await?;
    env.services(&["web-active", "web-preview"]).await?;
    env.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("v1"),
            "strategy": { "blueGreen": {
                "activeService": "web-active", "previewService": "web-preview",
                "autoPromotionEnabled": false, "scaleDownDelaySeconds": 2,
            } },
        },
    }))
    .await?;
    let r = env.wait_healthy_on_new_revision().await?;
    let (v1, _) = hashes(&r);
    env.set_version("v2").await?;
    let r = env
        .wait("paused in preview", |r| {
            r.status.as_ref().and_then(|s| s.phase) == Some(RolloutPhase::Paused)
        })
        .await?;
    let (v2, _) = hashes(&r);
    assert_ne!(v1, v2);
    assert_eq!(env.service_hash("web-active").await?, Some(v1.clone()));
    assert_eq!(env.service_hash("web-preview").await?, Some(v2.clone()));
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    assert_eq!(env.service_hash("web-active").await?, Some(v2.clone()));
    env.wait_sizes(&v2, &v1, (2, 0)).await?;
    env.finish().await
}

#[tokio::test]
async fn as_the_chart_identity_the_leader_takes_and_releases_its_lease() -> Result<()> {
    let kubeconfig = chart_identity_kubeconfig()?;
    let lease_ns = format!("--leader-election-namespace={IDENTITY_NAMESPACE}");
    let lease_id = format!("--leader-election-id={IDENTITY_RELEASE}");
    let args = ["--leader-elect", lease_ns.as_str(), lease_id.as_str()];
    let mut env = {
        let _crds = CRD_OWNER.lock().await;
        Env::with_controller("chart-lease", |ns| {
            ControllerProcess::start_as_identity(ns, &kubeconfig, &args)
        })
        .await?
    };
    // A Lease left by an earlier run's killed process expires within its 15 s.
    env.controller
        .as_ref()
        .unwrap()
        .wait_log("became the leader", Duration::from_secs(40))
        .await?;
    env.services(&["web-stable", "web-canary"]).await?;
    env.rollout(
        2,
        json!({ "canaryService": "web-canary", "stableService": "web-stable",
                "steps": [{ "setWeight": 50 }, { "pause": {} }] }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    let holder = get_json(&["-n", IDENTITY_NAMESPACE, "lease", IDENTITY_RELEASE])?;
    assert!(holder["spec"]["holderIdentity"].is_string(), "{holder:#}");
    let controller = env.controller.take().unwrap();
    controller.assert_no_forbidden()?;
    let log = controller.log.clone();
    controller.terminate()?;
    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("released the lease"), "{text}");
    assert!(
        sluice_e2e::chart::forbidden_lines(&text).is_empty(),
        "{text}"
    );
    env.finish().await
}

#[tokio::test]
async fn a_missing_permission_shows_as_403_and_fails_the_check() -> Result<()> {
    // The chart's ServiceAccount without its RBAC: every list is refused.
    let release = "sluice-norbac";
    let home = "sluice-e2e-norbac";
    install_identity_release(release, home, &["--set", "rbac.create=false"])?;
    let kubeconfig = repo_root().join(format!("e2e/artifacts/kubeconfig-{release}"));
    service_account_kubeconfig(home, release, &kubeconfig)?;
    let controller = ControllerProcess::start_as_identity("default", &kubeconfig, &[])?;
    let line = controller
        .wait_log("orbidden", Duration::from_secs(30))
        .await?;
    println!("refused as expected: {line}");
    let check = controller.assert_no_forbidden();
    controller.kill();
    helm_ok(&["uninstall", release, "-n", home, "--wait"])?;
    assert!(check.is_err(), "the check must catch a 403");
    Ok(())
}

/// The Deployment's arguments are flags the controller takes, and it starts with them:
/// `e2e/chart-flags.sh` (which `make release` runs on the release build) on the binary
/// under test, with every chart option on.
#[tokio::test]
async fn the_controller_starts_with_every_argument_the_chart_passes() -> Result<()> {
    let bin = std::env::var("SLUICE_CONTROLLER_BIN").context("SLUICE_CONTROLLER_BIN")?;
    {
        // Without its CRDs the controller would wait to list them, not start.
        let _crds = CRD_OWNER.lock().await;
        install_crds(&client().await?).await?;
    }
    // Blocking is fine: nothing else runs on this test's runtime.
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("e2e/chart-flags.sh"))
        .arg(&bin)
        .env("SLUICE_E2E_KUBECONFIG", sluice_e2e::kubeconfig_path())
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    anyhow::ensure!(
        out.status.success(),
        "chart-flags failed:\n{stdout}\n{stderr}"
    );
    anyhow::ensure!(
        stdout.contains("started with the chart's arguments"),
        "the controller was not started:\n{stdout}\n{stderr}"
    );
    Ok(())
}
