//! The apiserver's structural-schema steps for a custom resource, offline: pruning
//! (unknown fields, nulls), defaulting, then validation (types, formats, required, enum,
//! bounds, lengths, list-type map/set), with the messages the apiserver gives.
//!
//! The schema is the CRD's `openAPIV3Schema` as JSON, as `sluice_api::crdgen` builds it.

use serde_json::{Map, Value};

/// One field error, formatted as the apiserver's `field.Error` (`path: body`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field path, e.g. `spec.strategy.canary.steps[0].setWeight`; empty for what the
    /// apiserver says without a field (`<nil>: ...`).
    pub path: String,
    /// What the apiserver prints after the path, e.g. `Required value`.
    pub body: String,
    /// Whether the apiserver skips the CEL rules because of it (wrong type, required,
    /// enum, too long, too many: the errors its `hasBlockingErr` lists).
    pub blocking: bool,
}

pub(crate) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_int_or_string(schema: &Value) -> bool {
    schema["x-kubernetes-int-or-string"] == Value::Bool(true)
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
}

/// Drops what the apiserver drops before validating and fills in the schema's defaults.
/// Unknown fields are returned by path: the apiserver prunes them silently, but `kubectl
/// apply` (field validation `Strict`, its default) refuses the whole object for them.
pub fn prune_and_default(value: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                prune_object(map, properties, schema, path, unknown);
            } else if schema["additionalProperties"].is_object() {
                let items = &schema["additionalProperties"];
                if items["nullable"] != Value::Bool(true) {
                    map.retain(|_, v| !v.is_null());
                }
                for (k, v) in map.iter_mut() {
                    prune_and_default(v, items, &child(path, k), unknown);
                }
            } else if !preserves_unknown(schema) && schema["type"] == "object" {
                for k in map.keys() {
                    unknown.push(child(path, k));
                }
                map.clear();
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, v) in items.iter_mut().enumerate() {
                prune_and_default(v, &schema["items"], &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

fn prune_object(
    map: &mut Map<String, Value>,
    properties: &Map<String, Value>,
    schema: &Value,
    path: &str,
    unknown: &mut Vec<String>,
) {
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let Some(sub) = properties.get(&k) else {
            if !preserves_unknown(schema) {
                unknown.push(child(path, &k));
                map.remove(&k);
            }
            continue;
        };
        // A null where the schema does not allow one is dropped (then defaulted).
        if map[&k].is_null() && sub["nullable"] != Value::Bool(true) {
            map.remove(&k);
        }
    }
    for (k, sub) in properties {
        if !map.contains_key(k)
            && let Some(default) = sub.get("default")
        {
            map.insert(k.clone(), default.clone());
        }
        if let Some(v) = map.get_mut(k) {
            prune_and_default(v, sub, &child(path, k), unknown);
        }
    }
}

/// The JSON type name the apiserver reports for a value of the wrong type.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How the apiserver prints a value in `Invalid value: ...`: JSON for strings and
/// numbers, as Go's `%#v` comes out for them.
pub(crate) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A bound as the apiserver prints it: truncated to a whole number (it prints the
/// maximum 0.9999 as 0; matching its words is the point here).
fn bound(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| v.to_string(), |f| format!("{}", f.trunc() as i64))
}

/// The got and wanted types of a type error, as kube-openapi names them: with a
/// format, a value that is neither a string nor a list is named by Go's format of it
/// (`float64`, `int64`, or nothing for a map or a bool) against the format.
fn type_error(v: &Value, schema: &Value) -> (&'static str, String) {
    let types = match is_int_or_string(schema) {
        true => "integer,string".to_string(),
        false => schema["type"].as_str().unwrap_or("object").to_string(),
    };
    match (schema["format"].as_str(), v) {
        (_, Value::String(_) | Value::Array(_) | Value::Null) | (None, _) => (json_type(v), types),
        (Some(format), Value::Number(n)) if n.is_f64() => ("float64", format.to_string()),
        (Some(format), Value::Number(_)) => ("int64", format.to_string()),
        (Some(format), _) => ("", format.to_string()),
    }
}

fn type_matches(v: &Value, schema: &Value) -> bool {
    if is_int_or_string(schema) {
        return v.is_string() || v.is_i64() || v.is_u64();
    }
    match schema["type"].as_str() {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    }
}

/// Validates a pruned and defaulted value against its schema.
pub fn validate(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let invalid = |body: String, blocking: bool| FieldError {
        path: path.to_string(),
        body,
        blocking,
    };
    if v.is_null() {
        if schema["nullable"] == Value::Bool(true) {
            // A null is still checked against an enum that does not list it.
            errs.extend(enum_problem(v, schema, path));
        } else {
            errs.push(invalid(
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
                true,
            ));
        }
        return;
    }
    if !type_matches(v, schema) && v.is_f64() && schema["type"] == "integer" {
        // A fraction where an integer belongs: the apiserver names Go's type and the
        // format, and adds a cause without a field (the int32 range check's).

        let format = schema["format"].as_str();
        let want = format.unwrap_or("integer");
        errs.push(invalid(
            format!(
                "Invalid value: \"float64\": {path} in body must be of type {want}: \"float64\""
            ),
            true,
        ));
        if let Some(format) = format {
            errs.push(FieldError {
                path: String::new(),
                body: format!(
                    "Checked value must be of type integer with format {format} in {path}"
                ),
                blocking: false,
            });
        }
        return;
    }
    if !type_matches(v, schema) {
        let (t, want) = type_error(v, schema);
        errs.push(invalid(
            format!("Invalid value: \"{t}\": {path} in body must be of type {want}: \"{t}\""),
            true,
        ));
        // The enum is checked whatever the type; the other checks are per type.
        errs.extend(enum_problem(v, schema, path));
        return;
    }
    errs.extend(enum_problem(v, schema, path));
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            // An int32 out of its range: the apiserver says so without a field.
            if schema["format"] == "int32" && n.as_i64().is_none_or(|i| i32::try_from(i).is_err()) {
                errs.push(FieldError {
                    path: String::new(),
                    body: format!(
                        "Checked value must be of type integer with format int32 in {path}"
                    ),
                    blocking: false,
                });
            }
            if let Some(min) = schema["minimum"].as_f64()
                && x < min
            {
                errs.push(invalid(
                    format!(
                        "Invalid value: {n}: {path} in body should be greater than or equal to {}",
                        bound(&schema["minimum"])
                    ),
                    false,
                ));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && x > max
            {
                errs.push(invalid(
                    format!(
                        "Invalid value: {n}: {path} in body should be less than or equal to {}",
                        bound(&schema["maximum"])
                    ),
                    false,
                ));
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                errs.push(invalid(
                    format!("Too long: may not be more than {max} bytes"),
                    true,
                ));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                errs.push(invalid(
                    format!(
                        "Invalid value: {}: {path} in body should be at least {min} chars long",
                        shown(v)
                    ),
                    false,
                ));
            }
            if schema["format"] == "date-time" && s.parse::<k8s_openapi::jiff::Timestamp>().is_err()
            {
                errs.push(invalid(
                    format!(
                        "Invalid value: {}: {path} in body must be of type date-time: {}",
                        shown(v),
                        shown(v)
                    ),
                    true,
                ));
            }
        }
        Value::Array(items) => validate_array(items, schema, path, errs),
        Value::Object(map) => validate_object(map, schema, path, errs),
        _ => {}
    }
}

/// A value outside the schema's enum.
fn enum_problem(v: &Value, schema: &Value, path: &str) -> Option<FieldError> {
    let allowed = schema["enum"].as_array()?;
    if allowed.contains(v) {
        return None;
    }
    // Every supported value is printed quoted, null included ("null").
    let list: Vec<String> = allowed
        .iter()
        .map(|a| match a {
            Value::String(s) => format!("{s:?}"),
            other => format!("\"{other}\""),
        })
        .collect();
    Some(FieldError {
        path: path.to_string(),
        body: format!(
            "Unsupported value: {}: supported values: {}",
            shown(v),
            list.join(", ")
        ),
        blocking: true,
    })
}

fn validate_array(items: &[Value], schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let n = items.len() as u64;
    if let Some(max) = schema["maxItems"].as_u64()
        && n > max
    {
        errs.push(FieldError {
            path: path.to_string(),
            body: format!("Too many: {n}: must have at most {max} items"),
            blocking: true,
        });
    }
    if let Some(min) = schema["minItems"].as_u64()
        && n < min
    {
        errs.push(FieldError {
            path: path.to_string(),
            body: format!("Invalid value: {n}: {path} in body should have at least {min} items"),
            blocking: false,
        });
    }
    for (i, item) in items.iter().enumerate() {
        validate(item, &schema["items"], &format!("{path}[{i}]"), errs);
    }
    // x-kubernetes-list-type: a map is keyed by its list-map-keys, a set by the values.
    let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
        .as_array()
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let identity = |item: &Value| -> Value {
        match schema["x-kubernetes-list-type"].as_str() {
            Some("map") => Value::Object(
                keys.iter()
                    .filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone())))
                    .collect(),
            ),
            _ => item.clone(),
        }
    };
    if schema["x-kubernetes-list-type"] == "map" {
        for (i, item) in items.iter().enumerate() {
            if !item.is_object() && !item.is_null() {
                errs.push(FieldError {
                    path: format!("{path}[{i}]"),
                    body: format!(
                        "Invalid value: {}: must be an object for an array of list-type map",
                        shown(item)
                    ),
                    blocking: false,
                });
            }
        }
    }
    if matches!(
        schema["x-kubernetes-list-type"].as_str(),
        Some("map") | Some("set")
    ) {
        let mut seen: Vec<Value> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let id = identity(item);
            if seen.contains(&id) {
                errs.push(FieldError {
                    path: format!("{path}[{i}]"),
                    body: format!("Duplicate value: {id}"),
                    blocking: false,
                });
            } else {
                seen.push(id);
            }
        }
    }
}

fn validate_object(
    map: &Map<String, Value>,
    schema: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(max) = schema["maxProperties"].as_u64()
        && map.len() as u64 > max
    {
        errs.push(FieldError {
            path: path.to_string(),
            body: format!("Too many: {}: must have at most {max} items", map.len()),
            blocking: true,
        });
    }
    for name in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = name.as_str()
            && !map.contains_key(name)
        {
            errs.push(FieldError {
                path: child(path, name),
                body: "Required value".into(),
                blocking: true,
            });
        }
    }
    let properties = schema["properties"].as_object();
    for (k, v) in map {
        if let Some(sub) = properties.and_then(|p| p.get(k)) {
            validate(v, sub, &child(path, k), errs);
        } else if schema["additionalProperties"].is_object() {
            // A map's values are named `path.key` here (CEL's errors say `path[key]`).
            validate(v, &schema["additionalProperties"], &child(path, k), errs);
        }
    }
}
