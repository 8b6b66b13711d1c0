//! `kubectl sluice convert`: Argo Rollouts manifests (Rollout, AnalysisTemplate,
//! ClusterAnalysisTemplate) in, sluice's out. Pure: JSON values in, typed sluice objects
//! out (serialised, read back as the sluice types to prove they parse), and a finding
//! for every field that did not carry over as it was — a warning when sluice does without
//! it, an error (the object is not written) when going without it would change what the
//! rollout does in a way that matters: traffic not routed, a step skipped, a gate relaxed.
//! Objects of other kinds pass through unchanged, so a whole application directory can be
//! converted at once.
//!
//! Every field of the input is either taken by name or reported: [`Fields`] hands out the
//! keys it is asked for and reports the rest, so nothing is dropped silently.

pub mod expr;
pub mod files;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use sluice_api::HumanDuration;

use expr::ResultShape;

/// The API group of Argo Rollouts (Argo CD and Argo Workflows share it).
pub const ARGO_GROUP: &str = "argoproj.io";
/// The name under which Argo Rollouts' Gateway API plugin reads its configuration.
pub const GATEWAY_PLUGIN: &str = "argoproj-labs/gatewayAPI";

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Converted without this field, or with a difference of meaning worth knowing.
    Warning,
    /// The object was not converted.
    Error,
}

/// One field that did not carry over as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// `Rollout shop/web`.
    pub object: String,
    /// The field's path in the input, `spec.strategy.canary.steps[2].experiment`; empty
    /// for the object as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        if self.path.is_empty() {
            write!(f, "{level}: {}: {}", self.object, self.message)
        } else {
            write!(
                f,
                "{level}: {}: {}: {}",
                self.object, self.path, self.message
            )
        }
    }
}

/// What became of one input document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An Argo Rollouts kind, converted to sluice's.
    Converted,
    /// Not an Argo Rollouts kind: written unchanged.
    PassedThrough,
    /// Could not be converted: not written (the findings say why).
    Refused,
}

/// One input document's conversion.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub outcome: Outcome,
    /// `Rollout shop/web`.
    pub object: String,
    /// The input's kind and name.
    pub kind: String,
    pub name: String,
    /// The document to write; None when refused.
    pub output: Option<Value>,
    pub findings: Vec<Finding>,
}

/// Collects the findings of one object.
struct Report {
    /// Kind and name.
    id: (String, String),
    object: String,
    findings: Vec<Finding>,
}

impl Report {
    fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, path, message.into());
    }

    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into());
    }

    fn push(&mut self, severity: Severity, path: &str, message: String) {
        self.findings.push(Finding {
            severity,
            object: self.object.clone(),
            path: path.to_string(),
            message,
        });
    }

    fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// The keys of one input object, handed out by name; what is left is reported.
struct Fields {
    map: Map<String, Value>,
    path: String,
}

impl Fields {
    /// The object at `path`, or an error finding when `value` is not an object.
    fn of(value: Value, path: &str, report: &mut Report) -> Option<Fields> {
        match value {
            Value::Object(map) => Some(Fields {
                map,
                path: path.to_string(),
            }),
            Value::Null => Some(Fields {
                map: Map::new(),
                path: path.to_string(),
            }),
            other => {
                report.error(
                    path,
                    format!("expected an object, found {}", type_name(&other)),
                );
                None
            }
        }
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    fn child(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Copies `key` unchanged into `out` when present.
    fn copy(&mut self, key: &str, out: &mut Map<String, Value>) {
        if let Some(v) = self.take(key) {
            out.insert(key.to_string(), v);
        }
    }

    /// Reports every key not taken: sluice has no such field.
    fn finish(self, report: &mut Report) {
        for (key, _) in self.map {
            let path = join(&self.path, &key);
            report.warn(&path, "sluice has no equivalent; dropped");
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn items(value: Value, path: &str, report: &mut Report) -> Vec<(String, Value)> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("{path}[{i}]"), v))
            .collect(),
        other => {
            report.error(
                path,
                format!("expected a list, found {}", type_name(&other)),
            );
            Vec::new()
        }
    }
}

/// Converts one document of a manifest.
pub fn convert_document(doc: Value) -> Conversion {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or("<no name>")
        .to_string();
    let id = (kind.clone(), name.clone());
    let object = match doc["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    let mut report = Report {
        id: id.clone(),
        object: if kind.is_empty() {
            "document".to_string()
        } else {
            object.clone()
        },
        findings: Vec::new(),
    };
    if !doc.is_object() || kind.is_empty() || api_version.is_empty() {
        report.error("", "not a Kubernetes object (no apiVersion and kind)");
        return refused(report);
    }
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if group != ARGO_GROUP {
        return Conversion {
            outcome: Outcome::PassedThrough,
            object,
            kind: id.0,
            name: id.1,
            output: Some(doc),
            findings: Vec::new(),
        };
    }
    if api_version != "argoproj.io/v1alpha1" {
        report.error(
            "apiVersion",
            format!("{api_version} is not a version this converter reads (argoproj.io/v1alpha1)"),
        );
        return refused(report);
    }
    let converted = match kind.as_str() {
        "Rollout" => convert_object::<sluice_api::Rollout>(doc, &mut report, rollout_spec),
        "AnalysisTemplate" => {
            convert_object::<sluice_api::AnalysisTemplate>(doc, &mut report, analysis_spec)
        }
        "ClusterAnalysisTemplate" => {
            convert_object::<sluice_api::ClusterAnalysisTemplate>(doc, &mut report, analysis_spec)
        }
        "AnalysisRun" | "Experiment" => {
            report.error(
                "",
                format!(
                    "an Argo {kind} is not converted: sluice creates its AnalysisRuns itself \
                     and has no Experiments; convert the Rollouts and templates instead"
                ),
            );
            None
        }
        // Argo CD (Application, AppProject, ...) and Argo Workflows share the group.
        "Application"
        | "ApplicationSet"
        | "AppProject"
        | "Workflow"
        | "WorkflowTemplate"
        | "ClusterWorkflowTemplate"
        | "CronWorkflow"
        | "EventSource"
        | "Sensor" => {
            return Conversion {
                outcome: Outcome::PassedThrough,
                object,
                kind: id.0,
                name: id.1,
                output: Some(doc),
                findings: Vec::new(),
            };
        }
        other => {
            report.error(
                "",
                format!("unknown argoproj.io kind {other}: not converted"),
            );
            None
        }
    };
    match converted {
        Some(output) if !report.failed() => Conversion {
            outcome: Outcome::Converted,
            object,
            kind: id.0,
            name: id.1,
            output: Some(output),
            findings: report.findings,
        },
        _ => refused(report),
    }
}

fn refused(report: Report) -> Conversion {
    Conversion {
        outcome: Outcome::Refused,
        object: report.object,
        kind: report.id.0,
        name: report.id.1,
        output: None,
        findings: report.findings,
    }
}

/// Converts metadata and spec, then proves the result is a `T`: deserialised as the sluice
/// type, written as YAML and read back to the same value.
fn convert_object<T>(
    doc: Value,
    report: &mut Report,
    spec: fn(Value, &mut Report) -> Option<Value>,
) -> Option<Value>
where
    T: DeserializeOwned + Serialize + kube::Resource<DynamicType = ()>,
{
    let mut top = Fields::of(doc, "", report)?;
    top.take("apiVersion");
    let kind = top.take("kind");
    let metadata = metadata(top.take("metadata").unwrap_or(Value::Null), report);
    let spec = spec(top.take("spec").unwrap_or(Value::Null), report);
    if top.take("status").is_some() {
        report.warn("status", "status is the controller's; dropped");
    }
    top.finish(report);
    let (metadata, spec) = (metadata?, spec?);
    let out = json!({
        "apiVersion": T::api_version(&()),
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    });
    let typed: T = match serde_json::from_value(out.clone()) {
        Ok(t) => t,
        Err(e) => {
            report.error(
                "",
                format!(
                    "the converted object is not a valid sluice {}: {e}",
                    T::kind(&())
                ),
            );
            return None;
        }
    };
    let value = match serde_json::to_value(&typed) {
        Ok(v) => v,
        Err(e) => {
            report.error("", format!("the converted object does not serialise: {e}"));
            return None;
        }
    };
    let check = serde_yaml::to_string(&typed)
        .map_err(|e| e.to_string())
        .and_then(|yaml| serde_yaml::from_str::<T>(&yaml).map_err(|e| e.to_string()))
        .and_then(|back| serde_json::to_value(back).map_err(|e| e.to_string()));
    // What the sluice type has no field for (a typo in the pod template, say) would be
    // dropped by deserialising: name each one.
    let mut dropped = Vec::new();
    lost(&out, &value, "", &mut dropped);
    for path in dropped {
        report.warn(
            &path,
            format!("not a field of sluice's {}; dropped", T::kind(&())),
        );
    }
    match check {
        Ok(back) if back == value => Some(value),
        Ok(_) => {
            report.error(
                "",
                "the converted object does not read back the same from YAML",
            );
            None
        }
        Err(e) => {
            report.error(
                "",
                format!("the converted object does not read back from YAML: {e}"),
            );
            None
        }
    }
}

/// The paths of `input` that are missing from `output` (its typed round trip).
fn lost(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                let p = join(path, k);
                match o.get(k) {
                    Some(ov) => lost(v, ov, &p, out),
                    None if is_empty(v) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) if i.len() == o.len() => {
            for (n, (v, ov)) in i.iter().zip(o).enumerate() {
                lost(v, ov, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Annotation prefixes that only Argo Rollouts reads.
const ARGO_ANNOTATION_PREFIXES: &[&str] = &[
    "rollout.argoproj.io/",
    "argo-rollouts.argoproj.io/",
    "notifications.argoproj.io/",
];

/// Fields the apiserver sets; an exported object carries them, a new one must not.
const SERVER_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

fn metadata(value: Value, report: &mut Report) -> Option<Value> {
    let mut m = Fields::of(value, "metadata", report)?;
    let mut out = Map::new();
    for key in ["name", "generateName", "namespace", "labels", "finalizers"] {
        m.copy(key, &mut out);
    }
    if !out.contains_key("name") && !out.contains_key("generateName") {
        report.error("metadata.name", "the object has no name");
    }
    if let Some(annotations) = m.take("annotations") {
        let path = m.child("annotations");
        let mut fields = Fields::of(annotations, &path, report)?;
        let mut kept = Map::new();
        for (key, value) in std::mem::take(&mut fields.map) {
            let path = format!("{path}[{key}]");
            if key.starts_with("notifications.argoproj.io/subscribe.") {
                report.warn(
                    &path,
                    "an Argo Rollouts notification subscription; dropped: subscribe with \
                     sluice.dev/notify (webhook names) and sluice.dev/notify-on (triggers), \
                     see docs/operations.md, Notifications",
                );
            } else if ARGO_ANNOTATION_PREFIXES.iter().any(|p| key.starts_with(p)) {
                report.warn(&path, "an Argo Rollouts annotation; dropped");
            } else if key == "kubectl.kubernetes.io/last-applied-configuration" {
                report.warn(&path, "holds the Argo object as last applied; dropped");
            } else {
                kept.insert(key, value);
            }
        }
        if !kept.is_empty() {
            out.insert("annotations".into(), Value::Object(kept));
        }
    }
    for key in SERVER_FIELDS {
        if m.take(key).is_some() {
            report.warn(&m.child(key), "set by the apiserver; dropped");
        }
    }
    if m.take("ownerReferences").is_some() {
        report.warn(
            "metadata.ownerReferences",
            "names owners by uid, which a new object cannot keep; dropped",
        );
    }
    m.finish(report);
    Some(Value::Object(out))
}

// ---------------------------------------------------------------------------------------
// Rollout

fn rollout_spec(value: Value, report: &mut Report) -> Option<Value> {
    let mut s = Fields::of(value, "spec", report)?;
    let mut out = Map::new();
    for key in [
        "replicas",
        "selector",
        "minReadySeconds",
        "revisionHistoryLimit",
        "paused",
        "progressDeadlineSeconds",
        "progressDeadlineAbort",
        "restartAt",
        "rollbackWindow",
    ] {
        s.copy(key, &mut out);
    }
    if let Some(template) = s.take("template") {
        out.insert("template".into(), pod_template(template, report));
    }
    if let Some(w) = s.take("workloadRef") {
        let path = s.child("workloadRef");
        if w["apiVersion"] != "apps/v1" || w["kind"] != "Deployment" {
            report.error(
                &path,
                format!(
                    "sluice takes a pod template from an apps/v1 Deployment only, not {} {}",
                    w["apiVersion"].as_str().unwrap_or("?"),
                    w["kind"].as_str().unwrap_or("?")
                ),
            );
        }
        out.insert("workloadRef".into(), w);
    }
    if let Some(a) = s.take("analysis") {
        let path = s.child("analysis");
        if let Some(fields) = Fields::of(a, &path, report) {
            fields.finish(report);
        }
    }
    match s.take("strategy") {
        Some(strategy) => {
            let path = s.child("strategy");
            out.insert(
                "strategy".into(),
                rollout_strategy(strategy, &path, report)?,
            );
        }
        None => report.error(
            "spec.strategy",
            "a Rollout needs a canary or blueGreen strategy",
        ),
    }
    s.finish(report);
    Some(Value::Object(out))
}

/// Argo adds `rollouts-pod-template-hash` to the pods it creates; a template carrying it
/// (an exported object) would fight sluice's own label.
fn pod_template(mut template: Value, report: &mut Report) -> Value {
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
        && labels.remove("rollouts-pod-template-hash").is_some()
    {
        report.warn(
            "spec.template.metadata.labels[rollouts-pod-template-hash]",
            "Argo's pod-template-hash label; dropped (sluice sets sluice.dev/pod-template-hash)",
        );
    }
    template
}

fn rollout_strategy(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut s = Fields::of(value, path, report)?;
    let mut out = Map::new();
    if let Some(c) = s.take("canary") {
        out.insert("canary".into(), canary(c, &s.child("canary"), report)?);
    }
    if let Some(b) = s.take("blueGreen") {
        out.insert(
            "blueGreen".into(),
            blue_green(b, &s.child("blueGreen"), report)?,
        );
    }
    if out.is_empty() {
        report.error(path, "a Rollout needs a canary or blueGreen strategy");
    }
    s.finish(report);
    Some(Value::Object(out))
}

/// What the router of a canary is, for the steps that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Router {
    None,
    Nginx,
    GatewayApi,
    Istio,
}

fn canary(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut c = Fields::of(value, path, report)?;
    let mut out = Map::new();
    for key in [
        "canaryService",
        "stableService",
        "maxSurge",
        "maxUnavailable",
        "scaleDownDelaySeconds",
        "abortScaleDownDelaySeconds",
        "dynamicStableScale",
        "canaryMetadata",
        "stableMetadata",
    ] {
        c.copy(key, &mut out);
    }
    if c.take("pingPong").is_some() {
        report.error(
            &c.child("pingPong"),
            "sluice has no ping-pong Services: it points canaryService and stableService at \
             the revisions instead; set those and convert again",
        );
    }
    let mut router = Router::None;
    if let Some(t) = c.take("trafficRouting") {
        let (routing, r) = traffic_routing(t, &c.child("trafficRouting"), report)?;
        router = r;
        out.insert("trafficRouting".into(), routing);
    }
    if let Some(steps) = c.take("steps") {
        let path = c.child("steps");
        let mut converted = Vec::new();
        for (p, step) in items(steps, &path, report) {
            if let Some(s) = canary_step(step, &p, router, report) {
                converted.push(s);
            }
        }
        out.insert("steps".into(), Value::Array(converted));
    }
    if let Some(a) = c.take("analysis") {
        let path = c.child("analysis");
        let mut fields = Fields::of(a, &path, report)?;
        let starting_step = fields.take("startingStep");
        let mut analysis = rollout_analysis_fields(fields, report)?;
        if let Some(step) = starting_step {
            analysis.insert("startingStep".into(), step);
        }
        out.insert("analysis".into(), Value::Object(analysis));
    }
    c.finish(report);
    Some(Value::Object(out))
}

fn traffic_routing(value: Value, path: &str, report: &mut Report) -> Option<(Value, Router)> {
    let mut t = Fields::of(value, path, report)?;
    let mut out = Map::new();
    let mut router = Router::None;
    if let Some(n) = t.take("nginx") {
        out.insert("nginx".into(), nginx(n, &t.child("nginx"), report)?);
        router = Router::Nginx;
    }
    if let Some(i) = t.take("istio") {
        out.insert("istio".into(), istio(i, &t.child("istio"), report)?);
        router = Router::Istio;
    }
    if let Some(plugins) = t.take("plugins") {
        let path = t.child("plugins");
        let mut p = Fields::of(plugins, &path, report)?;
        if let Some(g) = p.take(GATEWAY_PLUGIN) {
            let gpath = format!("{path}[{GATEWAY_PLUGIN}]");
            out.insert("gatewayAPI".into(), gateway_api(g, &gpath, report)?);
            router = Router::GatewayApi;
        }
        for (name, _) in std::mem::take(&mut p.map) {
            report.error(
                &format!("{path}[{name}]"),
                format!("the traffic router plugin {name} has no sluice equivalent"),
            );
        }
    }
    if let Some(routes) = t.take("managedRoutes") {
        let path = t.child("managedRoutes");
        out.insert(
            "managedRoutes".into(),
            objects_with(routes, &path, &["name"], report)?,
        );
    }
    if let Some(max) = t.take("maxTrafficWeight")
        && max.as_i64() != Some(100)
    {
        report.error(
            &t.child("maxTrafficWeight"),
            format!("sluice's weights are percentages of 100; a maxTrafficWeight of {max} would change every step's split"),
        );
    }
    for (key, _) in std::mem::take(&mut t.map) {
        report.error(
            &join(path, &key),
            format!(
                "the {key} traffic router is not supported by sluice (nginx, the Gateway \
                 API and Istio are): the canary's traffic would not be shifted"
            ),
        );
    }
    if router == Router::None && !report.failed() {
        report.error(path, "trafficRouting names no router sluice supports");
    }
    if ["nginx", "gatewayAPI", "istio"]
        .iter()
        .filter(|k| out.contains_key(**k))
        .count()
        > 1
    {
        report.error(
            path,
            "sluice routes through one router: nginx, the Gateway API or Istio, not several",
        );
    }
    Some((Value::Object(out), router))
}

fn nginx(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut n = Fields::of(value, path, report)?;
    let mut out = Map::new();
    n.copy("stableIngress", &mut out);
    if let Some(list) = n.take("stableIngresses") {
        let p = n.child("stableIngresses");
        match list.as_array().map(Vec::as_slice) {
            Some([one]) if !out.contains_key("stableIngress") => {
                out.insert("stableIngress".into(), one.clone());
            }
            _ => report.error(
                &p,
                "sluice routes through one stable Ingress; more than one has no equivalent",
            ),
        }
    }
    if !out.contains_key("stableIngress") {
        report.error(
            &n.child("stableIngress"),
            "nginx routing needs a stableIngress",
        );
    }
    let prefix = n
        .take("annotationPrefix")
        .and_then(|p| p.as_str().map(str::to_string))
        .unwrap_or_else(|| "nginx.ingress.kubernetes.io".into());
    out.insert("annotationPrefix".into(), Value::String(prefix.clone()));
    let mut annotations = Map::new();
    // Argo prefixes these keys; sluice takes them whole.
    if let Some(a) = n.take("additionalIngressAnnotations") {
        let p = n.child("additionalIngressAnnotations");
        if let Some(mut f) = Fields::of(a, &p, report) {
            for (k, v) in std::mem::take(&mut f.map) {
                annotations.insert(format!("{prefix}/{k}"), v);
            }
        }
    }
    if let Some(a) = n.take("canaryIngressAnnotations") {
        let p = n.child("canaryIngressAnnotations");
        if let Some(mut f) = Fields::of(a, &p, report) {
            annotations.extend(std::mem::take(&mut f.map));
        }
    }
    if !annotations.is_empty() {
        out.insert(
            "additionalIngressAnnotations".into(),
            Value::Object(annotations),
        );
    }
    n.finish(report);
    Some(Value::Object(out))
}

/// Argo's `istio`: one VirtualService (`virtualService`, or `virtualServices` with one
/// entry) with its HTTP `routes`, and the optional `destinationRule`, field for field.
fn istio(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut i = Fields::of(value, path, report)?;
    let mut out = Map::new();
    let virtual_service = |v: Value, vpath: &str, report: &mut Report| -> Option<Value> {
        let mut f = Fields::of(v, vpath, report)?;
        let mut o = Map::new();
        f.copy("name", &mut o);
        match o.get("name").and_then(Value::as_str) {
            None => report.error(&f.child("name"), "the VirtualService needs a name"),
            Some(n) if n.contains('.') => report.error(
                &f.child("name"),
                "sluice reads the VirtualService in the Rollout's namespace; a \
                 <name>.<namespace> reference has no equivalent",
            ),
            Some(_) => {}
        }
        f.copy("routes", &mut o);
        for key in ["tlsRoutes", "tcpRoutes"] {
            if f.take(key).is_some() {
                report.error(
                    &f.child(key),
                    "sluice weights a VirtualService's HTTP routes only; these routes would \
                     not be shifted",
                );
            }
        }
        f.finish(report);
        Some(Value::Object(o))
    };
    if let Some(v) = i.take("virtualService") {
        let vpath = i.child("virtualService");
        out.insert("virtualService".into(), virtual_service(v, &vpath, report)?);
    }
    if let Some(list) = i.take("virtualServices") {
        let p = i.child("virtualServices");
        match list.as_array().map(Vec::as_slice) {
            Some([one]) if !out.contains_key("virtualService") => {
                let vpath = format!("{p}[0]");
                out.insert(
                    "virtualService".into(),
                    virtual_service(one.clone(), &vpath, report)?,
                );
            }
            _ => report.error(
                &p,
                "sluice sets the weights of one VirtualService; more than one has no equivalent",
            ),
        }
    }
    if !out.contains_key("virtualService") {
        // Reported once: a refused virtualServices list already said why.
        if !report.failed() {
            report.error(
                &i.child("virtualService"),
                "istio routing needs a virtualService",
            );
        }
        return None;
    }
    if let Some(d) = i.take("destinationRule") {
        let dpath = i.child("destinationRule");
        out.insert(
            "destinationRule".into(),
            object_with(
                d,
                &dpath,
                &["name", "canarySubsetName", "stableSubsetName"],
                report,
            )?,
        );
    }
    i.finish(report);
    Some(Value::Object(out))
}

/// An object whose fields `keys` are copied as they are; any other is refused.
fn object_with(value: Value, path: &str, keys: &[&str], report: &mut Report) -> Option<Value> {
    let mut f = Fields::of(value, path, report)?;
    let mut o = Map::new();
    for key in keys {
        f.copy(key, &mut o);
    }
    f.finish(report);
    Some(Value::Object(o))
}

fn gateway_api(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut g = Fields::of(value, path, report)?;
    let mut out = Map::new();
    g.copy("httpRoute", &mut out);
    if let Some(routes) = g.take("httpRoutes") {
        let p = g.child("httpRoutes");
        match routes.as_array().map(Vec::as_slice) {
            Some([one]) if !out.contains_key("httpRoute") => {
                if let Some(name) = one.get("name") {
                    out.insert("httpRoute".into(), name.clone());
                }
                if let Some(Value::Bool(false)) = one.get("useHeaderRoutes") {
                    report.warn(
                        &format!("{p}[0].useHeaderRoutes"),
                        "sluice puts header routes on the named HTTPRoute whenever a step sets one",
                    );
                }
            }
            _ => report.error(
                &p,
                "sluice sets the weights of one HTTPRoute; more than one has no equivalent",
            ),
        }
    }
    if !out.contains_key("httpRoute") {
        report.error(
            &g.child("httpRoute"),
            "the Gateway API plugin config names no httpRoute",
        );
    }
    g.copy("namespace", &mut out);
    for key in ["grpcRoute", "grpcRoutes", "tcpRoute", "tcpRoutes"] {
        if g.take(key).is_some() {
            report.error(
                &g.child(key),
                "sluice sets weights on HTTPRoutes only; this route kind would not be shifted",
            );
        }
    }
    if g.take("configMap").is_some() {
        report.warn(
            &g.child("configMap"),
            "the plugin's state ConfigMap; sluice keeps its state in the Rollout's status",
        );
    }
    g.finish(report);
    Some(Value::Object(out))
}

fn canary_step(value: Value, path: &str, router: Router, report: &mut Report) -> Option<Value> {
    let mut s = Fields::of(value, path, report)?;
    let mut out = Map::new();
    for key in ["setWeight", "setHeaderRoute"] {
        s.copy(key, &mut out);
    }
    if let Some(p) = s.take("pause") {
        let ppath = s.child("pause");
        let mut f = Fields::of(p, &ppath, report)?;
        let mut o = Map::new();
        if let Some(d) = f.take("duration") {
            o.insert(
                "duration".into(),
                duration(d, &f.child("duration"), report)?,
            );
        }
        f.finish(report);
        out.insert("pause".into(), Value::Object(o));
    }
    if let Some(scale) = s.take("setCanaryScale") {
        if router == Router::None {
            report.error(
                &s.child("setCanaryScale"),
                "sluice sizes the canary apart from its weight only with a traffic router: \
                 without one the replica counts are the split",
            );
        }
        out.insert("setCanaryScale".into(), scale);
    }
    if let Some(mirror) = s.take("setMirrorRoute") {
        if !matches!(router, Router::GatewayApi | Router::Istio) {
            report.error(
                &s.child("setMirrorRoute"),
                "sluice mirrors traffic through the Gateway API and Istio only",
            );
        }
        out.insert("setMirrorRoute".into(), mirror);
    }
    if let Some(a) = s.take("analysis") {
        let apath = s.child("analysis");
        let f = Fields::of(a, &apath, report)?;
        out.insert(
            "analysis".into(),
            Value::Object(rollout_analysis_fields(f, report)?),
        );
    }
    if s.take("experiment").is_some() {
        report.error(
            &s.child("experiment"),
            "sluice has no experiments; the step would be skipped. Replace it with an analysis \
             step (the built-in judge compares canary and baseline) and convert again",
        );
    }
    if s.take("plugin").is_some() {
        report.error(
            &s.child("plugin"),
            "step plugins have no sluice equivalent; the step would be skipped",
        );
    }
    for (key, _) in std::mem::take(&mut s.map) {
        report.error(
            &join(path, &key),
            "an unknown step action; the step would be skipped",
        );
    }
    Some(Value::Object(out))
}

fn blue_green(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut b = Fields::of(value, path, report)?;
    let mut out = Map::new();
    for key in [
        "activeService",
        "previewService",
        "previewReplicaCount",
        "autoPromotionEnabled",
        "autoPromotionSeconds",
        "scaleDownDelaySeconds",
        "abortScaleDownDelaySeconds",
        "activeMetadata",
        "previewMetadata",
    ] {
        b.copy(key, &mut out);
    }
    for key in ["prePromotionAnalysis", "postPromotionAnalysis"] {
        if let Some(a) = b.take(key) {
            let p = b.child(key);
            let f = Fields::of(a, &p, report)?;
            out.insert(
                key.into(),
                Value::Object(rollout_analysis_fields(f, report)?),
            );
        }
    }
    b.finish(report);
    Some(Value::Object(out))
}

/// A list of objects, each kept with only `keys` (any other field is reported by
/// [`Fields::finish`]).
fn objects_with(value: Value, path: &str, keys: &[&str], report: &mut Report) -> Option<Value> {
    let mut converted = Vec::new();
    for (p, item) in items(value, path, report) {
        let mut f = Fields::of(item, &p, report)?;
        let mut o = Map::new();
        for key in keys {
            f.copy(key, &mut o);
        }
        f.finish(report);
        converted.push(Value::Object(o));
    }
    Some(Value::Array(converted))
}

/// `templates` and `args` of a Rollout's analysis (steps, background, blue-green).
fn rollout_analysis_fields(mut a: Fields, report: &mut Report) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    if let Some(templates) = a.take("templates") {
        let path = a.child("templates");
        out.insert(
            "templates".into(),
            objects_with(templates, &path, &["templateName", "clusterScope"], report)?,
        );
    }
    if let Some(args) = a.take("args") {
        let path = a.child("args");
        out.insert("args".into(), arguments(args, &path, report)?);
    }
    for key in ["dryRun", "measurementRetention"] {
        if a.take(key).is_some() {
            report.warn(
                &a.child(key),
                format!("sluice sets {key} in the template, not in the Rollout; dropped (set it in the AnalysisTemplate)"),
            );
        }
    }
    a.finish(report);
    Some(out)
}

/// Args of a Rollout or a template: `value`, or `valueFrom` one of `secretKeyRef`,
/// `fieldRef`, `podTemplateHashValue`.
fn arguments(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut converted = Vec::new();
    for (p, arg) in items(value, path, report) {
        let mut f = Fields::of(arg, &p, report)?;
        let mut o = Map::new();
        f.copy("name", &mut o);
        if let Some(v) = f.take("value") {
            // Argo's values are strings; a YAML number or bool becomes its text.
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            o.insert("value".into(), Value::String(text));
        }
        if let Some(vf) = f.take("valueFrom") {
            let vpath = f.child("valueFrom");
            let mut v = Fields::of(vf, &vpath, report)?;
            let mut vo = Map::new();
            for key in ["secretKeyRef", "fieldRef", "podTemplateHashValue"] {
                v.copy(key, &mut vo);
            }
            for (key, _) in std::mem::take(&mut v.map) {
                report.error(
                    &join(&vpath, &key),
                    "an arg source sluice does not read; the arg would have no value",
                );
            }
            o.insert("valueFrom".into(), Value::Object(vo));
        }
        f.finish(report);
        converted.push(Value::Object(o));
    }
    Some(Value::Array(converted))
}

// ---------------------------------------------------------------------------------------
// AnalysisTemplate, ClusterAnalysisTemplate

fn analysis_spec(value: Value, report: &mut Report) -> Option<Value> {
    let mut s = Fields::of(value, "spec", report)?;
    let mut out = Map::new();
    if let Some(args) = s.take("args") {
        out.insert("args".into(), arguments(args, &s.child("args"), report)?);
    }
    match s.take("metrics") {
        Some(metrics) => {
            let path = s.child("metrics");
            let mut converted = Vec::new();
            for (p, m) in items(metrics, &path, report) {
                if let Some(m) = metric(m, &p, report) {
                    converted.push(m);
                }
            }
            out.insert("metrics".into(), Value::Array(converted));
        }
        None => report.error("spec.metrics", "a template needs at least one metric"),
    }
    for key in ["dryRun", "measurementRetention"] {
        s.copy(key, &mut out);
    }
    s.finish(report);
    Some(Value::Object(out))
}

/// A whole number, from a number or a string of digits (Argo's int-or-string counts); an
/// `{{args...}}` placeholder is refused, sluice's counts being numbers.
fn whole_number(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    match &value {
        Value::Number(n) if n.is_i64() => Some(value),
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(n) => Some(json!(n)),
            Err(_) => {
                report.error(
                    path,
                    format!("{s:?} is not a number; sluice's counts and limits are numbers, not placeholders"),
                );
                None
            }
        },
        other => {
            report.error(
                path,
                format!("expected a whole number, found {}", type_name(other)),
            );
            None
        }
    }
}

/// A duration as Go writes them, checked against what sluice reads.
fn duration(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let parsed: Result<HumanDuration, _> = serde_json::from_value(value.clone());
    match parsed {
        Ok(HumanDuration::Text(text)) if !sluice_api::duration::admits_text(&text) => {
            report.error(path, format!("{text:?} is not a duration sluice reads: write it as 30s, 5m, 1h30m or a number of seconds"));
            None
        }
        Ok(d) => match d.to_duration() {
            Ok(_) => Some(value),
            Err(e) => {
                report.error(
                    path,
                    format!("{e}; sluice reads durations such as 30s, 5m, 1h30m"),
                );
                None
            }
        },
        Err(_) => {
            report.error(
                path,
                format!("expected a duration, found {}", type_name(&value)),
            );
            None
        }
    }
}

fn metric(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut m = Fields::of(value, path, report)?;
    let mut out = Map::new();
    m.copy("name", &mut out);
    for key in ["interval", "initialDelay"] {
        if let Some(d) = m.take(key) {
            let p = m.child(key);
            out.insert(key.into(), duration(d, &p, report)?);
        }
    }
    for key in [
        "count",
        "failureLimit",
        "inconclusiveLimit",
        "consecutiveErrorLimit",
    ] {
        if let Some(n) = m.take(key) {
            let p = m.child(key);
            out.insert(key.into(), whole_number(n, &p, report)?);
        }
    }
    if m.take("consecutiveSuccessLimit").is_some() {
        report.error(
            &m.child("consecutiveSuccessLimit"),
            "sluice has no consecutiveSuccessLimit: without it the metric would pass sooner than it did",
        );
    }
    let provider = m.take("provider");
    let shape = match provider.as_ref().and_then(Value::as_object) {
        Some(p) if p.contains_key("web") => ResultShape::Json,
        _ => ResultShape::Numbers,
    };
    let is_job = provider
        .as_ref()
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key("job"));
    for key in ["successCondition", "failureCondition"] {
        if let Some(c) = m.take(key) {
            let p = m.child(key);
            if is_job {
                // Argo ignores them too: a job metric's verdict is its Job's.
                report.warn(
                    &p,
                    "a job metric's verdict is its Job's (Complete or Failed); sluice refuses a condition on it, dropped",
                );
                continue;
            }
            let Some(text) = c.as_str() else {
                report.error(&p, "a condition is a string");
                continue;
            };
            match expr::translate(text, shape) {
                Ok(t) => {
                    if t.cel != text {
                        report.warn(&p, format!("expr {text:?} written as CEL {:?}", t.cel));
                    }
                    for note in t.notes {
                        report.warn(&p, note);
                    }
                    out.insert(key.into(), Value::String(t.cel));
                }
                Err(why) => report.error(
                    &p,
                    format!("{text:?} cannot be translated to CEL safely: {why}; write it in CEL and convert again"),
                ),
            }
        }
    }
    match provider {
        Some(p) => {
            let ppath = m.child("provider");
            out.insert("provider".into(), metric_provider(p, &ppath, report)?);
        }
        None => report.error(&m.child("provider"), "a metric needs a provider"),
    }
    if out.contains_key("provider")
        && !is_job
        && !out.contains_key("successCondition")
        && !out.contains_key("failureCondition")
        && !report.failed()
    {
        report.error(
            path,
            "the metric has no successCondition or failureCondition, which sluice needs to judge it",
        );
    }
    m.finish(report);
    Some(Value::Object(out))
}

fn metric_provider(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut p = Fields::of(value, path, report)?;
    let mut out = Map::new();
    if let Some(prom) = p.take("prometheus") {
        out.insert(
            "prometheus".into(),
            prometheus(prom, &p.child("prometheus"), report)?,
        );
    }
    if let Some(web) = p.take("web") {
        out.insert("web".into(), web_metric(web, &p.child("web"), report)?);
    }
    if let Some(job) = p.take("job") {
        out.insert("job".into(), job_metric(job, &p.child("job"), report)?);
    }
    for (key, _) in std::mem::take(&mut p.map) {
        report.error(
            &join(path, &key),
            format!(
                "the {key} metric provider is not supported by sluice (prometheus, web and job are)"
            ),
        );
    }
    Some(Value::Object(out))
}

/// Argo's `job`: the JobSpec passes through unchanged; of the metadata, sluice keeps the
/// labels and annotations (what Argo puts on the Job).
fn job_metric(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut j = Fields::of(value, path, report)?;
    let mut out = Map::new();
    if let Some(metadata) = j.take("metadata") {
        let mut meta = Fields::of(metadata, &j.child("metadata"), report)?;
        let mut kept = Map::new();
        meta.copy("labels", &mut kept);
        meta.copy("annotations", &mut kept);
        meta.finish(report);
        if !kept.is_empty() {
            out.insert("metadata".into(), Value::Object(kept));
        }
    }
    match j.take("spec") {
        Some(spec) => {
            let policy = spec
                .pointer("/template/spec/restartPolicy")
                .and_then(Value::as_str);
            if !matches!(policy, Some("Never" | "OnFailure")) {
                report.error(
                    &join(&j.child("spec"), "template.spec.restartPolicy"),
                    "a Job's pods need restartPolicy Never or OnFailure; the Job API (and sluice's admission) refuses the Job otherwise",
                );
            }
            out.insert("spec".into(), spec);
        }
        None => report.error(&j.child("spec"), "a job metric needs the Job's spec"),
    }
    j.finish(report);
    Some(Value::Object(out))
}

fn prometheus(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut p = Fields::of(value, path, report)?;
    let mut out = Map::new();
    for key in ["address", "query"] {
        p.copy(key, &mut out);
    }
    match out.get("address").and_then(Value::as_str) {
        Some(a) if a.starts_with("http://") || a.starts_with("https://") => {}
        Some(a) => report.error(
            &p.child("address"),
            format!(
                "{a:?} is not an http(s) URL; sluice needs the address itself, not a placeholder"
            ),
        ),
        None => report.error(
            &p.child("address"),
            "sluice needs the Prometheus address in the metric",
        ),
    }
    if let Some(t) = p.take("timeout") {
        let tp = p.child("timeout");
        out.insert("timeout".into(), duration(t, &tp, report)?);
    }
    if let Some(h) = p.take("headers") {
        let hp = p.child("headers");
        out.insert(
            "headers".into(),
            objects_with(h, &hp, &["key", "value"], report)?,
        );
    }
    if p.take("authentication").is_some() {
        report.error(
            &p.child("authentication"),
            "Argo's sigv4 and oauth2 have no sluice equivalent (sluice sends a bearer token from a Secret: authentication.bearerToken); without it every query would fail",
        );
    }
    if p.take("rangeQuery").is_some() {
        report.error(
            &p.child("rangeQuery"),
            "Argo's start/end expressions have no translation (sluice's rangeQuery is lookback and step)",
        );
    }
    if let Some(Value::Bool(true)) = p.take("insecure") {
        report.warn(
            &p.child("insecure"),
            "sluice verifies Prometheus's TLS certificate always; dropped",
        );
    }
    p.finish(report);
    Some(Value::Object(out))
}

fn web_metric(value: Value, path: &str, report: &mut Report) -> Option<Value> {
    let mut w = Fields::of(value, path, report)?;
    let mut out = Map::new();
    for key in [
        "url",
        "method",
        "headers",
        "body",
        "jsonBody",
        "timeoutSeconds",
        "jsonPath",
        "insecure",
    ] {
        w.copy(key, &mut out);
    }
    if w.take("authentication").is_some() {
        report.error(
            &w.child("authentication"),
            "Argo's oauth2 has no sluice equivalent (sluice reads a header value from a Secret: headers[].valueFrom); without it every request would fail",
        );
    }
    w.finish(report);
    Some(Value::Object(out))
}

/// Converts every document; a `kind: List` counts as its items.
pub fn convert_all(docs: Vec<Value>) -> Vec<Conversion> {
    docs.into_iter().map(convert_document).collect()
}

/// Warns on each converted Rollout that names a template refused in the same run: applied
/// as it is, that analysis would find no template.
pub fn check_references(all: &mut [Conversion]) {
    let refused: std::collections::BTreeSet<(String, String)> = all
        .iter()
        .filter(|c| c.outcome == Outcome::Refused)
        .map(|c| (c.kind.clone(), c.name.clone()))
        .collect();
    for c in all
        .iter_mut()
        .filter(|c| c.outcome == Outcome::Converted && c.kind == "Rollout")
    {
        let Some(out) = &c.output else { continue };
        let mut refs = Vec::new();
        let strategy = &out["spec"]["strategy"];
        for (i, step) in strategy["canary"]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            refs.push((
                format!("spec.strategy.canary.steps[{i}].analysis"),
                &step["analysis"],
            ));
        }
        refs.push((
            "spec.strategy.canary.analysis".into(),
            &strategy["canary"]["analysis"],
        ));
        for key in ["prePromotionAnalysis", "postPromotionAnalysis"] {
            refs.push((
                format!("spec.strategy.blueGreen.{key}"),
                &strategy["blueGreen"][key],
            ));
        }
        let mut found = Vec::new();
        for (path, analysis) in refs {
            for (j, t) in analysis["templates"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let kind = if t["clusterScope"] == true {
                    "ClusterAnalysisTemplate"
                } else {
                    "AnalysisTemplate"
                };
                let name = t["templateName"].as_str().unwrap_or_default();
                if refused.contains(&(kind.to_string(), name.to_string())) {
                    found.push(Finding {
                        severity: Severity::Warning,
                        object: c.object.clone(),
                        path: format!("{path}.templates[{j}]"),
                        message: format!(
                            "{kind} {name} was not converted: this analysis finds no template until it is"
                        ),
                    });
                }
            }
        }
        c.findings.extend(found);
    }
}

/// The documents as a YAML stream, `---` between them.
///
/// Written by hand rather than by serde_yaml, which leaves `yes`, `no`, `on` and `off`
/// unquoted (plain strings in YAML 1.2): kubectl and Argo CD read YAML 1.1, where those are
/// booleans, so `headerValue: {exact: yes}` would arrive as `true`. Here every string is
/// plain only when no YAML version can read it as anything else, and quoted otherwise.
pub fn to_yaml_stream(docs: &[&Value]) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        match doc {
            Value::Object(m) if !m.is_empty() => yaml_map(m, 0, &mut out),
            other => {
                out.push_str(&yaml_scalar_or_empty(other));
                out.push('\n');
            }
        }
    }
    out
}

fn indent(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A scalar, or `{}` / `[]` for an empty container; None for a non-empty one.
fn inline(value: &Value) -> Option<String> {
    match value {
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(_) | Value::Array(_) => None,
        scalar => Some(yaml_scalar_or_empty(scalar)),
    }
}

fn yaml_scalar_or_empty(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// A string plain when it can only be read as that string, else double-quoted (JSON's
/// escapes are YAML's).
fn yaml_string(s: &str) -> String {
    const SPECIAL: &[&str] = &[
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
    ];
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:@+=-".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && !s.ends_with(':')
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// A multi-line string as a literal block, when it reads back exactly.
fn literal_block(s: &str, at: usize, out: &mut String) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    let ok = s.contains('\n')
        && !body.is_empty()
        && !body.starts_with([' ', '\t'])
        && !body.contains("\n\n\n")
        && body
            .lines()
            .all(|l| !l.ends_with([' ', '\t']) && !l.contains('\r'))
        && !body.ends_with('\n');
    if !ok {
        return false;
    }
    out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
    for line in body.split('\n') {
        if !line.is_empty() {
            indent(at, out);
            out.push_str(line);
        }
        out.push('\n');
    }
    true
}

fn yaml_map(m: &Map<String, Value>, at: usize, out: &mut String) {
    for (i, (key, value)) in m.iter().enumerate() {
        // The first key of a list item follows its `- `.
        if i > 0 || !out.ends_with("- ") {
            indent(at, out);
        }
        out.push_str(&yaml_string(key));
        out.push(':');
        yaml_value(value, at, out);
    }
}

/// A value after `key:`.
fn yaml_value(value: &Value, at: usize, out: &mut String) {
    if let Value::String(s) = value
        && literal_block(s, at + 2, out)
    {
        return;
    }
    match (inline(value), value) {
        (Some(text), _) => {
            out.push(' ');
            out.push_str(&text);
            out.push('\n');
        }
        (None, Value::Object(m)) => {
            out.push('\n');
            yaml_map(m, at + 2, out);
        }
        (None, Value::Array(items)) => {
            out.push('\n');
            yaml_list(items, at, out);
        }
        (None, _) => unreachable!("inline covers scalars"),
    }
}

fn yaml_list(items: &[Value], at: usize, out: &mut String) {
    for item in items {
        indent(at, out);
        out.push_str("- ");
        match (inline(item), item) {
            (Some(text), Value::String(s)) if s.contains('\n') => {
                out.pop();
                if !literal_block(s, at + 2, out) {
                    out.push(' ');
                    out.push_str(&text);
                    out.push('\n');
                }
            }
            (Some(text), _) => {
                out.push_str(&text);
                out.push('\n');
            }
            (None, Value::Object(m)) => yaml_map(m, at + 2, out),
            (None, Value::Array(inner)) => {
                out.pop();
                out.push('\n');
                yaml_list(inner, at + 2, out);
            }
            (None, _) => unreachable!("inline covers scalars"),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "expr_tests.rs"]
mod expr_tests;
