//! Managed routes (`setHeaderRoute`, `setMirrorRoute`): which are in force at a step, how
//! each is fingerprinted so that the router's read-back can be compared with the spec,
//! and what a router cannot express (an `InvalidSpec`, never a silent approximation).
//!
//! As in Argo Rollouts, a step sets or (without `match`) removes one named route, and the
//! route stays for the following steps; every route goes when the canary ends (promotion,
//! abort) or when a spec edit takes away the step that set it.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_api::rollout::{
    CanaryStep, CanaryStrategy, HeaderRoutingMatch, ManagedRoute, RouteMatch, StringMatch,
};

use super::hash::value_hash;

/// What a managed route does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteKind {
    /// Requests carrying all these headers go to the canary.
    Header { matches: Vec<HeaderRoutingMatch> },
    /// `percentage`% of the requests matching any of `matches` are copied to the canary.
    Mirror {
        percentage: i32,
        matches: Vec<RouteMatch>,
    },
}

/// One managed route as the router should hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteSetting {
    pub name: String,
    pub kind: RouteKind,
}

impl RouteSetting {
    /// A stable digest of the setting, which the router records beside what it wrote (a
    /// rule name, an annotation): equal digests mean the route is in place as set.
    pub fn fingerprint(&self) -> String {
        value_hash(self)
    }

    /// `header` or `mirror`, for the status.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            RouteKind::Header { .. } => "header",
            RouteKind::Mirror { .. } => "mirror",
        }
    }
}

/// The routes in force while working on step `index` (the steps before it and the step
/// itself), in the order of `trafficRouting.managedRoutes`, which is their precedence.
pub fn routes_at(
    steps: &[CanaryStep],
    managed: &[ManagedRoute],
    index: usize,
) -> Vec<RouteSetting> {
    let mut by_name: BTreeMap<&str, RouteKind> = BTreeMap::new();
    for step in steps.iter().take(index + 1) {
        if let Some(h) = &step.set_header_route {
            if h.matches.is_empty() {
                by_name.remove(h.name.as_str());
            } else {
                let matches = h.matches.clone();
                by_name.insert(&h.name, RouteKind::Header { matches });
            }
        }
        if let Some(m) = &step.set_mirror_route {
            if m.matches.is_empty() {
                by_name.remove(m.name.as_str());
            } else {
                let kind = RouteKind::Mirror {
                    percentage: m.percentage.unwrap_or(100),
                    matches: m.matches.clone(),
                };
                by_name.insert(&m.name, kind);
            }
        }
    }
    managed
        .iter()
        .filter_map(|r| {
            by_name.remove(r.name.as_str()).map(|kind| RouteSetting {
                name: r.name.clone(),
                kind,
            })
        })
        .collect()
}

/// `trafficRouting.managedRoutes` of a canary (empty without a router).
pub fn managed(canary: &CanaryStrategy) -> &[ManagedRoute] {
    canary
        .traffic_routing
        .as_ref()
        .map_or(&[], |t| t.managed_routes.as_slice())
}

/// Name → fingerprint of `routes`: what the router reads back when they are in place.
pub fn fingerprints(routes: &[RouteSetting]) -> BTreeMap<String, String> {
    routes
        .iter()
        .map(|r| (r.name.clone(), r.fingerprint()))
        .collect()
}

/// True for a `setHeaderRoute` or `setMirrorRoute` step.
pub fn is_route_step(step: &CanaryStep) -> bool {
    step.set_header_route.is_some() || step.set_mirror_route.is_some()
}

/// What admission cannot check about managed routes: a name used for both kinds, and what
/// the configured router cannot do. Each message names the router and the step.
pub fn spec_problem(canary: &CanaryStrategy) -> Option<String> {
    let routing = canary.traffic_routing.as_ref()?;
    let mut header_names: Vec<&str> = Vec::new();
    for (i, step) in canary.steps.iter().enumerate() {
        let field = |kind: &str| format!("spec.strategy.canary.steps[{i}].{kind}");
        if let Some(h) = &step.set_header_route {
            let clash = canary.steps.iter().any(|s| {
                s.set_mirror_route
                    .as_ref()
                    .is_some_and(|m| m.name == h.name)
            });
            if clash {
                return Some(format!(
                    "{}: route {} is also set by a setMirrorRoute step; a managed route is \
                     either a header route or a mirror route",
                    field("setHeaderRoute"),
                    h.name
                ));
            }
            if !header_names.contains(&h.name.as_str()) {
                header_names.push(&h.name);
            }
            if routing.nginx.is_some() && h.matches.len() > 1 {
                return Some(format!(
                    "{}: the nginx router can match one header per route \
                     (canary-by-header), this step has {}",
                    field("setHeaderRoute"),
                    h.matches.len()
                ));
            }
        }
        if let Some(m) = &step.set_mirror_route {
            if routing.nginx.is_some() {
                return Some(format!(
                    "{}: the nginx router cannot mirror to the canary: ingress-nginx's \
                     mirror-target copies every request of the stable Ingress's location, \
                     with no percentage, and sluice never writes the stable Ingress",
                    field("setMirrorRoute")
                ));
            }
            if routing.gateway_api.is_some() {
                for (j, rm) in m.matches.iter().enumerate() {
                    if rm.method.as_ref().is_some_and(|s| s.exact.is_none()) {
                        return Some(format!(
                            "{}.match[{j}].method: the gatewayAPI router matches a method \
                             exactly only (HTTPRouteMatch.method)",
                            field("setMirrorRoute")
                        ));
                    }
                    if let Some(method) = rm.method.as_ref().and_then(|s| s.exact.as_deref())
                        && !GATEWAY_METHODS.contains(&method)
                    {
                        return Some(format!(
                            "{}.match[{j}].method: {method:?} is not one of {}",
                            field("setMirrorRoute"),
                            GATEWAY_METHODS.join(", ")
                        ));
                    }
                }
            }
        }
    }
    if routing.nginx.is_some() && header_names.len() > 1 {
        return Some(format!(
            "spec.strategy.canary.steps: the nginx router holds one header route \
             (the canary Ingress's canary-by-header), the steps set {}",
            header_names.join(", ")
        ));
    }
    None
}

/// The methods an HTTPRouteMatch accepts.
pub const GATEWAY_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A string match as a regular expression (a prefix becomes `^<escaped prefix>`), for
/// routers that have exact and regex matching only.
pub fn as_regex(m: &StringMatch) -> Option<String> {
    if let Some(r) = &m.regex {
        return Some(r.clone());
    }
    if let Some(p) = &m.prefix {
        return Some(format!("^{}.*", escape_regex(p)));
    }
    m.exact.as_ref().map(|e| format!("^{}$", escape_regex(e)))
}

/// `s` with every regular-expression metacharacter escaped (RE2 and PCRE alike).
pub fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
