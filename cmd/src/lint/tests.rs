use super::*;
use serde_json::json;

/// The catalogue the smoke and lint e2e tests run against the real apiserver.
#[path = "../../../e2e/src/catalogue.rs"]
#[allow(dead_code)]
mod catalogue;

fn problems(doc: &Value) -> Vec<String> {
    let docs = check_document("1", doc);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].skipped, None, "{doc}");
    docs[0].problems.iter().map(ToString::to_string).collect()
}

fn repo_file(path: &str) -> PathBuf {
    sluice_api::crdgen::manifest_dir(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn the_catalogue_bases_are_clean() {
    for base in [
        catalogue::valid_canary(),
        catalogue::valid_blue_green(),
        catalogue::valid_template(),
    ] {
        assert_eq!(problems(&base), Vec::<String>::new(), "{base}");
    }
}

/// Every case the apiserver rejects, rejected offline with the apiserver's message.
#[test]
fn every_catalogue_case_is_rejected_with_the_apiservers_message() {
    let mut failures = Vec::new();
    for (case, doc, message) in catalogue::rollout_cases()
        .into_iter()
        .chain(catalogue::template_cases())
    {
        let got = problems(&doc);
        if !got.iter().any(|p| p.contains(message)) {
            failures.push(format!("{case}: expected {message:?}, got {got:?}"));
        }
        if got.iter().any(|p| p.starts_with("InvalidSpec")) {
            failures.push(format!(
                "{case}: a planner problem for an inadmissible object"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cel_problems_read_as_the_apiservers() {
    let doc = catalogue::with(
        catalogue::valid_canary(),
        &[
            ("/spec/strategy/canary/steps/0", json!({ "setWeight": 120 })),
            ("/spec/strategy/canary/maxSurge", json!(0)),
            ("/spec/strategy/canary/maxUnavailable", json!("0%")),
        ],
    );
    let got = problems(&doc);
    assert!(
        got.contains(&"spec.strategy.canary: Invalid value: maxSurge and maxUnavailable must not both be zero".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"spec.strategy.canary.steps[0].setWeight: Invalid value: 120: setWeight must be between 0 and 100".to_string()),
        "{got:?}"
    );
}

#[test]
fn a_schema_type_error_names_the_field_and_skips_the_cel_rules() {
    let doc = catalogue::with(
        catalogue::valid_canary(),
        &[
            ("/spec/replicas", json!("three")),
            // A CEL rule that fails, unchecked while a type is wrong (as the apiserver).
            ("/spec/strategy/canary/steps/0", json!({ "setWeight": 120 })),
        ],
    );
    let docs = check_document("1", &doc);
    let got: Vec<String> = docs[0].problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            // The scale subresource's check, as the apiserver words it.
            ".spec.replicas: Invalid value: 0: .spec.replicas accessor error: three is of the type string, expected int64",
        ]
    );
    assert!(docs[0].notes.iter().any(|n| n.contains("not checked")));
}

#[test]
fn defaults_are_applied_before_the_rules() {
    // `insecure` defaults to false: without defaulting `!self.insecure` could not run.
    let doc = catalogue::with(
        catalogue::valid_template(),
        &[(
            "/spec/metrics/1",
            json!({ "name": "judge", "successCondition": "result == 'ok'",
                    "provider": { "web": { "url": "https://health.example/" } } }),
        )],
    );
    assert_eq!(problems(&doc), Vec::<String>::new());
}

#[test]
fn unknown_fields_are_problems() {
    let doc = catalogue::with(
        catalogue::valid_canary(),
        &[("/spec/strategy/canary/stepz", json!([]))],
    );
    let got = problems(&doc);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with(
            "spec.strategy.canary.stepz: unknown field \"spec.strategy.canary.stepz\""
        ),
        "{got:?}"
    );
}

#[test]
fn the_planners_checks_give_the_invalid_spec_message() {
    let doc = catalogue::with(
        catalogue::valid_canary(),
        &[(
            "/spec/selector",
            json!({ "matchLabels": { "app": "other" } }),
        )],
    );
    assert_eq!(
        problems(&doc),
        [
            "InvalidSpec: spec.selector matchLabels app=other does not match spec.template.metadata.labels"
        ]
    );
    let doc = catalogue::with(
        catalogue::valid_template(),
        &[("/spec/metrics/0/successCondition", json!("result[0] >="))],
    );
    let got = problems(&doc);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("InvalidSpec: "), "{got:?}");
    assert!(got[0].contains("successCondition"), "{got:?}");
}

#[test]
fn a_multi_document_stream_reports_the_bad_document_only() {
    let bad = catalogue::with(
        catalogue::valid_blue_green(),
        &[("/spec/strategy/blueGreen/activeService", Value::Null)],
    );
    let text = format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\n---\n{}---\n",
        serde_yaml::to_string(&catalogue::valid_canary()).unwrap(),
        serde_yaml::to_string(&bad).unwrap(),
    );
    let report = lint_text("stream.yaml", &text);
    assert_eq!(report.error, None);
    let docs = &report.documents;
    assert_eq!(docs.len(), 3);
    assert!(docs[0].problems.is_empty());
    assert!(docs[1].skipped.is_some());
    assert_eq!(docs[2].index, "3");
    assert!(
        docs[2].problems[0]
            .message
            .contains("blueGreen.activeService is required"),
        "{:?}",
        docs[2].problems
    );
    let lines = render(std::slice::from_ref(&report));
    assert!(
        lines.contains(&"stream.yaml:3 Rollout/blue-green: spec.strategy.blueGreen: Invalid value: blueGreen.activeService is required".to_string())
            || lines.iter().any(|l| l.starts_with("stream.yaml:3 Rollout/blue-green: spec.strategy.blueGreen")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        "2 sluice documents checked: 1 with problems (1 problem), 1 other skipped"
    );
    assert_eq!(exit_code(&[report]), 1);
}

#[test]
fn bad_yaml_gives_the_parse_error_with_its_line() {
    let text = "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: [web\n";
    let report = lint_text("bad.yaml", text);
    let error = report.error.clone().expect("a parse error");
    assert!(error.contains("line"), "{error}");
    assert!(error.starts_with("document 1: "), "{error}");
    assert_eq!(exit_code(&[report]), 2);
}

#[test]
fn a_document_that_is_not_an_object_or_lacks_its_kind_is_a_problem() {
    let report = lint_text("x.yaml", "- a\n- b\n");
    assert_eq!(report.documents[0].problems.len(), 1);
    let report = lint_text("x.yaml", "metadata: {name: web}\n");
    assert_eq!(
        report.documents[0].problems[0].message,
        "apiVersion not set, kind not set"
    );
    let report = lint_text(
        "x.yaml",
        "apiVersion: sluice.dev/v1beta1\nkind: Rollout\nmetadata: {name: web}\n",
    );
    assert!(
        report.documents[0].problems[0]
            .message
            .starts_with("no matches for kind \"Rollout\" in version \"sluice.dev/v1beta1\"")
    );
}

#[test]
fn a_list_is_checked_item_by_item() {
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": [
        catalogue::valid_canary(),
        catalogue::with(catalogue::valid_canary(), &[("/spec/replicas", json!(-1))]),
    ] });
    let docs = check_document("1", &list);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].index, "1.2");
    assert!(docs[0].problems.is_empty());
    assert!(!docs[1].problems.is_empty());
}

#[test]
fn the_repos_examples_and_templates_are_clean() {
    let files = expand(&[repo_file("examples"), repo_file("analysis-templates")]).unwrap();
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let report = lint_path(&file);
        assert_eq!(report.error, None, "{}", file.display());
        assert!(!report.documents.is_empty());
        for d in &report.documents {
            assert!(
                d.problems.is_empty(),
                "{}: {:?}",
                file.display(),
                d.problems
            );
        }
    }
}

#[test]
fn metadata_name_is_required_and_checked() {
    let doc = catalogue::with(
        catalogue::valid_canary(),
        &[("/metadata/name", json!("Web"))],
    );
    assert!(problems(&doc)[0].starts_with("metadata.name: Invalid value: \"Web\""));
    let doc = catalogue::with(
        catalogue::valid_canary(),
        &[("/metadata/name", Value::Null)],
    );
    assert_eq!(
        problems(&doc),
        ["metadata.name: Required value: name or generateName is required"]
    );
}

/// Whatever the document holds, a report and never a panic.
#[test]
fn odd_documents_give_problems_not_panics() {
    let texts = [
        "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\n",
        "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata: 3\nspec: []\n",
        "apiVersion: sluice.dev/v1alpha1\nkind: AnalysisRun\nmetadata: {name: r}\nspec: {metrics: [{name: m, provider: 7}]}\n",
        "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nspec: {replicas: 1.0e+3, strategy: {canary: {steps: [{setWeight: 1.5}]}}}\n",
        "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nstatus: {phase: Healthy}\nspec:\n",
        "\"just a string\"\n",
        "42\n",
    ];
    for text in texts {
        let report = lint_text("odd.yaml", text);
        assert_eq!(report.error, None, "{text}");
        assert_eq!(report.documents.len(), 1, "{text}");
        assert!(!report.documents[0].problems.is_empty(), "{text}");
    }
    let report = lint_text("odd.yaml", texts[0]);
    let got: Vec<String> = report.documents[0]
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "metadata.name: Required value: name or generateName is required",
            "spec: Required value",
        ]
    );
}

/// A null is absent to the CEL rules, is not defaulted where the schema allows it, and
/// is still checked against an enum (what the lint e2e's mutations found).
#[test]
fn nulls_read_as_the_apiserver_reads_them() {
    let doc = catalogue::with(
        catalogue::valid_canary(),
        &[("/spec/strategy/canary", Value::Null)],
    );
    assert_eq!(
        problems(&doc),
        ["spec.strategy: Invalid value: strategy must set exactly one of canary and blueGreen"]
    );
    // (`with` removes a key given null; these set null.)
    let mut doc = catalogue::valid_canary();
    doc["spec"]["strategy"]["canary"]["maxSurge"] = Value::Null;
    assert_eq!(
        problems(&doc),
        [
            "spec.strategy.canary: Invalid value: \"object\": no such key: maxSurge evaluating rule: maxSurge and maxUnavailable must not both be zero"
        ]
    );
    let mut doc = catalogue::valid_canary();
    doc["spec"]["strategy"]["canary"]["steps"][3]["analysis"]["args"][1]["valueFrom"]["podTemplateHashValue"] =
        Value::Null;
    let got = problems(&doc);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("Unsupported value: null: supported values: \"Stable\""),
        "{got:?}"
    );
}
