//! The committed CRD YAML (and the Helm chart's copy) must be exactly what the Rust types
//! generate; otherwise what is applied to clusters is not what the controller reads.

use std::{fs, path::PathBuf};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    for dir in ["crds/yaml", "charts/sluice/crds"] {
        for (file, crd) in sluice_api::crdgen::all() {
            let path = repo_root().join(dir).join(file);
            let committed = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{} is missing ({e}); run `make crds`", path.display()));
            assert!(
                committed == sluice_api::crdgen::render(&crd),
                "{} differs from what the Rust types generate; run `make crds`",
                path.display()
            );
        }
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
