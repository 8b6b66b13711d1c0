//! Gateway API routing: sluice sets the weights of the canary and stable `backendRefs` of
//! the user's HTTPRoute and touches nothing else in it.
//!
//! The route is read and written as a [`DynamicObject`] rather than through the typed
//! `gateway-api` crate, so sluice does not depend on which Gateway API release the cluster
//! has installed: it only needs `spec.rules[*].backendRefs[*].{name,weight}`, which every
//! `v1` release has.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use sluice_api::rollout::{GatewayApiTrafficRouting, HeaderRoutingMatch, RouteMatch, StringMatch};

use super::{RouterContext, TrafficRouter, managed};
use crate::adapters::workload::written;
use crate::adapters::written::{Cache, Written};
use crate::adapters::{AdapterError, FIELD_MANAGER};
use crate::core::hash::value_hash;
use crate::core::routes::{RouteKind, RouteSetting, as_regex};

/// Most rules an HTTPRoute may have (the CRD's `maxItems`).
const MAX_RULES: usize = 16;

/// The weight of a backendRef that does not set one, per the Gateway API spec.
const DEFAULT_BACKEND_WEIGHT: u64 = 1;

/// Routes traffic by weighting the canary and stable Services' `backendRefs` in an
/// HTTPRoute (`gateway.networking.k8s.io/v1`).
///
/// Only rules that reference both Services are changed: a rule that routes to the stable
/// Service alone (say, `/admin`) must keep doing so, and giving its only backend weight 0
/// at 100% canary would make the gateway answer 500 there.
///
/// A backendRef counts as one of the Services when its `name` matches, its `kind` and
/// `group` are unset or `Service` in the core group, and its namespace (unset means the
/// route's) is the Rollout's.
///
/// Why a JSON Patch and not server-side apply: in the HTTPRoute CRD `spec.rules` is an
/// atomic list, so applying even one weight would make sluice the owner of the whole
/// list, and a later apply by the user's own tooling would either conflict with sluice or
/// take the weights back. The JSON Patch replaces just the weights, and a `test` of each
/// backendRef's name before its weight makes the patch fail (422) if the route changed
/// since it was read, instead of setting the weight of whatever now sits at that index;
/// the caller retries with a fresh read.
#[derive(Clone)]
pub struct GatewayApiRouter {
    ctx: RouterContext,
    config: GatewayApiTrafficRouting,
    /// The route as this router's last write returned it: one reconcile may write the
    /// weights and then the managed routes, and the second write must start from the
    /// first's result, not from a cache that has not seen it yet.
    last: Arc<Mutex<Option<Arc<DynamicObject>>>>,
}

/// Which of the Rollout's Services a backendRef points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Canary,
    Stable,
}

/// A backendRef to the canary or stable Service, at `spec.rules[rule].backendRefs[index]`.
#[derive(Debug, Clone)]
struct MatchedRef {
    rule: usize,
    index: usize,
    backend: Backend,
    /// The weight the ref sets, `None` when unset (the Gateway API default of 1 applies).
    weight: Option<u64>,
}

impl MatchedRef {
    fn effective_weight(&self) -> u64 {
        self.weight.unwrap_or(DEFAULT_BACKEND_WEIGHT)
    }
}

/// The `gateway.networking.k8s.io/v1` HTTPRoute resource, for dynamic reads and watches.
pub fn http_route_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    ApiResource::from_gvk_with_plural(&gvk, "httproutes")
}

impl GatewayApiRouter {
    /// A router for the Rollout described by `ctx`, using the Rollout's `gatewayAPI`
    /// settings.
    pub fn new(ctx: RouterContext, config: GatewayApiTrafficRouting) -> Self {
        Self {
            ctx,
            config,
            last: Arc::default(),
        }
    }

    fn route_namespace(&self) -> &str {
        match self.config.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => &self.ctx.namespace,
        }
    }

    fn routes(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.ctx.client.clone(),
            self.route_namespace(),
            &http_route_resource(),
        )
    }

    fn route_reference(&self) -> String {
        format!(
            "HTTPRoute {}/{}",
            self.route_namespace(),
            self.config.http_route
        )
    }

    fn no_rule_message(&self) -> String {
        format!(
            "HTTPRoute {} has no rule with backendRefs to both {} and {}",
            self.config.http_route, self.ctx.canary_service, self.ctx.stable_service
        )
    }

    fn invalid(&self, what: impl std::fmt::Display) -> AdapterError {
        AdapterError::Invalid(format!("{}: {what}", self.route_reference()))
    }

    fn cached_route(&self) -> Option<Arc<DynamicObject>> {
        self.ctx
            .caches
            .http_route(self.route_namespace(), &self.config.http_route)
    }

    fn get_route(&self) -> Result<Arc<DynamicObject>, AdapterError> {
        let last = self.last.lock().expect("not poisoned").clone();
        last.or_else(|| self.cached_route())
            .ok_or_else(|| AdapterError::NotFound {
                what: self.route_reference(),
            })
    }

    /// Sends `ops` as one JSON patch of the HTTPRoute under sluice's field manager, and
    /// remembers the version it left. Deserializing into the `Patch::Json` payload type
    /// (json_patch's `Patch`) avoids a direct dependency on the json-patch crate just to
    /// name it.
    async fn send_json_patch(&self, ops: Vec<Value>) -> Result<Option<Written>, AdapterError> {
        let patch = Patch::<()>::Json(
            serde_json::from_value(Value::Array(ops))
                .map_err(|e| AdapterError::Invalid(format!("building the JSON patch: {e}")))?,
        );
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let stored = self
            .routes()
            .patch(&self.config.http_route, &pp, &patch)
            .await?;
        Ok(self.remember(stored))
    }

    fn remember(&self, stored: DynamicObject) -> Option<Written> {
        let out = written(Cache::HttpRoute, self.route_namespace(), &stored);
        *self.last.lock().expect("not poisoned") = Some(Arc::new(stored));
        out
    }

    /// Which Service, if any, a backendRef object points at.
    fn backend_of(&self, backend_ref: &serde_json::Map<String, Value>) -> Option<Backend> {
        let str_field = |key: &str| backend_ref.get(key).and_then(Value::as_str);
        let is_service = matches!(str_field("kind"), None | Some("Service"))
            && matches!(str_field("group"), None | Some(""));
        let namespace = str_field("namespace").unwrap_or(self.route_namespace());
        if !is_service || namespace != self.ctx.namespace {
            return None;
        }
        match str_field("name")? {
            n if n == self.ctx.canary_service => Some(Backend::Canary),
            n if n == self.ctx.stable_service => Some(Backend::Stable),
            _ => None,
        }
    }

    /// The canary and stable backendRefs of every rule that has both, rule by rule in
    /// route order. A route without `spec` or `rules` simply has no such rule; fields of
    /// the wrong JSON type are reported as invalid rather than skipped, since skipping
    /// could hide the very backendRef the weight belongs on.
    fn rules_with_both(&self, route: &DynamicObject) -> Result<Vec<Vec<MatchedRef>>, AdapterError> {
        let rules = match route.data.get("spec").and_then(|s| s.get("rules")) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(rules)) => rules,
            Some(_) => return Err(self.invalid("spec.rules is not a list")),
        };
        let mut found = Vec::new();
        for (rule_index, rule) in rules.iter().enumerate() {
            // Another Rollout's managed rules are its own business.
            if rule_name(rule).is_some_and(|n| managed::is_another_rollouts(&self.ctx.rollout, n)) {
                continue;
            }
            let refs = match rule.get("backendRefs") {
                None | Some(Value::Null) => continue,
                Some(Value::Array(refs)) => refs,
                Some(_) => {
                    return Err(self.invalid(format!(
                        "spec.rules[{rule_index}].backendRefs is not a list"
                    )));
                }
            };
            let mut matched = Vec::new();
            for (index, backend_ref) in refs.iter().enumerate() {
                let Some(object) = backend_ref.as_object() else {
                    return Err(self.invalid(format!(
                        "spec.rules[{rule_index}].backendRefs[{index}] is not an object"
                    )));
                };
                let Some(backend) = self.backend_of(object) else {
                    continue;
                };
                let weight = match object.get("weight") {
                    None | Some(Value::Null) => None,
                    Some(w) => Some(w.as_u64().ok_or_else(|| {
                        self.invalid(format!(
                            "spec.rules[{rule_index}].backendRefs[{index}].weight is {w}, not a non-negative integer"
                        ))
                    })?),
                };
                matched.push(MatchedRef {
                    rule: rule_index,
                    index,
                    backend,
                    weight,
                });
            }
            let has = |b: Backend| matched.iter().any(|m| m.backend == b);
            if has(Backend::Canary) && has(Backend::Stable) {
                found.push(matched);
            }
        }
        Ok(found)
    }

    /// The JSON Patch operations that give every canary ref `weight` and every stable ref
    /// `100 - weight`; empty when the route already has those weights.
    fn weight_ops(&self, rules: &[Vec<MatchedRef>], weight: u64) -> Vec<Value> {
        let mut ops = Vec::new();
        for matched in rules.iter().flatten() {
            let (service, desired) = match matched.backend {
                Backend::Canary => (&self.ctx.canary_service, weight),
                Backend::Stable => (&self.ctx.stable_service, 100 - weight),
            };
            // An unset weight already means 1, so writing 1 there would change nothing.
            if matched.effective_weight() == desired {
                continue;
            }
            let at = format!("/spec/rules/{}/backendRefs/{}", matched.rule, matched.index);
            ops.push(json!({"op": "test", "path": format!("{at}/name"), "value": service}));
            let op = if matched.weight.is_some() {
                "replace"
            } else {
                "add"
            };
            ops.push(json!({"op": op, "path": format!("{at}/weight"), "value": desired}));
        }
        ops
    }
}

/// `spec.rules` of a route (empty when absent or not a list).
fn spec_rules(route: &DynamicObject) -> &[Value] {
    route
        .data
        .get("spec")
        .and_then(|s| s.get("rules"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn rule_name(rule: &Value) -> Option<&str> {
    rule.get("name").and_then(Value::as_str)
}

/// `round(100 * canary / (canary + stable))` of one rule's refs (an unset weight counts
/// as 1); 0 when both weights are 0, since then no request reaches the canary.
fn percent(refs: &[MatchedRef]) -> i32 {
    let sum = |b: Backend| -> u128 {
        refs.iter()
            .filter(|m| m.backend == b)
            .map(|m| u128::from(m.effective_weight()))
            .sum()
    };
    let (canary, stable) = (sum(Backend::Canary), sum(Backend::Stable));
    let total = canary + stable;
    if total == 0 {
        return 0;
    }
    // Integer round-half-up of 100 * canary / total; u128 cannot overflow with weights
    // that fit in u64, and the result is at most 100.
    i32::try_from((200 * canary + total) / (2 * total)).unwrap_or(100)
}

/// A hash of what a managed rule copies from a user rule: everything but the weights,
/// which sluice itself changes at every step.
fn base_hash(user: &Value) -> String {
    let mut rule = user.clone();
    if let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) {
        for r in refs {
            if let Some(o) = r.as_object_mut() {
                o.remove("weight");
            }
        }
    }
    value_hash(&rule)
}

/// An HTTPHeaderMatch: exact stays exact; a prefix or regex becomes a
/// `RegularExpression` (Gateway API has no prefix match for headers).
fn header_match(name: &str, value: &StringMatch) -> Value {
    match &value.exact {
        Some(exact) => json!({"name": name, "type": "Exact", "value": exact}),
        None => json!({"name": name, "type": "RegularExpression", "value": as_regex(value)}),
    }
}

/// The user rule's matches, or the one match-everything match a rule without any has.
fn user_matches(user: &Value) -> Vec<Value> {
    match user.get("matches").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m.clone(),
        _ => vec![json!({})],
    }
}

/// `m` with `headers` appended to its header matches.
fn with_headers(mut m: Value, headers: &[Value]) -> Value {
    if headers.is_empty() {
        return m;
    }
    let mut all = m
        .get("headers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    all.extend(headers.iter().cloned());
    m["headers"] = Value::Array(all);
    m
}

/// Copies the rule-level fields a managed rule keeps from the user's rule.
fn copy_rule_fields(user: &Value, rule: &mut Value) {
    for key in ["filters", "timeouts"] {
        if let Some(v) = user.get(key) {
            rule[key] = v.clone();
        }
    }
}

impl GatewayApiRouter {
    fn is_own(&self, rule: &Value) -> bool {
        rule_name(rule).is_some_and(|n| managed::is_own(&self.ctx.rollout, n))
    }

    /// The user's rules that route to both Services, in route order: what managed rules
    /// are made from.
    fn user_rules(&self, route: &DynamicObject) -> Result<Vec<Value>, AdapterError> {
        let all = spec_rules(route);
        Ok(self
            .rules_with_both(route)?
            .iter()
            .filter_map(|m| m.first().map(|r| &all[r.rule]))
            .filter(|r| !self.is_own(r))
            .cloned()
            .collect())
    }

    /// The first backendRef of `user` to the canary Service, without weight or filters:
    /// where a header route sends, and where a mirror copies to.
    fn canary_ref(&self, user: &Value) -> Result<Value, AdapterError> {
        let refs = user.get("backendRefs").and_then(Value::as_array);
        let found = refs.into_iter().flatten().find(|r| {
            r.as_object()
                .and_then(|o| self.backend_of(o))
                .is_some_and(|b| b == Backend::Canary)
        });
        let mut r = found
            .cloned()
            .ok_or_else(|| AdapterError::Invalid(self.no_rule_message()))?;
        if let Some(o) = r.as_object_mut() {
            o.remove("weight");
            o.remove("filters");
        }
        Ok(r)
    }

    /// The managed rule of route `r` made from the user's `k`th rule: the same matches
    /// (so it is at least as specific), narrowed by the route's conditions.
    fn managed_rule(
        &self,
        r: &RouteSetting,
        user: &Value,
        k: usize,
    ) -> Result<Value, AdapterError> {
        let name = managed::name(&self.ctx.rollout, r, &base_hash(user), k);
        let canary = self.canary_ref(user)?;
        let mut rule = match &r.kind {
            RouteKind::Header { matches } => {
                let headers: Vec<Value> = matches
                    .iter()
                    .map(|m: &HeaderRoutingMatch| header_match(&m.header_name, &m.header_value))
                    .collect();
                let matches: Vec<Value> = user_matches(user)
                    .into_iter()
                    .map(|m| with_headers(m, &headers))
                    .collect();
                let mut rule = json!({"name": name, "matches": matches, "backendRefs": [canary]});
                copy_rule_fields(user, &mut rule);
                rule
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
                let mut rule = json!({
                    "name": name,
                    "matches": merged,
                    "backendRefs": user.get("backendRefs").cloned().unwrap_or(json!([])),
                });
                copy_rule_fields(user, &mut rule);
                let mirror = json!({
                    "type": "RequestMirror",
                    "requestMirror": {"backendRef": canary, "percent": percentage},
                });
                let mut filters = rule
                    .get("filters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                filters.push(mirror);
                rule["filters"] = Value::Array(filters);
                rule
            }
        };
        if let Some(o) = rule.as_object_mut()
            && o.get("filters")
                .is_some_and(|f| f.as_array().is_some_and(Vec::is_empty))
        {
            o.remove("filters");
        }
        Ok(rule)
    }
}

/// A user match narrowed by a mirror route's match: its path and method replace the
/// user's, its headers are added.
fn mirror_match(mut m: Value, rm: &RouteMatch) -> Value {
    if let Some(path) = &rm.path {
        m["path"] = match (&path.exact, &path.prefix, &path.regex) {
            (Some(v), _, _) => json!({"type": "Exact", "value": v}),
            (_, Some(v), _) => json!({"type": "PathPrefix", "value": v}),
            (_, _, Some(v)) => json!({"type": "RegularExpression", "value": v}),
            _ => m["path"].clone(),
        };
    }
    if let Some(method) = rm.method.as_ref().and_then(|s| s.exact.as_ref()) {
        m["method"] = json!(method);
    }
    let headers: Vec<Value> = rm
        .headers
        .iter()
        .map(|(name, value)| header_match(name, value))
        .collect();
    with_headers(m, &headers)
}

impl TrafficRouter for GatewayApiRouter {
    /// `round(100 * canary / (canary + stable))` over the first rule that references both
    /// Services (an unset weight counts as 1); 0 when both weights are 0, since then no
    /// request reaches the canary.
    ///
    /// sluice's own mirror rules carry the weights too: one that differs from the reading
    /// makes the weight read as not in place, so setting it again fixes it.
    fn current_weight(&self) -> Result<Option<i32>, AdapterError> {
        let route = self.get_route()?;
        let rules = self.rules_with_both(&route)?;
        let all = spec_rules(&route);
        let own = |m: &[MatchedRef]| m.first().is_some_and(|r| self.is_own(&all[r.rule]));
        let first = rules
            .iter()
            .find(|m| !own(m))
            .ok_or_else(|| AdapterError::Invalid(self.no_rule_message()))?;
        let reading = percent(first);
        if rules
            .iter()
            .filter(|m| own(m))
            .any(|m| percent(m) != reading)
        {
            return Ok(None);
        }
        Ok(Some(reading))
    }

    /// Managed rules are named `sluice-<rollout hash>-<setting fingerprint>-<user rule
    /// hash>-<route>-<k>`: a route is in place when it has one rule for each of the user's
    /// rules (k), each made from the rule as it is now. A user rule changed since (a new
    /// path) makes its copies stale, and the route reads as absent so it is rebuilt.
    fn current_routes(&self) -> Result<BTreeMap<String, String>, AdapterError> {
        let route = self.get_route()?;
        let users = self.user_rules(&route)?;
        let bases: Vec<String> = users.iter().map(base_hash).collect();
        let own = spec_rules(&route)
            .iter()
            .filter_map(rule_name)
            .filter(|n| managed::is_own(&self.ctx.rollout, n));
        Ok(managed::in_place(&self.ctx.rollout, own, &bases))
    }

    /// Replaces sluice's managed rules with those of `routes`, put before the user's
    /// rules so that where a request matches both equally, sluice's wins (Gateway API
    /// breaks ties by rule order). One JSON Patch: `test`s of the names of the rules it
    /// removes, then the removals and insertions; the user's rules are not written.
    async fn set_routes(&self, routes: &[RouteSetting]) -> Result<Option<Written>, AdapterError> {
        let route = self.get_route()?;
        let users = self.user_rules(&route)?;
        if !routes.is_empty() && users.is_empty() {
            return Err(AdapterError::Invalid(self.no_rule_message()));
        }
        let mut desired = Vec::new();
        for r in routes {
            for (k, user) in users.iter().enumerate() {
                desired.push(self.managed_rule(r, user, k)?);
            }
        }
        let all = spec_rules(&route);
        let existing: Vec<(usize, &Value)> = all
            .iter()
            .enumerate()
            .filter(|(_, r)| self.is_own(r))
            .collect();
        // Names carry the whole setting and the rule it was made from, and comparing them
        // is immune to the API server's defaulting of what sluice sent.
        let names = |rules: &mut dyn Iterator<Item = &Value>| -> Vec<String> {
            rules
                .map(|r| rule_name(r).unwrap_or_default().to_string())
                .collect()
        };
        if names(&mut existing.iter().map(|(_, r)| *r)) == names(&mut desired.iter()) {
            return Ok(None);
        }
        let total = all.len() - existing.len() + desired.len();
        if total > MAX_RULES {
            return Err(self.invalid(format!(
                "the managed routes need {} rules beside the route's {}, more than the \
                 {MAX_RULES} an HTTPRoute may have",
                desired.len(),
                all.len() - existing.len()
            )));
        }
        let mut ops = Vec::new();
        for (index, rule) in existing.iter().rev() {
            let at = format!("/spec/rules/{index}");
            ops.push(json!({"op": "test", "path": format!("{at}/name"), "value": rule_name(rule)}));
            ops.push(json!({"op": "remove", "path": at}));
        }
        for (i, rule) in desired.into_iter().enumerate() {
            ops.push(json!({"op": "add", "path": format!("/spec/rules/{i}"), "value": rule}));
        }
        self.send_json_patch(ops).await
    }

    async fn set_weight(&self, weight: i32) -> Result<Option<Written>, AdapterError> {
        let weight = u64::try_from(weight)
            .ok()
            .filter(|w| *w <= 100)
            .ok_or_else(|| {
                AdapterError::Invalid(format!("canary weight {weight} is not between 0 and 100"))
            })?;
        let route = self.get_route()?;
        let rules = self.rules_with_both(&route)?;
        if rules.is_empty() {
            return Err(AdapterError::Invalid(self.no_rule_message()));
        }
        let ops = self.weight_ops(&rules, weight);
        if ops.is_empty() {
            // Already in place: no write, so a steady state causes no API traffic and no
            // new resourceVersion for the user's tooling to notice.
            return Ok(None);
        }
        self.send_json_patch(ops).await
    }

    fn missing_references(&self) -> Result<Vec<String>, AdapterError> {
        let Some(route) = self.cached_route() else {
            return Ok(vec![self.route_reference()]);
        };
        if self.user_rules(&route)?.is_empty() {
            // It is there, so "not found" would send the user looking for the wrong thing.
            return Err(AdapterError::Invalid(self.no_rule_message()));
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::Method;
    use kube::Client;

    use super::*;
    use crate::adapters::cache::testing::caches;
    use crate::adapters::mock_api::{self, exchange};

    const ROUTE_PATH: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web";

    /// A router whose cache holds `cached` (HTTPRoute manifests).
    fn router(client: Client, cached: Vec<Value>) -> GatewayApiRouter {
        GatewayApiRouter::new(
            RouterContext {
                client,
                caches: caches(cached),
                namespace: "shop".into(),
                rollout: "web".into(),
                rollout_uid: "uid-1".into(),
                canary_service: "web-canary".into(),
                stable_service: "web-stable".into(),
            },
            GatewayApiTrafficRouting {
                http_route: "web".into(),
                namespace: None,
            },
        )
    }

    /// A router over a cache of `cached`, for reads (which send no request).
    fn reading(cached: Vec<Value>) -> GatewayApiRouter {
        router(mock_api::client().0, cached)
    }

    fn route(rules: Value) -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "7"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": rules}
        })
    }

    /// A route whose first rule sends only to the stable Service and whose second splits
    /// between the two Services (plus a third, unrelated backend).
    fn split_route(canary_weight: Value, stable_weight: Value) -> Value {
        let with_weight = |name: &str, weight: Value| {
            let mut r = json!({"name": name, "port": 80});
            if !weight.is_null() {
                r["weight"] = weight;
            }
            r
        };
        route(json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
             "backendRefs": [{"name": "web-stable", "port": 80}]},
            {"backendRefs": [
                with_weight("web-stable", stable_weight),
                {"name": "mirror", "port": 80, "weight": 0},
                with_weight("web-canary", canary_weight)
            ]}
        ]))
    }

    #[tokio::test]
    async fn set_weight_patches_both_weights_behind_name_tests() {
        let current = split_route(json!(100), Value::Null);
        let mut answer = current.clone();
        answer["metadata"]["resourceVersion"] = json!("8");
        let (result, seen) = exchange(vec![(200, answer)], |c| async move {
            router(c, vec![current]).set_weight(30).await
        })
        .await;
        assert_eq!(
            result.expect("set_weight"),
            Written::at(Cache::HttpRoute, "shop", "web", Some("8")),
            "the caches must show the patched version before the next plan"
        );

        // The route was read from the cache: the patch is the only request.
        let patch = &seen[0];
        assert_eq!(patch.method, Method::PATCH);
        assert_eq!(patch.path, ROUTE_PATH);
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/json-patch+json")
        );
        assert_eq!(
            patch.query,
            BTreeMap::from([("fieldManager".to_string(), "sluice".to_string())])
        );
        // Rule 0 (stable only) and the unrelated `mirror` ref are left alone; the stable
        // ref had no weight, so it is added rather than replaced.
        assert_eq!(
            patch.body,
            Some(json!([
                {"op": "test", "path": "/spec/rules/1/backendRefs/0/name", "value": "web-stable"},
                {"op": "add", "path": "/spec/rules/1/backendRefs/0/weight", "value": 70},
                {"op": "test", "path": "/spec/rules/1/backendRefs/2/name", "value": "web-canary"},
                {"op": "replace", "path": "/spec/rules/1/backendRefs/2/weight", "value": 30}
            ]))
        );
    }

    #[tokio::test]
    async fn set_weight_changes_only_the_weights_that_differ() {
        let current = split_route(json!(10), json!(70));
        let (result, seen) = exchange(vec![(200, current.clone())], |c| async move {
            router(c, vec![current]).set_weight(30).await
        })
        .await;
        result.expect("set_weight");
        assert_eq!(
            seen[0].body,
            Some(json!([
                {"op": "test", "path": "/spec/rules/1/backendRefs/2/name", "value": "web-canary"},
                {"op": "replace", "path": "/spec/rules/1/backendRefs/2/weight", "value": 30}
            ]))
        );
    }

    #[tokio::test]
    async fn set_weight_sends_no_patch_when_the_weights_match() {
        let (result, _) = exchange(vec![], |c| async move {
            router(c, vec![split_route(json!(30), json!(70))])
                .set_weight(30)
                .await
        })
        .await;
        assert_eq!(result.expect("set_weight"), None, "nothing written");
    }

    #[tokio::test]
    async fn an_unset_weight_already_counts_as_one() {
        let (result, _) = exchange(vec![], |c| async move {
            router(c, vec![split_route(Value::Null, json!(99))])
                .set_weight(1)
                .await
        })
        .await;
        assert_eq!(result.expect("set_weight"), None, "no PATCH expected");
    }

    #[tokio::test]
    async fn a_conflicting_patch_is_returned_for_the_caller_to_retry() {
        let current = split_route(json!(0), json!(100));
        let conflict = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "the server rejected our request due to an error in our request",
            "reason": "Invalid", "code": 422
        });
        let (result, _) = exchange(vec![(422, conflict)], |c| async move {
            router(c, vec![current]).set_weight(30).await
        })
        .await;
        match result {
            Err(AdapterError::Kube(kube::Error::Api(s))) => assert_eq!(s.code, 422),
            other => panic!("expected the API's 422, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn current_weight_rounds_and_counts_unset_weights_as_one() {
        // (canary, stable) → expected percentage.
        let cases = [
            (Value::Null, Value::Null, 50),
            (json!(1), json!(2), 33),
            (json!(2), json!(1), 67),
            (json!(1), json!(7), 13), // 12.5 rounds half up
            (Value::Null, json!(0), 100),
            (json!(0), json!(0), 0),
            (json!(30), json!(70), 30),
        ];
        for (canary, stable, expected) in cases {
            let body = split_route(canary.clone(), stable.clone());
            assert_eq!(
                reading(vec![body])
                    .current_weight()
                    .expect("current_weight"),
                Some(expected),
                "canary {canary}, stable {stable}"
            );
        }
    }

    #[tokio::test]
    async fn odd_routes_are_invalid_not_panics() {
        let non_numeric = split_route(json!("thirty"), json!(70));
        let result = reading(vec![non_numeric]).current_weight();
        assert!(
            matches!(result, Err(AdapterError::Invalid(_))),
            "{result:?}"
        );

        let rules_not_a_list = route(json!({"backendRefs": []}));
        let (result, _) = exchange(vec![], |c| async move {
            router(c, vec![rules_not_a_list]).set_weight(30).await
        })
        .await;
        assert!(
            matches!(result, Err(AdapterError::Invalid(_))),
            "{result:?}"
        );

        let mut no_spec = route(json!([]));
        no_spec.as_object_mut().expect("object").remove("spec");
        let (result, _) = exchange(vec![], |c| async move {
            router(c, vec![no_spec]).set_weight(30).await
        })
        .await;
        match result {
            Err(AdapterError::Invalid(m)) => assert_eq!(
                m,
                "HTTPRoute web has no rule with backendRefs to both web-canary and web-stable"
            ),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_route_is_reported() {
        // A route of that name in another namespace is not the one.
        let mut elsewhere = split_route(Value::Null, Value::Null);
        elsewhere["metadata"]["namespace"] = json!("edge");
        assert_eq!(
            reading(vec![elsewhere.clone()])
                .missing_references()
                .expect("missing_references"),
            vec!["HTTPRoute shop/web"]
        );

        let (result, _) = exchange(vec![], |c| async move {
            router(c, vec![elsewhere]).set_weight(30).await
        })
        .await;
        assert!(
            matches!(&result, Err(AdapterError::NotFound { what }) if what == "HTTPRoute shop/web"),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn route_namespace_comes_from_the_config_when_set() {
        let (client, _handle) = mock_api::client();
        let mut r = router(client, vec![]);
        r.config.namespace = Some("edge".into());
        // The Services live in the Rollout's namespace, so refs from another namespace's
        // route must name it; a ref without a namespace means the route's own.
        let object = |v: Value| v.as_object().cloned().expect("object");
        assert_eq!(
            r.backend_of(&object(json!({"name": "web-canary", "namespace": "shop"}))),
            Some(Backend::Canary)
        );
        assert_eq!(r.backend_of(&object(json!({"name": "web-canary"}))), None);
        assert_eq!(r.route_reference(), "HTTPRoute edge/web");
    }

    #[tokio::test]
    async fn refs_missing_from_every_rule_are_reported() {
        // Each rule has one of the Services, none has both; a ServiceImport of the same
        // name is not the Service.
        let body = route(json!([
            {"backendRefs": [{"name": "web-stable", "port": 80}]},
            {"backendRefs": [
                {"name": "web-canary", "port": 80},
                {"name": "web-stable", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"}
            ]}
        ]));
        let result = reading(vec![body]).missing_references();
        assert!(
            matches!(&result, Err(AdapterError::Invalid(m)) if m == "HTTPRoute web has no rule with backendRefs to both web-canary and web-stable"),
            "a route that exists is unusable, not missing: {result:?}"
        );
        assert_eq!(
            reading(vec![split_route(Value::Null, Value::Null)])
                .missing_references()
                .expect("missing_references"),
            Vec::<String>::new()
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
    async fn set_routes_inserts_sluices_rules_first_and_reads_them_back() {
        let current = split_route(json!(0), json!(100));
        let r = header_route();
        let (result, seen) = exchange(vec![(200, current.clone())], |c| {
            let current = current.clone();
            let r = r.clone();
            async move { router(c, vec![current]).set_routes(&[r]).await }
        })
        .await;
        result.expect("set_routes");
        let body = seen[0].body.clone().expect("a patch");
        let ops = body.as_array().unwrap();
        assert_eq!(ops.len(), 1, "nothing to remove, one rule to add: {ops:#?}");
        assert_eq!(ops[0]["op"], "add");
        assert_eq!(ops[0]["path"], "/spec/rules/0");
        let rule = &ops[0]["value"];
        assert_eq!(
            rule["matches"],
            json!([{"headers": [{"name": "X-Canary", "type": "RegularExpression", "value": "^be\\.ta.*"}]}]),
            "the user rule's (empty) match, narrowed by the header"
        );
        assert_eq!(
            rule["backendRefs"],
            json!([{"name": "web-canary", "port": 80}])
        );

        // Read back: the route as patched (the rule in front) is in place, with the
        // setting's fingerprint; the user's first rule is still the weight reading.
        let mut patched = split_route(json!(0), json!(100));
        patched["spec"]["rules"]
            .as_array_mut()
            .unwrap()
            .insert(0, rule.clone());
        let reader = reading(vec![patched.clone()]);
        assert_eq!(
            reader.current_routes().unwrap(),
            BTreeMap::from([("testers".to_string(), r.fingerprint())])
        );
        assert_eq!(reader.current_weight().unwrap(), Some(0));

        // The user changes the rule the copy was made from: the route reads as absent.
        patched["spec"]["rules"][2]["matches"] =
            json!([{"path": {"type": "PathPrefix", "value": "/v2"}}]);
        assert!(
            reading(vec![patched.clone()])
                .current_routes()
                .unwrap()
                .is_empty()
        );

        // Removing: a `test` of the name, then the removal; the user's rules untouched.
        let mut in_place = split_route(json!(0), json!(100));
        in_place["spec"]["rules"]
            .as_array_mut()
            .unwrap()
            .insert(0, rule.clone());
        let (result, seen) = exchange(vec![(200, in_place.clone())], |c| async move {
            router(c, vec![in_place]).set_routes(&[]).await
        })
        .await;
        result.expect("set_routes");
        assert_eq!(
            seen[0].body,
            Some(json!([
                {"op": "test", "path": "/spec/rules/0/name", "value": rule["name"]},
                {"op": "remove", "path": "/spec/rules/0"}
            ]))
        );
    }

    #[tokio::test]
    async fn set_routes_sends_nothing_when_in_place_and_mirrors_keep_the_weights() {
        let mirror = RouteSetting {
            name: "mirror".into(),
            kind: RouteKind::Mirror {
                percentage: 25,
                matches: vec![RouteMatch {
                    method: Some(StringMatch {
                        exact: Some("GET".into()),
                        ..StringMatch::default()
                    }),
                    ..RouteMatch::default()
                }],
            },
        };
        let current = split_route(json!(20), json!(80));
        let user = current["spec"]["rules"][1].clone();
        let built = reading(vec![current.clone()])
            .managed_rule(&mirror, &user, 0)
            .unwrap();
        assert_eq!(built["matches"], json!([{"method": "GET"}]));
        assert_eq!(
            built["backendRefs"], user["backendRefs"],
            "served as the user's rule"
        );
        assert_eq!(
            built["filters"],
            json!([{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "web-canary", "port": 80}, "percent": 25}}])
        );
        let mut with_rule = current.clone();
        with_rule["spec"]["rules"]
            .as_array_mut()
            .unwrap()
            .insert(0, built.clone());
        let (result, seen) = exchange(vec![], |c| {
            let with_rule = with_rule.clone();
            let mirror = mirror.clone();
            async move { router(c, vec![with_rule]).set_routes(&[mirror]).await }
        })
        .await;
        assert_eq!(result.expect("set_routes"), None);
        assert!(seen.is_empty(), "in place: no request");
        // A mirror rule whose weights lag behind makes the weight read as not in place.
        with_rule["spec"]["rules"][0]["backendRefs"][2]["weight"] = json!(50);
        assert_eq!(reading(vec![with_rule]).current_weight().unwrap(), None);
    }
}
