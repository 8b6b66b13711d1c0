//! `workloadRef`: the Deployment a Rollout takes its pod template from. The runtime
//! resolves the template (and the selector, when the Rollout leaves it out) into a copy of
//! the Rollout before planning, so the planner and the other adapters see an ordinary
//! Rollout; `scaleDown` writes the Deployment's scale subresource.

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use sluice_api::Rollout;
use sluice_api::rollout::WorkloadRef;

use super::{AdapterError, FIELD_MANAGER};
use crate::core::WorkloadState;

/// The Rollout with its Deployment's template (and selector) in it, and what the planner
/// needs of the Deployment; the Rollout as it is, and None, when the Deployment is not in
/// the cache (the planner reports it) or no `workloadRef` is set.
pub fn resolve<'a>(
    rollout: &'a Rollout,
    deployments: &Store<Deployment>,
) -> (Cow<'a, Rollout>, Option<WorkloadState>) {
    let Some(reference) = &rollout.spec.workload_ref else {
        return (Cow::Borrowed(rollout), None);
    };
    let namespace = rollout.namespace().unwrap_or_default();
    let Some(deployment) = deployments.get(&ObjectRef::new(&reference.name).within(&namespace))
    else {
        return (Cow::Borrowed(rollout), None);
    };
    let spec = &deployment.spec;
    let mut resolved = rollout.clone();
    resolved.spec.template = spec.template.clone();
    if resolved.spec.selector == Default::default() {
        resolved.spec.selector = spec.selector.clone();
    }
    let state = WorkloadState {
        name: reference.name.clone(),
        replicas: spec.replicas.unwrap_or(1),
    };
    (Cow::Owned(resolved), Some(state))
}

/// True when `rollout` takes its template from the Deployment `namespace/name`.
pub fn refers_to(rollout: &Rollout, namespace: &str, name: &str) -> bool {
    rollout
        .spec
        .workload_ref
        .as_ref()
        .is_some_and(|r: &WorkloadRef| r.name == name)
        && rollout.namespace().as_deref() == Some(namespace)
}

/// Sets the Deployment's `spec.replicas` through its scale subresource (the permission
/// `deployments/scale`, not a write of the whole Deployment). Not waited for: a repeat
/// from a cache that has not caught up writes the same number.
pub async fn scale_deployment(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> Result<(), AdapterError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "spec": { "replicas": replicas } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch_scale(name, &params, &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;

    fn rollout(selector: serde_json::Value) -> Rollout {
        let mut spec = json!({
            "workloadRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
            "strategy": { "canary": { "steps": [] } },
        });
        if !selector.is_null() {
            spec["selector"] = selector;
        }
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": spec,
        }))
        .unwrap()
    }

    fn deployments(replicas: Option<i32>) -> Store<Deployment> {
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": "web", "tier": "front" } },
                "template": {
                    "metadata": { "labels": { "app": "web", "tier": "front" } },
                    "spec": { "containers": [{ "name": "web", "image": "app:v7" }] },
                },
            },
        }))
        .unwrap();
        let mut writer = Writer::default();
        writer.apply_watcher_event(&watcher::Event::Apply(deployment));
        writer.as_reader()
    }

    #[test]
    fn the_deployments_template_and_selector_are_resolved_into_the_rollout() {
        let r = rollout(serde_json::Value::Null);
        let (resolved, state) = resolve(&r, &deployments(Some(4)));
        let pod = resolved.spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.containers[0].image.as_deref(), Some("app:v7"));
        let labels = resolved.spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(labels.get("tier").map(String::as_str), Some("front"));
        assert_eq!(
            state,
            Some(WorkloadState {
                name: "web".into(),
                replicas: 4
            })
        );
        assert!(
            r.spec.template.spec.is_none(),
            "the cached Rollout is left as it is"
        );
    }

    #[test]
    fn a_selector_of_the_rollouts_own_is_kept() {
        let r = rollout(json!({ "matchLabels": { "app": "web" } }));
        let (resolved, _) = resolve(&r, &deployments(None));
        let labels = resolved.spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(labels.len(), 1, "{labels:?}");
    }

    #[test]
    fn a_deployment_without_replicas_counts_one_and_a_missing_one_resolves_nothing() {
        let r = rollout(serde_json::Value::Null);
        assert_eq!(resolve(&r, &deployments(None)).1.unwrap().replicas, 1);
        let (unresolved, state) = resolve(&r, &Writer::<Deployment>::default().as_reader());
        assert!(state.is_none());
        assert!(unresolved.spec.template.spec.is_none());
    }

    #[test]
    fn only_the_named_deployment_in_the_rollouts_namespace_is_referred_to() {
        let r = rollout(serde_json::Value::Null);
        assert!(refers_to(&r, "shop", "web"));
        assert!(!refers_to(&r, "other", "web"));
        assert!(!refers_to(&r, "shop", "api"));
    }
}
