//! AnalysisRuns: created from a Rollout's analysis (its templates merged, its args
//! resolved), owned by the Rollout, terminated when no longer needed.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use sluice_api::analysis::{
    AnalysisRun, AnalysisRunArgument, AnalysisRunSpec, AnalysisSpec, AnalysisTemplate,
    AnalysisTemplateRef, ClusterAnalysisTemplate, PodTemplateHashValue,
};
use sluice_api::labels::{ANALYSIS_ROLE_LABEL, CONTROLLER_INSTANCE_LABEL, ROLLOUT_LABEL};
use sluice_api::rollout::{Rollout, RolloutAnalysis};

use super::cache::{CachedTemplate, Caches};
use super::workload::{owner_reference, written};
use super::written::{Cache, Written};
use super::{AdapterError, FIELD_MANAGER, update_params};

/// The template an analysis names, or None when it does not exist.
pub async fn fetch_template(
    client: &Client,
    namespace: &str,
    name: &str,
    cluster_scope: bool,
) -> Result<Option<AnalysisSpec>, AdapterError> {
    Ok(if cluster_scope {
        Api::<ClusterAnalysisTemplate>::all(client.clone())
            .get_opt(name)
            .await?
            .map(|t| t.spec.analysis)
    } else {
        Api::<AnalysisTemplate>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|t| t.spec.analysis)
    })
}

/// The template `t` names, from the cache: `NotFound` when it does not exist, `Invalid`
/// when it does not deserialize. One lookup for checking an analysis and making its run.
fn cached_template(
    caches: &Caches,
    namespace: &str,
    t: &AnalysisTemplateRef,
) -> Result<AnalysisSpec, AdapterError> {
    let kind = if t.cluster_scope {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    };
    match caches.template(namespace, &t.template_name, t.cluster_scope) {
        CachedTemplate::Found(spec) => Ok(spec),
        CachedTemplate::Missing => Err(AdapterError::NotFound {
            what: format!("{kind} {}", t.template_name),
        }),
        CachedTemplate::Unreadable(e) => Err(AdapterError::Invalid(format!(
            "{kind} {} cannot be read: {e}",
            t.template_name
        ))),
    }
}

/// What is wrong with an analysis of a Rollout that only shows once its templates are
/// read, without creating anything: (missing templates, unusable parts) — a template
/// that does not deserialize, an arg no one gives a value, a `fieldRef` the Rollout
/// lacks, a metric in two templates. Otherwise the run's creation would fail on every
/// reconcile, retried for ever and never reported.
pub fn check(
    caches: &Caches,
    rollout: &Rollout,
    analysis: &RolloutAnalysis,
) -> (Vec<String>, Vec<String>) {
    let namespace = rollout.namespace().unwrap_or_default();
    let (mut missing, mut unusable, mut templates) = (Vec::new(), Vec::new(), Vec::new());
    for t in &analysis.templates {
        match cached_template(caches, &namespace, t) {
            Ok(spec) => templates.push(spec),
            Err(AdapterError::NotFound { what }) => missing.push(what),
            Err(e) => unusable.push(e.to_string()),
        }
    }
    if missing.is_empty() && unusable.is_empty() {
        let merged = resolve_field_refs(rollout, &analysis.args)
            .and_then(|args| merge(&templates, &args, "stable", "latest"));
        if let Err(e) = merged {
            unusable.push(e.to_string());
        }
    }
    (missing, unusable)
}

/// Merges the templates of an analysis into one run spec, with the Rollout's args
/// overriding the templates' defaults and pod-template hashes resolved.
pub fn merge(
    templates: &[AnalysisSpec],
    args: &[AnalysisRunArgument],
    stable_hash: &str,
    latest_hash: &str,
) -> Result<AnalysisSpec, AdapterError> {
    let mut merged = AnalysisSpec::default();
    let mut values: BTreeMap<String, AnalysisRunArgument> = BTreeMap::new();
    for t in templates {
        for arg in &t.args {
            values
                .entry(arg.name.clone())
                .or_insert_with(|| arg.clone());
        }
        merged.metrics.extend(t.metrics.iter().cloned());
        merged.dry_run.extend(t.dry_run.iter().cloned());
        merged
            .measurement_retention
            .extend(t.measurement_retention.iter().cloned());
    }
    for arg in args {
        let mut arg = arg.clone();
        if let Some(hash) = arg
            .value_from
            .as_ref()
            .and_then(|v| v.pod_template_hash_value)
        {
            arg.value = Some(match hash {
                PodTemplateHashValue::Stable | PodTemplateHashValue::Baseline => {
                    stable_hash.to_string()
                }
                PodTemplateHashValue::Latest => latest_hash.to_string(),
            });
            arg.value_from = None;
        }
        values.insert(arg.name.clone(), arg);
    }
    let unset: Vec<&str> = values
        .values()
        .filter(|a| a.value.is_none() && a.value_from.is_none())
        .map(|a| a.name.as_str())
        .collect();
    if !unset.is_empty() {
        return Err(AdapterError::Invalid(format!(
            "analysis args without a value: {}",
            unset.join(", ")
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = merged.metrics.iter().find(|m| !seen.insert(m.name.clone())) {
        return Err(AdapterError::Invalid(format!(
            "metric {} appears in more than one template",
            dup.name
        )));
    }
    merged.args = values.into_values().collect();
    Ok(merged)
}

/// Replaces `valueFrom.fieldRef` args with the value of that field of the Rollout, read
/// when the run is created (so the run records what was measured against).
pub fn resolve_field_refs(
    rollout: &Rollout,
    args: &[AnalysisRunArgument],
) -> Result<Vec<AnalysisRunArgument>, AdapterError> {
    let json = serde_json::to_value(rollout).expect("a Rollout serializes");
    args.iter()
        .map(|arg| {
            let Some(field) = arg.value_from.as_ref().and_then(|v| v.field_ref.as_ref()) else {
                return Ok(arg.clone());
            };
            let value = field_value(&json, &field.field_path).ok_or_else(|| {
                AdapterError::Invalid(format!(
                    "arg {}: the Rollout has no field {}",
                    arg.name, field.field_path
                ))
            })?;
            Ok(AnalysisRunArgument {
                name: arg.name.clone(),
                value: Some(value),
                value_from: None,
            })
        })
        .collect()
}

/// A field of an object by path, as in a Pod's `fieldRef`: `metadata.name`,
/// `spec.replicas`, `metadata.labels['app.kubernetes.io/name']`.
fn field_value(object: &serde_json::Value, path: &str) -> Option<String> {
    let mut current = object;
    let mut rest = path;
    while !rest.is_empty() {
        let (key, tail) = if let Some(inner) = rest.strip_prefix("['") {
            let end = inner.find("']")?;
            (&inner[..end], &inner[end + 2..])
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        current = current.get(key)?;
        rest = tail.strip_prefix('.').unwrap_or(tail);
    }
    match current {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null | serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
            None
        }
        other => Some(other.to_string()),
    }
}

/// A run to create for a Rollout.
pub struct NewRun<'a> {
    pub name: &'a str,
    /// Which part of the rollout it gates (`step-N`, `background`, ...).
    pub role: &'a str,
    pub analysis: &'a RolloutAnalysis,
    /// The pod-template hashes `{{args.*}}` may name.
    pub stable_hash: &'a str,
    pub latest_hash: &'a str,
}

/// Creates an AnalysisRun owned by the Rollout, from templates in the cache.
pub async fn create_run(
    client: &Client,
    caches: &Caches,
    rollout: &Rollout,
    run: NewRun<'_>,
) -> Result<Option<Written>, AdapterError> {
    let NewRun {
        name,
        role,
        analysis,
        stable_hash,
        latest_hash,
    } = run;
    let namespace = rollout.namespace().unwrap_or_default();
    let templates = analysis
        .templates
        .iter()
        .map(|t| cached_template(caches, &namespace, t))
        .collect::<Result<Vec<_>, _>>()?;
    let args = resolve_field_refs(rollout, &analysis.args)?;
    let spec = merge(&templates, &args, stable_hash, latest_hash)?;
    let run = AnalysisRun {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.clone()),
            labels: Some(
                [
                    (ROLLOUT_LABEL.to_string(), rollout.name_any()),
                    (ANALYSIS_ROLE_LABEL.to_string(), role.to_string()),
                ]
                .into_iter()
                // The run is measured by the controller shard that serves its Rollout.
                .chain(
                    rollout
                        .labels()
                        .get(CONTROLLER_INSTANCE_LABEL)
                        .map(|id| (CONTROLLER_INSTANCE_LABEL.to_string(), id.clone())),
                )
                .collect(),
            ),
            owner_references: Some(vec![owner_reference(rollout)]),
            ..ObjectMeta::default()
        },
        spec: AnalysisRunSpec {
            analysis: spec,
            terminate: false,
        },
        status: None,
    };
    let stored = Api::<AnalysisRun>::namespaced(client.clone(), &namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&run),
        )
        .await?;
    Ok(written(Cache::AnalysisRun, &namespace, &stored))
}

/// Asks a run to stop measuring; its verdict so far stands.
pub async fn terminate_run(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Written>, AdapterError> {
    let patch = json!({ "spec": { "terminate": true } });
    match Api::<AnalysisRun>::namespaced(client.clone(), namespace)
        .patch(name, &update_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(stored) => Ok(written(Cache::AnalysisRun, namespace, &stored)),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Ok(Some(Written::gone(Cache::AnalysisRun, namespace, name)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes a finished run past the history limit.
pub async fn delete_run(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Written>, AdapterError> {
    match Api::<AnalysisRun>::namespaced(client.clone(), namespace)
        .delete(name, &kube::api::DeleteParams::default())
        .await
    {
        Ok(_) => Ok(Some(Written::gone(Cache::AnalysisRun, namespace, name))),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Ok(Some(Written::gone(Cache::AnalysisRun, namespace, name)))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> AnalysisSpec {
        serde_json::from_value(v).unwrap()
    }

    fn metric(name: &str) -> serde_json::Value {
        json!({ "name": name, "successCondition": "result[0] > 0",
                "provider": { "prometheus": { "address": "http://p", "query": "up" } } })
    }

    #[test]
    fn rollout_args_override_template_defaults_and_hashes_resolve() {
        let a = spec(
            json!({ "args": [{ "name": "service", "value": "default" }, { "name": "hash" }], "metrics": [metric("a")] }),
        );
        let b = spec(json!({ "metrics": [metric("b")], "dryRun": [{ "metricName": "b" }] }));
        let args: Vec<AnalysisRunArgument> = serde_json::from_value(json!([
            { "name": "service", "value": "web" },
            { "name": "hash", "valueFrom": { "podTemplateHashValue": "Latest" } },
        ]))
        .unwrap();
        let merged = merge(&[a, b], &args, "stable1", "latest2").unwrap();
        let value = |n: &str| {
            merged
                .args
                .iter()
                .find(|a| a.name == n)
                .unwrap()
                .value
                .clone()
        };
        assert_eq!(value("service").as_deref(), Some("web"));
        assert_eq!(value("hash").as_deref(), Some("latest2"));
        assert_eq!(merged.metrics.len(), 2);
        assert_eq!(merged.dry_run.len(), 1);
    }

    #[test]
    fn field_refs_read_the_rollout() {
        let rollout: Rollout = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web", "namespace": "shop", "labels": { "app.kubernetes.io/name": "web-app" } },
            "spec": {
                "replicas": 4,
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } } },
                "strategy": { "canary": { "steps": [] } },
            },
        }))
        .unwrap();
        let args: Vec<AnalysisRunArgument> = serde_json::from_value(json!([
            { "name": "a", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app.kubernetes.io/name']" } } },
            { "name": "b", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
            { "name": "c", "valueFrom": { "fieldRef": { "fieldPath": "spec.replicas" } } },
            { "name": "d", "value": "kept" },
        ]))
        .unwrap();
        let resolved = resolve_field_refs(&rollout, &args).unwrap();
        let values: Vec<_> = resolved.iter().map(|a| a.value.clone().unwrap()).collect();
        assert_eq!(values, ["web-app", "shop", "4", "kept"]);
        assert!(resolved.iter().all(|a| a.value_from.is_none()));
        let missing: Vec<AnalysisRunArgument> = serde_json::from_value(json!([
            { "name": "x", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['nope']" } } },
        ]))
        .unwrap();
        let err = resolve_field_refs(&rollout, &missing).unwrap_err();
        assert!(err.to_string().contains("metadata.labels['nope']"), "{err}");
    }

    #[test]
    fn missing_arg_values_and_duplicate_metrics_are_errors() {
        let a = spec(json!({ "args": [{ "name": "service" }], "metrics": [metric("a")] }));
        let err = merge(std::slice::from_ref(&a), &[], "s", "l").unwrap_err();
        assert!(err.to_string().contains("service"), "{err}");
        let b = spec(json!({ "metrics": [metric("a")] }));
        let args: Vec<AnalysisRunArgument> =
            serde_json::from_value(json!([{ "name": "service", "value": "x" }])).unwrap();
        let err = merge(&[a, b], &args, "s", "l").unwrap_err();
        assert!(err.to_string().contains("more than one template"), "{err}");
    }
}
