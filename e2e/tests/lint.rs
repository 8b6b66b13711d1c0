//! `kubectl sluice lint` against the real apiserver: for every manifest of the smoke
//! catalogue the apiserver refuses (the template cases as each analysis kind), lint (the real `kubectl-sluice` binary, offline)
//! gives exactly the errors the apiserver gives, field for field and word for word; the
//! valid manifests (the catalogue's bases, `examples/`, `analysis-templates/`) are
//! accepted by both. Then the plugin's exit codes and output on files, directories and
//! stdin.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use anyhow::{Context, Result, bail};
use kube::{
    Api, Client,
    api::{DynamicObject, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};
use sluice_e2e::catalogue::{
    rollout_cases, template_cases, valid_blue_green, valid_canary, valid_template, with,
};
use sluice_e2e::{TestNamespace, client, install_crds, kubectl, repo_root};

fn plugin_bin() -> Result<PathBuf> {
    Ok(PathBuf::from(std::env::var("SLUICE_CONTROLLER_BIN")?).with_file_name("kubectl-sluice"))
}

/// Runs `kubectl-sluice lint <args>`, with `stdin` as its input.
fn lint(args: &[&str], stdin: &str) -> Result<Output> {
    let mut child = std::process::Command::new(plugin_bin()?)
        .arg("lint")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl-sluice lint")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok(out)
}

fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let plural = format!("{}s", kind.to_lowercase());
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sluice.dev", "v1alpha1", kind),
        &plural,
    );
    match kind {
        "ClusterAnalysisTemplate" => Api::all_with(client.clone(), &resource),
        _ => Api::namespaced_with(client.clone(), ns, &resource),
    }
}

/// What the apiserver says of a manifest it refuses: its errors as sorted `field:
/// message` lines (the message alone for one without a field), and its note that CEL
/// rules were skipped (lint's notes).
type Refusal = (Vec<String>, Vec<String>);

/// The apiserver's refusal of a manifest, or None when it admits it.
async fn apiserver_errors(api: &Api<DynamicObject>, doc: &Value) -> Result<Option<Refusal>> {
    let obj: DynamicObject = serde_json::from_value(doc.clone())?;
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, &obj).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 422 => {
            let causes = status.details.map(|d| d.causes).unwrap_or_default();
            // A cause without a field prints its message alone, and its value (null, "")
            // says nothing; the one saying that CEL rules were skipped is lint's note.
            let (mut lines, mut notes) = (Vec::new(), Vec::new());
            for c in causes {
                if c.field.is_empty() || c.field == "<nil>" {
                    let m = c.message.as_str();
                    let m = m
                        .strip_prefix("Invalid value: null: ")
                        .or_else(|| m.strip_prefix("Invalid value: \"\": "))
                        .unwrap_or(m)
                        .to_string();
                    match m.starts_with("some validation rules were not checked") {
                        true => notes.push(m),
                        false => lines.push(m),
                    }
                } else {
                    lines.push(format!("{}: {}", c.field, c.message));
                }
            }
            lines.sort();
            notes.sort();
            if lines.is_empty() {
                bail!("a 422 without causes: {}", status.message);
            }
            Ok(Some((lines, notes)))
        }
        Err(e) => Err(e.into()),
    }
}

/// `lint -o json` of a stream: per document, its problems as sorted `field: message`
/// lines and its notes.
fn lint_stream(docs: &[Value]) -> Result<Vec<Refusal>> {
    let mut stream = String::new();
    for d in docs {
        stream.push_str("---\n");
        stream.push_str(&serde_yaml::to_string(d)?);
    }
    let out = lint(&["-o", "json", "-"], &stream)?;
    let reports: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
    let documents = reports[0]["documents"].as_array().context("documents")?;
    if documents.len() != docs.len() {
        bail!(
            "lint reported {} documents of {}",
            documents.len(),
            docs.len()
        );
    }
    Ok(documents
        .iter()
        .map(|d| {
            let mut lines: Vec<String> = d["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let (path, message) = (
                        p["path"].as_str().unwrap_or_default(),
                        p["message"].as_str().unwrap_or_default(),
                    );
                    match path.is_empty() {
                        true => message.to_string(),
                        false => format!("{path}: {message}"),
                    }
                })
                .collect();
            lines.sort();
            let mut notes: Vec<String> = d["notes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            notes.sort();
            (lines, notes)
        })
        .collect())
}

#[tokio::test]
async fn lint_and_the_apiserver_agree_on_every_catalogue_case() -> Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "lint").await?;
    let mut cases = Vec::new();
    // The template cases also as the other analysis kinds, which share their schema.
    for (kind, list) in [
        ("Rollout", rollout_cases()),
        ("AnalysisTemplate", template_cases()),
        ("ClusterAnalysisTemplate", template_cases()),
        ("AnalysisRun", template_cases()),
    ] {
        for (case, mut doc, message) in list {
            doc["kind"] = json!(kind);
            doc["metadata"]["name"] = json!(format!("lint-case-{}", cases.len()));
            cases.push((kind, case, doc, message));
        }
    }
    let docs: Vec<Value> = cases.iter().map(|c| c.2.clone()).collect();
    let linted = lint_stream(&docs)?;
    let mut failures = Vec::new();
    for ((kind, case, doc, message), (lint, notes)) in cases.iter().zip(&linted) {
        let Some(apiserver) = apiserver_errors(&api(&client, &ns.name, kind), doc).await? else {
            failures.push(format!("{kind} {case}: the apiserver admits it"));
            continue;
        };
        let (apiserver, apiserver_notes) = apiserver;
        if !lint.iter().any(|l| l.contains(message)) {
            failures.push(format!("{kind} {case}: lint lacks {message:?}: {lint:?}"));
        }
        if &apiserver != lint {
            failures.push(format!(
                "{kind} {case}: lint and the apiserver disagree\n  apiserver: {apiserver:?}\n  lint:      {lint:?}"
            ));
        }
        // That CEL rules were skipped: a note of both.
        if &apiserver_notes != notes {
            failures.push(format!(
                "{case}: lint's notes and the apiserver's differ\n  apiserver: {apiserver_notes:?}\n  lint:      {notes:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.delete().await
}

/// Every node of a document by JSON pointer (not the root, `apiVersion`, `kind` or
/// `metadata`, not below the pod template's containers: Kubernetes' own schema).
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(map) => map.iter().map(|(k, c)| (format!("{at}/{k}"), c)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{at}/{i}"), c))
            .collect(),
        _ => Vec::new(),
    };
    for (pointer, child) in children {
        if [
            "/apiVersion",
            "/kind",
            "/metadata",
            "/spec/template/spec/containers",
        ]
        .contains(&pointer.as_str())
        {
            continue;
        }
        out.push(pointer.clone());
        pointers(child, &pointer, out);
    }
}

/// The document with the node at `pointer` removed, or replaced by `value`.
fn mutated(mut doc: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer below the root");
    match (doc.pointer_mut(parent), value) {
        (Some(Value::Object(map)), None) => {
            map.remove(key);
        }
        (Some(Value::Object(map)), Some(v)) => {
            map.insert(key.to_string(), v);
        }
        (Some(Value::Array(items)), None) => {
            items.remove(key.parse::<usize>().expect("an index"));
        }
        (Some(Value::Array(items)), Some(v)) => {
            items[key.parse::<usize>().expect("an index")] = v;
        }
        _ => panic!("no parent at {pointer}"),
    }
    doc
}

/// Beyond the catalogue: every field of the valid bases removed, set to null, emptied
/// ("", [] or {}), given the wrong type, and given an out-of-range number. Lint must admit what the apiserver admits and give
/// the apiserver's errors for what it refuses, whatever the mutation.
#[tokio::test]
async fn lint_and_the_apiserver_agree_on_every_mutation_of_the_bases() -> Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "lint-mutations").await?;
    let mut cases = Vec::new();
    for (kind, base) in [
        ("Rollout", valid_canary()),
        ("Rollout", valid_blue_green()),
        ("AnalysisTemplate", valid_template()),
    ] {
        let mut all = Vec::new();
        pointers(&base, "", &mut all);
        for pointer in all {
            let node = base.pointer(&pointer).cloned().unwrap_or_default();
            let wrong = match node {
                Value::String(_) => json!(7),
                _ => json!("x"),
            };
            let mut edits = vec![
                ("removed", None),
                ("wrong type", Some(wrong)),
                ("null", Some(Value::Null)),
                (
                    "empty",
                    Some(match node {
                        Value::String(_) => json!(""),
                        Value::Array(_) => json!([]),
                        _ => json!({}),
                    }),
                ),
            ];
            if node.is_number() {
                edits.push(("negative", Some(json!(-1000))));
                edits.push(("huge", Some(json!(1_000_000_000_000_i64))));
            }
            for (what, value) in edits {
                let mut doc = mutated(base.clone(), &pointer, value);
                doc["metadata"]["name"] = json!(format!("m-{}", cases.len()));
                cases.push((kind, format!("{kind} {pointer} {what}"), doc));
            }
        }
    }
    let docs: Vec<Value> = cases.iter().map(|c| c.2.clone()).collect();
    let linted = lint_stream(&docs)?;
    let mut failures = Vec::new();
    for ((kind, case, doc), (lint, _)) in cases.iter().zip(&linted) {
        // The controller's own checks go beyond admission: not the apiserver's to agree.
        let admission: Vec<&String> = lint
            .iter()
            .filter(|l| !l.starts_with("InvalidSpec: "))
            .collect();
        match apiserver_errors(&api(&client, &ns.name, kind), doc).await? {
            None if admission.is_empty() => {}
            None => failures.push(format!(
                "{case}: the apiserver admits it, lint: {admission:?}"
            )),
            Some((apiserver, _)) => {
                if apiserver.iter().collect::<Vec<_>>() != admission {
                    failures.push(format!(
                        "{case}: lint and the apiserver disagree\n  apiserver: {apiserver:?}\n  lint:      {admission:?}"
                    ));
                }
            }
        }
    }
    println!("{} mutations compared", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} mutations:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    ns.delete().await
}

#[tokio::test]
async fn valid_manifests_pass_lint_and_the_apiserver() -> Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "lint-valid").await?;
    let bases = [
        ("Rollout", valid_canary()),
        ("Rollout", valid_blue_green()),
        ("AnalysisTemplate", valid_template()),
    ];
    let docs: Vec<Value> = bases.iter().map(|b| b.1.clone()).collect();
    for ((lint, _), (kind, doc)) in lint_stream(&docs)?.iter().zip(&bases) {
        assert!(lint.is_empty(), "{kind}: lint: {lint:?}");
        let apiserver = apiserver_errors(&api(&client, &ns.name, kind), doc).await?;
        assert_eq!(apiserver, None, "{kind}");
    }
    // The repository's samples: lint exits 0 on each file; kubectl (strict field
    // validation) admits each, whatever its kinds, in a server-side dry run.
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["examples", "analysis-templates"] {
        for entry in std::fs::read_dir(root.join(dir))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let out = lint(&[&file.to_string_lossy()], "")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}:\n{stdout}", file.display());
        let applied = kubectl(&[
            "create",
            "--dry-run=server",
            "-n",
            &ns.name,
            "-f",
            &file.to_string_lossy(),
        ])?;
        assert!(
            applied.success,
            "{}: the apiserver refuses what lint accepts: {}",
            file.display(),
            applied.stderr
        );
    }
    ns.delete().await
}

/// An unknown field: kubectl refuses the manifest (strict field validation), and lint
/// names the same field.
#[tokio::test]
async fn unknown_fields_are_refused_by_kubectl_and_by_lint() -> Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "lint-unknown").await?;
    let doc = with(
        valid_canary(),
        &[("/spec/strategy/canary/stepz", json!([]))],
    );
    let dir = tempdir("unknown")?;
    let file = dir.join("rollout.yaml");
    std::fs::write(&file, serde_yaml::to_string(&doc)?)?;
    let file = file.to_string_lossy();
    let applied = kubectl(&["create", "--dry-run=server", "-n", &ns.name, "-f", &file])?;
    assert!(!applied.success);
    assert!(
        applied
            .stderr
            .contains("unknown field \"spec.strategy.canary.stepz\""),
        "{}",
        applied.stderr
    );
    let out = lint(&[&file], "")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("Rollout/canary: spec.strategy.canary.stepz: unknown field \"spec.strategy.canary.stepz\""),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir)?;
    ns.delete().await
}

fn tempdir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sluice-lint-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<String> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, text)?;
    Ok(path.to_string_lossy().into_owned())
}

/// The binary as a user runs it: files, `-f`, directories, stdin; its lines, its summary
/// and its exit codes.
#[test]
fn the_plugin_lints_files_directories_and_stdin() -> Result<()> {
    let dir = tempdir("plugin")?;
    let good = serde_yaml::to_string(&valid_canary())?;
    let bad = serde_yaml::to_string(&with(
        valid_canary(),
        &[("/spec/strategy/canary/steps/0", json!({ "setWeight": 120 }))],
    ))?;
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n";
    let good_file = write(&dir, "tree/good.yaml", &format!("{service}---\n{good}"))?;
    write(&dir, "tree/deeper/also-good.yml", &good)?;
    write(&dir, "tree/notes.txt", "not a manifest")?;
    let bad_file = write(&dir, "bad.yaml", &format!("{good}---\n{bad}"))?;
    let broken = write(&dir, "broken.yaml", "kind: Rollout\nspec: [oops\n")?;

    // Clean: exit 0, the summary counts the sluice documents and the skipped Service.
    let out = lint(&[&good_file], "")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("good.yaml:1 Service/web: skipped: v1 Service is not a sluice kind"));
    assert!(
        stdout.ends_with(
            "1 sluice document checked: 0 with problems (0 problems), 1 other skipped\n"
        ),
        "{stdout}"
    );

    // A directory, recursively (*.yaml and *.yml, not notes.txt).
    let out = lint(&["-f", &dir.join("tree").to_string_lossy()], "")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("2 sluice documents checked"), "{stdout}");

    // A problem: exit 1, one line naming the file, document, object, field and rule.
    let out = lint(&[&bad_file], "")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let expected = format!(
        "{bad_file}:2 Rollout/canary: spec.strategy.canary.steps[0].setWeight: Invalid value: 120: setWeight must be between 0 and 100\n\
         2 sluice documents checked: 1 with problems (1 problem), 0 other skipped\n"
    );
    assert_eq!(stdout, expected);

    // stdin, and JSON output.
    let out = lint(&["-", "-o", "json"], &bad)?;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report[0]["source"], "stdin");
    assert_eq!(
        report[0]["documents"][0]["problems"][0]["path"],
        "spec.strategy.canary.steps[0].setWeight"
    );

    // Unparsable YAML: exit 2, the parser's message with its line, no panic; the other
    // inputs are still checked.
    let out = lint(&[&broken, &good_file], "")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!("{broken}: error: document 1: ")) && stdout.contains("line 2"),
        "{stdout}"
    );
    assert!(stdout.contains("1 input unreadable"), "{stdout}");
    let out = lint(&[&dir.join("missing.yaml").to_string_lossy()], "")?;
    assert_eq!(out.status.code(), Some(2));
    let out = lint(&[], "")?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lint needs a FILE"));

    // The help reads as the command's documentation.
    let help = std::process::Command::new(plugin_bin()?)
        .args(["lint", "--help"])
        .output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Check manifests offline"), "{help}");
    assert!(help.contains("--filename"), "{help}");
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
