//! Smoke tests of the foundation against the real local control plane: the CRDs are
//! served and documented, valid Rollouts are admitted, every CEL rule rejects what it is
//! meant to reject, the scale subresource works, and ReplicaSet → Pod → Ready works
//! through kube-controller-manager, kube-scheduler and kwok.

use std::{collections::BTreeSet, time::Duration};

use anyhow::Result;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Node, Pod},
};
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};
use sluice_e2e::catalogue::{
    pod_template, rollout_cases, template_cases, valid_blue_green, valid_canary, valid_template,
};
use sluice_e2e::{TestNamespace, client, install_crds, kubectl, wait_crd_established, wait_for};

fn api_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sluice.dev", "v1alpha1", kind),
        plural,
    )
}

fn rollouts(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &api_resource("Rollout", "rollouts"))
}

fn analysis_templates(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &api_resource("AnalysisTemplate", "analysistemplates"),
    )
}

async fn setup(prefix: &str) -> Result<(Client, TestNamespace)> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, prefix).await?;
    Ok((client, ns))
}

fn to_object(v: &Value) -> DynamicObject {
    serde_json::from_value(v.clone()).expect("test documents are valid objects")
}

#[tokio::test]
async fn crds_are_served_and_documented() -> Result<()> {
    let client = client().await?;
    let names = install_crds(&client).await?;
    let expected = BTreeSet::from([
        "analysisruns.sluice.dev",
        "analysistemplates.sluice.dev",
        "clusteranalysistemplates.sluice.dev",
        "rollouts.sluice.dev",
    ]);
    assert_eq!(
        names.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        expected
    );

    let out = kubectl(&["explain", "rollout.spec.strategy.canary.steps"])?;
    assert!(out.success, "kubectl explain failed: {}", out.stderr);
    for doc in [
        "The steps of the canary, run in order",
        "Percentage of traffic (0 to 100) to send to the new version",
        "setCanaryScale",
    ] {
        assert!(
            out.stdout.contains(doc),
            "explain output lacks {doc:?}:\n{}",
            out.stdout
        );
    }
    let out = kubectl(&[
        "explain",
        "analysistemplate.spec.metrics.provider.judge.signals",
    ])?;
    assert!(out.success, "kubectl explain failed: {}", out.stderr);
    assert!(
        out.stdout
            .contains("PromQL range query for the canary series"),
        "{}",
        out.stdout
    );
    Ok(())
}

#[tokio::test]
async fn valid_rollouts_are_accepted_with_defaults() -> Result<()> {
    let (client, ns) = setup("valid").await?;
    let api = rollouts(&client, &ns.name);
    let canary = api
        .create(&PostParams::default(), &to_object(&valid_canary()))
        .await?;
    let spec = &canary.data["spec"];
    // Defaults come from the CRD schema, applied by the apiserver.
    assert_eq!(spec["revisionHistoryLimit"], json!(10));
    assert_eq!(spec["progressDeadlineSeconds"], json!(600));
    assert_eq!(
        spec["strategy"]["canary"]["scaleDownDelaySeconds"],
        json!(30)
    );
    assert_eq!(
        spec["strategy"]["canary"]["baseline"]["enabled"],
        json!(true),
        "`baseline: {{}}` turns the baseline on"
    );
    assert_eq!(
        spec["strategy"]["canary"]["trafficRouting"]["nginx"]["annotationPrefix"],
        json!("nginx.ingress.kubernetes.io")
    );

    let bg = api
        .create(&PostParams::default(), &to_object(&valid_blue_green()))
        .await?;
    assert_eq!(
        bg.data["spec"]["strategy"]["blueGreen"]["scaleDownDelaySeconds"],
        json!(30)
    );
    assert_eq!(
        bg.data["spec"]["strategy"]["blueGreen"]["autoPromotionEnabled"],
        json!(false)
    );

    let templates = analysis_templates(&client, &ns.name);
    let t = templates
        .create(&PostParams::default(), &to_object(&valid_template()))
        .await?;
    assert_eq!(
        t.data["spec"]["metrics"][0]["consecutiveErrorLimit"],
        json!(4)
    );
    assert_eq!(
        t.data["spec"]["metrics"][1]["provider"]["judge"]["confidence"],
        json!(0.98)
    );

    // The printer columns are the ones an operator expects from `kubectl get ro`.
    let out = kubectl(&["get", "ro", "-n", &ns.name])?;
    assert!(out.success, "{}", out.stderr);
    let header: Vec<&str> = out
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STRATEGY",
            "PHASE",
            "STEP",
            "WEIGHT",
            "DESIRED",
            "READY",
            "AVAILABLE",
            "AGE"
        ]
    );
    assert!(
        out.stdout.contains("canary") && out.stdout.contains("blue-green"),
        "{}",
        out.stdout
    );
    ns.delete().await
}

#[tokio::test]
async fn every_cel_rule_rejects_its_invalid_manifest() -> Result<()> {
    let (client, ns) = setup("cel").await?;
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    for (api, cases) in [
        (rollouts(&client, &ns.name), rollout_cases()),
        (analysis_templates(&client, &ns.name), template_cases()),
    ] {
        for (i, (case, doc, message)) in cases.into_iter().enumerate() {
            let mut obj = to_object(&doc);
            obj.metadata.name = Some(format!("case-{i}"));
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => failures.push(format!(
                    "{case}: accepted, expected rejection with {message:?}"
                )),
                Err(kube::Error::Api(status))
                    if status.code == 422 && status.message.contains(message) =>
                {
                    covered.insert(message);
                }
                Err(e) => failures.push(format!("{case}: expected {message:?}, got {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "CEL rules misbehaved:\n{}",
        failures.join("\n")
    );

    // Every rule of every CRD must have a case above, so removing any rule fails this test.
    let mut untested = Vec::new();
    for (_, crd) in sluice_api::crdgen::all() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema)?;
        let mut messages = Vec::new();
        collect_rule_messages(&schema, &mut messages);
        for m in messages {
            if !covered.iter().any(|c| m.starts_with(c)) {
                untested.push(format!(
                    "{}: {m}",
                    crd.metadata.name.clone().unwrap_or_default()
                ));
            }
        }
    }
    untested.sort();
    untested.dedup();
    assert!(
        untested.is_empty(),
        "rules without a rejection case:\n{}",
        untested.join("\n")
    );
    ns.delete().await
}

fn collect_rule_messages(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for r in rules {
                    out.push(r["message"].as_str().unwrap_or_default().to_string());
                }
            }
            map.values().for_each(|v| collect_rule_messages(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_rule_messages(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn kubectl_scale_changes_rollout_replicas() -> Result<()> {
    let (client, ns) = setup("scale").await?;
    let api = rollouts(&client, &ns.name);
    api.create(&PostParams::default(), &to_object(&valid_canary()))
        .await?;
    let out = kubectl(&["scale", "-n", &ns.name, "rollout/canary", "--replicas=5"])?;
    assert!(out.success, "kubectl scale failed: {}", out.stderr);
    let ro = api.get("canary").await?;
    assert_eq!(ro.data["spec"]["replicas"], json!(5));
    ns.delete().await
}

#[tokio::test]
async fn gateway_api_crds_are_installed() -> Result<()> {
    let client = client().await?;
    for crd in [
        "httproutes.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
    ] {
        wait_crd_established(&client, crd).await?;
    }
    Ok(())
}

/// The Istio router's objects are served at `networking.istio.io/v1` and admit what sluice
/// writes (weights summing to 100, a mirror with a percentage, subsets with labels).
#[tokio::test]
async fn istio_virtual_service_and_destination_rule_crds_are_served() -> Result<()> {
    let (client, ns) = setup("istio-crds").await?;
    for crd in [
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
    ] {
        wait_crd_established(&client, crd).await?;
    }
    let resource = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("networking.istio.io", "v1", kind),
            plural,
        )
    };
    let vs = resource("VirtualService", "virtualservices");
    let dr = resource("DestinationRule", "destinationrules");
    let vs_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &vs);
    let dr_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &dr);
    let vs_object = to_object(&json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {"hosts": ["web"], "http": [
            {"name": "sluice-x", "match": [{"headers": {"x-canary": {"prefix": "yes"}}}],
             "route": [{"destination": {"host": "web", "subset": "canary"}, "weight": 100}]},
            {"name": "primary",
             "route": [{"destination": {"host": "web", "subset": "stable"}, "weight": 70},
                       {"destination": {"host": "web", "subset": "canary"}, "weight": 30}],
             "mirror": {"host": "web", "subset": "canary"}, "mirrorPercentage": {"value": 25.0}}
        ]}
    }));
    vs_api.create(&PostParams::default(), &vs_object).await?;
    let dr_object = to_object(&json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "web"},
        "spec": {"host": "web", "subsets": [
            {"name": "stable", "labels": {"sluice.dev/pod-template-hash": "aaa"}},
            {"name": "canary", "labels": {"sluice.dev/pod-template-hash": "bbb"}}
        ]}
    }));
    dr_api.create(&PostParams::default(), &dr_object).await?;
    let stored = vs_api.get("web").await?;
    assert_eq!(
        stored.data["spec"]["http"][1]["route"][1]["weight"],
        json!(30)
    );
    assert_eq!(
        dr_api.get("web").await?.data["spec"]["subsets"][1]["labels"]["sluice.dev/pod-template-hash"],
        json!("bbb")
    );
    ns.delete().await
}

#[tokio::test]
async fn fake_nodes_are_ready() -> Result<()> {
    let client = client().await?;
    let nodes = Api::<Node>::all(client)
        .list(&ListParams::default())
        .await?;
    assert!(!nodes.items.is_empty(), "the local plane has no nodes");
    for node in &nodes.items {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert!(ready, "node {:?} is not Ready", node.metadata.name);
    }
    Ok(())
}

#[tokio::test]
async fn deployment_becomes_available_through_kcm_scheduler_and_kwok() -> Result<()> {
    let (client, ns) = setup("deploy").await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template("web"),
        },
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    wait_for(
        "deployment web to be 3/3 available",
        Duration::from_secs(90),
        || async {
            let d = deployments.get("web").await?;
            Ok(d.status.and_then(|s| s.available_replicas) == Some(3))
        },
    )
    .await?;

    // The pods were really scheduled onto (fake) nodes and report Ready.
    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    let pods = pods.list(&ListParams::default().labels("app=web")).await?;
    assert_eq!(pods.items.len(), 3);
    for pod in &pods.items {
        let spec_node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        assert!(
            spec_node.is_some(),
            "pod {:?} was not scheduled",
            pod.metadata.name
        );
        let status = pod.status.as_ref().expect("pod status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(
            status
                .conditions
                .as_ref()
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        );
    }
    ns.delete().await
}
