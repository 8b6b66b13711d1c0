//! The catalogue of manifests the apiserver must refuse, each with the message it gives,
//! and the valid manifests they are made from. Shared by the smoke test (every CEL rule
//! rejects its case on the real apiserver), `kubectl sluice lint`'s unit tests (lint
//! rejects each offline with the same message; they include this file by path) and the
//! lint e2e test (lint and the apiserver agree on every case). It depends on serde_json
//! and sluice_api only, so that the plugin's crate can include it.

use serde_json::{Value, json};
use sluice_api::labels::{BASELINE_ROLE, POD_ROLE_LABEL};

/// A case: what it is, the document, and (a part of) the message the apiserver gives.
pub type Case = (&'static str, Value, &'static str);

pub fn pod_template(app: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": app } },
        "spec": { "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10" }] },
    })
}

/// A canary Rollout that uses every canary feature; the base of the rejection cases.
pub fn valid_canary() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "canary" },
        "spec": {
            "replicas": 4,
            "selector": { "matchLabels": { "app": "canary" } },
            "template": pod_template("canary"),
            "rollbackWindow": { "revisions": 2 },
            "strategy": { "canary": {
                "canaryService": "web-canary",
                "stableService": "web-stable",
                "trafficRouting": {
                    "nginx": { "stableIngress": "web" },
                    "managedRoutes": [{ "name": "testers" }],
                },
                "maxSurge": 1,
                "maxUnavailable": "0%",
                "baseline": {},
                "canaryMetadata": { "labels": { "role": "canary" }, "annotations": { "team": "web" } },
                "stableMetadata": { "labels": { "role": "stable" } },
                "steps": [
                    { "setWeight": 20 },
                    { "pause": { "duration": "5s" } },
                    { "setCanaryScale": { "replicas": 2 } },
                    { "analysis": {
                        "templates": [{ "templateName": "success-rate" }],
                        "args": [
                            { "name": "service", "value": "web" },
                            { "name": "canary-hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
                        ],
                    } },
                    { "setWeight": 50 },
                    { "pause": { "duration": 30 } },
                    { "setHeaderRoute": { "name": "testers", "match": [
                        { "headerName": "X-Canary", "headerValue": { "exact": "yes" } },
                    ] } },
                    { "pause": {} },
                ],
                "analysis": {
                    "templates": [{ "templateName": "latency", "clusterScope": true }],
                    "startingStep": 1,
                },
            } },
        },
    })
}

pub fn valid_blue_green() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "blue-green" },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "blue-green" } },
            "template": pod_template("blue-green"),
            "strategy": { "blueGreen": {
                "activeService": "web-active",
                "previewService": "web-preview",
                "previewReplicaCount": 1,
                "autoPromotionEnabled": false,
                "prePromotionAnalysis": { "templates": [{ "templateName": "smoke" }] },
            } },
        },
    })
}

pub fn valid_template() -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": { "name": "success-rate" },
        "spec": {
            "args": [{ "name": "service" }],
            "metrics": [
                {
                    "name": "success-rate",
                    "interval": "1m",
                    "count": 5,
                    "successCondition": "result[0] >= 0.99",
                    "failureLimit": 1,
                    "provider": { "prometheus": {
                        "address": "http://127.0.0.1:9090",
                        "query": "sum(rate(http_requests_total{service=\"{{args.service}}\",code!~\"5..\"}[1m])) / sum(rate(http_requests_total{service=\"{{args.service}}\"}[1m]))",
                    } },
                },
                {
                    "name": "judge",
                    "provider": { "judge": {
                        "address": "http://127.0.0.1:9090",
                        "lookback": "10m",
                        "step": "30s",
                        "signals": [{
                            "name": "latency",
                            "canaryQuery": "latency{version=\"canary\"}",
                            "baselineQuery": "latency{version=\"stable\"}",
                        }],
                    } },
                },
                {
                    "name": "smoke",
                    "provider": { "job": {
                        "metadata": { "labels": { "team": "web" } },
                        "spec": {
                            "backoffLimit": 0,
                            "activeDeadlineSeconds": 60,
                            "template": { "spec": {
                                "restartPolicy": "Never",
                                "containers": [{
                                    "name": "curl",
                                    "image": "curlimages/curl:8.11.1",
                                    "args": ["--fail", "http://{{args.service}}/healthz"],
                                    "resources": { "limits": { "memory": "64Mi" } },
                                }],
                            } },
                        },
                    } },
                },
            ],
            "dryRun": [{ "metricName": "judge" }],
            "measurementRetention": [{ "metricName": "*", "limit": 20 }],
        },
    })
}

/// Sets (or, with `Value::Null`, removes) the value at a JSON pointer.
/// A valid gate of `spec.strategy.gates`, with `over`'s fields replaced.
fn gate(over: Value) -> Value {
    let mut g =
        json!({ "name": "approve", "points": ["prePromotion"], "url": "http://gate.example/" });
    for (k, v) in over.as_object().expect("an object") {
        g[k] = v.clone();
    }
    g
}

pub fn with(mut doc: Value, edits: &[(&str, Value)]) -> Value {
    for (pointer, value) in edits {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
        let target = doc
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no {parent} in the base document"));
        match target {
            Value::Object(map) if value.is_null() => {
                map.remove(key);
            }
            Value::Object(map) => {
                map.insert(key.to_string(), value.clone());
            }
            Value::Array(items) => {
                let i: usize = key.parse().expect("array index");
                items[i] = value.clone();
            }
            _ => panic!("{parent} is not a container"),
        }
    }
    doc
}

pub const CANARY: &str = "/spec/strategy/canary";
pub const BG: &str = "/spec/strategy/blueGreen";

/// Each case: a valid base with one edit, and the message of the one rule it breaks.
pub fn rollout_cases() -> Vec<Case> {
    let canary = valid_canary;
    let p = |suffix: &str| format!("{CANARY}{suffix}");
    let b = |suffix: &str| format!("{BG}{suffix}");
    vec![
        (
            "negative replicas",
            with(canary(), &[("/spec/replicas", json!(-1))]),
            "replicas must not be negative",
        ),
        (
            "reserved role label",
            with(
                canary(),
                &[(
                    "/spec/template/metadata/labels",
                    json!({ "app": "canary", POD_ROLE_LABEL: BASELINE_ROLE }),
                )],
            ),
            "spec.template.metadata.labels must not set sluice.dev/role",
        ),
        (
            "template and workloadRef",
            with(
                canary(),
                &[(
                    "/spec/workloadRef",
                    json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" }),
                )],
            ),
            "set exactly one of template and workloadRef",
        ),
        (
            "neither template nor workloadRef",
            with(canary(), &[("/spec/template", Value::Null)]),
            "set exactly one of template and workloadRef",
        ),
        (
            "no selector without workloadRef",
            with(canary(), &[("/spec/selector", Value::Null)]),
            "selector is required unless workloadRef names a Deployment",
        ),
        (
            "workloadRef to a StatefulSet",
            with(
                canary(),
                &[
                    ("/spec/template", Value::Null),
                    (
                        "/spec/workloadRef",
                        json!({ "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web" }),
                    ),
                ],
            ),
            "workloadRef must name an apps/v1 Deployment",
        ),
        (
            "workloadRef without a name",
            with(
                canary(),
                &[
                    ("/spec/template", Value::Null),
                    (
                        "/spec/workloadRef",
                        json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": "" }),
                    ),
                ],
            ),
            "workloadRef.name must not be empty",
        ),
        (
            "workloadRef scaleDown unknown",
            with(
                canary(),
                &[
                    ("/spec/template", Value::Null),
                    (
                        "/spec/workloadRef",
                        json!({ "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "scaleDown": "always" }),
                    ),
                ],
            ),
            "Unsupported value: \"always\"",
        ),
        (
            "negative rollback window",
            with(canary(), &[("/spec/rollbackWindow/revisions", json!(-1))]),
            "rollbackWindow.revisions must not be negative",
        ),
        (
            "both strategies",
            with(
                canary(),
                &[(
                    BG,
                    valid_blue_green()["spec"]["strategy"]["blueGreen"].clone(),
                )],
            ),
            "strategy must set exactly one of canary and blueGreen",
        ),
        (
            "no strategy",
            with(canary(), &[(CANARY, Value::Null)]),
            "strategy must set exactly one of canary and blueGreen",
        ),
        (
            "weightIncrease gate on blue-green",
            with(
                valid_blue_green(),
                &[(
                    "/spec/strategy/gates",
                    json!([gate(json!({ "points": ["weightIncrease"] }))]),
                )],
            ),
            "a weightIncrease gate needs the canary strategy",
        ),
        (
            "gate with url and urlFrom",
            with(
                canary(),
                &[(
                    "/spec/strategy/gates",
                    json!([gate(
                        json!({ "urlFrom": { "secretKeyRef": { "name": "s", "key": "k" } } })
                    )]),
                )],
            ),
            "a gate sets exactly one of url and urlFrom",
        ),
        (
            "gate insecure and caBundle",
            with(
                canary(),
                &[(
                    "/spec/strategy/gates",
                    json!([gate(
                        json!({ "url": "https://gate.example/", "insecure": true,
                        "caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" })
                    )]),
                )],
            ),
            "a gate sets insecure or caBundle, not both",
        ),
        (
            "gate insecure on http",
            with(
                canary(),
                &[(
                    "/spec/strategy/gates",
                    json!([gate(json!({ "insecure": true }))]),
                )],
            ),
            "gate insecure applies only to an https:// url",
        ),
        (
            "gate name not a DNS label",
            with(
                canary(),
                &[(
                    "/spec/strategy/gates",
                    json!([gate(json!({ "name": "Load_Test" }))]),
                )],
            ),
            "gate name must be a DNS label",
        ),
        (
            "gate url not http",
            with(
                canary(),
                &[(
                    "/spec/strategy/gates",
                    json!([gate(json!({ "url": "ftp://gate.example/" }))]),
                )],
            ),
            "gate url must be an http:// or https:// URL",
        ),
        (
            "gate caBundle not PEM",
            with(
                canary(),
                &[(
                    "/spec/strategy/gates",
                    json!([gate(
                        json!({ "url": "https://gate.example/", "caBundle": "abc" })
                    )]),
                )],
            ),
            "gate caBundle must hold PEM certificates",
        ),
        (
            "same canary and stable service",
            with(canary(), &[(&p("/canaryService"), json!("web-stable"))]),
            "canaryService and stableService must name different Services",
        ),
        (
            "router without services",
            with(canary(), &[(&p("/canaryService"), Value::Null)]),
            "trafficRouting needs both canaryService and stableService",
        ),
        (
            "zero surge and unavailable",
            with(
                canary(),
                &[
                    (&p("/maxSurge"), json!("0%")),
                    (&p("/maxUnavailable"), json!(0)),
                ],
            ),
            "maxSurge and maxUnavailable must not both be zero",
        ),
        (
            "setCanaryScale without router",
            with(canary(), &[(&p("/trafficRouting"), Value::Null)]),
            "setCanaryScale needs trafficRouting",
        ),
        (
            "role metadata setting a sluice.dev/ label",
            with(
                canary(),
                &[(
                    &p("/canaryMetadata"),
                    json!({ "labels": { "sluice.dev/role": "canary" } }),
                )],
            ),
            "pod metadata must not set sluice.dev/ labels",
        ),
        (
            "role metadata label value too long",
            with(
                canary(),
                &[(
                    &p("/stableMetadata"),
                    json!({ "labels": { "role": "x".repeat(64) } }),
                )],
            ),
            "pod metadata label values must be at most 63 characters",
        ),
        (
            "dynamicStableScale without router",
            with(
                canary(),
                &[
                    (&p("/trafficRouting"), Value::Null),
                    (&p("/dynamicStableScale"), json!(true)),
                ],
            ),
            "dynamicStableScale needs trafficRouting",
        ),
        (
            "bad maxSurge",
            with(canary(), &[(&p("/maxSurge"), json!("lots"))]),
            "maxSurge must be a non-negative number or a percentage",
        ),
        (
            "bad maxUnavailable",
            with(canary(), &[(&p("/maxUnavailable"), json!(-2))]),
            "maxUnavailable must be a non-negative number or a percentage",
        ),
        (
            "two routers",
            with(
                canary(),
                &[(
                    &p("/trafficRouting/gatewayAPI"),
                    json!({ "httpRoute": "web" }),
                )],
            ),
            "trafficRouting must set exactly one of nginx, gatewayAPI and istio",
        ),
        (
            "istio subsets the same",
            with(
                canary(),
                &[
                    (&p("/trafficRouting/nginx"), Value::Null),
                    (
                        &p("/trafficRouting/istio"),
                        json!({
                            "virtualService": { "name": "web" },
                            "destinationRule": { "name": "web", "canarySubsetName": "web", "stableSubsetName": "web" },
                        }),
                    ),
                ],
            ),
            "istio.destinationRule.canarySubsetName and stableSubsetName must differ",
        ),
        (
            "istio VirtualService name not a DNS name",
            with(
                canary(),
                &[
                    (&p("/trafficRouting/nginx"), Value::Null),
                    (
                        &p("/trafficRouting/istio"),
                        json!({ "virtualService": { "name": "Web_1" } }),
                    ),
                ],
            ),
            "istio.virtualService.name must be a DNS subdomain name",
        ),
        (
            "istio VirtualService route name empty",
            with(
                canary(),
                &[
                    (&p("/trafficRouting/nginx"), Value::Null),
                    (
                        &p("/trafficRouting/istio"),
                        json!({ "virtualService": { "name": "web", "routes": [""] } }),
                    ),
                ],
            ),
            "istio.virtualService.routes must be non-empty route names",
        ),
        (
            "istio DestinationRule name not a DNS name",
            with(
                canary(),
                &[
                    (&p("/trafficRouting/nginx"), Value::Null),
                    (
                        &p("/trafficRouting/istio"),
                        json!({ "virtualService": { "name": "web" }, "destinationRule": { "name": "Web_1", "canarySubsetName": "canary", "stableSubsetName": "stable" } }),
                    ),
                ],
            ),
            "istio.destinationRule.name must be a DNS subdomain name",
        ),
        (
            "istio canary subset not a DNS label",
            with(
                canary(),
                &[
                    (&p("/trafficRouting/nginx"), Value::Null),
                    (
                        &p("/trafficRouting/istio"),
                        json!({ "virtualService": { "name": "web" }, "destinationRule": { "name": "web", "canarySubsetName": "Canary", "stableSubsetName": "stable" } }),
                    ),
                ],
            ),
            "istio.destinationRule.canarySubsetName must be a DNS label",
        ),
        (
            "istio stable subset not a DNS label",
            with(
                canary(),
                &[
                    (&p("/trafficRouting/nginx"), Value::Null),
                    (
                        &p("/trafficRouting/istio"),
                        json!({ "virtualService": { "name": "web" }, "destinationRule": { "name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable.v1" } }),
                    ),
                ],
            ),
            "istio.destinationRule.stableSubsetName must be a DNS label",
        ),
        (
            "step with two actions",
            with(
                canary(),
                &[(&p("/steps/0"), json!({ "setWeight": 20, "pause": {} }))],
            ),
            "each step must set exactly one of setWeight, pause, setCanaryScale, analysis, setHeaderRoute and setMirrorRoute",
        ),
        (
            "step with no action",
            with(canary(), &[(&p("/steps/0"), json!({}))]),
            "each step must set exactly one of setWeight, pause, setCanaryScale, analysis, setHeaderRoute and setMirrorRoute",
        ),
        (
            "step with a weight and a header route",
            with(
                canary(),
                &[(
                    &p("/steps/0"),
                    json!({ "setWeight": 20, "setHeaderRoute": { "name": "testers" } }),
                )],
            ),
            "each step must set exactly one of setWeight, pause, setCanaryScale, analysis, setHeaderRoute and setMirrorRoute",
        ),
        (
            "route step without router",
            with(canary(), &[(&p("/trafficRouting"), Value::Null)]),
            "setHeaderRoute and setMirrorRoute need trafficRouting",
        ),
        (
            "header route not in managedRoutes",
            with(
                canary(),
                &[(
                    &p("/steps/0"),
                    json!({ "setHeaderRoute": { "name": "other" } }),
                )],
            ),
            "every setHeaderRoute must name a route listed in trafficRouting.managedRoutes",
        ),
        (
            "mirror route not in managedRoutes",
            with(
                canary(),
                &[(
                    &p("/steps/0"),
                    json!({ "setMirrorRoute": { "name": "other", "match": [{ "path": { "prefix": "/" } }] } }),
                )],
            ),
            "every setMirrorRoute must name a route listed in trafficRouting.managedRoutes",
        ),
        (
            "header value with two matches",
            with(
                canary(),
                &[(
                    &p("/steps/0"),
                    json!({ "setHeaderRoute": { "name": "testers", "match": [
                    { "headerName": "X-Canary", "headerValue": { "exact": "yes", "prefix": "y" } },
                ] } }),
                )],
            ),
            "a string match must set exactly one of exact, prefix and regex",
        ),
        (
            "bad header name",
            with(
                canary(),
                &[(
                    &p("/steps/0"),
                    json!({ "setHeaderRoute": { "name": "testers", "match": [
                    { "headerName": "X Canary", "headerValue": { "exact": "yes" } },
                ] } }),
                )],
            ),
            "headerName must be an HTTP header name",
        ),
        (
            "mirror percentage above 100",
            with(
                canary(),
                &[(
                    &p("/steps/0"),
                    json!({ "setMirrorRoute": { "name": "testers", "percentage": 101, "match": [{ "path": { "prefix": "/" } }] } }),
                )],
            ),
            "setMirrorRoute.percentage must be between 0 and 100",
        ),
        (
            "bad managed route name",
            with(
                canary(),
                &[(
                    &p("/trafficRouting/managedRoutes"),
                    json!([{ "name": "Testers" }]),
                )],
            ),
            "managedRoutes[].name must be lowercase letters, digits and -",
        ),
        (
            "weight above 100",
            with(canary(), &[(&p("/steps/0"), json!({ "setWeight": 101 }))]),
            "setWeight must be between 0 and 100",
        ),
        (
            "negative weight",
            with(canary(), &[(&p("/steps/0"), json!({ "setWeight": -5 }))]),
            "setWeight must be between 0 and 100",
        ),
        (
            "unparsable pause duration",
            with(
                canary(),
                &[(
                    &p("/steps/1"),
                    json!({ "pause": { "duration": "5 parsecs" } }),
                )],
            ),
            "must be a duration such as 30s",
        ),
        (
            "canary scale with two sizes",
            with(
                canary(),
                &[(
                    &p("/steps/2"),
                    json!({ "setCanaryScale": { "replicas": 2, "weight": 10 } }),
                )],
            ),
            "setCanaryScale must set exactly one of replicas, weight and matchTrafficWeight",
        ),
        (
            "negative canary scale",
            with(
                canary(),
                &[(
                    &p("/steps/2"),
                    json!({ "setCanaryScale": { "replicas": -1 } }),
                )],
            ),
            "setCanaryScale.replicas must not be negative",
        ),
        (
            "canary scale weight above 100",
            with(
                canary(),
                &[(
                    &p("/steps/2"),
                    json!({ "setCanaryScale": { "weight": 150 } }),
                )],
            ),
            "setCanaryScale.weight must be between 0 and 100",
        ),
        (
            "analysis without templates",
            with(canary(), &[(&p("/steps/3/analysis/templates"), json!([]))]),
            "analysis must name at least one template",
        ),
        (
            "arg with value and valueFrom",
            with(
                canary(),
                &[(
                    &p("/steps/3/analysis/args/0/valueFrom"),
                    json!({ "podTemplateHashValue": "Stable" }),
                )],
            ),
            "an arg sets value or valueFrom, not both",
        ),
        (
            "bad arg name",
            with(
                canary(),
                &[(&p("/steps/3/analysis/args/0/name"), json!("9 lives"))],
            ),
            "arg names start with a letter or _",
        ),
        (
            "valueFrom with two sources",
            with(
                canary(),
                &[(
                    &p("/steps/3/analysis/args/1/valueFrom/fieldRef"),
                    json!({ "fieldPath": "metadata.name" }),
                )],
            ),
            "valueFrom must set exactly one of secretKeyRef, fieldRef and podTemplateHashValue",
        ),
        (
            "blue-green without activeService",
            with(valid_blue_green(), &[(&b("/activeService"), Value::Null)]),
            "blueGreen.activeService is required",
        ),
        (
            "same active and preview service",
            with(
                valid_blue_green(),
                &[(&b("/previewService"), json!("web-active"))],
            ),
            "previewService and activeService must name different Services",
        ),
        (
            "negative preview count",
            with(
                valid_blue_green(),
                &[(&b("/previewReplicaCount"), json!(-1))],
            ),
            "previewReplicaCount must not be negative",
        ),
        (
            "negative auto-promotion delay",
            with(
                valid_blue_green(),
                &[(&b("/autoPromotionSeconds"), json!(-5))],
            ),
            "autoPromotionSeconds must not be negative",
        ),
        (
            "negative minReadySeconds",
            with(canary(), &[("/spec/minReadySeconds", json!(-1))]),
            "minReadySeconds must not be negative",
        ),
        (
            "negative revisionHistoryLimit",
            with(canary(), &[("/spec/revisionHistoryLimit", json!(-1))]),
            "revisionHistoryLimit must not be negative",
        ),
        (
            "zero progress deadline",
            with(canary(), &[("/spec/progressDeadlineSeconds", json!(0))]),
            "progressDeadlineSeconds must be at least 1",
        ),
        (
            "negative scale-down delay",
            with(canary(), &[(&p("/scaleDownDelaySeconds"), json!(-1))]),
            "scaleDownDelaySeconds must not be negative",
        ),
        (
            "negative abort scale-down delay",
            with(
                valid_blue_green(),
                &[(&b("/abortScaleDownDelaySeconds"), json!(-1))],
            ),
            "abortScaleDownDelaySeconds must not be negative",
        ),
        (
            "canaryService not a Service name",
            with(canary(), &[(&p("/canaryService"), json!("Web_Canary"))]),
            "canaryService must be a Service name",
        ),
        (
            "stableService not a Service name",
            with(canary(), &[(&p("/stableService"), json!("web.stable"))]),
            "stableService must be a Service name",
        ),
        (
            "activeService not a Service name",
            with(valid_blue_green(), &[(&b("/activeService"), json!("Web"))]),
            "activeService must be a Service name",
        ),
        (
            "previewService not a Service name",
            with(
                valid_blue_green(),
                &[(&b("/previewService"), json!("9-preview"))],
            ),
            "previewService must be a Service name",
        ),
        (
            "background analysis from a step that does not exist",
            with(canary(), &[(&p("/analysis/startingStep"), json!(8))]),
            "analysis.startingStep must be the index of a step",
        ),
        (
            "the same arg twice",
            with(
                canary(),
                &[(&p("/steps/3/analysis/args/1/name"), json!("service"))],
            ),
            "Duplicate value",
        ),
        (
            "empty templateName",
            with(
                canary(),
                &[(&p("/steps/3/analysis/templates/0/templateName"), json!(""))],
            ),
            "templateName must not be empty",
        ),
        (
            "empty stableIngress",
            with(
                canary(),
                &[(&p("/trafficRouting/nginx/stableIngress"), json!(""))],
            ),
            "nginx.stableIngress must not be empty",
        ),
        (
            "empty httpRoute",
            with(
                canary(),
                &[(
                    &p("/trafficRouting"),
                    json!({ "gatewayAPI": { "httpRoute": "" } }),
                )],
            ),
            "gatewayAPI.httpRoute must not be empty",
        ),
        // Schema rules (types, bounds) rather than CEL: the apiserver names the field.
        (
            "replicas of the wrong type",
            with(canary(), &[("/spec/replicas", json!("three"))]),
            "spec.replicas in body must be of type integer",
        ),
        (
            "weight of the wrong type",
            with(
                canary(),
                &[(&p("/steps/0"), json!({ "setWeight": "half" }))],
            ),
            "spec.strategy.canary.steps[0].setWeight in body must be of type integer",
        ),
        (
            "fractional weight",
            with(canary(), &[(&p("/steps/0"), json!({ "setWeight": 12.5 }))]),
            "spec.strategy.canary.steps[0].setWeight in body must be of type int32: \"float64\"",
        ),
    ]
}

pub fn template_cases() -> Vec<Case> {
    let t = valid_template;
    vec![
        (
            "no metrics",
            with(
                t(),
                &[
                    ("/spec/metrics", json!([])),
                    ("/spec/dryRun", Value::Null),
                    ("/spec/measurementRetention", Value::Null),
                ],
            ),
            "an analysis needs at least one metric",
        ),
        (
            "duplicate metric names",
            with(t(), &[("/spec/metrics/1/name", json!("success-rate"))]),
            "metric names must be unique",
        ),
        (
            "dryRun of an unknown metric",
            with(t(), &[("/spec/dryRun/0/metricName", json!("nope"))]),
            "every dryRun.metricName must name a metric",
        ),
        (
            "retention of an unknown metric",
            with(
                t(),
                &[("/spec/measurementRetention/0/metricName", json!("nope"))],
            ),
            "every measurementRetention.metricName must name a metric",
        ),
        (
            "zero retention",
            with(t(), &[("/spec/measurementRetention/0/limit", json!(0))]),
            "measurementRetention.limit must be at least 1",
        ),
        (
            "repeated metric without interval",
            with(t(), &[("/spec/metrics/0/interval", Value::Null)]),
            "a metric measured more than once needs an interval",
        ),
        (
            "prometheus metric without condition",
            with(t(), &[("/spec/metrics/0/successCondition", Value::Null)]),
            "a prometheus metric needs a successCondition or a failureCondition",
        ),
        (
            "empty metric name",
            with(
                t(),
                &[
                    ("/spec/metrics/1/name", json!("")),
                    ("/spec/dryRun", Value::Null),
                ],
            ),
            "metric name must not be empty",
        ),
        (
            "zero count",
            with(t(), &[("/spec/metrics/0/count", json!(0))]),
            "count must be at least 1",
        ),
        (
            "two providers",
            with(
                t(),
                &[(
                    "/spec/metrics/1/provider/prometheus",
                    json!({ "address": "http://x", "query": "up" }),
                )],
            ),
            "provider must set exactly one of prometheus, judge, sequential, web and job",
        ),
        (
            "no provider",
            with(t(), &[("/spec/metrics/1/provider/judge", Value::Null)]),
            "provider must set exactly one of prometheus, judge, sequential, web and job",
        ),
        (
            "job pod restartPolicy Always",
            with(
                t(),
                &[(
                    "/spec/metrics/2/provider/job/spec/template/spec/restartPolicy",
                    json!("Always"),
                )],
            ),
            "job spec.template.spec.restartPolicy must be Never or OnFailure",
        ),
        (
            "job pod restartPolicy missing",
            with(
                t(),
                &[(
                    "/spec/metrics/2/provider/job/spec/template/spec/restartPolicy",
                    Value::Null,
                )],
            ),
            "job spec.template.spec.restartPolicy must be Never or OnFailure",
        ),
        (
            "job metric with a condition",
            with(t(), &[("/spec/metrics/2/successCondition", json!("true"))]),
            "a job metric takes no successCondition or failureCondition",
        ),
        (
            "web metric without condition",
            with(
                t(),
                &[
                    ("/spec/metrics/1", web(json!({}))),
                    ("/spec/metrics/1/successCondition", Value::Null),
                ],
            ),
            "a web metric needs a successCondition or a failureCondition",
        ),
        (
            "web url not a URL",
            with(
                t(),
                &[("/spec/metrics/1", web(json!({ "url": "health:80" })))],
            ),
            "web url must be an http:// or https:// URL",
        ),
        (
            "web method not one of GET, POST, PUT",
            with(
                t(),
                &[("/spec/metrics/1", web(json!({ "method": "DELETE" })))],
            ),
            "Unsupported value: \"DELETE\"",
        ),
        (
            "web body and jsonBody",
            with(
                t(),
                &[(
                    "/spec/metrics/1",
                    web(json!({ "method": "POST", "body": "a", "jsonBody": { "a": 1 } })),
                )],
            ),
            "web sets body or jsonBody, not both",
        ),
        (
            "web body with GET",
            with(t(), &[("/spec/metrics/1", web(json!({ "body": "a" })))]),
            "web body and jsonBody need method POST or PUT",
        ),
        (
            "web insecure and caBundle",
            with(
                t(),
                &[(
                    "/spec/metrics/1",
                    web(json!({ "insecure": true,
                        "caBundle": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" })),
                )],
            ),
            "web sets insecure or caBundle, not both",
        ),
        (
            "web insecure on http",
            with(
                t(),
                &[(
                    "/spec/metrics/1",
                    web(json!({ "url": "http://health.example/", "insecure": true })),
                )],
            ),
            "web insecure applies only to an https:// url",
        ),
        (
            "web caBundle not PEM",
            with(
                t(),
                &[("/spec/metrics/1", web(json!({ "caBundle": "abc" })))],
            ),
            "web caBundle must hold PEM certificates",
        ),
        (
            "web header with value and valueFrom",
            with(
                t(),
                &[(
                    "/spec/metrics/1",
                    web(json!({ "headers": [{ "key": "X", "value": "a",
                        "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } }] })),
                )],
            ),
            "a web header sets exactly one of value and valueFrom",
        ),
        (
            "web timeoutSeconds of 0",
            with(
                t(),
                &[("/spec/metrics/1", web(json!({ "timeoutSeconds": 0 })))],
            ),
            "timeoutSeconds in body should be greater than or equal to 1",
        ),
        (
            "sequential metric without interval",
            with(t(), &[("/spec/metrics/1", sequential(json!({})))]),
            "a sequential metric needs an interval",
        ),
        (
            "sequential metric with a condition",
            with(
                t(),
                &[(
                    "/spec/metrics/1",
                    sequential(json!({ "interval": "1m", "successCondition": "result < 100.0" })),
                )],
            ),
            "a sequential metric takes no successCondition or failureCondition",
        ),
        (
            "sequential with counts and a histogram",
            with(
                t(),
                &[
                    ("/spec/metrics/1", sequential(json!({ "interval": "1m" }))),
                    (
                        "/spec/metrics/1/provider/sequential/histogram",
                        json!({ "canary": "a_bucket", "baseline": "b_bucket" }),
                    ),
                ],
            ),
            "sequential must set exactly one of counts and histogram",
        ),
        (
            "sequential alpha above 0.5",
            with(
                t(),
                &[
                    ("/spec/metrics/1", sequential(json!({ "interval": "1m" }))),
                    ("/spec/metrics/1/provider/sequential/alpha", json!(0.7)),
                ],
            ),
            "sequential alpha must be in (0, 0.5]",
        ),
        (
            "sequential allowedIncrease below 1",
            with(
                t(),
                &[
                    ("/spec/metrics/1", sequential(json!({ "interval": "1m" }))),
                    (
                        "/spec/metrics/1/provider/sequential/allowedIncrease",
                        json!(0.9),
                    ),
                ],
            ),
            "sequential allowedIncrease is a ratio of at least 1",
        ),
        (
            "sequential allowedDecrease of 0",
            with(
                t(),
                &[
                    ("/spec/metrics/1", sequential(json!({ "interval": "1m" }))),
                    (
                        "/spec/metrics/1/provider/sequential/allowedDecrease",
                        json!(0.0),
                    ),
                ],
            ),
            "sequential allowedDecrease is a ratio in (0, 1]",
        ),
        (
            "sequential counts with an empty events selector",
            with(
                t(),
                &[
                    ("/spec/metrics/1", sequential(json!({ "interval": "1m" }))),
                    (
                        "/spec/metrics/1/provider/sequential/counts/canary/events",
                        json!(""),
                    ),
                ],
            ),
            "events must not be empty",
        ),
        (
            "sequential counts with an empty total selector",
            with(
                t(),
                &[
                    ("/spec/metrics/1", sequential(json!({ "interval": "1m" }))),
                    (
                        "/spec/metrics/1/provider/sequential/counts/baseline/total",
                        json!(""),
                    ),
                ],
            ),
            "total must not be empty",
        ),
        (
            "sequential histogram with an empty canary selector",
            with(
                t(),
                &[
                    ("/spec/metrics/1", sequential(json!({ "interval": "1m" }))),
                    ("/spec/metrics/1/provider/sequential/counts", Value::Null),
                    (
                        "/spec/metrics/1/provider/sequential/histogram",
                        json!({ "canary": "", "baseline": "b_bucket" }),
                    ),
                ],
            ),
            "canary must not be empty",
        ),
        (
            "sequential histogram with an empty baseline selector",
            with(
                t(),
                &[
                    ("/spec/metrics/1", sequential(json!({ "interval": "1m" }))),
                    ("/spec/metrics/1/provider/sequential/counts", Value::Null),
                    (
                        "/spec/metrics/1/provider/sequential/histogram",
                        json!({ "canary": "a_bucket", "baseline": "" }),
                    ),
                ],
            ),
            "baseline must not be empty",
        ),
        (
            "judge thresholds inverted",
            with(
                t(),
                &[(
                    "/spec/metrics/1/provider/judge/thresholds",
                    json!({ "pass": 50, "marginal": 80 }),
                )],
            ),
            "judge thresholds.marginal must not exceed thresholds.pass",
        ),
        (
            "unparsable interval",
            with(t(), &[("/spec/metrics/0/interval", json!("every minute"))]),
            "must be a duration such as 30s",
        ),
        (
            "the same arg twice",
            with(
                t(),
                &[(
                    "/spec/args",
                    json!([{ "name": "service" }, { "name": "service" }]),
                )],
            ),
            "Duplicate value",
        ),
        (
            "address not a URL",
            with(
                t(),
                &[(
                    "/spec/metrics/0/provider/prometheus/address",
                    json!("prometheus:9090"),
                )],
            ),
            "address must be an http:// or https:// URL",
        ),
        (
            "empty query",
            with(
                t(),
                &[("/spec/metrics/0/provider/prometheus/query", json!(""))],
            ),
            "query must not be empty",
        ),
        (
            "the same judge signal twice",
            with(
                t(),
                &[(
                    "/spec/metrics/1/provider/judge/signals",
                    json!([
                        { "name": "latency", "canaryQuery": "a", "baselineQuery": "b" },
                        { "name": "latency", "canaryQuery": "c", "baselineQuery": "d" },
                    ]),
                )],
            ),
            "spec.metrics[1].provider.judge.signals[1]: Duplicate value",
        ),
        // Schema rules (types, bounds) rather than CEL: the apiserver names the field.
        (
            "negative failureLimit",
            with(t(), &[("/spec/metrics/0/failureLimit", json!(-1))]),
            "spec.metrics[0].failureLimit in body should be greater than or equal to 0",
        ),
        (
            "judge confidence above 0.9999",
            with(
                t(),
                &[("/spec/metrics/1/provider/judge/confidence", json!(2))],
            ),
            // The apiserver prints the bound truncated ("... equal to 0"), not 0.9999.
            "spec.metrics[1].provider.judge.confidence in body should be less than or equal to",
        ),
        (
            "judge without signals",
            with(
                t(),
                &[("/spec/metrics/1/provider/judge/signals", json!([]))],
            ),
            "spec.metrics[1].provider.judge.signals in body should have at least 1 items",
        ),
    ]
}

/// A web metric in place of the judge (metric 1), with `web` merged into its provider.
fn web(extra: Value) -> Value {
    let mut provider = json!({ "url": "https://health.example/status" });
    provider
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({
        "name": "judge",
        "successCondition": "result == 'pass'",
        "provider": { "web": provider },
    })
}

/// A sequential metric on counts (named `judge`, as the metric it replaces), with `extra`
/// fields of the metric.
fn sequential(extra: Value) -> Value {
    let mut m = json!({
        "name": "judge",
        "provider": { "sequential": {
            "address": "http://prometheus:9090",
            "counts": {
                "canary": { "events": "e", "total": "t" },
                "baseline": { "events": "e", "total": "t" },
            },
        } },
    });
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    m
}
