//! `kubectl sluice lint`: checks sluice manifests offline, with no cluster, as the
//! apiserver would admit them (the CRD's structural schema, then its CEL rules, with the
//! apiserver's messages) and as the controller would then accept them (the planner's
//! spec checks, the `InvalidSpec` condition's messages).
//!
//! What the apiserver does, in its order: unknown fields and disallowed nulls are pruned,
//! defaults filled in, the schema validated; the CEL rules run only when no blocking
//! schema error (wrong type, required, enum, too long, too many) was found, on the
//! defaulted object. Unknown fields are problems here: the apiserver drops them silently,
//! and `kubectl apply` (strict field validation, its default) refuses the manifest.

pub mod rules;
pub mod schema;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::Deserialize as _;
use serde_json::Value;

/// One thing wrong with a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// The field path (`spec.strategy.canary`), `InvalidSpec` for the planner's checks, or
    /// empty where the apiserver names no field (`<nil>`: a format's range).
    pub path: String,
    /// The message, as the apiserver (or the controller) gives it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.is_empty() {
            true => write!(f, "{}", self.message),
            false => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// What became of one document of a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    /// Position in its file, from 1; a `List`'s items are `N.1`, `N.2`, ...
    pub index: String,
    pub kind: String,
    pub name: String,
    /// Problems found; empty when it would be admitted and accepted.
    pub problems: Vec<Problem>,
    /// Why it was not checked (not a sluice kind), when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Things worth saying that are not problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The documents of one input, and why the rest could not be read, if so.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    /// The path given (or found under a directory), `stdin` for `-`.
    pub source: String,
    pub documents: Vec<Document>,
    /// A read or parse error; documents after it were not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The schema of a kind of `sluice.dev/v1alpha1`, built once (generating the CRDs is
/// not cheap: the pod template's schema alone is large).
fn schema_of(kind: &str) -> Option<&'static Value> {
    static SCHEMAS: std::sync::OnceLock<Vec<(String, Value)>> = std::sync::OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        sluice_api::crdgen::all()
            .into_iter()
            .filter_map(|(_, crd)| {
                let kind = crd.spec.names.kind.clone();
                let version = crd
                    .spec
                    .versions
                    .into_iter()
                    .find(|v| v.name == sluice_api::VERSION)?;
                let schema = version.schema?.open_api_v3_schema?;
                Some((kind, serde_json::to_value(schema).ok()?))
            })
            .collect()
    });
    schemas.iter().find(|(k, _)| k == kind).map(|(_, s)| s)
}

const KINDS: [&str; 4] = [
    "Rollout",
    "AnalysisTemplate",
    "ClusterAnalysisTemplate",
    "AnalysisRun",
];

/// Splits a YAML (or JSON) stream into its documents and checks each. A document that
/// does not parse ends the stream: the error says where.
pub fn lint_text(source: &str, text: &str) -> FileReport {
    let mut report = FileReport {
        source: source.to_string(),
        documents: Vec::new(),
        error: None,
    };
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(de) {
            Ok(Value::Null) => {}
            Ok(doc) => report
                .documents
                .extend(check_document(&(i + 1).to_string(), &doc)),
            Err(e) => {
                report.error = Some(format!("document {}: {e}", i + 1));
                break;
            }
        }
    }
    report
}

/// Checks one parsed document (a `List` gives one result per item).
pub fn check_document(index: &str, doc: &Value) -> Vec<Document> {
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    if let (true, Some(items)) = (kind.ends_with("List"), doc["items"].as_array()) {
        return items
            .iter()
            .enumerate()
            .flat_map(|(i, item)| check_document(&format!("{index}.{}", i + 1), item))
            .collect();
    }
    let name = doc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut out = Document {
        index: index.to_string(),
        kind: kind.clone(),
        name,
        problems: Vec::new(),
        skipped: None,
        notes: Vec::new(),
    };
    let problem = |path: &str, message: String| Problem {
        path: path.to_string(),
        message,
    };
    if !doc.is_object() {
        out.problems.push(problem(
            "",
            format!("not a Kubernetes object: a YAML {}", kind_of(doc)),
        ));
        return vec![out];
    }
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    if api_version.is_empty() || kind.is_empty() {
        let mut missing = Vec::new();
        if api_version.is_empty() {
            missing.push("apiVersion not set");
        }
        if kind.is_empty() {
            missing.push("kind not set");
        }
        out.problems.push(problem("", missing.join(", ")));
        return vec![out];
    }
    if group != sluice_api::GROUP {
        out.skipped = Some(format!("{api_version} {kind} is not a sluice kind"));
        return vec![out];
    }
    let expected = format!("{}/{}", sluice_api::GROUP, sluice_api::VERSION);
    let schema = match schema_of(&kind) {
        Some(schema) if api_version == expected => schema,
        _ => {
            out.problems.push(problem(
                "",
                format!(
                    "no matches for kind \"{kind}\" in version \"{api_version}\" (sluice serves {} in {expected})",
                    KINDS.join(", ")
                ),
            ));
            return vec![out];
        }
    };
    out.problems = check_object(&kind, doc, schema, &mut out.notes);
    vec![out]
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        _ => "value",
    }
}

/// The apiserver's steps (prune, default, validate, CEL), then the planner's checks.
fn check_object(kind: &str, doc: &Value, schema: &Value, notes: &mut Vec<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut object = doc.clone();
    let map = object.as_object_mut().expect("checked to be an object");
    // The status subresource: the apiserver ignores status on create and on spec writes.
    if map.remove("status").is_some() {
        notes.push("status is ignored: the apiserver drops it on create".into());
    }
    let mut unknown = Vec::new();
    for key in map.keys() {
        if !["apiVersion", "kind", "metadata", "spec"].contains(&key.as_str()) {
            unknown.push(key.clone());
        }
    }
    map.retain(|k, _| ["apiVersion", "kind", "metadata", "spec"].contains(&k.as_str()));
    problems.extend(metadata_problems(
        map.get("metadata").unwrap_or(&Value::Null),
    ));
    let spec_schema = &schema["properties"]["spec"];
    let mut errs = Vec::new();
    match map.get_mut("spec") {
        None | Some(Value::Null) => {
            map.remove("spec");
            errs.push(schema::FieldError {
                path: "spec".into(),
                body: "Required value".into(),
                blocking: true,
            });
        }
        Some(spec) => {
            schema::prune_and_default(spec, spec_schema, "spec", &mut unknown);
            schema::validate(spec, spec_schema, "spec", &mut errs);
        }
    }
    for path in unknown {
        problems.push(Problem {
            path: path.clone(),
            message: format!(
                "unknown field \"{path}\": kubectl apply refuses it (strict decoding error); the apiserver would drop it"
            ),
        });
    }
    if kind == "Rollout" {
        errs.extend(scale_problem(map.get("spec").unwrap_or(&Value::Null)));
    }
    if errs.iter().any(|e| e.blocking) {
        notes.push(
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
        );
    } else if let Some(spec) = map.get("spec") {
        rules::check(spec, spec_schema, "spec", &mut errs);
    }
    problems.extend(errs.into_iter().map(|e| Problem {
        path: e.path,
        message: e.body,
    }));
    if problems.is_empty() {
        problems.extend(planner_problems(kind, &object));
    }
    problems
}

/// The scale subresource's own check of `spec.replicas` (the apiserver reads it with
/// Go's types, and says so).
fn scale_problem(spec: &Value) -> Option<schema::FieldError> {
    /// A value as Go's `%v` prints it (`map[a:1]`, `[x y]`).
    fn go_value(v: &Value) -> String {
        match v {
            Value::Null => "<nil>".into(),
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(go_value).collect();
                format!("[{}]", items.join(" "))
            }
            Value::Object(map) => {
                let mut entries: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", go_value(v)))
                    .collect();
                entries.sort();
                format!("map[{}]", entries.join(" "))
            }
        }
    }
    /// A value as Go's `%v` prints it, and its Go type.
    fn go(v: &Value) -> (String, &'static str) {
        let go_type = match v {
            Value::String(_) => "string",
            Value::Bool(_) => "bool",
            Value::Number(_) => "float64",
            Value::Array(_) => "[]interface {}",
            _ => "map[string]interface {}",
        };
        (go_value(v), go_type)
    }
    let accessor = |v: &Value, expected: &str| {
        let (shown, go_type) = go(v);
        format!(
            "Invalid value: 0: .spec.replicas accessor error: {shown} is of the type {go_type}, expected {expected}"
        )
    };
    let body = match spec {
        Value::Null => return None,
        Value::Object(map) => match map.get("replicas").unwrap_or(&Value::Null) {
            Value::Null => return None,
            Value::Number(n) => match n.as_i64() {
                Some(n) if n < 0 => format!("Invalid value: {n}: should be a non-negative integer"),
                Some(n) if n > i64::from(i32::MAX) => format!(
                    "Invalid value: {n}: should be less than or equal to {}",
                    i32::MAX
                ),
                Some(_) => return None,
                None => accessor(&map["replicas"], "int64"),
            },
            other => accessor(other, "int64"),
        },
        other => accessor(other, "map[string]interface{}"),
    };
    Some(schema::FieldError {
        path: ".spec.replicas".into(),
        body,
        blocking: false,
    })
}

/// What the apiserver checks of every object's metadata that a manifest can get wrong.
fn metadata_problems(metadata: &Value) -> Vec<Problem> {
    let name = metadata["name"].as_str().unwrap_or_default();
    let generate = metadata["generateName"].as_str().unwrap_or_default();
    if name.is_empty() && generate.is_empty() {
        return vec![Problem {
            path: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        }];
    }
    if !name.is_empty() && !is_dns_subdomain(name) {
        return vec![Problem {
            path: "metadata.name".into(),
            message: format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
        }];
    }
    Vec::new()
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// The controller's own checks of an admitted object: what would give it `InvalidSpec`.
fn planner_problems(kind: &str, object: &Value) -> Vec<Problem> {
    use sluice_api::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Rollout};
    use sluice_controller::core;
    let invalid = |message: String| Problem {
        path: "InvalidSpec".into(),
        message,
    };
    let decoded = |e: serde_json::Error| {
        vec![invalid(format!(
            "the controller cannot decode the {kind}: {e}"
        ))]
    };
    let problem = match kind {
        "Rollout" => {
            let r: Rollout = match serde_json::from_value(object.clone()) {
                Ok(r) => r,
                Err(e) => return decoded(e),
            };
            // A workloadRef Rollout's template and selector come from its Deployment, in
            // the cluster: only the strategy can be checked here.
            if r.spec.workload_ref.is_some() {
                r.spec
                    .strategy
                    .canary
                    .as_ref()
                    .and_then(core::routes::spec_problem)
            } else {
                core::spec_problem(&r)
            }
        }
        "AnalysisTemplate" | "ClusterAnalysisTemplate" | "AnalysisRun" => {
            let spec = match kind {
                "AnalysisTemplate" => serde_json::from_value::<AnalysisTemplate>(object.clone())
                    .map(|t| t.spec.analysis),
                "ClusterAnalysisTemplate" => {
                    serde_json::from_value::<ClusterAnalysisTemplate>(object.clone())
                        .map(|t| t.spec.analysis)
                }
                _ => serde_json::from_value::<AnalysisRun>(object.clone()).map(|t| t.spec.analysis),
            };
            match spec {
                Ok(spec) => core::analysis::validate_spec(&spec)
                    .err()
                    .map(|e| e.to_string()),
                Err(e) => return decoded(e),
            }
        }
        _ => None,
    };
    problem.map(invalid).into_iter().collect()
}

/// The files to read for the arguments: files as given, directories searched
/// recursively for `*.yaml`, `*.yml` and `*.json` (sorted), `-` for stdin.
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" || !arg.is_dir() {
            out.push(arg.clone());
            continue;
        }
        let before = out.len();
        walk(arg, &mut out).map_err(|e| format!("{}: {e}", arg.display()))?;
        if out.len() == before {
            return Err(format!(
                "{}: no *.yaml, *.yml or *.json files in this directory",
                arg.display()
            ));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["yaml", "yml", "json"].contains(&e))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads and checks one input (`-` is stdin).
pub fn lint_path(path: &Path) -> FileReport {
    let source = match path.as_os_str() == "-" {
        true => "stdin".to_string(),
        false => path.display().to_string(),
    };
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    };
    match text {
        Ok(text) => lint_text(&source, &text),
        Err(e) => FileReport {
            source,
            documents: Vec::new(),
            error: Some(format!("cannot read: {e}")),
        },
    }
}

/// The exit code for these reports: 2 when an input could not be read or parsed, 1 when
/// a document has a problem, 0 when every sluice document is clean.
pub fn exit_code(reports: &[FileReport]) -> i32 {
    if reports.iter().any(|r| r.error.is_some()) {
        2
    } else if reports
        .iter()
        .any(|r| r.documents.iter().any(|d| !d.problems.is_empty()))
    {
        1
    } else {
        0
    }
}

/// The text output: one line per problem, note and skipped document, then a summary.
pub fn render(reports: &[FileReport]) -> Vec<String> {
    let mut lines = Vec::new();
    let (mut checked, mut skipped, mut bad, mut problems) = (0, 0, 0, 0);
    for r in reports {
        for d in &r.documents {
            let who = match (d.kind.is_empty(), d.name.is_empty()) {
                (true, _) => String::from("(no kind)"),
                (false, true) => format!("{}/(no name)", d.kind),
                (false, false) => format!("{}/{}", d.kind, d.name),
            };
            let at = format!("{}:{} {who}", r.source, d.index);
            if let Some(why) = &d.skipped {
                skipped += 1;
                lines.push(format!("{at}: skipped: {why}"));
                continue;
            }
            checked += 1;
            if !d.problems.is_empty() {
                bad += 1;
            }
            for p in &d.problems {
                problems += 1;
                lines.push(format!("{at}: {p}"));
            }
            if !d.problems.is_empty() {
                for n in &d.notes {
                    lines.push(format!("{at}: note: {n}"));
                }
            }
        }
        if let Some(e) = &r.error {
            lines.push(format!("{}: error: {e}", r.source));
        }
    }
    let unreadable = reports.iter().filter(|r| r.error.is_some()).count();
    let mut summary = format!(
        "{checked} sluice document{} checked: {} with problems ({problems} problem{}), {skipped} other skipped",
        plural(checked),
        bad,
        plural(problems),
    );
    if unreadable > 0 {
        summary.push_str(&format!(
            ", {unreadable} input{} unreadable",
            plural(unreadable)
        ));
    }
    lines.push(summary);
    lines
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests;
