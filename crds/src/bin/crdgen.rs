//! Writes the sluice CRDs as YAML.
//!
//!   crdgen DIR...          write every CRD into each DIR (crds/yaml), the Helm chart's
//!                          templates of them to charts/sluice/templates/crds and the API
//!                          reference to docs/api.md
//!   crdgen --check DIR...  exit 1 and name the files that differ from the Rust types
//!
//! Paths are relative to the working directory, which `make` sets to the repo root.

use std::{fs, path::Path, process::ExitCode};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.first().is_some_and(|a| a == "--check");
    if check {
        args.remove(0);
    }
    if args.is_empty() || args.iter().any(|a| a.starts_with('-')) {
        eprintln!("usage: crdgen [--check] DIR...");
        return ExitCode::from(2);
    }
    let mut outputs: Vec<(std::path::PathBuf, String)> = Vec::new();
    for dir in &args {
        for (file, crd) in sluice_api::crdgen::all() {
            outputs.push((Path::new(dir).join(file), sluice_api::crdgen::render(&crd)));
        }
    }
    for (file, crd) in sluice_api::crdgen::all() {
        outputs.push((
            Path::new(sluice_api::crdgen::CHART_TEMPLATES).join(file),
            sluice_api::crdgen::render_chart_template(&crd),
        ));
    }
    outputs.push((
        sluice_api::crdgen::API_REFERENCE.into(),
        sluice_api::crdgen::api_reference(),
    ));
    let mut stale = Vec::new();
    for (path, wanted) in outputs {
        let current = fs::read_to_string(&path).unwrap_or_default();
        if current == wanted {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else if let Err(e) = path
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|_| fs::write(&path, wanted))
        {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "crdgen: these files differ from the Rust types; run `make crds`:\n  {}",
            stale.join("\n  ")
        );
        ExitCode::FAILURE
    }
}
