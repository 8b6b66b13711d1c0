//! Which Rollouts refer to an object sluice does not own (a Service, the stable Ingress,
//! an HTTPRoute, an analysis template), so that a change to that object (a GitOps sync putting weights back,
//! someone editing a selector) brings those Rollouts back to reconcile at once.

use kube::ResourceExt;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use sluice_api::rollout::{Rollout, RolloutAnalysis};

/// A kind of object a Rollout can refer to by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Referenced {
    Service,
    Ingress,
    HttpRoute,
    VirtualService,
    DestinationRule,
    AnalysisTemplate,
    ClusterAnalysisTemplate,
    /// The Deployment of `workloadRef`.
    Deployment,
}

/// Every analysis a Rollout names (steps, background, blue-green's pre and post).
fn analyses(rollout: &Rollout) -> impl Iterator<Item = &RolloutAnalysis> {
    let canary = rollout.spec.strategy.canary.as_ref();
    let blue_green = rollout.spec.strategy.blue_green.as_ref();
    canary
        .into_iter()
        .flat_map(|c| c.steps.iter().filter_map(|s| s.analysis.as_ref()))
        .chain(
            canary
                .and_then(|c| c.analysis.as_ref())
                .map(|b| &b.analysis),
        )
        .chain(blue_green.and_then(|b| b.pre_promotion_analysis.as_ref()))
        .chain(blue_green.and_then(|b| b.post_promotion_analysis.as_ref()))
}

/// True when `rollout` refers to the `kind` object `namespace/name`.
pub fn refers_to(rollout: &Rollout, kind: Referenced, namespace: &str, name: &str) -> bool {
    let own_namespace = rollout.namespace().unwrap_or_default();
    let canary = rollout.spec.strategy.canary.as_ref();
    let routing = canary.and_then(|c| c.traffic_routing.as_ref());
    match kind {
        Referenced::Service => {
            let blue_green = rollout.spec.strategy.blue_green.as_ref();
            own_namespace == namespace
                && [
                    canary.and_then(|c| c.canary_service.as_deref()),
                    canary.and_then(|c| c.stable_service.as_deref()),
                    blue_green.map(|b| b.active_service.as_str()),
                    blue_green.and_then(|b| b.preview_service.as_deref()),
                ]
                .into_iter()
                .flatten()
                .any(|s| s == name)
        }
        Referenced::Ingress => {
            own_namespace == namespace
                && routing
                    .and_then(|r| r.nginx.as_ref())
                    .is_some_and(|n| n.stable_ingress == name)
        }
        Referenced::HttpRoute => routing
            .and_then(|r| r.gateway_api.as_ref())
            .is_some_and(|g| {
                let route_namespace = g
                    .namespace
                    .as_deref()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(&own_namespace);
                g.http_route == name && route_namespace == namespace
            }),
        Referenced::VirtualService => {
            own_namespace == namespace
                && routing
                    .and_then(|r| r.istio.as_ref())
                    .is_some_and(|i| i.virtual_service.name == name)
        }
        Referenced::DestinationRule => {
            own_namespace == namespace
                && routing
                    .and_then(|r| r.istio.as_ref())
                    .and_then(|i| i.destination_rule.as_ref())
                    .is_some_and(|d| d.name == name)
        }
        Referenced::Deployment => {
            crate::adapters::workload_ref::refers_to(rollout, namespace, name)
        }
        Referenced::AnalysisTemplate | Referenced::ClusterAnalysisTemplate => {
            let cluster = kind == Referenced::ClusterAnalysisTemplate;
            (cluster || own_namespace == namespace)
                && analyses(rollout).any(|a| {
                    a.templates
                        .iter()
                        .any(|t| t.cluster_scope == cluster && t.template_name == name)
                })
        }
    }
}

/// The Rollouts in `store` that refer to the `kind` object `namespace/name`. Rollouts that
/// do not deserialize refer to nothing.
pub fn referring(
    store: &Store<DeserializeGuard<Rollout>>,
    kind: Referenced,
    namespace: Option<String>,
    name: &str,
) -> Vec<ObjectRef<DeserializeGuard<Rollout>>> {
    let namespace = namespace.unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|guard| {
            guard
                .0
                .as_ref()
                .is_ok_and(|r| refers_to(r, kind, &namespace, name))
        })
        .map(|guard| ObjectRef::from_obj(&*guard))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn rollout(strategy: Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web", "namespace": "shop" },
            "spec": {
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } } },
                "strategy": strategy,
            },
        }))
        .unwrap()
    }

    fn canary(routing: Value) -> Rollout {
        rollout(json!({ "canary": {
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": routing, "steps": [],
        } }))
    }

    #[test]
    fn services_are_matched_by_name_in_the_rollouts_namespace() {
        let r = canary(json!({ "nginx": { "stableIngress": "web" } }));
        assert!(refers_to(&r, Referenced::Service, "shop", "web-canary"));
        assert!(refers_to(&r, Referenced::Service, "shop", "web-stable"));
        assert!(!refers_to(&r, Referenced::Service, "other", "web-stable"));
        assert!(!refers_to(&r, Referenced::Service, "shop", "web"));
        let bg = rollout(json!({ "blueGreen": { "activeService": "a", "previewService": "p" } }));
        assert!(refers_to(&bg, Referenced::Service, "shop", "a"));
        assert!(refers_to(&bg, Referenced::Service, "shop", "p"));
        assert!(!refers_to(&bg, Referenced::Ingress, "shop", "a"));
    }

    #[test]
    fn the_stable_ingress_is_matched_for_nginx_rollouts_only() {
        let r = canary(json!({ "nginx": { "stableIngress": "web" } }));
        assert!(refers_to(&r, Referenced::Ingress, "shop", "web"));
        assert!(!refers_to(&r, Referenced::Ingress, "other", "web"));
        assert!(!refers_to(&r, Referenced::HttpRoute, "shop", "web"));
        let g = canary(json!({ "gatewayAPI": { "httpRoute": "web" } }));
        assert!(!refers_to(&g, Referenced::Ingress, "shop", "web"));
    }

    #[test]
    fn an_http_route_is_matched_in_its_own_namespace() {
        let here = canary(json!({ "gatewayAPI": { "httpRoute": "web" } }));
        assert!(refers_to(&here, Referenced::HttpRoute, "shop", "web"));
        assert!(!refers_to(&here, Referenced::HttpRoute, "infra", "web"));
        let there = canary(json!({ "gatewayAPI": { "httpRoute": "web", "namespace": "infra" } }));
        assert!(refers_to(&there, Referenced::HttpRoute, "infra", "web"));
        assert!(!refers_to(&there, Referenced::HttpRoute, "shop", "web"));
        assert!(!refers_to(&there, Referenced::HttpRoute, "infra", "api"));
    }

    #[test]
    fn istio_objects_are_matched_by_name_in_the_rollouts_namespace() {
        let r = canary(json!({ "istio": {
            "virtualService": { "name": "web-vs" },
            "destinationRule": { "name": "web-dr", "canarySubsetName": "c", "stableSubsetName": "s" },
        } }));
        assert!(refers_to(&r, Referenced::VirtualService, "shop", "web-vs"));
        assert!(!refers_to(
            &r,
            Referenced::VirtualService,
            "other",
            "web-vs"
        ));
        assert!(!refers_to(&r, Referenced::VirtualService, "shop", "web-dr"));
        assert!(refers_to(&r, Referenced::DestinationRule, "shop", "web-dr"));
        assert!(!refers_to(
            &r,
            Referenced::DestinationRule,
            "shop",
            "web-vs"
        ));
        let no_dr = canary(json!({ "istio": { "virtualService": { "name": "web-vs" } } }));
        assert!(!refers_to(
            &no_dr,
            Referenced::DestinationRule,
            "shop",
            "web-vs"
        ));
        let g = canary(json!({ "gatewayAPI": { "httpRoute": "web-vs" } }));
        assert!(!refers_to(&g, Referenced::VirtualService, "shop", "web-vs"));
    }

    #[test]
    fn templates_are_matched_by_scope_in_every_analysis() {
        let named = |scope: &str| json!({ "templates": [{ "templateName": "errors", "clusterScope": scope == "cluster" }] });
        let step = rollout(
            json!({ "canary": { "steps": [{ "setWeight": 10 }, { "analysis": named("ns") }] } }),
        );
        assert!(refers_to(
            &step,
            Referenced::AnalysisTemplate,
            "shop",
            "errors"
        ));
        assert!(!refers_to(
            &step,
            Referenced::AnalysisTemplate,
            "other",
            "errors"
        ));
        assert!(!refers_to(
            &step,
            Referenced::ClusterAnalysisTemplate,
            "",
            "errors"
        ));
        let background =
            rollout(json!({ "canary": { "steps": [], "analysis": named("cluster") } }));
        assert!(refers_to(
            &background,
            Referenced::ClusterAnalysisTemplate,
            "",
            "errors"
        ));
        assert!(!refers_to(
            &background,
            Referenced::AnalysisTemplate,
            "shop",
            "errors"
        ));
        let post = rollout(
            json!({ "blueGreen": { "activeService": "a", "postPromotionAnalysis": named("ns") } }),
        );
        assert!(refers_to(
            &post,
            Referenced::AnalysisTemplate,
            "shop",
            "errors"
        ));
        assert!(!refers_to(
            &post,
            Referenced::AnalysisTemplate,
            "shop",
            "latency"
        ));
    }
}
