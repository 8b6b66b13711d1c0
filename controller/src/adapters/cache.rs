//! The objects Rollouts refer to but sluice does not own (Services, the stable Ingress and
//! the canary Ingress, HTTPRoutes, analysis templates), as the runtime's reflectors hold
//! them. Adapters read these instead of sending a GET per reconcile: at a thousand
//! Rollouts a GET per reference per reconcile is most of the reads a controller makes.
//! The caches hold objects with `managedFields` and the last-applied annotation removed
//! ([`slim`]), which are most of an object's bytes and nothing sluice reads.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::DynamicObject;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use sluice_api::analysis::{AnalysisSpec, AnalysisTemplate, ClusterAnalysisTemplate};

use super::router::gateway::http_route_resource;
use super::router::istio::{destination_rule_resource, virtual_service_resource};

/// Annotation `kubectl apply` keeps a whole copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no cached reader needs and what makes up most of an object's size.
pub fn slim<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object.annotations_mut().remove(LAST_APPLIED);
}

/// The reflectors' stores the adapters read from.
#[derive(Clone)]
pub struct Caches {
    pub services: Store<Service>,
    pub ingresses: Store<Ingress>,
    pub http_routes: Store<DynamicObject>,
    /// Istio's VirtualServices and DestinationRules, watched only once a Rollout routes
    /// through Istio (see `runtime`): most clusters have no Istio CRDs to watch.
    pub virtual_services: Store<DynamicObject>,
    pub destination_rules: Store<DynamicObject>,
    pub templates: Store<DeserializeGuard<AnalysisTemplate>>,
    pub cluster_templates: Store<DeserializeGuard<ClusterAnalysisTemplate>>,
}

/// A template as the cache holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum CachedTemplate {
    Missing,
    /// It exists but does not deserialize; why.
    Unreadable(String),
    Found(AnalysisSpec),
}

impl Caches {
    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn ingress(&self, namespace: &str, name: &str) -> Option<Arc<Ingress>> {
        self.ingresses.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn http_route(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        self.http_routes
            .get(&ObjectRef::new_with(name, http_route_resource()).within(namespace))
    }

    pub fn virtual_service(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        self.virtual_services
            .get(&ObjectRef::new_with(name, virtual_service_resource()).within(namespace))
    }

    pub fn destination_rule(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        self.destination_rules
            .get(&ObjectRef::new_with(name, destination_rule_resource()).within(namespace))
    }

    /// The AnalysisTemplate `namespace/name`, or with `cluster_scope` the
    /// ClusterAnalysisTemplate `name`.
    pub fn template(&self, namespace: &str, name: &str, cluster_scope: bool) -> CachedTemplate {
        fn read<T>(guard: &DeserializeGuard<T>, spec: fn(&T) -> &AnalysisSpec) -> CachedTemplate {
            match &guard.0 {
                Ok(template) => CachedTemplate::Found(spec(template).clone()),
                Err(invalid) => CachedTemplate::Unreadable(invalid.error.clone()),
            }
        }
        let found = if cluster_scope {
            self.cluster_templates
                .get(&ObjectRef::new(name))
                .map(|g| read(&g, |t| &t.spec.analysis))
        } else {
            self.templates
                .get(&ObjectRef::new(name).within(namespace))
                .map(|g| read(&g, |t| &t.spec.analysis))
        };
        found.unwrap_or(CachedTemplate::Missing)
    }
}

#[cfg(test)]
pub mod testing {
    //! Caches filled with given objects, for adapter and reconcile tests.
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    use super::*;

    /// A store that has listed exactly `objects`.
    pub fn store_with<K>(dyntype: K::DynamicType, objects: Vec<K>) -> Store<K>
    where
        K: Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        let mut writer = Writer::new(dyntype);
        writer.apply_watcher_event(&Event::Init);
        for object in objects {
            writer.apply_watcher_event(&Event::InitApply(object));
        }
        writer.apply_watcher_event(&Event::InitDone);
        writer.as_reader()
    }

    /// Caches holding these objects and nothing else. `objects` are JSON manifests; each
    /// goes to the store of its `kind`.
    pub fn caches(objects: Vec<serde_json::Value>) -> Caches {
        Caches {
            services: store_with((), of_kind(&objects, "Service")),
            ingresses: store_with((), of_kind(&objects, "Ingress")),
            http_routes: store_with(http_route_resource(), of_kind(&objects, "HTTPRoute")),
            virtual_services: store_with(
                virtual_service_resource(),
                of_kind(&objects, "VirtualService"),
            ),
            destination_rules: store_with(
                destination_rule_resource(),
                of_kind(&objects, "DestinationRule"),
            ),
            templates: store_with((), of_kind(&objects, "AnalysisTemplate")),
            cluster_templates: store_with((), of_kind(&objects, "ClusterAnalysisTemplate")),
        }
    }

    fn of_kind<K: serde::de::DeserializeOwned>(
        objects: &[serde_json::Value],
        kind: &str,
    ) -> Vec<K> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| serde_json::from_value(o.clone()).expect("a valid manifest"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn slim_objects_keep_what_sluice_reads_and_drop_the_bulk() {
        let mut svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "web", "namespace": "shop",
                "annotations": { LAST_APPLIED: "{\"huge\":true}", "team": "shop" },
                "managedFields": [{ "manager": "kubectl", "operation": "Apply" }],
            },
            "spec": { "selector": { "app": "web" } },
        }))
        .unwrap();
        slim(&mut svc);
        assert!(svc.metadata.managed_fields.unwrap_or_default().is_empty());
        assert_eq!(
            svc.metadata.annotations.unwrap(),
            [("team".to_string(), "shop".to_string())].into()
        );
        assert_eq!(svc.spec.unwrap().selector.unwrap()["app"], "web");
    }

    #[test]
    fn lookups_find_objects_by_namespace_and_name() {
        let caches = testing::caches(vec![
            json!({ "apiVersion": "v1", "kind": "Service",
                    "metadata": { "name": "web", "namespace": "shop" } }),
            json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                    "metadata": { "name": "web", "namespace": "edge" } }),
            json!({ "apiVersion": "sluice.dev/v1alpha1", "kind": "ClusterAnalysisTemplate",
                    "metadata": { "name": "errors" }, "spec": { "metrics": [] } }),
            json!({ "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
                    "metadata": { "name": "broken", "namespace": "shop" },
                    "spec": { "metrics": "not a list" } }),
        ]);
        assert!(caches.service("shop", "web").is_some());
        assert!(caches.service("other", "web").is_none());
        assert!(caches.http_route("edge", "web").is_some());
        assert!(caches.http_route("shop", "web").is_none());
        assert!(matches!(
            caches.template("shop", "errors", true),
            CachedTemplate::Found(_)
        ));
        assert_eq!(
            caches.template("shop", "errors", false),
            CachedTemplate::Missing
        );
        assert!(matches!(
            caches.template("shop", "broken", false),
            CachedTemplate::Unreadable(_)
        ));
    }
}
