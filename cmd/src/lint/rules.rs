//! The CRD's CEL rules (`x-kubernetes-validations`), offline: each rule is evaluated with
//! `self` bound to the value at its schema node, converted by the schema's types as the
//! apiserver does (a `number` is a double even when written `1`), and a false rule is
//! reported as the apiserver reports it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value;

use super::schema::{FieldError, child, shown};

/// The value as the apiserver hands it to CEL, typed by its schema.
fn to_cel(v: &Value, schema: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) if schema["type"] == "number" => {
            cel::Value::Float(n.as_f64().unwrap_or_default())
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(
            items.iter().map(|i| to_cel(i, &schema["items"])).collect(),
        )),
        Value::Object(map) => {
            // A field set to null is absent to the apiserver's CEL (`has()` is false).
            let fields: HashMap<String, cel::Value> = map
                .iter()
                .filter(|(_, child)| !child.is_null())
                .map(|(k, child)| {
                    let sub = schema["properties"]
                        .get(k)
                        .unwrap_or(&schema["additionalProperties"]);
                    (k.clone(), to_cel(child, sub))
                })
                .collect();
            fields.into()
        }
    }
}

/// Evaluates every rule under `schema` against `v` (already pruned, defaulted and
/// structurally valid), collecting the rules that do not hold.
pub fn check(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        return;
    }
    if let Some(rules) = schema["x-kubernetes-validations"].as_array() {
        let this = to_cel(v, schema);
        for rule in rules {
            if let Some(e) = evaluate(rule, &this, v, schema["type"].as_str(), path) {
                errs.push(e);
            }
        }
    }
    match v {
        Value::Object(map) => {
            for (k, child_value) in map {
                if let Some(sub) = schema["properties"].get(k) {
                    check(child_value, sub, &child(path, k), errs);
                } else if schema["additionalProperties"].is_object() {
                    let sub = &schema["additionalProperties"];
                    check(child_value, sub, &format!("{path}[{k}]"), errs);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check(item, &schema["items"], &format!("{path}[{i}]"), errs);
            }
        }
        _ => {}
    }
}

/// A rule compiled once per thread (a CRD has a few dozen, checked at every node of
/// every document).
fn compiled(expr: &str) -> Result<Rc<cel::Program>, String> {
    thread_local! {
        static PROGRAMS: RefCell<HashMap<String, Rc<cel::Program>>> = RefCell::default();
    }
    PROGRAMS.with(|programs| {
        if let Some(p) = programs.borrow().get(expr) {
            return Ok(p.clone());
        }
        let program = cel::Program::compile(expr).map_err(|e| {
            let e = e.to_string();
            e.lines().next().unwrap_or_default().to_string()
        })?;
        let program = Rc::new(program);
        programs
            .borrow_mut()
            .insert(expr.to_string(), program.clone());
        Ok(program)
    })
}

/// One rule: None when it holds. The apiserver prints a scalar's value before the
/// message, and nothing for an object or a list.
fn evaluate(
    rule: &Value,
    this: &cel::Value,
    v: &Value,
    schema_type: Option<&str>,
    path: &str,
) -> Option<FieldError> {
    let expr = rule["rule"].as_str().unwrap_or_default();
    let message = rule["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("failed rule: {expr}"));
    let path = match rule["fieldPath"].as_str() {
        Some(field) => format!("{path}{field}"),
        None => path.to_string(),
    };
    let value = match v {
        Value::Object(_) | Value::Array(_) => String::new(),
        scalar => format!("{}: ", shown(scalar)),
    };
    let failed = |body: String| FieldError {
        path: path.clone(),
        body,
        blocking: false,
    };
    let program = match compiled(expr) {
        Ok(p) => p,
        Err(first) => {
            return Some(failed(format!(
                "Internal error: rule does not compile offline: {first}: {expr}"
            )));
        }
    };
    let mut context = cel::Context::default();
    context.add_variable_from_value("self", this.clone());
    match program.execute(&context) {
        Ok(cel::Value::Bool(true)) => None,
        Ok(cel::Value::Bool(false)) => Some(failed(format!("Invalid value: {value}{message}"))),
        Ok(other) => Some(failed(format!(
            "Internal error: rule evaluated to {other:?}, not a bool: {expr}"
        ))),
        // As cel-go words it: the error, then the rule's message; the value is its type.
        Err(e) => {
            let e = match &e {
                cel::ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
                other => other.to_string(),
            };
            let t = schema_type.unwrap_or("object");
            Some(failed(format!(
                "Invalid value: \"{t}\": {e} evaluating rule: {message}"
            )))
        }
    }
}
