//! ReplicaSets and Services: what the core's replica and selector actions touch.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use sluice_api::Rollout;
use sluice_api::labels::{
    BASELINE_FOR_ANNOTATION, BASELINE_ROLE, POD_METADATA_ANNOTATION, POD_ROLE_LABEL,
    POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, ROLLOUT_LABEL, SCALE_DOWN_DEADLINE_ANNOTATION,
};
use sluice_api::rollout::PodMetadata;

use super::cache::Caches;
use super::written::{Cache, Written};
use super::{AdapterError, FIELD_MANAGER, update_params};
use crate::core::action::MetadataChange;
use crate::core::{BaselineState, ReplicaSetState, baseline};

/// The owner reference that makes an object belong to (and be garbage-collected with) a
/// Rollout.
pub fn owner_reference(rollout: &Rollout) -> OwnerReference {
    rollout
        .controller_owner_ref(&())
        .expect("a Rollout read from the API has a name and uid")
}

/// The name of a revision's ReplicaSet.
pub fn replica_set_name(rollout: &Rollout, hash: &str) -> String {
    format!("{}-{hash}", rollout.name_any())
}

/// The ReplicaSet of a revision of the Rollout's current template, its pods with their
/// role's metadata (`pod_metadata`, recorded on it when there is any).
pub fn build_replica_set(
    rollout: &Rollout,
    hash: &str,
    revision: i64,
    replicas: i32,
    pod_metadata: &PodMetadata,
) -> ReplicaSet {
    let mut template = rollout.spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    // The ReplicaSet's own labels are the template's, without the role's.
    let mut rs_labels = labels.clone();
    labels.extend(pod_metadata.labels.clone());
    labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    if !pod_metadata.annotations.is_empty() {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .extend(pod_metadata.annotations.clone());
    }
    rs_labels.insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());
    rs_labels.insert(ROLLOUT_LABEL.into(), rollout.name_any());
    let mut annotations = BTreeMap::from([(REVISION_ANNOTATION.into(), revision.to_string())]);
    if !pod_metadata.is_empty() {
        annotations.insert(
            POD_METADATA_ANNOTATION.into(),
            serde_json::to_string(pod_metadata).unwrap_or_default(),
        );
    }

    let mut selector: LabelSelector = rollout.spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.into());

    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(replica_set_name(rollout, hash)),
            namespace: rollout.namespace(),
            labels: Some(rs_labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(rollout)]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: Some(rollout.spec.min_ready_seconds),
            selector,
            template: Some(template),
        },
        status: None,
    }
}

/// The dedicated baseline ReplicaSet of canary `canary_hash`, from `template`: the stable
/// ReplicaSet's pod template (revision `stable_hash`).
///
/// Its pods keep the stable hash label, so the stable Service routes to them, and get
/// `sluice.dev/role: baseline`; its selector includes the role label, so it never adopts
/// stable pods, and its controller reference on its pods keeps the stable ReplicaSet (whose
/// selector matches them too) from adopting them. The ReplicaSet object itself has no hash
/// label: it is not a revision, and nothing that lists revisions by that label (the
/// Services' owners, dashboards) should take it for the stable one.
pub fn build_baseline_replica_set(
    rollout: &Rollout,
    stable_hash: &str,
    canary_hash: &str,
    replicas: i32,
    template: &PodTemplateSpec,
) -> ReplicaSet {
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_TEMPLATE_HASH_LABEL.into(), stable_hash.into());
    labels.insert(POD_ROLE_LABEL.into(), BASELINE_ROLE.into());
    let mut rs_labels = labels.clone();
    rs_labels.remove(POD_TEMPLATE_HASH_LABEL);
    rs_labels.insert(ROLLOUT_LABEL.into(), rollout.name_any());

    let mut selector: LabelSelector = rollout.spec.selector.clone();
    let match_labels = selector.match_labels.get_or_insert_with(BTreeMap::new);
    match_labels.insert(POD_TEMPLATE_HASH_LABEL.into(), stable_hash.into());
    match_labels.insert(POD_ROLE_LABEL.into(), BASELINE_ROLE.into());

    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(baseline::replica_set_name(
                &rollout.name_any(),
                stable_hash,
                canary_hash,
            )),
            namespace: rollout.namespace(),
            labels: Some(rs_labels),
            annotations: Some(BTreeMap::from([(
                BASELINE_FOR_ANNOTATION.into(),
                canary_hash.into(),
            )])),
            owner_references: Some(vec![owner_reference(rollout)]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: Some(rollout.spec.min_ready_seconds),
            selector,
            template: Some(template),
        },
        status: None,
    }
}

fn is_baseline(rs: &ReplicaSet) -> bool {
    rs.labels().get(POD_ROLE_LABEL).map(String::as_str) == Some(BASELINE_ROLE)
}

/// What the core needs to know of a baseline ReplicaSet; None for one that is not.
pub fn observe_baseline(rs: &ReplicaSet) -> Option<BaselineState> {
    if !is_baseline(rs) {
        return None;
    }
    let pod_labels = rs
        .spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let status = rs.status.clone().unwrap_or_default();
    Some(BaselineState {
        name: rs.name_any(),
        stable_hash: pod_labels
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
            .cloned()
            .unwrap_or_default(),
        canary_hash: rs
            .annotations()
            .get(BASELINE_FOR_ANNOTATION)
            .cloned()
            .unwrap_or_default(),
        replicas: rs.spec.replicas.unwrap_or(0),
        current: status.replicas,
        available: status.available_replicas.unwrap_or(0),
    })
}

/// What the core needs to know of a ReplicaSet; None for one that is not a revision of
/// a Rollout (no hash label, or a baseline).
pub fn observe_replica_set(rs: &ReplicaSet) -> Option<ReplicaSetState> {
    if is_baseline(rs) {
        return None;
    }
    let hash = rs.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone();
    let annotations = rs.annotations();
    let status = rs.status.clone().unwrap_or_default();
    Some(ReplicaSetState {
        name: rs.name_any(),
        hash,
        revision: annotations
            .get(REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        replicas: rs.spec.replicas.unwrap_or(0),
        current: status.replicas,
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        scale_down_at: annotations
            .get(SCALE_DOWN_DEADLINE_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok()),
        pod_metadata: annotations
            .get(POD_METADATA_ANNOTATION)
            .and_then(|m| serde_json::from_str(m).ok()),
    })
}

/// Creates a revision's ReplicaSet (server-side apply: sluice owns it).
pub async fn create_replica_set(
    client: &Client,
    rs: &ReplicaSet,
) -> Result<Option<Written>, AdapterError> {
    let namespace = rs.namespace().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let stored = api
        .patch(
            &rs.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(rs),
        )
        .await?;
    Ok(written(Cache::ReplicaSet, &namespace, &stored))
}

/// What the caches must show of `stored`, the API's answer to a write.
pub fn written<K: Resource>(cache: Cache, namespace: &str, stored: &K) -> Option<Written> {
    Written::at(
        cache,
        namespace,
        &stored.name_any(),
        stored.meta().resource_version.as_deref(),
    )
}

/// Sets a ReplicaSet's size and its scale-down deadline (removed when None).
pub async fn scale_replica_set(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
    scale_down_at: Option<Timestamp>,
) -> Result<Option<Written>, AdapterError> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    // A merge patch touches only these two fields; `null` removes the annotation.
    let patch = json!({
        "metadata": { "annotations": {
            SCALE_DOWN_DEADLINE_ANNOTATION: scale_down_at.map(|t| t.to_string()),
        } },
        "spec": { "replicas": replicas },
    });
    let stored = api
        .patch(name, &update_params(), &Patch::Merge(&patch))
        .await?;
    Ok(written(Cache::ReplicaSet, namespace, &stored))
}

/// Changes a pod's labels and annotations in place (role metadata): a merge patch of
/// those keys only. A pod already gone is no error (its ReplicaSet replaces it from the
/// template, which has the role's metadata).
pub async fn patch_pod_metadata(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &MetadataChange,
    annotations: &MetadataChange,
) -> Result<Option<Written>, AdapterError> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "metadata": { "labels": labels, "annotations": annotations } });
    match api
        .patch_metadata(name, &update_params(), &Patch::Merge(&patch))
        .await
    {
        Ok(stored) => Ok(written(Cache::Pod, namespace, &stored)),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Ok(Some(Written::gone(Cache::Pod, namespace, name)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Changes the role labels and annotations of a ReplicaSet's pod template and records
/// what is now applied ([`POD_METADATA_ANNOTATION`], removed when nothing is). The
/// template's metadata is not part of the pod-template hash sluice computed from the
/// Rollout, so the revision stays the same.
pub async fn set_replica_set_pod_metadata(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &MetadataChange,
    annotations: &MetadataChange,
    applied: &PodMetadata,
) -> Result<Option<Written>, AdapterError> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let record = (!applied.is_empty()).then(|| serde_json::to_string(applied).unwrap_or_default());
    let patch = json!({
        "metadata": { "annotations": { POD_METADATA_ANNOTATION: record } },
        "spec": { "template": { "metadata": { "labels": labels, "annotations": annotations } } },
    });
    let stored = api
        .patch(name, &update_params(), &Patch::Merge(&patch))
        .await?;
    Ok(written(Cache::ReplicaSet, namespace, &stored))
}

/// Deletes an old ReplicaSet (its pods go with it).
pub async fn delete_replica_set(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Written>, AdapterError> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(Some(Written::gone(Cache::ReplicaSet, namespace, name))),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Ok(Some(Written::gone(Cache::ReplicaSet, namespace, name)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Evicts a pod for `spec.restartAt`, through the Eviction API rather than a delete, so
/// that a PodDisruptionBudget over the Rollout's pods is honoured (a refusal, 429, is an
/// error of category `disruption_budget`, retried with backoff) and the pod gets its
/// grace period. `resource_version` is the pod's as cached: the cache shows the eviction
/// by any later version (terminating) or by the pod's absence.
pub async fn evict_pod(
    client: &Client,
    namespace: &str,
    name: &str,
    resource_version: Option<&str>,
) -> Result<Option<Written>, AdapterError> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    match api.evict(name, &kube::api::EvictParams::default()).await {
        Ok(_) => Ok(Written::past(Cache::Pod, namespace, name, resource_version)),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Ok(Some(Written::gone(Cache::Pod, namespace, name)))
        }
        Err(e) => Err(e.into()),
    }
}

/// What a Service is to the Rollout naming it: missing (a missing reference), unusable
/// (an ExternalName Service selects no pods), or the revision hash its selector pins
/// (`Pins(None)` when it pins none yet).
pub fn service_hash(caches: &Caches, namespace: &str, name: &str) -> ServiceRef {
    let Some(svc) = caches.service(namespace, name) else {
        return ServiceRef::Missing;
    };
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return ServiceRef::Unusable(format!(
            "Service {name} is of type ExternalName: it has no selector to point at a revision"
        ));
    }
    ServiceRef::Pins(
        spec.selector
            .and_then(|s| s.get(POD_TEMPLATE_HASH_LABEL).cloned()),
    )
}

/// What a Service a Rollout names is to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceRef {
    Missing,
    /// It exists but can never route to a revision; why.
    Unusable(String),
    /// It selects pods; the pod-template hash its selector pins, if any.
    Pins(Option<String>),
}

/// Points a Service at a revision by adding the hash label to its selector. A merge
/// patch, not server-side apply: `spec.selector` is an atomic map, so an apply of one key
/// would conflict with (or, forced, take over) the owner's whole selector. The patch adds
/// or replaces only the hash key and leaves the user's keys as they are.
pub async fn set_service_selector(
    client: &Client,
    namespace: &str,
    name: &str,
    hash: &str,
) -> Result<Option<Written>, AdapterError> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "spec": { "selector": { POD_TEMPLATE_HASH_LABEL: hash } } });
    let stored = api
        .patch(name, &update_params(), &Patch::Merge(&patch))
        .await?;
    Ok(written(Cache::Service, namespace, &stored))
}

/// Kubernetes' kind for a Rollout reference in Events and owner references.
pub fn rollout_kind() -> String {
    Rollout::kind(&()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout() -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": { "name": "web", "namespace": "shop", "uid": "u-1" },
            "spec": {
                "replicas": 3,
                "minReadySeconds": 5,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "web", "image": "app:v1" }] },
                },
                "strategy": { "canary": { "steps": [] } },
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_replica_set_made_with_role_metadata_puts_it_on_its_pods_only_and_records_it() {
        let role: PodMetadata = serde_json::from_value(json!({
            "labels": { "role": "canary" }, "annotations": { "owner": "team-a" },
        }))
        .unwrap();
        let rs = build_replica_set(&rollout(), "abc123", 2, 1, &role);
        let template = rs
            .spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap();
        assert_eq!(template.labels.as_ref().unwrap()["role"], "canary");
        assert_eq!(template.annotations.as_ref().unwrap()["owner"], "team-a");
        // The ReplicaSet's own labels and its selector do not get the role's.
        assert!(!rs.labels().contains_key("role"));
        assert!(
            !rs.spec
                .selector
                .match_labels
                .as_ref()
                .unwrap()
                .contains_key("role")
        );
        // Read back as the core sees it.
        assert_eq!(observe_replica_set(&rs).unwrap().pod_metadata, Some(role));
        let plain = build_replica_set(&rollout(), "abc123", 2, 1, &PodMetadata::default());
        assert!(!plain.annotations().contains_key(POD_METADATA_ANNOTATION));
        assert_eq!(observe_replica_set(&plain).unwrap().pod_metadata, None);
    }

    #[test]
    fn replica_set_is_labelled_selected_and_owned() {
        let rs = build_replica_set(&rollout(), "abc123", 4, 2, &PodMetadata::default());
        assert_eq!(rs.name_any(), "web-abc123");
        assert_eq!(rs.namespace().as_deref(), Some("shop"));
        assert_eq!(rs.labels()[POD_TEMPLATE_HASH_LABEL], "abc123");
        assert_eq!(rs.labels()[ROLLOUT_LABEL], "web");
        assert_eq!(rs.annotations()[REVISION_ANNOTATION], "4");
        let spec = &rs.spec;
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(spec.min_ready_seconds, Some(5));
        let sel = spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(sel["app"], "web");
        assert_eq!(sel[POD_TEMPLATE_HASH_LABEL], "abc123");
        let pod_labels = spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(pod_labels[POD_TEMPLATE_HASH_LABEL], "abc123");
        let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Rollout", "u-1", Some(true))
        );
    }

    fn stable_template() -> PodTemplateSpec {
        // As the stable ReplicaSet holds it: the v1 image and the stable hash label.
        build_replica_set(&rollout(), "stable1", 1, 3, &PodMetadata::default())
            .spec
            .template
            .unwrap()
    }

    #[test]
    fn baseline_runs_the_stable_template_beside_the_stable_replica_set_without_overlap() {
        let mut r = rollout();
        // The Rollout's template is already the canary's; the baseline must not use it.
        r.spec.template.spec.as_mut().unwrap().containers[0].image = Some("app:v2".into());
        let rs = build_baseline_replica_set(&r, "stable1", "canary2", 1, &stable_template());
        assert_eq!(rs.name_any(), "web-stable1-baseline-canary2");
        assert_eq!(rs.labels()[POD_ROLE_LABEL], "baseline");
        assert_eq!(rs.labels()[ROLLOUT_LABEL], "web");
        assert!(
            !rs.labels().contains_key(POD_TEMPLATE_HASH_LABEL),
            "not a revision: {:?}",
            rs.labels()
        );
        assert_eq!(rs.annotations()[BASELINE_FOR_ANNOTATION], "canary2");
        let template = rs.spec.template.as_ref().unwrap();
        assert_eq!(
            template.spec.as_ref().unwrap().containers[0]
                .image
                .as_deref(),
            Some("app:v1")
        );
        let pod_labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        // The stable Service's selector (app + hash) matches the baseline's pods ...
        assert_eq!(pod_labels[POD_TEMPLATE_HASH_LABEL], "stable1");
        assert_eq!(pod_labels["app"], "web");
        assert_eq!(pod_labels[POD_ROLE_LABEL], "baseline");
        // ... while the baseline's selector does not match the stable pods (no role label),
        // so it never adopts them.
        let sel = rs.spec.selector.match_labels.as_ref().unwrap();
        let stable_pods = stable_template().metadata.unwrap().labels.unwrap();
        assert!(sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
        assert!(!sel.iter().all(|(k, v)| stable_pods.get(k) == Some(v)));
        assert_eq!(rs.spec.replicas, Some(1));
        let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u-1", Some(true)));

        // Read back: a baseline, never a revision.
        let mut seen = rs.clone();
        seen.status =
            Some(serde_json::from_value(json!({ "replicas": 1, "availableReplicas": 1 })).unwrap());
        assert_eq!(observe_replica_set(&seen), None);
        let b = observe_baseline(&seen).unwrap();
        assert_eq!(
            (
                b.stable_hash.as_str(),
                b.canary_hash.as_str(),
                b.replicas,
                b.available
            ),
            ("stable1", "canary2", 1, 1)
        );
        assert_eq!(
            observe_baseline(&build_replica_set(&r, "x", 1, 1, &PodMetadata::default())),
            None
        );
    }

    #[tokio::test]
    async fn baseline_is_created_by_a_forced_apply_of_sluice() {
        use crate::adapters::mock_api::exchange;
        let r = rollout();
        let rs = build_baseline_replica_set(&r, "stable1", "canary2", 2, &stable_template());
        let answer = serde_json::to_value(&rs).unwrap();
        let (result, seen) = exchange(vec![(200, answer)], |client| async move {
            create_replica_set(&client, &rs).await
        })
        .await;
        result.unwrap();
        let req = &seen[0];
        assert_eq!(req.method, http::Method::PATCH);
        assert_eq!(
            req.path,
            "/apis/apps/v1/namespaces/shop/replicasets/web-stable1-baseline-canary2"
        );
        assert_eq!(
            req.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(
            req.query.get("fieldManager").map(String::as_str),
            Some("sluice")
        );
        assert_eq!(req.query.get("force").map(String::as_str), Some("true"));
        let body = req.body.as_ref().unwrap();
        assert_eq!(body["spec"]["replicas"], json!(2));
        assert_eq!(
            body["spec"]["template"]["metadata"]["labels"],
            json!({ "app": "web", POD_TEMPLATE_HASH_LABEL: "stable1", POD_ROLE_LABEL: "baseline" })
        );
        assert_eq!(
            body["spec"]["selector"]["matchLabels"],
            json!({ "app": "web", POD_TEMPLATE_HASH_LABEL: "stable1", POD_ROLE_LABEL: "baseline" })
        );
        assert_eq!(
            body["metadata"]["ownerReferences"][0]["kind"],
            json!("Rollout")
        );
    }

    #[test]
    fn observing_reads_back_what_was_built() {
        let mut rs = build_replica_set(&rollout(), "abc123", 4, 2, &PodMetadata::default());
        rs.metadata.annotations.as_mut().unwrap().insert(
            SCALE_DOWN_DEADLINE_ANNOTATION.into(),
            "2027-01-01T00:00:30Z".into(),
        );
        rs.status = Some(
            serde_json::from_value(
                json!({ "replicas": 2, "readyReplicas": 1, "availableReplicas": 1 }),
            )
            .unwrap(),
        );
        let seen = observe_replica_set(&rs).unwrap();
        assert_eq!(
            (seen.hash.as_str(), seen.revision, seen.replicas),
            ("abc123", 4, 2)
        );
        assert_eq!((seen.current, seen.ready, seen.available), (2, 1, 1));
        assert_eq!(
            seen.scale_down_at,
            Some("2027-01-01T00:00:30Z".parse().unwrap())
        );
    }
}
