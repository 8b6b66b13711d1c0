//! NGINX Ingress canary routing.
//!
//! ingress-nginx splits traffic between two Ingresses for the same host and path: the
//! user's "main" Ingress and a second one annotated `canary: "true"` with a
//! `canary-weight`. sluice creates and owns that second Ingress, derived from the user's
//! stable Ingress, and never writes to the stable Ingress itself: the user (or their GitOps
//! tool) stays its only writer, so nothing sluice does can fight with them over it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::networking::v1::{
    HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use sluice_api::labels::{MANAGED_ROUTES_ANNOTATION, ROLLOUT_LABEL};
use sluice_api::rollout::{NginxTrafficRouting, Rollout};

use super::{RouterContext, TrafficRouter};
use crate::adapters::workload::written;
use crate::adapters::written::{Cache, Written};
use crate::adapters::{AdapterError, FIELD_MANAGER};
use crate::core::hash::value_hash;
use crate::core::routes::{RouteKind, RouteSetting, as_regex};

/// Prefix of the canary annotations when the Rollout leaves `annotationPrefix` empty.
const DEFAULT_ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io";
/// The legacy class annotation, still honoured by ingress-nginx; copied so that a stable
/// Ingress selected this way gets a canary served by the same controller.
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Longest object name the API server accepts for an Ingress (a DNS subdomain).
const MAX_NAME_LEN: usize = 253;

/// Routes traffic with an ingress-nginx canary Ingress named
/// `<rollout>-<stableIngress>-canary` next to the user's stable Ingress.
///
/// The canary Ingress is rebuilt from the stable Ingress on every [`set_weight`]. A canary
/// whose routes differ from that (the stable Ingress' hosts or paths changed, another
/// writer edited the canary) reads as no weight in place, so the planner sets it again
/// and the routes are rebuilt at once, not at the next step. Weight 0 is expressed by deleting it: with no canary Ingress, ingress-nginx
/// sends everything to the stable backends.
///
/// [`set_weight`]: TrafficRouter::set_weight
#[derive(Clone)]
pub struct NginxRouter {
    ctx: RouterContext,
    config: NginxTrafficRouting,
    /// The canary Ingress as this router's last write left it (None: no write yet): one
    /// reconcile may set the weight and then the header route, and the second write must
    /// start from the first's result, not from a cache that has not seen it.
    last: Arc<Mutex<Option<Option<Arc<Ingress>>>>>,
}

impl NginxRouter {
    /// A router for the Rollout described by `ctx`, using the Rollout's `nginx` settings.
    pub fn new(ctx: RouterContext, config: NginxTrafficRouting) -> Self {
        Self {
            ctx,
            config,
            last: Arc::default(),
        }
    }

    /// The name of the canary Ingress sluice owns: `<rollout>-<stableIngress>-canary`.
    ///
    /// Both parts can each be up to 253 characters long, so an over-long name is cut and
    /// suffixed with a hash of the full name: two Rollouts whose names share a long prefix
    /// must still get distinct canary Ingresses.
    pub fn canary_ingress_name(&self) -> String {
        let full = format!("{}-{}-canary", self.ctx.rollout, self.config.stable_ingress);
        if full.len() <= MAX_NAME_LEN {
            return full;
        }
        let hash = value_hash(&full);
        let mut cut = MAX_NAME_LEN - hash.len() - 1;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        // A name must end with an alphanumeric character, so the cut may not leave a
        // separator right before the `-<hash>` suffix's own dash.
        let prefix = full[..cut].trim_end_matches(['-', '.']);
        format!("{prefix}-{hash}")
    }

    fn prefix(&self) -> &str {
        // The CRD defaults the prefix when the field is absent; an explicit empty string
        // would produce annotations such as `/canary` that nothing reads.
        if self.config.annotation_prefix.is_empty() {
            DEFAULT_ANNOTATION_PREFIX
        } else {
            &self.config.annotation_prefix
        }
    }

    fn weight_annotation(&self) -> String {
        format!("{}/canary-weight", self.prefix())
    }

    fn ingresses(&self) -> Api<Ingress> {
        Api::namespaced(self.ctx.client.clone(), &self.ctx.namespace)
    }

    fn stable_ingress(&self) -> Option<Arc<Ingress>> {
        self.ctx
            .caches
            .ingress(&self.ctx.namespace, &self.config.stable_ingress)
    }

    fn stable_reference(&self) -> String {
        format!(
            "Ingress {}/{}",
            self.ctx.namespace, self.config.stable_ingress
        )
    }

    fn no_stable_path(&self) -> String {
        format!(
            "Ingress {} has no path to Service {}",
            self.config.stable_ingress, self.ctx.stable_service
        )
    }

    /// The canary Ingress if it exists and belongs to this Rollout.
    ///
    /// The canary Ingress is written with a forced apply and deleted at weight 0, both of
    /// which would destroy an Ingress the user happened to give the same name; an object
    /// without this Rollout's owner reference is therefore reported instead of touched.
    fn owned_canary(&self) -> Result<Option<Arc<Ingress>>, AdapterError> {
        let name = self.canary_ingress_name();
        let last = self.last.lock().expect("not poisoned").clone();
        let found = match last {
            Some(written) => written,
            None => self.ctx.caches.ingress(&self.ctx.namespace, &name),
        };
        let Some(ingress) = found else {
            return Ok(None);
        };
        let owned = ingress
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Rollout" && o.uid == self.ctx.rollout_uid);
        if owned {
            Ok(Some(ingress))
        } else {
            Err(AdapterError::Invalid(format!(
                "Ingress {}/{name} exists but is not owned by Rollout {}; sluice will not overwrite it",
                self.ctx.namespace, self.ctx.rollout
            )))
        }
    }

    /// The stable Ingress' rules reduced to the paths served by the stable Service, each
    /// pointed at the canary Service on the same port. Empty when no path reaches the
    /// stable Service.
    ///
    /// Only rules are considered: ingress-nginx does not apply canary weights to a
    /// `defaultBackend`, so copying one would not move any traffic.
    fn canary_rules(&self, stable: &Ingress) -> Vec<IngressRule> {
        let rules = stable.spec.as_ref().and_then(|s| s.rules.as_ref());
        rules
            .into_iter()
            .flatten()
            .filter_map(|rule| {
                let paths: Vec<_> = rule
                    .http
                    .as_ref()?
                    .paths
                    .iter()
                    .filter(|p| {
                        p.backend.service.as_ref().map(|s| s.name.as_str())
                            == Some(self.ctx.stable_service.as_str())
                    })
                    .map(|p| {
                        let mut path = p.clone();
                        let port = p.backend.service.as_ref().and_then(|s| s.port.clone());
                        path.backend = IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: self.ctx.canary_service.clone(),
                                port,
                            }),
                            resource: None,
                        };
                        path
                    })
                    .collect();
                (!paths.is_empty()).then(|| IngressRule {
                    host: rule.host.clone(),
                    http: Some(HTTPIngressRuleValue { paths }),
                })
            })
            .collect()
    }

    /// Whether `canary` routes what [`canary_ingress`](Self::canary_ingress) would build
    /// from `stable`: the same rules and class, with the canary switch on. Annotations
    /// beyond those are not compared; the weight is read separately.
    fn routes_as_built(&self, canary: &Ingress, stable: &Ingress) -> bool {
        let spec = canary.spec.as_ref();
        let rules = spec.and_then(|s| s.rules.clone()).unwrap_or_default();
        let class = spec.and_then(|s| s.ingress_class_name.as_ref());
        let stable_class = stable
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_ref());
        let switched_on = canary
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&format!("{}/canary", self.prefix())))
            .is_some_and(|v| v == "true");
        rules == self.canary_rules(stable) && class == stable_class && switched_on
    }

    /// The complete desired canary Ingress: everything sluice sets, nothing it does not,
    /// so that the forced apply also removes what an earlier version set and no longer
    /// applies (a path removed from the stable Ingress, a dropped annotation).
    fn canary_ingress(
        &self,
        stable: &Ingress,
        weight: i32,
        route: &BTreeMap<String, String>,
    ) -> Result<Ingress, AdapterError> {
        let rules = self.canary_rules(stable);
        if rules.is_empty() {
            return Err(AdapterError::Invalid(self.no_stable_path()));
        }

        let mut annotations: BTreeMap<String, String> =
            self.config.additional_ingress_annotations.clone();
        if let Some(class) = stable
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
        {
            annotations.insert(LEGACY_CLASS_ANNOTATION.to_string(), class.clone());
        }
        // Inserted last: extra annotations must not be able to switch off the canary or
        // replace the weight sluice is asked to apply.
        annotations.insert(format!("{}/canary", self.prefix()), "true".to_string());
        annotations.insert(self.weight_annotation(), weight.to_string());
        if !route.is_empty() {
            // A managed header route replaces any the user configured by hand.
            for suffix in ["", "-value", "-pattern"] {
                annotations.remove(&self.header_annotation(suffix));
            }
            annotations.extend(route.iter().map(|(k, v)| (k.clone(), v.clone())));
        }

        let labels = BTreeMap::from([
            (MANAGED_BY_LABEL.to_string(), "sluice".to_string()),
            (ROLLOUT_LABEL.to_string(), self.ctx.rollout.clone()),
        ]);
        let owner = OwnerReference {
            api_version: <Rollout as kube::Resource>::api_version(&()).into_owned(),
            kind: <Rollout as kube::Resource>::kind(&()).into_owned(),
            name: self.ctx.rollout.clone(),
            uid: self.ctx.rollout_uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };

        Ok(Ingress {
            metadata: ObjectMeta {
                name: Some(self.canary_ingress_name()),
                namespace: Some(self.ctx.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: stable
                    .spec
                    .as_ref()
                    .and_then(|s| s.ingress_class_name.clone()),
                rules: Some(rules),
                // No TLS: ingress-nginx serves a canary host with the main Ingress' TLS
                // settings, and a copy would be one more thing to keep in sync.
                tls: None,
                default_backend: None,
            }),
            status: None,
        })
    }
}

impl TrafficRouter for NginxRouter {
    /// The weight annotation of the canary Ingress; `Some(0)` when it does not exist,
    /// because then ingress-nginx routes nothing to the canary. `None` when it no longer
    /// routes what sluice would route (another writer changed its rules, class or canary
    /// switch, or the stable Ingress' paths changed since): the weight is then not in
    /// place, and setting it again rebuilds the canary Ingress from the stable one.
    fn current_weight(&self) -> Result<Option<i32>, AdapterError> {
        let Some(canary) = self.owned_canary()? else {
            return Ok(Some(0));
        };
        if let Some(stable) = self.stable_ingress()
            && !self.routes_as_built(&canary, &stable)
        {
            return Ok(None);
        }
        let key = self.weight_annotation();
        // ingress-nginx reads a missing weight as 0.
        let Some(raw) = canary
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&key))
        else {
            return Ok(Some(0));
        };
        match raw.trim().parse::<i32>() {
            Ok(w) if (0..=100).contains(&w) => Ok(Some(w)),
            _ => Err(AdapterError::Invalid(format!(
                "Ingress {}/{} has annotation {key}: {raw:?}, not a weight from 0 to 100",
                self.ctx.namespace,
                self.canary_ingress_name()
            ))),
        }
    }

    async fn set_weight(&self, weight: i32) -> Result<Option<Written>, AdapterError> {
        if !(0..=100).contains(&weight) {
            return Err(AdapterError::Invalid(format!(
                "canary weight {weight} is not between 0 and 100"
            )));
        }
        let route = self
            .owned_canary()?
            .map(|c| self.route_annotations(&c))
            .unwrap_or_default();
        self.write(weight, route).await
    }

    /// The header route's annotations on the canary Ingress; empty without one.
    fn current_routes(&self) -> Result<BTreeMap<String, String>, AdapterError> {
        let Some(canary) = self.owned_canary()? else {
            return Ok(BTreeMap::new());
        };
        if let Some(stable) = self.stable_ingress()
            && !self.routes_as_built(&canary, &stable)
        {
            return Ok(BTreeMap::new());
        }
        let annotations = self.route_annotations(&canary);
        let Some(recorded) = annotations.get(MANAGED_ROUTES_ANNOTATION) else {
            return Ok(BTreeMap::new());
        };
        // The switch itself must be there: without canary-by-header ingress-nginx ignores
        // the value and the pattern.
        if !annotations.contains_key(&self.header_annotation("")) {
            return Ok(BTreeMap::new());
        }
        Ok(recorded
            .split_once('=')
            .map(|(name, print)| BTreeMap::from([(name.to_string(), print.to_string())]))
            .unwrap_or_default())
    }

    async fn set_routes(&self, routes: &[RouteSetting]) -> Result<Option<Written>, AdapterError> {
        let wanted = self.route_annotations_for(routes)?;
        let canary = self.owned_canary()?;
        let held = canary
            .as_ref()
            .map(|c| self.route_annotations(c))
            .unwrap_or_default();
        if held == wanted {
            return Ok(None);
        }
        let weight = canary
            .as_ref()
            .and_then(|c| {
                c.metadata
                    .annotations
                    .as_ref()?
                    .get(&self.weight_annotation())
                    .cloned()
            })
            .and_then(|w| w.trim().parse::<i32>().ok())
            .filter(|w| (0..=100).contains(w))
            .unwrap_or(0);
        self.write(weight, wanted).await
    }

    fn missing_references(&self) -> Result<Vec<String>, AdapterError> {
        let Some(stable) = self.stable_ingress() else {
            return Ok(vec![self.stable_reference()]);
        };
        if self.canary_rules(&stable).is_empty() {
            // It is there, so "not found" would send the user looking for the wrong thing.
            return Err(AdapterError::Invalid(self.no_stable_path()));
        }
        Ok(Vec::new())
    }
}

impl NginxRouter {
    /// `<prefix>/canary-by-header<suffix>`.
    fn header_annotation(&self, suffix: &str) -> String {
        format!("{}/canary-by-header{suffix}", self.prefix())
    }

    /// The annotations of the canary Ingress that make up the header route.
    fn route_annotations(&self, canary: &Ingress) -> BTreeMap<String, String> {
        let keys = [
            self.header_annotation(""),
            self.header_annotation("-value"),
            self.header_annotation("-pattern"),
            MANAGED_ROUTES_ANNOTATION.to_string(),
        ];
        let annotations = canary.metadata.annotations.clone().unwrap_or_default();
        // Header annotations the user put in `additionalIngressAnnotations` are theirs: a
        // route is sluice's only with its fingerprint beside it.
        if !annotations.contains_key(MANAGED_ROUTES_ANNOTATION) {
            return BTreeMap::new();
        }
        keys.into_iter()
            .filter_map(|k| annotations.get(&k).map(|v| (k, v.clone())))
            .collect()
    }

    /// The annotations of a header route: `canary-by-header` with `-value` (exact) or
    /// `-pattern` (prefix, regex), and the route's fingerprint. Admission and the planner
    /// let through one header route with one header for this router; anything else here
    /// is a bug reported as such.
    fn route_annotations_for(
        &self,
        routes: &[RouteSetting],
    ) -> Result<BTreeMap<String, String>, AdapterError> {
        let mut out = BTreeMap::new();
        let [route] = routes else {
            if routes.is_empty() {
                return Ok(out);
            }
            return Err(AdapterError::Invalid(format!(
                "the nginx router holds one managed route, asked for {}",
                routes.len()
            )));
        };
        let RouteKind::Header { matches } = &route.kind else {
            return Err(AdapterError::Invalid(format!(
                "the nginx router cannot hold mirror route {}",
                route.name
            )));
        };
        let [m] = matches.as_slice() else {
            return Err(AdapterError::Invalid(format!(
                "the nginx router matches one header per route, route {} has {}",
                route.name,
                matches.len()
            )));
        };
        out.insert(self.header_annotation(""), m.header_name.clone());
        match &m.header_value.exact {
            Some(exact) => out.insert(self.header_annotation("-value"), exact.clone()),
            None => out.insert(
                self.header_annotation("-pattern"),
                as_regex(&m.header_value).unwrap_or_default(),
            ),
        };
        out.insert(
            MANAGED_ROUTES_ANNOTATION.to_string(),
            format!("{}={}", route.name, route.fingerprint()),
        );
        Ok(out)
    }

    /// Writes the canary Ingress for `weight` and the header `route` annotations; with
    /// neither there is no canary traffic, expressed by deleting it.
    async fn write(
        &self,
        weight: i32,
        route: BTreeMap<String, String>,
    ) -> Result<Option<Written>, AdapterError> {
        let name = self.canary_ingress_name();
        if weight == 0 && route.is_empty() {
            let Some(canary) = self.owned_canary()? else {
                return Ok(None);
            };
            // The uid precondition makes sure the object deleted is the one just checked,
            // not one recreated under the same name in between.
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: canary.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let gone = Written::gone(Cache::Ingress, &self.ctx.namespace, &name);
            let result = match self.ingresses().delete(&name, &dp).await {
                Ok(_) => Ok(Some(gone)),
                Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Some(gone)),
                Err(e) => Err(e.into()),
            };
            if result.is_ok() {
                *self.last.lock().expect("not poisoned") = Some(None);
            }
            return result;
        }

        let stable = self
            .stable_ingress()
            .ok_or_else(|| AdapterError::NotFound {
                what: self.stable_reference(),
            })?;
        let desired = self.canary_ingress(&stable, weight, &route)?;
        self.owned_canary()?;
        // Forcing is safe: sluice owns this object (checked just above), and forcing wins
        // over a stray `kubectl edit` that would otherwise make every apply conflict.
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let stored = self
            .ingresses()
            .patch(&name, &pp, &Patch::Apply(&desired))
            .await?;
        let out = written(Cache::Ingress, &self.ctx.namespace, &stored);
        *self.last.lock().expect("not poisoned") = Some(Some(Arc::new(stored)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {

    use http::Method;
    use kube::Client;
    use serde_json::{Value, json};

    use super::*;
    use crate::adapters::cache::testing::caches;
    use crate::adapters::mock_api::{self, exchange, not_found};

    /// A router whose cache holds `cached` (Ingress manifests).
    fn router(client: Client, cached: Vec<Value>, config: NginxTrafficRouting) -> NginxRouter {
        NginxRouter::new(
            RouterContext {
                client,
                caches: caches(cached),
                namespace: "shop".into(),
                rollout: "web".into(),
                rollout_uid: "uid-1".into(),
                canary_service: "web-canary".into(),
                stable_service: "web-stable".into(),
            },
            config,
        )
    }

    fn config() -> NginxTrafficRouting {
        NginxTrafficRouting {
            stable_ingress: "web".into(),
            annotation_prefix: DEFAULT_ANNOTATION_PREFIX.into(),
            additional_ingress_annotations: BTreeMap::new(),
        }
    }

    fn stable_ingress() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "web", "namespace": "shop",
                "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "nginx.ingress.kubernetes.io/rewrite-target": "/"
                }
            },
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                "rules": [
                    {"host": "shop.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web-stable", "port": {"number": 80}}}},
                        {"path": "/admin", "pathType": "Prefix",
                         "backend": {"service": {"name": "admin", "port": {"number": 8080}}}}
                    ]}},
                    {"host": "static.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "cdn", "port": {"name": "http"}}}}
                    ]}},
                    {"host": "api.example.com", "http": {"paths": [
                        {"path": "/v1", "pathType": "Exact",
                         "backend": {"service": {"name": "web-stable", "port": {"name": "http"}}}}
                    ]}}
                ]
            }
        })
    }

    fn canary_ingress(weight: &str, owner_uid: &str) -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "web-web-canary", "namespace": "shop", "uid": "canary-uid",
                "resourceVersion": "7",
                "annotations": {
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": weight
                },
                "ownerReferences": [{
                    "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                    "name": "web", "uid": owner_uid, "controller": true
                }]
            },
            "spec": {"rules": []}
        })
    }

    const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses";

    #[tokio::test]
    async fn set_weight_applies_a_canary_ingress_derived_from_the_stable_one() {
        let mut cfg = config();
        cfg.additional_ingress_annotations = BTreeMap::from([
            (
                "nginx.ingress.kubernetes.io/canary-by-header".to_string(),
                "X-Canary".to_string(),
            ),
            // Must not override the weight sluice applies.
            (
                "nginx.ingress.kubernetes.io/canary-weight".to_string(),
                "99".to_string(),
            ),
        ]);
        let (result, seen) = exchange(
            vec![(200, canary_ingress("30", "uid-1"))],
            |client| async move {
                router(client, vec![stable_ingress()], cfg)
                    .set_weight(30)
                    .await
            },
        )
        .await;
        assert_eq!(
            result.expect("set_weight"),
            Written::at(Cache::Ingress, "shop", "web-web-canary", Some("7")),
            "the caches must show the applied version before the next plan"
        );

        // Both Ingresses were read from the cache: the apply is the only request.
        let apply = &seen[0];
        assert_eq!(apply.method, Method::PATCH);
        assert_eq!(apply.path, format!("{INGRESSES}/web-web-canary"));
        assert_eq!(
            apply.query,
            BTreeMap::from([
                ("fieldManager".to_string(), "sluice".to_string()),
                ("force".to_string(), "true".to_string()),
            ])
        );
        let expected = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "web-web-canary",
                "namespace": "shop",
                "labels": {
                    "app.kubernetes.io/managed-by": "sluice",
                    "sluice.dev/rollout": "web"
                },
                "annotations": {
                    "kubernetes.io/ingress.class": "nginx",
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "30",
                    "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary"
                },
                "ownerReferences": [{
                    "apiVersion": "sluice.dev/v1alpha1",
                    "kind": "Rollout",
                    "name": "web",
                    "uid": "uid-1",
                    "controller": true,
                    "blockOwnerDeletion": true
                }]
            },
            "spec": {
                "ingressClassName": "nginx",
                "rules": [
                    {"host": "shop.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web-canary", "port": {"number": 80}}}}
                    ]}},
                    {"host": "api.example.com", "http": {"paths": [
                        {"path": "/v1", "pathType": "Exact",
                         "backend": {"service": {"name": "web-canary", "port": {"name": "http"}}}}
                    ]}}
                ]
            }
        });
        assert_eq!(apply.body.as_ref(), Some(&expected));
    }

    #[tokio::test]
    async fn a_custom_prefix_names_both_canary_annotations() {
        let mut cfg = config();
        cfg.annotation_prefix = "custom.example.com".into();
        let (result, seen) = exchange(
            vec![(200, canary_ingress("5", "uid-1"))],
            |client| async move {
                router(client, vec![stable_ingress()], cfg)
                    .set_weight(5)
                    .await
            },
        )
        .await;
        result.expect("set_weight");
        let annotations = &seen[0].body.as_ref().expect("apply body")["metadata"]["annotations"];
        assert_eq!(annotations["custom.example.com/canary"], "true");
        assert_eq!(annotations["custom.example.com/canary-weight"], "5");
        assert!(
            annotations
                .get("nginx.ingress.kubernetes.io/canary")
                .is_none()
        );
    }

    #[tokio::test]
    async fn set_weight_refuses_an_ingress_it_does_not_own() {
        let cached = vec![stable_ingress(), canary_ingress("10", "someone-else")];
        let (result, _) = exchange(vec![], |client| async move {
            router(client, cached, config()).set_weight(30).await
        })
        .await;
        assert!(
            matches!(result, Err(AdapterError::Invalid(_))),
            "nothing is written over it: {result:?}"
        );
    }

    #[tokio::test]
    async fn set_weight_fails_without_a_path_to_the_stable_service() {
        let mut stable = stable_ingress();
        stable["spec"]["rules"] = json!([{"host": "x", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "other", "port": {"number": 80}}}}
        ]}}]);
        let (result, _) = exchange(vec![], |client| async move {
            router(client, vec![stable], config()).set_weight(30).await
        })
        .await;
        match result {
            Err(AdapterError::Invalid(m)) => {
                assert_eq!(m, "Ingress web has no path to Service web-stable")
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn set_weight_zero_deletes_the_canary_ingress() {
        let (result, seen) = exchange(
            vec![(200, canary_ingress("30", "uid-1"))],
            |client| async move {
                router(client, vec![canary_ingress("30", "uid-1")], config())
                    .set_weight(0)
                    .await
            },
        )
        .await;
        assert_eq!(
            result.expect("set_weight(0)"),
            Some(Written::gone(Cache::Ingress, "shop", "web-web-canary"))
        );
        assert_eq!(seen[0].method, Method::DELETE);
        assert_eq!(seen[0].path, format!("{INGRESSES}/web-web-canary"));
        assert_eq!(
            seen[0].body,
            Some(json!({"preconditions": {"uid": "canary-uid"}}))
        );
    }

    #[tokio::test]
    async fn set_weight_zero_ignores_an_ingress_deleted_meanwhile() {
        let (result, seen) = exchange(
            vec![not_found("ingresses.networking.k8s.io", "web-web-canary")],
            |client| async move {
                router(client, vec![canary_ingress("30", "uid-1")], config())
                    .set_weight(0)
                    .await
            },
        )
        .await;
        result.expect("a 404 on delete is success");
        assert_eq!(seen[0].method, Method::DELETE);
    }

    #[tokio::test]
    async fn set_weight_zero_without_a_canary_ingress_writes_nothing() {
        let (result, _) = exchange(vec![], |client| async move {
            router(client, vec![], config()).set_weight(0).await
        })
        .await;
        assert_eq!(result.expect("set_weight(0)"), None, "nothing written");
    }

    /// A router over a cache of `cached`, for reads (which send no request).
    fn reading(cached: Vec<Value>) -> NginxRouter {
        router(mock_api::client().0, cached, config())
    }

    #[tokio::test]
    async fn current_weight_reads_the_annotation() {
        let r = reading(vec![canary_ingress("42", "uid-1")]);
        assert_eq!(r.current_weight().expect("current_weight"), Some(42));
    }

    /// The canary Ingress sluice applies at `weight` for [`stable_ingress`], as stored.
    fn built_canary(weight: i32) -> Value {
        let r = reading(vec![stable_ingress()]);
        let stable: Ingress = serde_json::from_value(stable_ingress()).expect("stable");
        let mut built = serde_json::to_value(
            r.canary_ingress(&stable, weight, &BTreeMap::new())
                .expect("built"),
        )
        .expect("json");
        built["metadata"]["uid"] = json!("canary-uid");
        built
    }

    #[tokio::test]
    async fn current_weight_is_unset_when_the_canary_no_longer_routes_as_built() {
        let intact = reading(vec![stable_ingress(), built_canary(30)]);
        assert_eq!(intact.current_weight().expect("current_weight"), Some(30));

        // Another writer edits the canary's paths, its class or its canary switch.
        let mut edited_path = built_canary(30);
        edited_path["spec"]["rules"][0]["http"]["paths"][0]["path"] = json!("/other");
        let mut edited_class = built_canary(30);
        edited_class["spec"]["ingressClassName"] = json!("traefik");
        let mut switched_off = built_canary(30);
        switched_off["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"] =
            json!("false");
        // The stable Ingress gains a path to the stable Service after the canary was built.
        let mut grown = stable_ingress();
        grown["spec"]["rules"][1]["http"]["paths"][0]["backend"]["service"] =
            json!({"name": "web-stable", "port": {"number": 80}});
        let cases = [
            ("path edited", vec![stable_ingress(), edited_path]),
            ("class edited", vec![stable_ingress(), edited_class]),
            ("canary switched off", vec![stable_ingress(), switched_off]),
            ("stable Ingress changed", vec![grown, built_canary(30)]),
        ];
        for (case, cached) in cases {
            assert_eq!(
                reading(cached).current_weight().expect("current_weight"),
                None,
                "{case}: the weight is not in place"
            );
        }
    }

    #[tokio::test]
    async fn current_weight_is_zero_without_a_canary_ingress() {
        let r = reading(vec![stable_ingress()]);
        assert_eq!(r.current_weight().expect("current_weight"), Some(0));
    }

    #[tokio::test]
    async fn current_weight_rejects_an_unparsable_annotation() {
        for bad in ["thirty", "150", "-1"] {
            let result = reading(vec![canary_ingress(bad, "uid-1")]).current_weight();
            assert!(
                matches!(result, Err(AdapterError::Invalid(_))),
                "{bad}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn missing_stable_ingress_is_reported() {
        let result = reading(vec![]).missing_references();
        assert_eq!(
            result.expect("missing_references"),
            vec!["Ingress shop/web"]
        );

        let (result, _) = exchange(vec![], |client| async move {
            router(client, vec![], config()).set_weight(30).await
        })
        .await;
        assert!(
            matches!(&result, Err(AdapterError::NotFound { what }) if what == "Ingress shop/web"),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn stable_ingress_without_stable_backend_is_reported() {
        let mut stable = stable_ingress();
        stable["spec"] = json!({"rules": [{"host": "x"}]});
        let result = reading(vec![stable]).missing_references();
        assert!(
            matches!(&result, Err(AdapterError::Invalid(m)) if m == "Ingress web has no path to Service web-stable"),
            "an Ingress that exists is unusable, not missing: {result:?}"
        );
        assert_eq!(
            reading(vec![stable_ingress()])
                .missing_references()
                .expect("missing_references"),
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn long_names_are_truncated_with_a_distinguishing_hash() {
        let (client, _handle) = mock_api::client();
        let short = router(client.clone(), vec![], config());
        assert_eq!(short.canary_ingress_name(), "web-web-canary");

        let long = |rollout: &str| {
            let mut r = router(client.clone(), vec![], config());
            r.ctx.rollout = rollout.to_string();
            r.config.stable_ingress = "i".repeat(200);
            r.canary_ingress_name()
        };
        let a = long(&format!("{}a", "r".repeat(100)));
        let b = long(&format!("{}b", "r".repeat(100)));
        assert!(a.len() <= MAX_NAME_LEN, "{}", a.len());
        assert!(b.len() <= MAX_NAME_LEN, "{}", b.len());
        assert_ne!(a, b);
        assert!(a.starts_with(&"r".repeat(100)));
        assert!(a.chars().last().is_some_and(|c| c.is_ascii_alphanumeric()));
    }

    fn header_route() -> RouteSetting {
        use sluice_api::rollout::{HeaderRoutingMatch, StringMatch};
        RouteSetting {
            name: "testers".into(),
            kind: RouteKind::Header {
                matches: vec![HeaderRoutingMatch {
                    header_name: "X-Canary".into(),
                    header_value: StringMatch {
                        exact: Some("yes".into()),
                        ..StringMatch::default()
                    },
                }],
            },
        }
    }

    #[tokio::test]
    async fn a_header_route_rides_on_the_canary_ingress_and_keeps_it_at_weight_zero() {
        let route = header_route();
        let print = route.fingerprint();
        let (result, seen) = exchange(vec![(200, built_canary(30))], |client| {
            let route = route.clone();
            async move {
                router(client, vec![stable_ingress(), built_canary(30)], config())
                    .set_routes(&[route])
                    .await
            }
        })
        .await;
        result.expect("set_routes");
        assert_eq!(seen[0].method, Method::PATCH);
        let annotations = seen[0].body.as_ref().unwrap()["metadata"]["annotations"].clone();
        assert_eq!(
            annotations,
            json!({
                "kubernetes.io/ingress.class": "nginx",
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-weight": "30",
                "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
                "nginx.ingress.kubernetes.io/canary-by-header-value": "yes",
                "sluice.dev/managed-routes": format!("testers={print}"),
            }),
            "the weight in place is kept"
        );

        // Read back, and the weight going to 0 keeps the Ingress for the route.
        let mut stored = built_canary(0);
        stored["metadata"]["annotations"] = annotations.clone();
        stored["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] = json!("0");
        let reader = reading(vec![stable_ingress(), stored.clone()]);
        assert_eq!(
            reader.current_routes().unwrap(),
            BTreeMap::from([("testers".to_string(), print.clone())])
        );
        let mut at_30 = stored.clone();
        at_30["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] = json!("30");
        let (result, seen) = exchange(vec![(200, stored.clone())], |client| async move {
            router(client, vec![stable_ingress(), at_30], config())
                .set_weight(0)
                .await
        })
        .await;
        result.expect("set_weight(0)");
        assert_eq!(seen[0].method, Method::PATCH, "an apply, not a delete");
        assert_eq!(
            seen[0].body.as_ref().unwrap()["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"],
            "X-Canary"
        );

        // No route and no weight: the canary Ingress goes.
        let (result, seen) = exchange(vec![(200, stored.clone())], |client| async move {
            router(client, vec![stable_ingress(), stored], config())
                .set_routes(&[])
                .await
        })
        .await;
        result.expect("set_routes([])");
        assert_eq!(seen[0].method, Method::DELETE);
    }

    #[tokio::test]
    async fn header_annotations_the_user_configured_are_not_a_managed_route() {
        let mut cfg = config();
        cfg.additional_ingress_annotations = BTreeMap::from([(
            "nginx.ingress.kubernetes.io/canary-by-header".to_string(),
            "X-Mine".to_string(),
        )]);
        let mut canary = built_canary(30);
        canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"] =
            json!("X-Mine");
        let r = router(
            mock_api::client().0,
            vec![stable_ingress(), canary.clone()],
            cfg,
        );
        assert!(r.current_routes().unwrap().is_empty());
        // So removing "all" routes has nothing to do: no write, no tug of war.
        let (result, seen) = exchange(vec![], |_| async move { r.set_routes(&[]).await }).await;
        assert_eq!(result.expect("set_routes"), None);
        assert!(seen.is_empty());
    }
}
