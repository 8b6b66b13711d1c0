//! Where `convert` reads from and writes to: files, directories (recursively, `.yaml`,
//! `.yml` and `.json` files in name order) and standard input; YAML streams of any number
//! of documents, a `kind: List` counting as its items.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// One input file's documents.
#[derive(Debug, Clone)]
pub struct Input {
    /// The name to report (`-` for standard input).
    pub source: String,
    /// Where its output goes under an output directory: the path below the directory
    /// given, or the file's name.
    pub relative: PathBuf,
    pub documents: Vec<Value>,
}

/// An input that cannot be read: the file, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input}: {reason}")]
pub struct Unreadable {
    pub input: String,
    pub reason: String,
}

/// Parses a YAML (or JSON) stream into its documents; empty documents are skipped.
pub fn parse_stream(text: &str, source: &str) -> Result<Vec<Value>, Unreadable> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| Unreadable {
            input: source.to_string(),
            reason: format!("document {}: {e}", i + 1),
        })?;
        match value {
            Value::Null => {}
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(Value::Array(items)) = m.get("items") {
                    out.extend(items.iter().cloned());
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// The manifest files under `dir`, recursively, in name order.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Unreadable> {
    let unreadable = |e: std::io::Error| Unreadable {
        input: dir.display().to_string(),
        reason: e.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every input: `-` is standard input (read once, via `stdin`).
pub fn read_inputs(
    args: &[PathBuf],
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
) -> Result<Vec<Input>, Unreadable> {
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            let text = stdin().map_err(|e| Unreadable {
                input: "-".into(),
                reason: e.to_string(),
            })?;
            out.push(Input {
                source: "-".into(),
                relative: PathBuf::from("stdin.yaml"),
                documents: parse_stream(&text, "-")?,
            });
            continue;
        }
        let files = if arg.is_dir() {
            let mut files = Vec::new();
            walk(arg, &mut files)?;
            files
                .into_iter()
                .map(|f| {
                    let rel = f
                        .strip_prefix(arg)
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|_| f.clone());
                    (f, rel)
                })
                .collect()
        } else {
            let rel = arg
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| arg.clone());
            vec![(arg.clone(), rel)]
        };
        for (file, relative) in files {
            let source = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|e| Unreadable {
                input: source.clone(),
                reason: e.to_string(),
            })?;
            let documents = parse_stream(&text, &source)?;
            out.push(Input {
                source,
                relative,
                documents,
            });
        }
    }
    Ok(out)
}

/// What `kubectl sluice convert` ended with: its exit code.
pub const EXIT_OK: i32 = 0;
/// Something could not be converted (it was not written).
pub const EXIT_NOT_CONVERTED: i32 = 1;
/// An input could not be read or parsed, or the output could not be written.
pub const EXIT_UNREADABLE: i32 = 2;

/// Runs the command: converts `inputs`, writes the stream to `stdout` (or to `output`, a
/// file, or a directory that exists, one file per input there), the findings to `stderr`.
pub fn run(
    inputs: &[PathBuf],
    output: Option<&Path>,
    stdin: &mut dyn FnMut() -> std::io::Result<String>,
    stdout: &mut dyn std::io::Write,
    stderr: &mut dyn std::io::Write,
) -> i32 {
    let inputs = match read_inputs(inputs, stdin) {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            return EXIT_UNREADABLE;
        }
    };
    let mut failed = false;
    let (mut converted, mut passed, mut refused) = (0, 0, 0);
    // Converted together, so that a Rollout can be told its template was refused.
    let mut all = Vec::new();
    let mut owner = Vec::new();
    for (n, input) in inputs.iter().enumerate() {
        for r in super::convert_all(input.documents.clone()) {
            all.push(r);
            owner.push(n);
        }
    }
    super::check_references(&mut all);
    let mut per_input: Vec<(PathBuf, Vec<Value>)> = inputs
        .iter()
        .map(|i| (i.relative.clone(), Vec::new()))
        .collect();
    for (r, n) in all.into_iter().zip(owner) {
        let source = &inputs[n].source;
        for f in &r.findings {
            let _ = writeln!(stderr, "{source}: {f}");
        }
        match r.outcome {
            super::Outcome::Converted => converted += 1,
            super::Outcome::PassedThrough => passed += 1,
            super::Outcome::Refused => {
                refused += 1;
                failed = true;
                let _ = writeln!(stderr, "{source}: {}: not converted", r.object);
            }
        }
        per_input[n].1.extend(r.output);
    }
    let write = |path: &Path, docs: &[&Value]| -> Result<(), String> {
        let text = super::to_yaml_stream(docs);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let written = match output {
        Some(dir) if dir.is_dir() => per_input.iter().try_for_each(|(rel, docs)| {
            let refs: Vec<&Value> = docs.iter().collect();
            write(&dir.join(rel), &refs)
        }),
        Some(file) => {
            let all: Vec<&Value> = per_input.iter().flat_map(|(_, d)| d.iter()).collect();
            write(file, &all)
        }
        None => {
            let all: Vec<&Value> = per_input.iter().flat_map(|(_, d)| d.iter()).collect();
            let text = super::to_yaml_stream(&all);
            stdout.write_all(text.as_bytes()).map_err(|e| e.to_string())
        }
    };
    if let Err(e) = written {
        let _ = writeln!(stderr, "error: writing the output: {e}");
        return EXIT_UNREADABLE;
    }
    let _ = writeln!(
        stderr,
        "{converted} converted, {passed} passed through unchanged, {refused} not converted"
    );
    if failed { EXIT_NOT_CONVERTED } else { EXIT_OK }
}
