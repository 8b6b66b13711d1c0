//! The committed CRD YAML (and the Helm chart's templates of it) must be exactly what the
//! Rust types generate; otherwise what is applied to clusters is not what the controller
//! reads.

use std::{fs, path::PathBuf};

fn repo_root() -> PathBuf {
    sluice_api::crdgen::manifest_dir(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    for (file, crd) in sluice_api::crdgen::all() {
        let copies = [
            ("crds/yaml", sluice_api::crdgen::render(&crd)),
            (
                sluice_api::crdgen::CHART_TEMPLATES,
                sluice_api::crdgen::render_chart_template(&crd),
            ),
        ];
        for (dir, wanted) in copies {
            let path = repo_root().join(dir).join(file);
            let committed = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{} is missing ({e}); run `make crds`", path.display()));
            assert!(
                committed == wanted,
                "{} differs from what the Rust types generate; run `make crds`",
                path.display()
            );
        }
    }
}

/// The chart's templates are the plain CRDs plus the keep annotation, the chart's labels
/// and the `crds.install` switch; nothing of the schema may change on the way.
#[test]
fn chart_template_is_the_crd_with_keep_and_labels() {
    for (_, crd) in sluice_api::crdgen::all() {
        let template = sluice_api::crdgen::render_chart_template(&crd);
        assert!(template.contains("helm.sh/resource-policy: keep"));
        assert!(template.contains("{{- if .Values.crds.install }}"));
        let plain = sluice_api::crdgen::render(&crd);
        let stripped: String = template
            .replace("{{ \"{{\" }}", "{{")
            .lines()
            .filter(|l| {
                !l.contains("{{- ")
                    && !l.contains("helm.sh/resource-policy")
                    && *l != "  labels:"
                    && *l != "  annotations:"
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let plain: String = plain
            .lines()
            .filter(|l| *l != "  annotations:")
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(stripped, plain, "the chart's template changed the schema");
    }
}

#[test]
fn committed_api_reference_matches_the_rust_types() {
    let path = repo_root().join(sluice_api::crdgen::API_REFERENCE);
    let committed = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing ({e}); run `make crds`", path.display()));
    assert!(
        committed == sluice_api::crdgen::api_reference(),
        "{} differs from what the Rust types generate; run `make crds`",
        path.display()
    );
}
