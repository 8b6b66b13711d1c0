//! Istio routing: sluice sets the weights of the canary and stable destinations of the
//! user's VirtualService, holds its own HTTP routes there for `setHeaderRoute` and
//! `setMirrorRoute`, and, with a DestinationRule, points its two subsets at the revisions.
//! Nothing else in either object is written.
//!
//! Both are read and written as [`DynamicObject`]s (`networking.istio.io/v1`): sluice
//! needs only `spec.http[*].{name,match,route[*].{destination,weight}}` and
//! `spec.{host,subsets[*].{name,labels}}`, which every `v1` release has, so it does not
//! depend on an Istio crate.
//!
//! Writes are JSON patches, as for HTTPRoutes (see `gateway.rs`): `spec.http` and
//! `spec.subsets` are atomic lists, so a server-side apply of one weight would make sluice
//! own the whole list. Every index a patch writes at is guarded by a `test` of what the
//! read found there (a destination's host and subset, a route's or subset's name): a
//! VirtualService changed since it was read makes the patch fail with 422, and the
//! reconcile is retried from a fresh read, instead of putting a weight on whatever
//! destination now sits at that index.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Map, Value, json};
use sluice_api::labels::POD_TEMPLATE_HASH_LABEL;
use sluice_api::rollout::{IstioTrafficRouting, RouteMatch, StringMatch};

use super::{RouterContext, TrafficRouter, managed};
use crate::adapters::workload::written;
use crate::adapters::written::{Cache, Written};
use crate::adapters::{AdapterError, FIELD_MANAGER};
use crate::core::hash::value_hash;
use crate::core::routes::{RouteKind, RouteSetting};

/// What Istio requires the weights of a route's destinations to sum to.
const TOTAL_WEIGHT: i64 = 100;

/// The `networking.istio.io/v1` VirtualService resource.
pub fn virtual_service_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    ApiResource::from_gvk_with_plural(&gvk, "virtualservices")
}

/// The `networking.istio.io/v1` DestinationRule resource.
pub fn destination_rule_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "DestinationRule");
    ApiResource::from_gvk_with_plural(&gvk, "destinationrules")
}

/// Routes traffic by weighting the canary and stable destinations of a VirtualService's
/// HTTP routes: the routes named in `virtualService.routes`, or every one that has both.
///
/// A destination is the canary (stable) one when, without a DestinationRule, its host is
/// `canaryService` (`stableService`), by its short name or `<svc>.<ns>.svc.cluster.local`;
/// with one, when its host is the DestinationRule's and its subset the canary (stable)
/// subset. Other destinations of a weighted route must have weight 0, since Istio wants
/// the weights of a route to sum to 100 and sluice gives the canary and stable all of it.
#[derive(Clone)]
pub struct IstioRouter {
    ctx: RouterContext,
    config: IstioTrafficRouting,
    /// The VirtualService and DestinationRule as this router's last writes returned them:
    /// one reconcile may write the weights and then the managed routes, and the second
    /// write must start from the first's result, not from a cache that has not seen it.
    last_vs: Arc<Mutex<Option<Arc<DynamicObject>>>>,
    last_dr: Arc<Mutex<Option<Arc<DynamicObject>>>>,
}

/// Which revision a destination sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Canary,
    Stable,
}

/// A canary or stable destination, at `spec.http[route].route[index]`.
#[derive(Debug, Clone)]
struct MatchedDest {
    route: usize,
    index: usize,
    backend: Backend,
    /// The weight it sets; unset means 0 in a route of several destinations.
    weight: Option<i64>,
    host: String,
    subset: Option<String>,
}

impl MatchedDest {
    fn effective_weight(&self) -> i64 {
        self.weight.unwrap_or(0)
    }
}

impl IstioRouter {
    pub fn new(ctx: RouterContext, config: IstioTrafficRouting) -> Self {
        Self {
            ctx,
            config,
            last_vs: Arc::default(),
            last_dr: Arc::default(),
        }
    }

    fn namespace(&self) -> &str {
        &self.ctx.namespace
    }

    fn vs_name(&self) -> &str {
        &self.config.virtual_service.name
    }

    fn vs_reference(&self) -> String {
        format!("VirtualService {}/{}", self.namespace(), self.vs_name())
    }

    fn dr_reference(&self, name: &str) -> String {
        format!("DestinationRule {}/{name}", self.namespace())
    }

    fn invalid(&self, what: impl std::fmt::Display) -> AdapterError {
        AdapterError::Invalid(format!("{}: {what}", self.vs_reference()))
    }

    /// Where the weights go, in the words of the messages.
    fn destinations(&self) -> String {
        match &self.config.destination_rule {
            Some(dr) => format!(
                "subsets {} and {} of DestinationRule {}",
                dr.canary_subset_name, dr.stable_subset_name, dr.name
            ),
            None => format!(
                "{} and {}",
                self.ctx.canary_service, self.ctx.stable_service
            ),
        }
    }

    fn no_route_message(&self) -> String {
        format!(
            "VirtualService {} has no HTTP route with destinations to both {}",
            self.vs_name(),
            self.destinations()
        )
    }

    fn cached_vs(&self) -> Option<Arc<DynamicObject>> {
        self.ctx
            .caches
            .virtual_service(self.namespace(), self.vs_name())
    }

    fn cached_dr(&self) -> Option<Arc<DynamicObject>> {
        let dr = self.config.destination_rule.as_ref()?;
        self.ctx.caches.destination_rule(self.namespace(), &dr.name)
    }

    fn get_vs(&self) -> Result<Arc<DynamicObject>, AdapterError> {
        let last = self.last_vs.lock().expect("not poisoned").clone();
        last.or_else(|| self.cached_vs())
            .ok_or_else(|| AdapterError::NotFound {
                what: self.vs_reference(),
            })
    }

    /// The DestinationRule, when one is configured.
    fn get_dr(&self) -> Result<Option<Arc<DynamicObject>>, AdapterError> {
        let Some(dr) = &self.config.destination_rule else {
            return Ok(None);
        };
        let last = self.last_dr.lock().expect("not poisoned").clone();
        last.or_else(|| self.cached_dr())
            .map(Some)
            .ok_or_else(|| AdapterError::NotFound {
                what: self.dr_reference(&dr.name),
            })
    }

    /// Sends `ops` as one JSON patch of `name` under sluice's field manager.
    async fn send_json_patch(
        &self,
        resource: &ApiResource,
        name: &str,
        ops: Vec<Value>,
    ) -> Result<DynamicObject, AdapterError> {
        let patch = Patch::<()>::Json(
            serde_json::from_value(Value::Array(ops))
                .map_err(|e| AdapterError::Invalid(format!("building the JSON patch: {e}")))?,
        );
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.ctx.client.clone(), self.namespace(), resource);
        Ok(api.patch(name, &pp, &patch).await?)
    }

    async fn patch_vs(&self, ops: Vec<Value>) -> Result<Option<Written>, AdapterError> {
        let stored = self
            .send_json_patch(&virtual_service_resource(), self.vs_name(), ops)
            .await?;
        let out = written(Cache::VirtualService, self.namespace(), &stored);
        *self.last_vs.lock().expect("not poisoned") = Some(Arc::new(stored));
        Ok(out)
    }

    /// A host as Istio resolves it from the Rollout's namespace: a short name is the
    /// Service of that name there.
    fn fqdn(&self, host: &str) -> String {
        if host.contains('.') {
            host.to_string()
        } else {
            format!("{host}.{}.svc.cluster.local", self.namespace())
        }
    }

    /// The DestinationRule's `spec.host`, resolved.
    fn dr_host(&self, dr: &DynamicObject) -> Option<String> {
        dr.data
            .get("spec")
            .and_then(|s| s.get("host"))
            .and_then(Value::as_str)
            .map(|h| self.fqdn(h))
    }

    /// Which revision a route destination (`{destination: {host, subset}, weight}`) sends
    /// to, if either.
    fn backend_of(&self, destination: &Value, dr: Option<&DynamicObject>) -> Option<Backend> {
        let d = destination.get("destination")?;
        let host = self.fqdn(d.get("host")?.as_str()?);
        let subset = d.get("subset").and_then(Value::as_str);
        match (&self.config.destination_rule, dr) {
            (Some(config), Some(dr)) => {
                if Some(&host) != self.dr_host(dr).as_ref() {
                    return None;
                }
                match subset? {
                    s if s == config.canary_subset_name => Some(Backend::Canary),
                    s if s == config.stable_subset_name => Some(Backend::Stable),
                    _ => None,
                }
            }
            (Some(_), None) => None,
            (None, _) => match host {
                h if subset.is_none() && h == self.fqdn(&self.ctx.canary_service) => {
                    Some(Backend::Canary)
                }
                h if subset.is_none() && h == self.fqdn(&self.ctx.stable_service) => {
                    Some(Backend::Stable)
                }
                _ => None,
            },
        }
    }

    fn is_own(&self, route: &Value) -> bool {
        route_name(route).is_some_and(|n| managed::is_own(&self.ctx.rollout, n))
    }

    fn is_managed_by_another(&self, route: &Value) -> bool {
        route_name(route).is_some_and(|n| managed::is_another_rollouts(&self.ctx.rollout, n))
    }

    /// The canary and stable destinations of every route sluice weights (the configured
    /// user routes, or every user route with both, and sluice's own mirror routes), route
    /// by route in order, each with both. Fields of the wrong JSON type are reported, not
    /// skipped, since skipping could hide the very destination the weight belongs on.
    fn weighted(&self, vs: &DynamicObject) -> Result<Vec<Vec<MatchedDest>>, AdapterError> {
        let dr = self.get_dr()?;
        let routes = match vs.data.get("spec").and_then(|s| s.get("http")) {
            None | Some(Value::Null) => &Vec::new(),
            Some(Value::Array(routes)) => routes,
            Some(_) => return Err(self.invalid("spec.http is not a list")),
        };
        let named = &self.config.virtual_service.routes;
        for name in named {
            if !routes.iter().any(|r| route_name(r) == Some(name.as_str())) {
                return Err(self.invalid(format!("it has no HTTP route named {name}")));
            }
        }
        let mut found = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            if self.is_managed_by_another(route) {
                continue;
            }
            let own = self.is_own(route);
            let listed = named.is_empty()
                || route_name(route).is_some_and(|n| named.contains(&n.to_string()));
            if !own && !listed {
                continue;
            }
            let dests = match route.get("route") {
                None | Some(Value::Null) => &Vec::new(),
                Some(Value::Array(d)) => d,
                Some(_) => return Err(self.invalid(format!("spec.http[{i}].route is not a list"))),
            };
            let mut matched = Vec::new();
            let mut others = Vec::new();
            for (j, dest) in dests.iter().enumerate() {
                if !dest.is_object() {
                    return Err(self.invalid(format!("spec.http[{i}].route[{j}] is not an object")));
                }
                let weight = match dest.get("weight") {
                    None | Some(Value::Null) => None,
                    Some(w) => Some(w.as_i64().filter(|w| *w >= 0).ok_or_else(|| {
                        self.invalid(format!(
                            "spec.http[{i}].route[{j}].weight is {w}, not a non-negative integer"
                        ))
                    })?),
                };
                let Some(backend) = self.backend_of(dest, dr.as_deref()) else {
                    others.push((j, weight.unwrap_or(0)));
                    continue;
                };
                let d = &dest["destination"];
                matched.push(MatchedDest {
                    route: i,
                    index: j,
                    backend,
                    weight,
                    host: d["host"].as_str().unwrap_or_default().to_string(),
                    subset: d.get("subset").and_then(Value::as_str).map(str::to_string),
                });
            }
            let count = |b: Backend| matched.iter().filter(|m| m.backend == b).count();
            let (canaries, stables) = (count(Backend::Canary), count(Backend::Stable));
            if canaries == 0 || stables == 0 {
                if !own && !named.is_empty() {
                    return Err(self.invalid(format!(
                        "HTTP route {} has no destinations to both {}",
                        route_name(route).unwrap_or_default(),
                        self.destinations()
                    )));
                }
                continue;
            }
            if canaries > 1 || stables > 1 {
                return Err(self.invalid(format!(
                    "spec.http[{i}] has more than one canary or stable destination"
                )));
            }
            if let Some((j, w)) = others.iter().find(|(_, w)| *w > 0) {
                return Err(self.invalid(format!(
                    "spec.http[{i}].route[{j}] has weight {w}: a route sluice weights may send \
                     nothing besides the canary and the stable, Istio needs its weights to sum \
                     to 100"
                )));
            }
            found.push(matched);
        }
        Ok(found)
    }

    /// The user routes sluice weights, in order: what managed routes are made from.
    fn user_routes(&self, vs: &DynamicObject) -> Result<Vec<Value>, AdapterError> {
        let all = http_routes(vs);
        Ok(self
            .weighted(vs)?
            .iter()
            .filter_map(|m| m.first().map(|d| &all[d.route]))
            .filter(|r| !self.is_own(r))
            .cloned()
            .collect())
    }

    fn weight_ops(&self, weighted: &[Vec<MatchedDest>], weight: i64) -> Vec<Value> {
        let mut ops = Vec::new();
        for d in weighted.iter().flatten() {
            let desired = match d.backend {
                Backend::Canary => weight,
                Backend::Stable => TOTAL_WEIGHT - weight,
            };
            if d.weight == Some(desired) {
                continue;
            }
            let at = format!("/spec/http/{}/route/{}", d.route, d.index);
            ops.push(
                json!({"op": "test", "path": format!("{at}/destination/host"), "value": d.host}),
            );
            if let Some(subset) = &d.subset {
                ops.push(json!({"op": "test", "path": format!("{at}/destination/subset"), "value": subset}));
            }
            let op = if d.weight.is_some() { "replace" } else { "add" };
            ops.push(json!({"op": op, "path": format!("{at}/weight"), "value": desired}));
        }
        ops
    }

    /// The canary destination of `user`, without weight or headers: where a header route
    /// sends, and what a mirror copies to.
    fn canary_destination(&self, user: &Value) -> Result<Value, AdapterError> {
        let dr = self.get_dr()?;
        let dests = user.get("route").and_then(Value::as_array);
        dests
            .into_iter()
            .flatten()
            .find(|d| self.backend_of(d, dr.as_deref()) == Some(Backend::Canary))
            .and_then(|d| d.get("destination").cloned())
            .ok_or_else(|| AdapterError::Invalid(self.no_route_message()))
    }

    /// The managed route of `r` made from the user's `k`th weighted route: the user's
    /// route (its timeouts, retries, rewrites) with its matches narrowed by the setting's.
    fn managed_route(
        &self,
        r: &RouteSetting,
        user: &Value,
        k: usize,
    ) -> Result<Value, AdapterError> {
        let name = managed::name(&self.ctx.rollout, r, &base_hash(user), k);
        let canary = self.canary_destination(user)?;
        let mut route = user.clone();
        let o = route
            .as_object_mut()
            .expect("a weighted route is an object");
        for key in [
            "name",
            "match",
            "route",
            "mirror",
            "mirrors",
            "mirrorPercentage",
            "mirrorPercent",
        ] {
            o.remove(key);
        }
        let mut out = Map::new();
        out.insert("name".into(), json!(name));
        match &r.kind {
            RouteKind::Header { matches } => {
                let headers: Map<String, Value> = matches
                    .iter()
                    .map(|m| {
                        (
                            m.header_name.to_ascii_lowercase(),
                            string_match(&m.header_value),
                        )
                    })
                    .collect();
                let merged: Vec<Value> = user_matches(user)
                    .into_iter()
                    .map(|m| with_headers(m, &headers))
                    .collect();
                out.insert("match".into(), Value::Array(merged));
                out.insert(
                    "route".into(),
                    json!([{"destination": canary, "weight": TOTAL_WEIGHT}]),
                );
            }
            RouteKind::Mirror {
                percentage,
                matches,
            } => {
                let mut merged = Vec::new();
                for um in user_matches(user) {
                    for rm in matches {
                        merged.push(mirror_match(um.clone(), rm));
                    }
                }
                out.insert("match".into(), Value::Array(merged));
                out.insert(
                    "route".into(),
                    user.get("route").cloned().unwrap_or(json!([])),
                );
                out.insert("mirror".into(), canary);
                out.insert(
                    "mirrorPercentage".into(),
                    json!({"value": f64::from(*percentage)}),
                );
            }
        }
        for (key, value) in std::mem::take(o) {
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    /// The pod-template hash `service`'s subset of the DestinationRule selects: None when
    /// the router has no DestinationRule or `service` is neither the canary nor the stable
    /// Service (the Service's selector alone decides), `Some(None)` when the subset has
    /// no hash label.
    pub fn subset_hash(&self, service: &str) -> Result<Option<Option<String>>, AdapterError> {
        let Some((index, dr)) = self.subset_of(service)? else {
            return Ok(None);
        };
        let subset = &subsets(&dr)[index];
        Ok(Some(
            subset
                .get("labels")
                .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
                .and_then(Value::as_str)
                .map(str::to_string),
        ))
    }

    /// Points `service`'s subset of the DestinationRule at revision `hash` (its
    /// `sluice.dev/pod-template-hash` label), the way `service`'s selector is: the
    /// subsets follow the Services, so the core's ordering of selectors and weights holds
    /// for them too. No write when it is in place, or without a DestinationRule.
    pub async fn set_subset_hash(
        &self,
        service: &str,
        hash: &str,
    ) -> Result<Option<Written>, AdapterError> {
        let Some((index, dr)) = self.subset_of(service)? else {
            return Ok(None);
        };
        let subset = &subsets(&dr)[index];
        let labels = subset.get("labels");
        if labels
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
            .and_then(Value::as_str)
            == Some(hash)
        {
            return Ok(None);
        }
        let at = format!("/spec/subsets/{index}");
        let mut ops =
            vec![json!({"op": "test", "path": format!("{at}/name"), "value": subset["name"]})];
        if labels.is_some_and(Value::is_object) {
            let key = POD_TEMPLATE_HASH_LABEL
                .replace('~', "~0")
                .replace('/', "~1");
            ops.push(json!({"op": "add", "path": format!("{at}/labels/{key}"), "value": hash}));
        } else {
            ops.push(json!({"op": "add", "path": format!("{at}/labels"), "value": {POD_TEMPLATE_HASH_LABEL: hash}}));
        }
        let name = dr.metadata.name.clone().unwrap_or_default();
        let stored = self
            .send_json_patch(&destination_rule_resource(), &name, ops)
            .await?;
        let out = written(Cache::DestinationRule, self.namespace(), &stored);
        *self.last_dr.lock().expect("not poisoned") = Some(Arc::new(stored));
        Ok(out)
    }

    /// The index of `service`'s subset in the DestinationRule, and the rule.
    fn subset_of(
        &self,
        service: &str,
    ) -> Result<Option<(usize, Arc<DynamicObject>)>, AdapterError> {
        let Some(config) = &self.config.destination_rule else {
            return Ok(None);
        };
        let subset_name = if service == self.ctx.canary_service {
            &config.canary_subset_name
        } else if service == self.ctx.stable_service {
            &config.stable_subset_name
        } else {
            return Ok(None);
        };
        let dr = self.get_dr()?.expect("configured");
        let index = subsets(&dr)
            .iter()
            .position(|s| s.get("name").and_then(Value::as_str) == Some(subset_name.as_str()))
            .ok_or_else(|| {
                AdapterError::Invalid(format!(
                    "{}: it has no subset named {subset_name}",
                    self.dr_reference(&config.name)
                ))
            })?;
        Ok(Some((index, dr)))
    }
}

impl TrafficRouter for IstioRouter {
    /// The canary weight of the first weighted user route; None when some weighted route
    /// (a user's, or sluice's own mirror route) does not give the canary and the stable
    /// 100 between them, or disagrees with the first: not as sluice sets it.
    fn current_weight(&self) -> Result<Option<i32>, AdapterError> {
        let vs = self.get_vs()?;
        let weighted = self.weighted(&vs)?;
        let all = http_routes(&vs);
        let own = |m: &[MatchedDest]| m.first().is_some_and(|d| self.is_own(&all[d.route]));
        let first = weighted
            .iter()
            .find(|m| !own(m))
            .ok_or_else(|| AdapterError::Invalid(self.no_route_message()))?;
        let reading = |m: &[MatchedDest]| -> Option<i64> {
            let sum = |b: Backend| -> i64 {
                m.iter()
                    .filter(|d| d.backend == b)
                    .map(MatchedDest::effective_weight)
                    .sum()
            };
            let (canary, stable) = (sum(Backend::Canary), sum(Backend::Stable));
            (canary + stable == TOTAL_WEIGHT).then_some(canary)
        };
        let Some(weight) = reading(first) else {
            return Ok(None);
        };
        if weighted.iter().any(|m| reading(m) != Some(weight)) {
            return Ok(None);
        }
        Ok(i32::try_from(weight).ok())
    }

    async fn set_weight(&self, weight: i32) -> Result<Option<Written>, AdapterError> {
        let weight = i64::from(weight);
        if !(0..=TOTAL_WEIGHT).contains(&weight) {
            return Err(AdapterError::Invalid(format!(
                "canary weight {weight} is not between 0 and 100"
            )));
        }
        let vs = self.get_vs()?;
        let weighted = self.weighted(&vs)?;
        if weighted.is_empty() {
            return Err(AdapterError::Invalid(self.no_route_message()));
        }
        let ops = self.weight_ops(&weighted, weight);
        if ops.is_empty() {
            return Ok(None);
        }
        self.patch_vs(ops).await
    }

    /// Managed routes are named `sluice-<rollout hash>-<setting fingerprint>-<user route
    /// hash>-<route>-<k>`: a route is in place when it has one HTTP route for each of the
    /// user's weighted routes (k), each made from that route as it is now.
    fn current_routes(&self) -> Result<BTreeMap<String, String>, AdapterError> {
        let vs = self.get_vs()?;
        let users = self.user_routes(&vs)?;
        let bases: Vec<String> = users.iter().map(base_hash).collect();
        let own = http_routes(&vs)
            .iter()
            .filter_map(route_name)
            .filter(|n| managed::is_own(&self.ctx.rollout, n));
        Ok(managed::in_place(&self.ctx.rollout, own, &bases))
    }

    /// Replaces sluice's managed routes with those of `routes`, put before the user's
    /// routes (Istio takes the first route that matches). One JSON patch: a `test` of the
    /// name of each route it removes, then the removals and insertions.
    async fn set_routes(&self, routes: &[RouteSetting]) -> Result<Option<Written>, AdapterError> {
        let vs = self.get_vs()?;
        let users = self.user_routes(&vs)?;
        if !routes.is_empty() && users.is_empty() {
            return Err(AdapterError::Invalid(self.no_route_message()));
        }
        let mut desired = Vec::new();
        for r in routes {
            for (k, user) in users.iter().enumerate() {
                desired.push(self.managed_route(r, user, k)?);
            }
        }
        let existing: Vec<(usize, &Value)> = http_routes(&vs)
            .iter()
            .enumerate()
            .filter(|(_, r)| self.is_own(r))
            .collect();
        let names = |rs: &mut dyn Iterator<Item = &Value>| -> Vec<String> {
            rs.map(|r| route_name(r).unwrap_or_default().to_string())
                .collect()
        };
        if names(&mut existing.iter().map(|(_, r)| *r)) == names(&mut desired.iter()) {
            return Ok(None);
        }
        let mut ops = Vec::new();
        for (index, route) in existing.iter().rev() {
            let at = format!("/spec/http/{index}");
            ops.push(
                json!({"op": "test", "path": format!("{at}/name"), "value": route_name(route)}),
            );
            ops.push(json!({"op": "remove", "path": at}));
        }
        for (i, route) in desired.into_iter().enumerate() {
            ops.push(json!({"op": "add", "path": format!("/spec/http/{i}"), "value": route}));
        }
        self.patch_vs(ops).await
    }

    fn missing_references(&self) -> Result<Vec<String>, AdapterError> {
        let mut missing = Vec::new();
        let vs = self.cached_vs();
        if vs.is_none() {
            missing.push(self.vs_reference());
        }
        if let Some(config) = &self.config.destination_rule
            && self.cached_dr().is_none()
        {
            missing.push(self.dr_reference(&config.name));
        }
        let Some(vs) = vs.filter(|_| missing.is_empty()) else {
            return Ok(missing);
        };
        for service in [&self.ctx.canary_service, &self.ctx.stable_service] {
            self.subset_of(service)?;
        }
        if self.user_routes(&vs)?.is_empty() {
            return Err(AdapterError::Invalid(self.no_route_message()));
        }
        Ok(Vec::new())
    }
}

/// `spec.http` of a VirtualService (empty when absent or not a list).
fn http_routes(vs: &DynamicObject) -> &[Value] {
    vs.data
        .get("spec")
        .and_then(|s| s.get("http"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `spec.subsets` of a DestinationRule (empty when absent or not a list).
fn subsets(dr: &DynamicObject) -> &[Value] {
    dr.data
        .get("spec")
        .and_then(|s| s.get("subsets"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn route_name(route: &Value) -> Option<&str> {
    route.get("name").and_then(Value::as_str)
}

/// A hash of what a managed route copies from a user route: everything but the weights,
/// which sluice itself changes at every step.
fn base_hash(user: &Value) -> String {
    let mut route = user.clone();
    if let Some(dests) = route.get_mut("route").and_then(Value::as_array_mut) {
        for d in dests {
            if let Some(o) = d.as_object_mut() {
                o.remove("weight");
            }
        }
    }
    value_hash(&route)
}

/// An Istio StringMatch: exact, prefix and regex (RE2) are all Istio's own.
fn string_match(m: &StringMatch) -> Value {
    match (&m.exact, &m.prefix, &m.regex) {
        (Some(v), _, _) => json!({"exact": v}),
        (_, Some(v), _) => json!({"prefix": v}),
        (_, _, Some(v)) => json!({"regex": v}),
        _ => json!({}),
    }
}

/// The user route's matches, or the one match-everything match a route without any has.
fn user_matches(user: &Value) -> Vec<Value> {
    match user.get("match").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m.clone(),
        _ => vec![json!({})],
    }
}

/// `m` with `headers` added to its header matches (a header already matched is narrowed
/// to the managed route's condition).
fn with_headers(mut m: Value, headers: &Map<String, Value>) -> Value {
    if headers.is_empty() {
        return m;
    }
    let mut all = m
        .get("headers")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    all.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    m["headers"] = Value::Object(all);
    m
}

/// A user match narrowed by a mirror route's match: its path and method replace the
/// user's, its headers are added.
fn mirror_match(mut m: Value, rm: &RouteMatch) -> Value {
    if let Some(path) = &rm.path {
        m["uri"] = string_match(path);
    }
    if let Some(method) = &rm.method {
        m["method"] = string_match(method);
    }
    let headers: Map<String, Value> = rm
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), string_match(value)))
        .collect();
    with_headers(m, &headers)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::Method;
    use kube::Client;
    use sluice_api::rollout::{HeaderRoutingMatch, IstioDestinationRule, IstioVirtualService};

    use super::*;
    use crate::adapters::cache::testing::caches;
    use crate::adapters::mock_api::{self, exchange};

    const VS_PATH: &str = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web";
    const DR_PATH: &str = "/apis/networking.istio.io/v1/namespaces/shop/destinationrules/web";

    fn router_with(client: Client, cached: Vec<Value>, config: IstioTrafficRouting) -> IstioRouter {
        IstioRouter::new(
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

    fn by_host(routes: &[&str]) -> IstioTrafficRouting {
        IstioTrafficRouting {
            virtual_service: IstioVirtualService {
                name: "web".into(),
                routes: routes.iter().map(|r| r.to_string()).collect(),
            },
            destination_rule: None,
        }
    }

    fn by_subset() -> IstioTrafficRouting {
        IstioTrafficRouting {
            destination_rule: Some(IstioDestinationRule {
                name: "web".into(),
                canary_subset_name: "canary".into(),
                stable_subset_name: "stable".into(),
            }),
            ..by_host(&[])
        }
    }

    fn router(client: Client, cached: Vec<Value>) -> IstioRouter {
        router_with(client, cached, by_host(&[]))
    }

    fn reading(cached: Vec<Value>) -> IstioRouter {
        router(mock_api::client().0, cached)
    }

    fn vs(http: Value) -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
            "spec": {"hosts": ["web"], "gateways": ["mesh"], "http": http}
        })
    }

    fn dest(host: &str, weight: Value) -> Value {
        let mut d = json!({"destination": {"host": host, "port": {"number": 80}}});
        if !weight.is_null() {
            d["weight"] = weight;
        }
        d
    }

    /// An admin route to the stable Service only, then a primary route splitting between
    /// the two Services (the canary by its FQDN) and an unrelated destination at 0.
    fn split(canary: Value, stable: Value) -> Value {
        vs(json!([
            {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
             "route": [dest("web-stable", Value::Null)]},
            {"name": "primary", "timeout": "5s", "route": [
                dest("web-stable", stable),
                dest("legacy", json!(0)),
                dest("web-canary.shop.svc.cluster.local", canary)
            ]}
        ]))
    }

    fn subset_dest(subset: &str, weight: i64) -> Value {
        json!({"destination": {"host": "web", "subset": subset}, "weight": weight})
    }

    fn dr(canary_labels: Value) -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "3"},
            "spec": {"host": "web.shop.svc.cluster.local", "subsets": [
                {"name": "stable", "labels": {"app": "web", "sluice.dev/pod-template-hash": "aaa"}},
                {"name": "canary", "labels": canary_labels}
            ]}
        })
    }

    #[tokio::test]
    async fn set_weight_patches_both_weights_behind_host_tests_summing_to_100() {
        let current = split(Value::Null, json!(100));
        let mut answer = current.clone();
        answer["metadata"]["resourceVersion"] = json!("8");
        let (result, seen) = exchange(vec![(200, answer)], |c| async move {
            router(c, vec![current]).set_weight(30).await
        })
        .await;
        assert_eq!(
            result.expect("set_weight"),
            Written::at(Cache::VirtualService, "shop", "web", Some("8"))
        );
        let patch = &seen[0];
        assert_eq!(patch.method, Method::PATCH);
        assert_eq!(patch.path, VS_PATH);
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/json-patch+json")
        );
        assert_eq!(
            patch.query,
            BTreeMap::from([("fieldManager".to_string(), "sluice".to_string())])
        );
        // The admin route (stable only) and the legacy destination are left alone.
        assert_eq!(
            patch.body,
            Some(json!([
                {"op": "test", "path": "/spec/http/1/route/0/destination/host", "value": "web-stable"},
                {"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 70},
                {"op": "test", "path": "/spec/http/1/route/2/destination/host", "value": "web-canary.shop.svc.cluster.local"},
                {"op": "add", "path": "/spec/http/1/route/2/weight", "value": 30}
            ]))
        );
        // In place: nothing sent.
        let (result, seen) = exchange(vec![], |c| async move {
            router(c, vec![split(json!(30), json!(70))])
                .set_weight(30)
                .await
        })
        .await;
        assert_eq!(result.expect("set_weight"), None);
        assert!(seen.is_empty());
    }

    #[tokio::test]
    async fn current_weight_is_known_only_when_the_two_weights_sum_to_100() {
        assert_eq!(
            reading(vec![split(json!(30), json!(70))])
                .current_weight()
                .unwrap(),
            Some(30)
        );
        assert_eq!(
            reading(vec![split(Value::Null, json!(100))])
                .current_weight()
                .unwrap(),
            Some(0)
        );
        assert_eq!(
            reading(vec![split(json!(50), json!(30))])
                .current_weight()
                .unwrap(),
            None
        );
        // Another destination with weight breaks the sum: refused rather than guessed.
        let mut other = split(json!(30), json!(60));
        other["spec"]["http"][1]["route"][1]["weight"] = json!(10);
        let result = reading(vec![other]).current_weight();
        assert!(
            matches!(&result, Err(AdapterError::Invalid(m)) if m.contains("spec.http[1].route[1] has weight 10")),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn named_routes_are_the_only_ones_weighted() {
        let body = vs(json!([
            {"name": "a", "route": [dest("web-stable", json!(100)), dest("web-canary", json!(0))]},
            {"name": "b", "route": [dest("web-stable", json!(100)), dest("web-canary", json!(0))]}
        ]));
        let (result, seen) = exchange(vec![(200, body.clone())], |c| {
            let body = body.clone();
            async move {
                router_with(c, vec![body], by_host(&["b"]))
                    .set_weight(10)
                    .await
            }
        })
        .await;
        result.expect("set_weight");
        let ops = seen[0].body.clone().unwrap();
        assert!(
            ops.as_array()
                .unwrap()
                .iter()
                .all(|op| op["path"].as_str().unwrap().starts_with("/spec/http/1/")),
            "route a untouched: {ops:#}"
        );
        // A named route that is missing, or does not route to both, is a clear error.
        for names in [&["c"][..], &["a", "c"]] {
            let result = router_with(mock_api::client().0, vec![body.clone()], by_host(names))
                .missing_references();
            assert!(
                matches!(&result, Err(AdapterError::Invalid(m)) if m.contains("no HTTP route named c")),
                "{result:?}"
            );
        }
        let mut one_sided = body.clone();
        one_sided["spec"]["http"][1]["route"]
            .as_array_mut()
            .unwrap()
            .pop();
        let result =
            router_with(mock_api::client().0, vec![one_sided], by_host(&["b"])).current_weight();
        assert!(
            matches!(&result, Err(AdapterError::Invalid(m)) if m.contains("HTTP route b has no destinations to both web-canary and web-stable")),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn with_a_destination_rule_the_subsets_are_weighted_and_follow_the_hashes() {
        let body = vs(
            json!([{"name": "primary", "route": [subset_dest("stable", 100), subset_dest("canary", 0)]}]),
        );
        let rule = dr(json!({"app": "web"}));
        let (result, seen) = exchange(vec![(200, body.clone())], |c| {
            let (body, rule) = (body.clone(), rule.clone());
            async move {
                router_with(c, vec![body, rule], by_subset())
                    .set_weight(20)
                    .await
            }
        })
        .await;
        result.expect("set_weight");
        assert_eq!(
            seen[0].body,
            Some(json!([
                {"op": "test", "path": "/spec/http/0/route/0/destination/host", "value": "web"},
                {"op": "test", "path": "/spec/http/0/route/0/destination/subset", "value": "stable"},
                {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 80},
                {"op": "test", "path": "/spec/http/0/route/1/destination/host", "value": "web"},
                {"op": "test", "path": "/spec/http/0/route/1/destination/subset", "value": "canary"},
                {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 20}
            ]))
        );

        let reader = router_with(
            mock_api::client().0,
            vec![body.clone(), rule.clone()],
            by_subset(),
        );
        assert_eq!(
            reader.subset_hash("web-stable").unwrap(),
            Some(Some("aaa".into()))
        );
        assert_eq!(reader.subset_hash("web-canary").unwrap(), Some(None));
        assert_eq!(reader.subset_hash("other").unwrap(), None);
        // Without a DestinationRule the Service alone selects.
        assert_eq!(
            reading(vec![split(json!(0), json!(100))])
                .subset_hash("web-canary")
                .unwrap(),
            None
        );

        // The canary subset gets the hash label beside the user's labels, behind a test
        // of the subset's name; a subset without labels gets the map.
        let mut answer = rule.clone();
        answer["metadata"]["resourceVersion"] = json!("4");
        let (result, seen) = exchange(vec![(200, answer)], |c| {
            let (body, rule) = (body.clone(), rule.clone());
            async move {
                router_with(c, vec![body, rule], by_subset())
                    .set_subset_hash("web-canary", "bbb")
                    .await
            }
        })
        .await;
        assert_eq!(
            result.expect("set_subset_hash"),
            Written::at(Cache::DestinationRule, "shop", "web", Some("4"))
        );
        assert_eq!(seen[0].path, DR_PATH);
        assert_eq!(
            seen[0].body,
            Some(json!([
                {"op": "test", "path": "/spec/subsets/1/name", "value": "canary"},
                {"op": "add", "path": "/spec/subsets/1/labels/sluice.dev~1pod-template-hash", "value": "bbb"}
            ]))
        );
        let mut bare = rule.clone();
        bare["spec"]["subsets"][1]
            .as_object_mut()
            .unwrap()
            .remove("labels");
        let (_, seen) = exchange(vec![(200, bare.clone())], |c| {
            let body = body.clone();
            async move {
                router_with(c, vec![body, bare], by_subset())
                    .set_subset_hash("web-canary", "bbb")
                    .await
            }
        })
        .await;
        assert_eq!(
            seen[0].body.as_ref().unwrap()[1],
            json!({"op": "add", "path": "/spec/subsets/1/labels", "value": {"sluice.dev/pod-template-hash": "bbb"}})
        );
        // In place: no write.
        let (result, seen) = exchange(vec![], |c| {
            let (body, rule) = (body.clone(), rule.clone());
            async move {
                router_with(c, vec![body, rule], by_subset())
                    .set_subset_hash("web-stable", "aaa")
                    .await
            }
        })
        .await;
        assert_eq!(result.unwrap(), None);
        assert!(seen.is_empty());
    }

    #[tokio::test]
    async fn missing_objects_and_subsets_are_reported() {
        let body = vs(
            json!([{"name": "primary", "route": [subset_dest("stable", 100), subset_dest("canary", 0)]}]),
        );
        let reader = |cached| router_with(mock_api::client().0, cached, by_subset());
        assert_eq!(
            reader(vec![]).missing_references().unwrap(),
            vec!["VirtualService shop/web", "DestinationRule shop/web"]
        );
        assert_eq!(
            reader(vec![body.clone()]).missing_references().unwrap(),
            vec!["DestinationRule shop/web"]
        );
        let mut no_canary = dr(json!({}));
        no_canary["spec"]["subsets"].as_array_mut().unwrap().pop();
        let result = reader(vec![body.clone(), no_canary]).missing_references();
        assert!(
            matches!(&result, Err(AdapterError::Invalid(m)) if m == "DestinationRule shop/web: it has no subset named canary"),
            "{result:?}"
        );
        assert_eq!(
            reader(vec![body.clone(), dr(json!({}))])
                .missing_references()
                .unwrap(),
            Vec::<String>::new()
        );
        // Destinations by the Services' hosts do not count when a DestinationRule is set.
        let result = reader(vec![split(json!(0), json!(100)), dr(json!({}))]).missing_references();
        assert!(
            matches!(&result, Err(AdapterError::Invalid(m)) if m.contains("no HTTP route with destinations to both subsets canary and stable")),
            "{result:?}"
        );
    }

    fn header_route() -> RouteSetting {
        RouteSetting {
            name: "testers".into(),
            kind: RouteKind::Header {
                matches: vec![HeaderRoutingMatch {
                    header_name: "X-Canary".into(),
                    header_value: StringMatch {
                        prefix: Some("be.ta".into()),
                        ..StringMatch::default()
                    },
                }],
            },
        }
    }

    #[tokio::test]
    async fn header_routes_go_first_to_the_canary_and_are_read_back_and_removed() {
        let current = split(json!(0), json!(100));
        let r = header_route();
        let (result, seen) = exchange(vec![(200, current.clone())], |c| {
            let (current, r) = (current.clone(), r.clone());
            async move { router(c, vec![current]).set_routes(&[r]).await }
        })
        .await;
        result.expect("set_routes");
        let body = seen[0].body.clone().expect("a patch");
        let ops = body.as_array().unwrap();
        assert_eq!(ops.len(), 1, "{ops:#?}");
        assert_eq!(ops[0]["op"], "add");
        assert_eq!(ops[0]["path"], "/spec/http/0");
        let route = &ops[0]["value"];
        assert!(
            route["name"].as_str().unwrap().ends_with("-testers-0"),
            "{route}"
        );
        assert_eq!(
            route["match"],
            json!([{"headers": {"x-canary": {"prefix": "be.ta"}}}]),
            "Istio's own prefix match, on the lowercase header name"
        );
        assert_eq!(
            route["route"],
            json!([{"destination": {"host": "web-canary.shop.svc.cluster.local", "port": {"number": 80}}, "weight": 100}])
        );
        assert_eq!(route["timeout"], "5s", "served as the user's route");

        let mut patched = current.clone();
        patched["spec"]["http"]
            .as_array_mut()
            .unwrap()
            .insert(0, route.clone());
        let reader = reading(vec![patched.clone()]);
        assert_eq!(
            reader.current_routes().unwrap(),
            BTreeMap::from([("testers".to_string(), r.fingerprint())])
        );
        assert_eq!(
            reader.current_weight().unwrap(),
            Some(0),
            "the header route carries no weight"
        );

        // The user changes the route the copy was made from: the route reads as absent.
        let mut changed = patched.clone();
        changed["spec"]["http"][2]["timeout"] = json!("9s");
        assert!(reading(vec![changed]).current_routes().unwrap().is_empty());

        // Removing: a test of the name, then the removal; the user's routes untouched.
        let (result, seen) = exchange(vec![(200, current.clone())], |c| {
            let patched = patched.clone();
            async move { router(c, vec![patched]).set_routes(&[]).await }
        })
        .await;
        result.expect("set_routes");
        assert_eq!(
            seen[0].body,
            Some(json!([
                {"op": "test", "path": "/spec/http/0/name", "value": route["name"]},
                {"op": "remove", "path": "/spec/http/0"}
            ]))
        );
    }

    #[tokio::test]
    async fn mirror_routes_copy_the_split_and_mirror_to_the_canary() {
        let mirror = RouteSetting {
            name: "shadow".into(),
            kind: RouteKind::Mirror {
                percentage: 25,
                matches: vec![RouteMatch {
                    method: Some(StringMatch {
                        exact: Some("GET".into()),
                        ..StringMatch::default()
                    }),
                    path: Some(StringMatch {
                        prefix: Some("/api".into()),
                        ..StringMatch::default()
                    }),
                    ..RouteMatch::default()
                }],
            },
        };
        let current = split(json!(20), json!(80));
        let user = current["spec"]["http"][1].clone();
        let built = reading(vec![current.clone()])
            .managed_route(&mirror, &user, 0)
            .unwrap();
        assert_eq!(
            built["match"],
            json!([{"method": {"exact": "GET"}, "uri": {"prefix": "/api"}}])
        );
        assert_eq!(built["route"], user["route"], "served as the user's route");
        assert_eq!(
            built["mirror"],
            json!({"host": "web-canary.shop.svc.cluster.local", "port": {"number": 80}})
        );
        assert_eq!(built["mirrorPercentage"], json!({"value": 25.0}));

        let mut with_route = current.clone();
        with_route["spec"]["http"]
            .as_array_mut()
            .unwrap()
            .insert(0, built.clone());
        let (result, seen) = exchange(vec![], |c| {
            let (with_route, mirror) = (with_route.clone(), mirror.clone());
            async move { router(c, vec![with_route]).set_routes(&[mirror]).await }
        })
        .await;
        assert_eq!(result.expect("set_routes"), None);
        assert!(seen.is_empty(), "in place: no request");
        // Its weights move with the user's; lagging behind, the weight is not in place.
        let (_, seen) = exchange(vec![(200, with_route.clone())], |c| {
            let with_route = with_route.clone();
            async move { router(c, vec![with_route]).set_weight(50).await }
        })
        .await;
        let paths: Vec<&str> = seen[0]
            .body
            .as_ref()
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|op| op["op"] != "test")
            .map(|op| op["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "/spec/http/0/route/0/weight",
                "/spec/http/0/route/2/weight",
                "/spec/http/2/route/0/weight",
                "/spec/http/2/route/2/weight"
            ]
        );
        with_route["spec"]["http"][0]["route"][0]["weight"] = json!(50);
        with_route["spec"]["http"][0]["route"][2]["weight"] = json!(50);
        assert_eq!(reading(vec![with_route]).current_weight().unwrap(), None);
    }

    #[tokio::test]
    async fn a_conflicting_patch_is_returned_for_the_caller_to_retry() {
        let conflict = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "the server rejected our request due to an error in our request",
            "reason": "Invalid", "code": 422
        });
        let (result, _) = exchange(vec![(422, conflict)], |c| async move {
            router(c, vec![split(json!(0), json!(100))])
                .set_weight(30)
                .await
        })
        .await;
        match result {
            Err(AdapterError::Kube(kube::Error::Api(s))) => assert_eq!(s.code, 422),
            other => panic!("expected the API's 422, got {other:?}"),
        }
    }
}
