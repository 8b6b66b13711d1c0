//! `convert` on the Argo corpus (`e2e/tests/fixtures/argo/`, written from Argo's docs) and
//! on the cases around it: the fields that come out, every warning and error by object
//! and path, and the command's exit codes.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::files::{self, EXIT_NOT_CONVERTED, EXIT_OK, EXIT_UNREADABLE};
use super::*;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/tests/fixtures/argo")
}

/// Every document of one corpus application, converted.
fn app(dir: &str) -> Vec<Conversion> {
    let inputs = files::read_inputs(&[corpus().join(dir)], &mut || unreachable!()).unwrap();
    inputs
        .into_iter()
        .flat_map(|i| convert_all(i.documents))
        .collect()
}

fn one<'a>(all: &'a [Conversion], kind: &str) -> &'a Conversion {
    let found: Vec<_> = all
        .iter()
        .filter(|c| c.object.starts_with(&format!("{kind} ")))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in {all:#?}");
    found[0]
}

fn output<'a>(all: &'a [Conversion], kind: &str) -> &'a Value {
    let c = one(all, kind);
    assert_eq!(c.outcome, Outcome::Converted, "{c:#?}");
    c.output.as_ref().unwrap()
}

/// (severity, path) of every finding.
fn paths(c: &Conversion) -> Vec<(Severity, String)> {
    let mut p: Vec<_> = c
        .findings
        .iter()
        .map(|f| (f.severity, f.path.clone()))
        .collect();
    p.sort();
    p
}

fn warnings(c: &Conversion) -> Vec<String> {
    paths(c)
        .into_iter()
        .map(|(s, p)| {
            assert_eq!(s, Severity::Warning, "{c:#?}");
            p
        })
        .collect()
}

fn convert_one(doc: Value) -> Conversion {
    convert_document(doc)
}

#[test]
fn basic_canary_converts_without_a_warning() {
    let all = app("canary-basic");
    let r = one(&all, "Rollout");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    let out = output(&all, "Rollout");
    assert_eq!(out["apiVersion"], "sluice.dev/v1alpha1");
    assert_eq!(
        out["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "rollouts-demo"
    );
    assert_eq!(out["spec"]["replicas"], 4);
    assert_eq!(out["spec"]["revisionHistoryLimit"], 2);
    let canary = &out["spec"]["strategy"]["canary"];
    assert_eq!(canary["maxUnavailable"], 0);
    assert_eq!(canary["maxSurge"], "25%");
    assert!(canary.get("trafficRouting").is_none());
    assert_eq!(
        canary["steps"],
        json!([
            { "setWeight": 25 }, { "pause": { "duration": "2s" } }, { "setWeight": 50 },
            { "pause": {} }, { "setWeight": 75 }, { "pause": { "duration": 2 } },
        ])
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["image"],
        "argoproj/rollouts-demo:blue"
    );
}

#[test]
fn nginx_canary_keeps_the_ingress_and_prefixes_argos_annotations() {
    let all = app("canary-nginx");
    assert!(one(&all, "Rollout").findings.is_empty());
    let nginx = &output(&all, "Rollout")["spec"]["strategy"]["canary"]["trafficRouting"]["nginx"];
    assert_eq!(nginx["stableIngress"], "rollouts-demo-stable");
    assert_eq!(nginx["annotationPrefix"], "nginx.ingress.kubernetes.io");
    assert_eq!(
        nginx["additionalIngressAnnotations"],
        json!({
            "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
            "nginx.ingress.kubernetes.io/canary-by-header-value": "iwantsit",
            "my-custom-annotation.mygroup.com/key": "value",
        })
    );
    // The Ingress and both Services pass through as they were.
    let ingress = one(&all, "Ingress");
    assert_eq!(ingress.outcome, Outcome::PassedThrough);
    let original: Value = serde_yaml::from_str(
        &std::fs::read_to_string(corpus().join("canary-nginx/ingress.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(ingress.output.as_ref(), Some(&original));
    assert_eq!(
        all.iter()
            .filter(|c| c.outcome == Outcome::PassedThrough)
            .count(),
        3
    );
}

#[test]
fn gateway_api_plugin_becomes_gateway_api_routing() {
    let all = app("canary-gatewayapi");
    let r = one(&all, "Rollout");
    assert_eq!(
        warnings(r),
        ["metadata.annotations[rollout.argoproj.io/revision]"]
    );
    let out = output(&all, "Rollout");
    let canary = &out["spec"]["strategy"]["canary"];
    assert_eq!(
        canary["trafficRouting"],
        json!({ "gatewayAPI": { "httpRoute": "argo-rollouts-http-route" } })
    );
    assert_eq!(canary["canaryService"], "argo-rollouts-canary-service");
    assert!(out["metadata"].get("annotations").is_none(), "{out:#}");
    assert_eq!(one(&all, "HTTPRoute").outcome, Outcome::PassedThrough);
}

#[test]
fn istio_virtual_service_and_destination_rule_convert_with_header_and_mirror_routes() {
    let all = app("canary-istio");
    assert!(one(&all, "Rollout").findings.is_empty(), "{all:#?}");
    let canary = &output(&all, "Rollout")["spec"]["strategy"]["canary"];
    assert_eq!(
        canary["trafficRouting"],
        json!({
            "istio": {
                "virtualService": { "name": "rollout-vsvc", "routes": ["primary"] },
                "destinationRule": {
                    "name": "rollout-destrule",
                    "canarySubsetName": "canary",
                    "stableSubsetName": "stable",
                },
            },
            "managedRoutes": [{ "name": "set-header" }, { "name": "mirror-route" }],
        })
    );
    assert_eq!(
        canary["steps"][2],
        json!({ "setMirrorRoute": { "name": "mirror-route", "percentage": 35, "match": [
            { "method": { "exact": "GET" }, "path": { "prefix": "/" } }
        ] } })
    );
    assert_eq!(one(&all, "VirtualService").outcome, Outcome::PassedThrough);
    assert_eq!(one(&all, "DestinationRule").outcome, Outcome::PassedThrough);
}

#[test]
fn istio_shapes_sluice_cannot_route_are_refused() {
    let refused = |istio: Value| -> Vec<String> {
        let doc = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web" },
            "spec": {
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } },
                              "spec": { "containers": [{ "name": "web", "image": "web:1" }] } },
                "strategy": { "canary": {
                    "canaryService": "web-canary", "stableService": "web-stable",
                    "trafficRouting": { "istio": istio },
                } },
            },
        });
        let c = convert_all(vec![doc]).pop().unwrap();
        assert_eq!(c.outcome, Outcome::Refused, "{c:#?}");
        paths(&c)
            .into_iter()
            .filter(|(s, _)| *s == Severity::Error)
            .map(|(_, p)| p)
            .collect()
    };
    let at = |p: &str| format!("spec.strategy.canary.trafficRouting.istio.{p}");
    assert_eq!(
        refused(json!({ "virtualServices": [{ "name": "a" }, { "name": "b" }] })),
        [at("virtualServices")]
    );
    assert_eq!(
        refused(json!({ "virtualService": { "name": "a", "tlsRoutes": [{ "port": 443 }] } })),
        [at("virtualService.tlsRoutes")]
    );
    assert_eq!(
        refused(json!({ "virtualService": { "name": "a.other-namespace" } })),
        [at("virtualService.name")]
    );
    assert_eq!(refused(json!({})), [at("virtualService")]);
}

#[test]
fn header_route_steps_and_managed_routes_carry_over() {
    let all = app("canary-header-route");
    assert!(one(&all, "Rollout").findings.is_empty());
    let canary = &output(&all, "Rollout")["spec"]["strategy"]["canary"];
    assert_eq!(
        canary["trafficRouting"],
        json!({
            "gatewayAPI": { "httpRoute": "argo-rollouts-http-route" },
            "managedRoutes": [{ "name": "header-route-1" }],
        })
    );
    assert_eq!(
        canary["steps"][1],
        json!({ "setHeaderRoute": { "name": "header-route-1", "match": [
            { "headerName": "X-Canary", "headerValue": { "exact": "yes" } }
        ] } })
    );
    assert_eq!(
        canary["steps"][4],
        json!({ "setHeaderRoute": { "name": "header-route-1" } })
    );
}

#[test]
fn blue_green_with_analysis_and_a_template_with_args() {
    let all = app("bluegreen-analysis");
    for c in &all {
        assert!(c.findings.is_empty(), "{c:#?}");
    }
    let bg = &output(&all, "Rollout")["spec"]["strategy"]["blueGreen"];
    assert_eq!(bg["activeService"], "rollout-bluegreen-active");
    assert_eq!(bg["previewService"], "rollout-bluegreen-preview");
    assert_eq!(bg["autoPromotionEnabled"], false);
    assert_eq!(bg["scaleDownDelaySeconds"], 5);
    for key in ["prePromotionAnalysis", "postPromotionAnalysis"] {
        assert_eq!(
            bg[key],
            json!({
                "templates": [{ "templateName": "success-rate", "clusterScope": false }],
                "args": [
                    { "name": "namespace", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                    { "name": "revision-hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
                ],
            }),
            "{key}"
        );
    }
    let t = output(&all, "AnalysisTemplate");
    assert_eq!(t["apiVersion"], "sluice.dev/v1alpha1");
    assert_eq!(
        t["spec"]["args"][2],
        json!({ "name": "threshold", "value": "0.95" })
    );
    let m = &t["spec"]["metrics"][0];
    assert_eq!(m["successCondition"], "result[0] >= 0.95");
    assert_eq!(
        (&m["interval"], &m["initialDelay"], &m["count"]),
        (&json!("2s"), &json!("4s"), &json!(3))
    );
    assert_eq!(m["failureLimit"], 1);
    assert_eq!(m["provider"]["prometheus"]["timeout"], 20);
    assert!(
        m["provider"]["prometheus"]["query"]
            .as_str()
            .unwrap()
            .contains("{{args.revision-hash}}")
    );
}

#[test]
fn background_analysis_with_a_cluster_template_and_a_secret_arg() {
    let all = app("background-analysis");
    assert!(one(&all, "Rollout").findings.is_empty());
    let analysis = &output(&all, "Rollout")["spec"]["strategy"]["canary"]["analysis"];
    assert_eq!(analysis["startingStep"], 1);
    assert_eq!(
        analysis["templates"],
        json!([{ "templateName": "error-rate", "clusterScope": true }])
    );
    assert_eq!(
        analysis["args"][1],
        json!({ "name": "service-name", "value": "guestbook" })
    );

    let t = one(&all, "ClusterAnalysisTemplate");
    // Each condition: rewritten (bare `result` indexed), and said so.
    assert_eq!(
        warnings(t),
        [
            "spec.metrics[0].failureCondition",
            "spec.metrics[0].failureCondition",
            "spec.metrics[0].successCondition",
            "spec.metrics[0].successCondition",
        ]
    );
    let out = output(&all, "ClusterAnalysisTemplate");
    assert_eq!(out["kind"], "ClusterAnalysisTemplate");
    let m = &out["spec"]["metrics"][0];
    assert_eq!(m["successCondition"], "result[0] <= 0.01");
    assert_eq!(m["failureCondition"], "result[0] > 0.05");
    assert_eq!(
        (&m["inconclusiveLimit"], &m["consecutiveErrorLimit"]),
        (&json!(2), &json!(6))
    );
    assert_eq!(
        out["spec"]["args"][2],
        json!({ "name": "tenant", "valueFrom": { "secretKeyRef": { "name": "prometheus-tenant", "key": "tenant" } } })
    );
    assert_eq!(
        m["provider"]["prometheus"]["headers"],
        json!([{ "key": "X-Scope-OrgID", "value": "{{args.tenant}}" }])
    );
    assert_eq!(one(&all, "Secret").outcome, Outcome::PassedThrough);
}

#[test]
fn fields_without_an_equivalent_are_each_a_warning_naming_the_field() {
    let all = app("unsupported-fields");
    let r = one(&all, "Rollout");
    assert_eq!(r.object, "Rollout shop/checkout");
    assert_eq!(
        warnings(r),
        [
            "metadata.annotations[notifications.argoproj.io/subscribe.on-rollout-completed.slack]",
            "metadata.annotations[rollout.argoproj.io/revision]",
            "spec.analysis.successfulRunHistoryLimit",
            "spec.analysis.unsuccessfulRunHistoryLimit",
            "spec.strategy.canary.antiAffinity",
            "spec.strategy.canary.minPodsPerReplicaSet",
            "spec.strategy.canary.scaleDownDelayRevisionLimit",
            "spec.strategy.canary.steps[1].analysis.dryRun",
            "spec.strategy.canary.steps[1].analysis.measurementRetention",
        ]
    );
    let subscription = r
        .findings
        .iter()
        .find(|f| f.path.contains("notifications.argoproj.io/subscribe"))
        .unwrap();
    assert!(
        subscription.message.contains("sluice.dev/notify"),
        "the warning says how to subscribe in sluice: {}",
        subscription.message
    );
    let out = output(&all, "Rollout");
    // What sluice has is kept: the other annotation, the router, the steps.
    assert_eq!(
        out["metadata"]["annotations"],
        json!({ "team.example.com/owner": "payments" })
    );
    assert_eq!(out["metadata"]["namespace"], "shop");
    let canary = &out["spec"]["strategy"]["canary"];
    assert_eq!(
        canary["trafficRouting"]["nginx"]["stableIngress"],
        "checkout"
    );
    assert_eq!(canary["steps"].as_array().unwrap().len(), 4);
    assert!(canary.get("antiAffinity").is_none());
    // Role metadata has sluice's own fields, with Argo's names.
    assert_eq!(
        canary["canaryMetadata"],
        json!({ "labels": { "role": "canary" } })
    );
    assert_eq!(
        canary["stableMetadata"],
        json!({ "labels": { "role": "stable" } })
    );

    let t = one(&all, "AnalysisTemplate");
    assert_eq!(
        warnings(t),
        [
            "spec.metrics[0].provider.prometheus.insecure",
            "spec.metrics[0].successCondition",
        ]
    );
    let t = output(&all, "AnalysisTemplate");
    let m = &t["spec"]["metrics"][0];
    assert_eq!(m["successCondition"], "result.all(x, x < 0.5)");
    // Argo's int-or-string counts become numbers.
    assert_eq!((&m["count"], &m["failureLimit"]), (&json!(5), &json!(1)));
    assert_eq!(
        t["spec"]["measurementRetention"],
        json!([{ "metricName": "p99", "limit": 20 }])
    );
    let web = &t["spec"]["metrics"][1];
    assert_eq!(web["successCondition"], "result.ok == true");
    assert_eq!(web["provider"]["web"]["jsonPath"], "{$.status}");
    assert_eq!(web["provider"]["web"]["timeoutSeconds"], 5);
}

#[test]
fn what_cannot_be_converted_is_refused_with_every_reason() {
    let all = app("not-convertible");
    assert_eq!(all.len(), 3);
    for c in &all {
        assert_eq!(c.outcome, Outcome::Refused, "{c:#?}");
        assert!(c.output.is_none());
    }
    let errors = |kind: &str| -> Vec<String> {
        paths(one(&all, kind))
            .into_iter()
            .filter(|(s, _)| *s == Severity::Error)
            .map(|(_, p)| p)
            .collect()
    };
    assert_eq!(
        errors("Rollout"),
        [
            "spec.strategy.canary.steps[0].experiment",
            "spec.strategy.canary.trafficRouting.alb",
        ]
    );
    assert_eq!(
        errors("AnalysisTemplate"),
        [
            "spec.metrics[0].provider.datadog",
            "spec.metrics[0].successCondition",
        ]
    );
    let template = one(&all, "AnalysisTemplate");
    assert!(
        template
            .findings
            .iter()
            .any(|f| f.message.contains("default()")),
        "{template:#?}"
    );
    assert_eq!(errors("Experiment"), [""]);
}

/// Every converted document of the corpus is a valid sluice object, and the YAML stream
/// the command writes reads back to the same documents.
#[test]
fn the_whole_corpus_reads_back_from_the_stream() {
    let inputs = files::read_inputs(&[corpus()], &mut || unreachable!()).unwrap();
    assert!(inputs.len() >= 15, "{}", inputs.len());
    let converted: Vec<Conversion> = inputs
        .into_iter()
        .flat_map(|i| convert_all(i.documents))
        .collect();
    let docs: Vec<&Value> = converted.iter().filter_map(|c| c.output.as_ref()).collect();
    let stream = to_yaml_stream(&docs);
    let back = files::parse_stream(&stream, "out").unwrap();
    assert_eq!(back.len(), docs.len());
    for (b, d) in back.iter().zip(&docs) {
        assert_eq!(&b, d);
    }
    for d in docs.iter().filter(|d| d["kind"] == "Rollout") {
        let r: sluice_api::Rollout = serde_json::from_value((*d).clone()).unwrap();
        assert!(r.spec.strategy.canary.is_some() || r.spec.strategy.blue_green.is_some());
    }
}

/// YAML 1.1 readers (kubectl, Argo CD) take a plain `yes` for true: such strings are quoted.
#[test]
fn strings_yaml_1_1_would_misread_are_quoted() {
    let doc = json!({ "a": "yes", "b": "on", "c": "No", "d": "1.4.2", "e": "25%", "f": "v1",
        "g": "", "h": "x: y", "i": "line one\nline two\n", "j": [ "off", { "k": "null" } ], "l": {} });
    let text = to_yaml_stream(&[&doc]);
    for quoted in [
        "\"yes\"",
        "\"on\"",
        "\"No\"",
        "\"1.4.2\"",
        "\"25%\"",
        "\"\"",
        "\"x: y\"",
        "\"off\"",
        "\"null\"",
    ] {
        assert!(text.contains(quoted), "{quoted} in\n{text}");
    }
    assert!(text.contains("f: v1\n"), "{text}");
    assert!(text.contains("i: |\n  line one\n  line two\n"), "{text}");
    assert_eq!(files::parse_stream(&text, "t").unwrap(), vec![doc]);
}

#[test]
fn other_kinds_pass_through_and_other_argo_kinds_are_reported() {
    let app = json!({ "apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": { "name": "shop" }, "spec": {} });
    let c = convert_one(app.clone());
    assert_eq!((c.outcome, c.output), (Outcome::PassedThrough, Some(app)));
    let run = convert_one(
        json!({ "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun", "metadata": { "name": "r" } }),
    );
    assert_eq!(run.outcome, Outcome::Refused);
    let unknown = convert_one(
        json!({ "apiVersion": "argoproj.io/v1alpha1", "kind": "Gadget", "metadata": { "name": "g" } }),
    );
    assert!(
        unknown.findings[0]
            .message
            .contains("unknown argoproj.io kind"),
        "{unknown:#?}"
    );
    let v2 = convert_one(
        json!({ "apiVersion": "argoproj.io/v2", "kind": "Rollout", "metadata": { "name": "g" } }),
    );
    assert_eq!(paths(&v2), [(Severity::Error, "apiVersion".to_string())]);
    let scalar = convert_one(json!("hello"));
    assert_eq!(scalar.outcome, Outcome::Refused);
}

fn rollout(canary: Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "shop" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "web:1" }] } },
            "strategy": { "canary": canary },
        },
    })
}

fn services() -> Value {
    json!({ "canaryService": "web-canary", "stableService": "web-stable" })
}

fn with(mut base: Value, extra: Value) -> Value {
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}

/// The refusal line: each of these would change what the rollout does.
#[test]
fn refusals_name_the_field_and_why() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(
                services(),
                json!({ "trafficRouting": { "plugins": { "argoproj-labs/openshift": { "routes": ["web"] } } } }),
            ),
            "spec.strategy.canary.trafficRouting.plugins[argoproj-labs/openshift]",
            "plugin",
        ),
        (
            with(
                services(),
                json!({ "trafficRouting": { "alb": { "ingress": "web" } } }),
            ),
            "spec.strategy.canary.trafficRouting.alb",
            "not supported",
        ),
        (
            with(
                services(),
                json!({ "trafficRouting": { "nginx": { "stableIngresses": ["a", "b"] } } }),
            ),
            "spec.strategy.canary.trafficRouting.nginx.stableIngresses",
            "one stable Ingress",
        ),
        (
            json!({ "steps": [{ "setCanaryScale": { "replicas": 1 } }] }),
            "spec.strategy.canary.steps[0].setCanaryScale",
            "traffic router",
        ),
        (
            with(
                services(),
                json!({ "trafficRouting": { "nginx": { "stableIngress": "web" }, "managedRoutes": [{ "name": "m" }] },
                "steps": [{ "setMirrorRoute": { "name": "m", "percentage": 10 } }] }),
            ),
            "spec.strategy.canary.steps[0].setMirrorRoute",
            "Gateway API",
        ),
        (
            json!({ "steps": [{ "plugin": { "name": "x" } }] }),
            "spec.strategy.canary.steps[0].plugin",
            "skipped",
        ),
        (
            json!({ "steps": [{ "setWeigth": 10 }] }),
            "spec.strategy.canary.steps[0].setWeigth",
            "unknown step",
        ),
        (
            json!({ "steps": [{ "pause": { "duration": "1.5h" } }] }),
            "spec.strategy.canary.steps[0].pause.duration",
            "1.5h",
        ),
        (
            json!({ "pingPong": { "pingService": "a", "pongService": "b" } }),
            "spec.strategy.canary.pingPong",
            "ping-pong",
        ),
        (
            with(
                services(),
                json!({ "trafficRouting": { "plugins": { "argoproj-labs/gatewayAPI": { "httpRoutes": [{ "name": "a" }, { "name": "b" }] } } } }),
            ),
            "spec.strategy.canary.trafficRouting.plugins[argoproj-labs/gatewayAPI].httpRoutes",
            "one HTTPRoute",
        ),
    ];
    for (canary, path, why) in cases {
        let c = convert_one(rollout(canary));
        assert_eq!(c.outcome, Outcome::Refused, "{path}: {c:#?}");
        let f = c
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error && f.path == path)
            .unwrap_or_else(|| panic!("no error at {path}: {:#?}", c.findings));
        assert!(f.message.contains(why), "{path}: {}", f.message);
        assert_eq!(f.object, "Rollout shop/web");
    }
}

fn template(metric: Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": { "name": "t" },
        "spec": { "metrics": [with(json!({ "name": "m", "successCondition": "result[0] > 1",
            "provider": { "prometheus": { "address": "http://p:9090", "query": "q" } } }), metric)] },
    })
}

#[test]
fn metric_refusals_name_the_field_and_why() {
    let cases = [
        (
            json!({ "consecutiveSuccessLimit": 3 }),
            "spec.metrics[0].consecutiveSuccessLimit",
            "sooner",
        ),
        (
            json!({ "count": "{{args.count}}" }),
            "spec.metrics[0].count",
            "not a number",
        ),
        (
            json!({ "interval": "5 parsecs" }),
            "spec.metrics[0].interval",
            "not a duration sluice reads",
        ),
        (
            json!({ "provider": { "prometheus": { "address": "http://p:9090", "query": "q", "authentication": { "sigv4": { "region": "eu-west-1" } } } } }),
            "spec.metrics[0].provider.prometheus.authentication",
            "sigv4",
        ),
        (
            json!({ "provider": { "prometheus": { "address": "{{args.prometheus}}", "query": "q" } } }),
            "spec.metrics[0].provider.prometheus.address",
            "placeholder",
        ),
        (
            json!({ "provider": { "prometheus": { "address": "http://p:9090", "query": "q", "rangeQuery": { "start": "now() - duration(\"5m\")", "end": "now()", "step": "1m" } } } }),
            "spec.metrics[0].provider.prometheus.rangeQuery",
            "lookback",
        ),
        (
            json!({ "provider": { "job": { "spec": { "template": { "spec": { "containers": [] } } } } } }),
            "spec.metrics[0].provider.job.spec.template.spec.restartPolicy",
            "restartPolicy Never or OnFailure",
        ),
        (
            json!({ "provider": { "job": { "metadata": { "labels": { "a": "b" } } } } }),
            "spec.metrics[0].provider.job.spec",
            "needs the Job's spec",
        ),
        (
            json!({ "provider": { "kayenta": { "address": "http://k" } } }),
            "spec.metrics[0].provider.kayenta",
            "kayenta",
        ),
        (
            json!({ "successCondition": "asInt(result) > 1" }),
            "spec.metrics[0].successCondition",
            "asInt",
        ),
    ];
    for (metric, path, why) in cases {
        let c = convert_one(template(metric));
        assert_eq!(c.outcome, Outcome::Refused, "{path}: {c:#?}");
        let f = c
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error && f.path == path)
            .unwrap_or_else(|| panic!("no error at {path}: {:#?}", c.findings));
        assert!(f.message.contains(why), "{path}: {}", f.message);
    }
    // Without any condition sluice cannot judge a Prometheus metric.
    let mut t = template(json!({}));
    t["spec"]["metrics"][0]
        .as_object_mut()
        .unwrap()
        .remove("successCondition");
    let c = convert_one(t);
    assert_eq!(
        paths(&c),
        [(Severity::Error, "spec.metrics[0]".to_string())]
    );
}

#[test]
fn gateway_plugin_namespace_and_exported_objects() {
    let mut r = rollout(with(
        services(),
        json!({ "trafficRouting": { "plugins": {
        "argoproj-labs/gatewayAPI": { "httpRoute": "web", "namespace": "gateways", "configMap": "argo-gatewayapi" } } } }),
    ));
    // What `kubectl get -o yaml` adds.
    r["metadata"]["uid"] = json!("0b8e");
    r["metadata"]["resourceVersion"] = json!("123");
    r["metadata"]["annotations"] =
        json!({ "kubectl.kubernetes.io/last-applied-configuration": "{}" });
    r["spec"]["template"]["metadata"]["labels"]["rollouts-pod-template-hash"] = json!("6b7f9");
    r["status"] = json!({ "phase": "Healthy" });
    let c = convert_one(r);
    assert_eq!(
        warnings(&c),
        [
            "metadata.annotations[kubectl.kubernetes.io/last-applied-configuration]",
            "metadata.resourceVersion",
            "metadata.uid",
            "spec.strategy.canary.trafficRouting.plugins[argoproj-labs/gatewayAPI].configMap",
            "spec.template.metadata.labels[rollouts-pod-template-hash]",
            "status",
        ]
    );
    let out = c.output.unwrap();
    assert_eq!(
        out["spec"]["strategy"]["canary"]["trafficRouting"]["gatewayAPI"],
        json!({ "httpRoute": "web", "namespace": "gateways" })
    );
    assert_eq!(
        out["spec"]["template"]["metadata"]["labels"],
        json!({ "app": "web" })
    );
    assert!(out.get("status").is_none() && out["metadata"].get("uid").is_none());
}

/// Argo's job provider converts with its JobSpec unchanged; a condition on it (which Argo
/// ignores) is dropped with a warning, and no condition is asked for.
#[test]
fn a_job_metric_converts_with_its_spec_unchanged() {
    let spec = json!({ "backoffLimit": 0, "activeDeadlineSeconds": 60, "template": { "spec": {
        "restartPolicy": "Never",
        "containers": [{ "name": "smoke", "image": "curlimages/curl:8.11.1",
            "args": ["-fsS", "http://{{args.service}}/healthz"],
            "env": [{ "name": "SVC", "value": "{{args.service}}" }] }] } } });
    let c = convert_one(template(json!({ "provider": { "job": {
        "metadata": { "labels": { "team": "shop" }, "annotations": { "a": "b" }, "name": "x" },
        "spec": spec.clone(),
    } } })));
    assert_eq!(c.outcome, Outcome::Converted, "{c:#?}");
    assert_eq!(
        warnings(&c),
        [
            "spec.metrics[0].provider.job.metadata.name",
            "spec.metrics[0].successCondition",
        ]
    );
    let out = c.output.as_ref().unwrap();
    let metric = &out["spec"]["metrics"][0];
    assert_eq!(metric["provider"]["job"]["spec"], spec);
    assert_eq!(
        metric["provider"]["job"]["metadata"],
        json!({ "labels": { "team": "shop" }, "annotations": { "a": "b" } })
    );
    assert!(metric.get("successCondition").is_none());
}

/// A Rollout naming a template refused in the same run is told so.
#[test]
fn a_rollout_naming_a_refused_template_is_warned() {
    let mut r = rollout(
        json!({ "steps": [{ "setWeight": 10 }, { "analysis": { "templates": [{ "templateName": "t" }] } }] }),
    );
    r["metadata"]["name"] = json!("web");
    let mut t = template(json!({ "provider": { "kayenta": {} } }));
    t["metadata"]["name"] = json!("t");
    let mut all = convert_all(vec![r, t]);
    check_references(&mut all);
    assert_eq!(all[1].outcome, Outcome::Refused);
    assert_eq!(all[0].outcome, Outcome::Converted);
    assert_eq!(
        warnings(&all[0]),
        ["spec.strategy.canary.steps[1].analysis.templates[0]"]
    );
    assert!(
        all[0].findings[0]
            .message
            .contains("AnalysisTemplate t was not converted")
    );
}

/// A field the sluice types do not have (a typo in the pod template) is named, not lost.
#[test]
fn fields_the_sluice_types_lack_are_named() {
    let mut r = rollout(json!({ "steps": [{ "setWeight": 10 }] }));
    r["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    r["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({});
    let c = convert_one(r);
    assert_eq!(c.outcome, Outcome::Converted);
    assert_eq!(
        warnings(&c),
        ["spec.template.spec.containers[0].imagePullPolicyy"]
    );
    assert!(
        c.findings[0]
            .message
            .contains("not a field of sluice's Rollout")
    );
}

#[test]
fn a_wrongly_typed_field_is_an_error_not_a_panic() {
    let mut r = rollout(json!({ "steps": [{ "setWeight": 10 }] }));
    r["spec"]["replicas"] = json!("three");
    let c = convert_one(r);
    assert_eq!(c.outcome, Outcome::Refused);
    assert!(
        c.findings[0].message.contains("not a valid sluice Rollout"),
        "{c:#?}"
    );
    let mut r = rollout(json!({}));
    r["spec"]["strategy"] = json!({});
    let c = convert_one(r);
    assert_eq!(paths(&c), [(Severity::Error, "spec.strategy".to_string())]);
    let c = convert_one(
        json!({ "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": { "name": "x" }, "spec": [] }),
    );
    assert_eq!(paths(&c), [(Severity::Error, "spec".to_string())]);
}

fn run(args: &[&Path], output: Option<&Path>, stdin: &str) -> (i32, String, String) {
    let args: Vec<PathBuf> = args.iter().map(|p| p.to_path_buf()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let stdin = stdin.to_string();
    let code = files::run(&args, output, &mut || Ok(stdin.clone()), &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn exit_codes_and_outputs_of_the_command() {
    let (code, out, err) = run(&[&corpus().join("canary-nginx")], None, "");
    assert_eq!(code, EXIT_OK, "{err}");
    assert_eq!(out.matches("\n---\n").count(), 3, "{out}");
    assert!(out.contains("kind: Ingress") && out.contains("apiVersion: sluice.dev/v1alpha1"));
    assert!(
        err.ends_with("1 converted, 3 passed through unchanged, 0 not converted\n"),
        "{err}"
    );

    let (code, out, err) = run(&[&corpus().join("not-convertible")], None, "");
    assert_eq!(code, EXIT_NOT_CONVERTED);
    assert_eq!(out, "");
    assert!(
        err.contains(
            "rollout.yaml: error: Rollout reviews: spec.strategy.canary.trafficRouting.alb:"
        ),
        "{err}"
    );

    let (code, _, err) = run(&[Path::new("/nonexistent/argo.yaml")], None, "");
    assert_eq!(code, EXIT_UNREADABLE);
    assert!(err.starts_with("error: /nonexistent/argo.yaml:"), "{err}");

    let (code, _, err) = run(&[Path::new("-")], None, "kind: [unclosed\n");
    assert_eq!(code, EXIT_UNREADABLE);
    assert!(err.contains("-: document 1"), "{err}");

    // Standard input, with a List and a warning.
    let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: argoproj.io/v1alpha1
  kind: Rollout
  metadata: { name: web, annotations: { rollout.argoproj.io/revision: "2" } }
  spec:
    selector: { matchLabels: { app: web } }
    template: { metadata: { labels: { app: web } }, spec: { containers: [{ name: web, image: "web:1" }] } }
    strategy: { canary: { steps: [{ setWeight: 50 }] } }
"#;
    let (code, out, err) = run(&[Path::new("-")], None, list);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(
        out.starts_with("apiVersion: sluice.dev/v1alpha1\nkind: Rollout\n"),
        "{out}"
    );
    assert!(
        err.contains("-: warning: Rollout web: metadata.annotations[rollout.argoproj.io/revision]"),
        "{err}"
    );
}

#[test]
fn an_output_directory_gets_one_file_per_input() {
    let dir = std::env::temp_dir().join(format!("sluice-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (code, out, err) = run(&[&corpus()], Some(&dir), "");
    assert_eq!(
        code, EXIT_NOT_CONVERTED,
        "the corpus holds the refusals too: {err}"
    );
    assert_eq!(out, "");
    let rollout = std::fs::read_to_string(dir.join("canary-gatewayapi/rollout.yaml")).unwrap();
    assert!(
        rollout.contains("gatewayAPI:\n          httpRoute: argo-rollouts-http-route"),
        "{rollout}"
    );
    let route = std::fs::read_to_string(dir.join("canary-gatewayapi/httproute.yaml")).unwrap();
    assert!(
        route.starts_with("apiVersion: gateway.networking.k8s.io/v1\n"),
        "{route}"
    );
    // A refused document is not written; its file holds what was converted (nothing).
    assert_eq!(
        std::fs::read_to_string(dir.join("not-convertible/rollout.yaml")).unwrap(),
        ""
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let file = std::env::temp_dir().join(format!("sluice-convert-{}.yaml", std::process::id()));
    let (code, _, _) = run(&[&corpus().join("canary-basic")], Some(&file), "");
    assert_eq!(code, EXIT_OK);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("name: rollout-canary")
    );
    std::fs::remove_file(&file).unwrap();
}
