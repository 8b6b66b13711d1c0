//! The run-time half of the bad-input catalogue (docs/bad-inputs.md): inputs admission
//! cannot judge, because they depend on other objects, each reported as `InvalidSpec`
//! with a message naming the field or the object, while nothing is changed for them.

use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sluice_api::AnalysisTemplate;
use sluice_e2e::rollout_env::{Env, pod_template};
use sluice_e2e::wait_for;

/// A Rollout named `name` selecting pods `app=name`, with this canary strategy.
fn rollout(name: &str, canary: Value) -> Value {
    let mut template = pod_template("v1");
    template["metadata"]["labels"] = json!({ "app": name });
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": template,
            "strategy": { "canary": canary },
        },
    })
}

fn service(name: &str, spec: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": name }, "spec": spec })
}

fn selecting(name: &str) -> Value {
    service(
        name,
        json!({ "selector": { "app": name }, "ports": [{ "port": 80 }] }),
    )
}

fn template(name: &str, spec: Value) -> Value {
    json!({ "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": { "name": name }, "spec": spec })
}

fn metric(condition: &str) -> Value {
    json!({ "name": "m", "successCondition": condition,
            "provider": { "prometheus": { "address": "http://127.0.0.1:1", "query": "up{service=\"{{args.service}}\"}" } } })
}

/// Each case: the Rollout, the reason and a part of the message its InvalidSpec must have.
fn cases() -> Vec<(&'static str, Value, &'static str, String)> {
    let step_analysis = |template: &str, args: Value| json!({ "steps": [{ "analysis": { "templates": [{ "templateName": template }], "args": args } }] });
    vec![
        (
            "Service of type ExternalName",
            rollout(
                "external",
                json!({ "canaryService": "external-canary", "stableService": "external-stable", "steps": [] }),
            ),
            "InvalidReference",
            "Service external-canary is of type ExternalName".into(),
        ),
        (
            "stable Ingress with no rule pointing at stableService",
            rollout(
                "ingress",
                json!({ "canaryService": "ingress-canary", "stableService": "ingress-stable",
                        "trafficRouting": { "nginx": { "stableIngress": "ingress" } }, "steps": [] }),
            ),
            "InvalidReference",
            "Ingress ingress has no path to Service ingress-stable".into(),
        ),
        (
            "the canary Ingress' name taken by an Ingress sluice does not own",
            rollout(
                "taken",
                json!({ "canaryService": "taken-canary", "stableService": "taken-stable",
                        "trafficRouting": { "nginx": { "stableIngress": "taken" } }, "steps": [] }),
            ),
            "InvalidReference",
            "/taken-taken-canary exists but is not owned by Rollout taken; sluice will not overwrite it"
                .into(),
        ),
        (
            "HTTPRoute with no rule holding both services",
            rollout(
                "route",
                json!({ "canaryService": "route-canary", "stableService": "route-stable",
                        "trafficRouting": { "gatewayAPI": { "httpRoute": "route" } }, "steps": [] }),
            ),
            "InvalidReference",
            "HTTPRoute route has no rule with backendRefs to both route-canary and route-stable"
                .into(),
        ),
        (
            "a template's arg without a value",
            rollout("arg", step_analysis("needs-service", json!([]))),
            "InvalidReference",
            "spec.strategy.canary.steps[0].analysis: analysis args without a value: service".into(),
        ),
        (
            "a fieldRef to a field the Rollout lacks",
            rollout(
                "field",
                step_analysis(
                    "needs-service",
                    json!([{ "name": "service", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['team']" } } }]),
                ),
            ),
            "InvalidReference",
            "arg service: the Rollout has no field metadata.labels['team']".into(),
        ),
        (
            "a metric in two templates",
            json!(null), // filled in below: needs the namespace-free template names only
            "InvalidReference",
            "metric m appears in more than one template".into(),
        ),
        (
            "a template that does not exist",
            rollout("absent-template", step_analysis("nope", json!([]))),
            "ReferenceNotFound",
            "AnalysisTemplate nope".into(),
        ),
        (
            "a Service that does not exist",
            rollout(
                "absent-service",
                json!({ "canaryService": "absent-service-canary", "stableService": "nope", "steps": [] }),
            ),
            "ReferenceNotFound",
            "Service ".into(),
        ),
        (
            "a selector that misses the template's labels",
            {
                let mut r = rollout("selector", json!({ "steps": [] }));
                r["spec"]["selector"] = json!({ "matchLabels": { "app": "other" } });
                r
            },
            "InvalidSpec",
            "spec.selector matchLabels app=other does not match spec.template.metadata.labels"
                .into(),
        ),
    ]
    .into_iter()
    .map(|(case, doc, reason, message)| {
        let doc = if doc.is_null() {
            rollout(
                "twice",
                json!({ "steps": [{ "analysis": { "templates": [
                    { "templateName": "needs-service" }, { "templateName": "also-m" }],
                    "args": [{ "name": "service", "value": "web" }] } }] }),
            )
        } else {
            doc
        };
        (case, doc, reason, message)
    })
    .collect()
}

#[tokio::test]
async fn inputs_only_the_cluster_can_judge_are_reported_as_invalid_spec() -> Result<()> {
    let env = Env::new("bad-inputs").await?;
    // What the Rollouts refer to, each wrong in one way.
    for name in [
        "ingress-canary",
        "ingress-stable",
        "route-canary",
        "route-stable",
        "taken-canary",
        "taken-stable",
    ] {
        env.apply(selecting(name)).await?;
    }
    env.apply(selecting("external-stable")).await?;
    env.apply(selecting("absent-service-canary")).await?;
    env.apply(service(
        "external-canary",
        json!({ "type": "ExternalName", "externalName": "canary.example.com" }),
    ))
    .await?;
    env.apply(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": { "name": "ingress" },
        "spec": { "rules": [{ "host": "shop.example.com", "http": { "paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": { "service": { "name": "somebody-else", "port": { "number": 80 } } } }] } }] },
    }))
    .await?;
    // A usable stable Ingress, and an Ingress of the user's under the canary's name.
    for (name, backend) in [
        ("taken", "taken-stable"),
        ("taken-taken-canary", "elsewhere"),
    ] {
        env.apply(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": { "name": name },
            "spec": { "rules": [{ "host": "taken.example.com", "http": { "paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": { "service": { "name": backend, "port": { "number": 80 } } } }] } }] },
        }))
        .await?;
    }
    env.apply(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "route" },
        "spec": { "rules": [{ "backendRefs": [{ "name": "route-stable", "port": 80 }] }] },
    }))
    .await?;
    env.apply(template(
        "needs-service",
        json!({ "args": [{ "name": "service" }], "metrics": [metric("result[0] > 0")] }),
    ))
    .await?;
    env.apply(template(
        "also-m",
        json!({ "metrics": [metric("result[0] > 1")] }),
    ))
    .await?;
    // A condition that does not compile: the template itself is reported.
    env.apply(template(
        "bad-condition",
        json!({ "metrics": [metric("result[0] >= ")] }),
    ))
    .await?;
    let ingresses: Api<Ingress> = Api::namespaced(env.client.clone(), env.ns());
    let foreign_before = ingresses.get("taken-taken-canary").await?;
    let cases = cases();
    for (_, doc, _, _) in &cases {
        env.apply(doc.clone()).await?;
    }

    let rollouts = env.rollouts();
    let verdict = |r: &sluice_api::Rollout| {
        let c = r
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "InvalidSpec" && c.status == "True")?;
        Some((c.reason.clone(), c.message.clone()))
    };
    let expected = |name: &str| {
        cases
            .iter()
            .find(|(_, doc, _, _)| doc["metadata"]["name"] == name)
            .map(|(_, _, reason, message)| (*reason, message.clone()))
    };
    let all_reported = wait_for(
        "every bad Rollout reported",
        Duration::from_secs(60),
        || async {
            let list = rollouts.list(&ListParams::default()).await?.items;
            Ok(list.len() == cases.len()
                && list.iter().all(|r| {
                    let (reason, message) = expected(&r.name_any()).unwrap();
                    verdict(r).is_some_and(|(got, text)| got == reason && text.contains(&message))
                }))
        },
    )
    .await;
    if let Err(e) = all_reported {
        let got: Vec<_> = rollouts
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(|r| (r.name_any(), verdict(r)))
            .collect();
        let log = env
            .controller
            .as_ref()
            .map(|c| c.log_tail())
            .unwrap_or_default();
        bail!("{e:#}\nreported: {got:#?}\ncontroller log:\n{log}");
    }
    // Nothing was made for them: no ReplicaSet, no AnalysisRun.
    assert!(env.sizes().await?.is_empty(), "{:?}", env.sizes().await?);
    // The user's Ingress under the canary's name was left as it was.
    let foreign_after = ingresses.get("taken-taken-canary").await?;
    assert_eq!(
        foreign_after.metadata.resource_version,
        foreign_before.metadata.resource_version
    );

    let templates: Api<AnalysisTemplate> = Api::namespaced(env.client.clone(), env.ns());
    wait_for(
        "the template whose condition does not compile to be reported",
        Duration::from_secs(30),
        || async {
            let t = templates.get("bad-condition").await?;
            Ok(t.status.is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "InvalidSpec"
                        && c.status == "True"
                        && c.reason == "InvalidAnalysis"
                        && c.message.contains("successCondition")
                })
            }))
        },
    )
    .await?;
    env.finish().await
}
