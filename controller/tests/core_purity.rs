//! The planning core is pure: no Kubernetes client, no tokio, no clock, no I/O
//! (`controller/src/core/mod.rs`, docs/architecture.md "Layering"). Inside one crate that
//! is a convention the compiler does not check, so this test does: no file under
//! `src/core/` names what would break it.

use std::path::{Path, PathBuf};

/// What the core may not use, each with why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "an async runtime"),
    ("kube::Client", "a Kubernetes client"),
    ("kube::Api", "a Kubernetes client"),
    ("kube::runtime", "controller machinery"),
    ("reqwest", "an HTTP client"),
    ("Timestamp::now", "the clock (plans take `now`)"),
    ("SystemTime", "the clock"),
    ("Instant::now", "the clock"),
    ("std::fs", "file I/O"),
    ("std::net", "network I/O"),
    ("crate::adapters", "an upward import"),
    ("crate::runtime", "an upward import"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/core is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_planning_core_names_no_client_runtime_clock_or_io() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&core, &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for (name, what) in FORBIDDEN {
                if code.contains(name) {
                    found.push(format!("{}:{}: {name} ({what})", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the core must stay pure:\n{}",
        found.join("\n")
    );
}
