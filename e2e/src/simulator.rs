//! Traffic and metrics simulator for the analysis tests.
//!
//! kwok pods serve no traffic and export no metrics, so this stands in for the
//! application: every tick it reads the routing state sluice wrote for one Rollout (the
//! canary Ingress weight, the HTTPRoute weights, the VirtualService weights resolved to
//! revisions through the Services' selectors or the DestinationRule's subsets, or, without a router, the available pods
//! of each ReplicaSet; for blue-green, what `activeService` and `previewService` select),
//! splits a synthetic request stream accordingly, and counts
//! per-version requests, errors and latencies. It serves them in the Prometheus text
//! format on 127.0.0.1 and registers itself with the local Prometheus through a file_sd
//! target, so the controller reads them back through real PromQL.
//!
//! Metrics, labelled `namespace`, `service`, `version` (the pod template's `version`
//! annotation) and `pod_template_hash`, plus `role="baseline"` for the pods of a dedicated
//! baseline ReplicaSet (as a Prometheus relabelling of the pods' `sluice.dev/role` label
//! would give):
//! - `http_requests_total{code="200"|"500"}` (counter)
//! - `http_request_duration_seconds` (histogram)
//!
//! A test sets each version's error rate and latency with [`Simulator::set`]; the baseline
//! pods of version `v1` are the version `v1-baseline`, and behave like `v1` unless set.
//! They share the stable side of the traffic with the stable pods, as the stable Service
//! (which selects them too) does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client, ResourceExt};
use sluice_api::Rollout;
use sluice_api::labels::{
    BASELINE_FOR_ANNOTATION, BASELINE_ROLE, POD_ROLE_LABEL, POD_TEMPLATE_HASH_LABEL, ROLLOUT_LABEL,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Requests per second in the synthetic stream.
const REQUESTS_PER_SECOND: f64 = 200.0;
const TICK: Duration = Duration::from_millis(100);
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// How a version behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    /// Share of requests answered with a 500, 0 to 1.
    pub error_rate: f64,
    /// Typical latency in seconds; each request varies by up to ±20 %.
    pub latency: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            error_rate: 0.0,
            latency: 0.02,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct VersionCounters {
    /// The pod template's `version` annotation (the same for stable and baseline pods).
    version: String,
    /// True for the pods of a dedicated baseline.
    baseline: bool,
    hash: String,
    /// The Service that routes to this version (canaryService or stableService).
    service: String,
    /// True for the canary.
    canary: bool,
    ok: f64,
    errors: f64,
    /// Cumulative histogram bucket counts, one per `BUCKETS` entry, plus +Inf.
    buckets: Vec<f64>,
    sum: f64,
}

#[derive(Debug, Default)]
struct State {
    behaviours: BTreeMap<String, Behaviour>,
    counters: BTreeMap<String, VersionCounters>,
    /// Share of traffic per version at the last tick, for test diagnostics.
    split: BTreeMap<String, f64>,
    /// Share of traffic mirrored to each version at the last tick.
    mirror_split: BTreeMap<String, f64>,
    /// Mirrored copies each version received: not served responses, so not in
    /// `http_requests_total`.
    mirrored: BTreeMap<String, f64>,
    /// The testers: a share of the stream that carries a header.
    testers: Option<Testers>,
    noise: u64,
}

/// A share of the synthetic requests that carry header `name: value` (all requests are
/// `GET /`).
#[derive(Debug, Clone)]
pub struct Testers {
    pub header: String,
    pub value: String,
    pub share: f64,
}

impl State {
    /// A deterministic pseudo-random factor in [0.8, 1.2] (an LCG: reproducible runs).
    fn jitter(&mut self) -> f64 {
        self.noise = self
            .noise
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        0.8 + 0.4 * ((self.noise >> 33) as f64 / (1u64 << 31) as f64)
    }
}

/// A running simulator; stops (and unregisters from Prometheus) when dropped.
pub struct Simulator {
    state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    target_file: PathBuf,
}

impl Simulator {
    /// Starts simulating traffic for Rollout `rollout` in `namespace` (Service name
    /// `service` in the metrics) and registers with Prometheus.
    pub async fn start(
        client: Client,
        namespace: &str,
        rollout: &str,
        service: &str,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            noise: 42,
            ..State::default()
        }));
        let labels = format!("namespace=\"{namespace}\",service=\"{service}\"");

        let serve_state = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = render(&serve_state.lock().expect("not poisoned"), &labels);
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });

        let tick_state = state.clone();
        let (ns, name) = (namespace.to_string(), rollout.to_string());
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            loop {
                interval.tick().await;
                let testers = tick_state.lock().expect("not poisoned").testers.clone();
                if let Ok(split) = routing_split(&client, &ns, &name, testers.as_ref()).await {
                    advance(&mut tick_state.lock().expect("not poisoned"), split);
                }
            }
        });

        let dir = std::env::var_os("SLUICE_PROMETHEUS_TARGETS")
            .map(PathBuf::from)
            .context(
                "SLUICE_PROMETHEUS_TARGETS is not set (eval \"$(e2e/controlplane/plane.sh env)\")",
            )?;
        std::fs::create_dir_all(&dir)?;
        let target_file = dir.join(format!("{namespace}-{rollout}.json"));
        // Written to a temporary name first: Prometheus must never read half a file.
        let tmp = target_file.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&serde_json::json!([{
                "targets": [format!("127.0.0.1:{port}")],
                "labels": { "job": "sluice-simulator" },
            }]))?,
        )?;
        std::fs::rename(&tmp, &target_file)?;
        Ok(Simulator {
            state,
            tasks: vec![server, ticker],
            target_file,
        })
    }

    /// Sets how a version (the pod template's `version` annotation, with `-baseline` for the
    /// pods of a dedicated baseline) behaves from now on.
    pub fn set(&self, version: &str, behaviour: Behaviour) {
        self.state
            .lock()
            .expect("not poisoned")
            .behaviours
            .insert(version.to_string(), behaviour);
    }

    /// The traffic share of each version at the last tick.
    pub fn split(&self) -> BTreeMap<String, f64> {
        self.state.lock().expect("not poisoned").split.clone()
    }

    /// From now on, `testers.share` of the requests carry `testers.header`.
    pub fn send_testers(&self, testers: Testers) {
        self.state.lock().expect("not poisoned").testers = Some(testers);
    }

    /// The share of the stream mirrored to each version at the last tick.
    pub fn mirror_split(&self) -> BTreeMap<String, f64> {
        self.state
            .lock()
            .expect("not poisoned")
            .mirror_split
            .clone()
    }

    /// Mirrored copies each version has received so far.
    pub fn mirrored(&self) -> BTreeMap<String, f64> {
        self.state.lock().expect("not poisoned").mirrored.clone()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.target_file);
    }
}

/// The simulator's name for the baseline pods of `version`.
pub fn baseline_version(version: &str) -> String {
    format!("{version}-baseline")
}

/// One version's share of the traffic.
#[derive(Debug, Clone)]
struct Share {
    /// The pod template's `version` annotation.
    version: String,
    /// True for the pods of a dedicated baseline.
    baseline: bool,
    hash: String,
    service: String,
    canary: bool,
    share: f64,
    /// Share of the stream copied to these pods by a mirror route.
    mirrored: f64,
}

/// Where one kind of request goes, by an HTTPRoute: the canary's share of it, and the
/// share of it mirrored to the canary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Outcome {
    canary: f64,
    mirrored: f64,
}

/// A header value against an HTTPHeaderMatch. Regular expressions: the forms sluice
/// writes for exact and prefix values (`^lit$`, `^lit.*`) are understood; any other
/// matches nothing here (the e2e crate has no regex engine).
fn header_value_matches(kind: &str, pattern: &str, value: &str) -> bool {
    let unescape = |s: &str| -> Option<String> {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?),
                c if "\\.+*?()|[]{}^$".contains(c) => return None,
                c => out.push(c),
            }
        }
        Some(out)
    };
    match kind {
        "RegularExpression" => {
            if let Some(lit) = pattern.strip_prefix('^').and_then(|p| p.strip_suffix(".*")) {
                unescape(lit).is_some_and(|l| value.starts_with(&l))
            } else if let Some(lit) = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')) {
                unescape(lit).is_some_and(|l| value == l)
            } else {
                false
            }
        }
        _ => pattern == value,
    }
}

/// Which rule of `rules` serves `GET /` with `headers`, by Gateway API precedence as far
/// as these requests can tell rules apart (the most header matches wins, then rule
/// order), and where that rule sends and mirrors it.
fn gateway_outcome(rules: &[serde_json::Value], canary: &str, headers: &[(&str, &str)]) -> Outcome {
    let matches_request = |m: &serde_json::Value| -> Option<usize> {
        let path_ok = match (m["path"]["type"].as_str(), m["path"]["value"].as_str()) {
            (None, _) => true,
            (Some("PathPrefix"), Some(v)) => v == "/",
            (Some("Exact"), Some(v)) => v == "/",
            _ => false,
        };
        let method_ok = m["method"].as_str().is_none_or(|v| v == "GET");
        let wanted = m["headers"].as_array().cloned().unwrap_or_default();
        let headers_ok = wanted.iter().all(|h| {
            let name = h["name"].as_str().unwrap_or_default();
            let kind = h["type"].as_str().unwrap_or("Exact");
            let pattern = h["value"].as_str().unwrap_or_default();
            headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case(name) && header_value_matches(kind, pattern, v)
            })
        });
        let query_ok = m["queryParams"].as_array().is_none_or(Vec::is_empty);
        (path_ok && method_ok && headers_ok && query_ok).then_some(wanted.len())
    };
    let mut best: Option<(usize, &serde_json::Value)> = None;
    for rule in rules {
        let ms = rule["matches"].as_array().cloned().unwrap_or_default();
        let score = if ms.is_empty() {
            Some(0)
        } else {
            ms.iter().filter_map(matches_request).max()
        };
        if let Some(score) = score
            && best.is_none_or(|(b, _)| score > b)
        {
            best = Some((score, rule));
        }
    }
    let Some((_, rule)) = best else {
        return Outcome::default();
    };
    let (mut c, mut total) = (0.0, 0.0);
    for r in rule["backendRefs"].as_array().cloned().unwrap_or_default() {
        let w = r["weight"].as_f64().unwrap_or(1.0);
        total += w;
        if r["name"] == canary {
            c += w;
        }
    }
    let mirrored = rule["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| {
            f["type"] == "RequestMirror" && f["requestMirror"]["backendRef"]["name"] == canary
        })
        .map(|f| {
            let m = &f["requestMirror"];
            if let Some(p) = m["percent"].as_f64() {
                p / 100.0
            } else if let Some(n) = m["fraction"]["numerator"].as_f64() {
                n / m["fraction"]["denominator"].as_f64().unwrap_or(100.0)
            } else {
                1.0
            }
        })
        .fold(0.0, f64::max);
    Outcome {
        canary: if total > 0.0 { c / total } else { 0.0 },
        mirrored,
    }
}

fn istio_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", kind),
        plural,
    )
}

/// What the mesh would resolve a VirtualService destination to: the pod-template hash of
/// the pods it reaches, through a DestinationRule subset's labels or a Service's selector.
struct IstioHashes {
    /// The DestinationRule's host (resolved) and its subsets' hash labels by name.
    subsets: Option<(String, BTreeMap<String, String>)>,
    /// The canary and stable Services' selector hashes by name.
    services: BTreeMap<String, String>,
}

fn fqdn(ns: &str, host: &str) -> String {
    if host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{ns}.svc.cluster.local")
    }
}

impl IstioHashes {
    fn resolve(&self, ns: &str, destination: &serde_json::Value) -> Option<String> {
        let host = fqdn(ns, destination["host"].as_str()?);
        match (destination["subset"].as_str(), &self.subsets) {
            (Some(subset), Some((dr_host, subsets))) if *dr_host == host => {
                subsets.get(subset).cloned()
            }
            (Some(_), _) => None,
            (None, _) => self
                .services
                .iter()
                .find(|(name, _)| fqdn(ns, name) == host)
                .map(|(_, hash)| hash.clone()),
        }
    }
}

async fn istio_hashes(
    client: &Client,
    ns: &str,
    ro: &Rollout,
    istio: &sluice_api::rollout::IstioTrafficRouting,
) -> Result<IstioHashes> {
    let subsets = match &istio.destination_rule {
        Some(dr) => {
            let dr = Api::<DynamicObject>::namespaced_with(
                client.clone(),
                ns,
                &istio_resource("DestinationRule", "destinationrules"),
            )
            .get(&dr.name)
            .await?;
            let host = fqdn(ns, dr.data["spec"]["host"].as_str().unwrap_or_default());
            let subsets = dr.data["spec"]["subsets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    Some((
                        s["name"].as_str()?.to_string(),
                        s["labels"][POD_TEMPLATE_HASH_LABEL].as_str()?.to_string(),
                    ))
                })
                .collect();
            Some((host, subsets))
        }
        None => None,
    };
    let services_api = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns);
    let mut services = BTreeMap::new();
    let canary = ro.spec.strategy.canary.as_ref();
    let names: Vec<String> = canary
        .iter()
        .flat_map(|c| [c.canary_service.clone(), c.stable_service.clone()])
        .flatten()
        .collect();
    for name in &names {
        if let Some(hash) = services_api
            .get_opt(name)
            .await?
            .and_then(|s| s.spec?.selector?.get(POD_TEMPLATE_HASH_LABEL).cloned())
        {
            services.insert(name.clone(), hash);
        }
    }
    Ok(IstioHashes { subsets, services })
}

/// An Istio StringMatch against `value`. Regular expressions: only the literal forms
/// [`header_value_matches`] understands.
fn istio_string_matches(m: &serde_json::Value, value: &str) -> bool {
    if let Some(v) = m["exact"].as_str() {
        v == value
    } else if let Some(v) = m["prefix"].as_str() {
        value.starts_with(v)
    } else if let Some(v) = m["regex"].as_str() {
        header_value_matches("RegularExpression", v, value)
    } else {
        true
    }
}

/// Which HTTP route of a VirtualService serves `GET /` with `headers` (Istio takes the
/// first that matches), and the share of it sent and mirrored to pod-template hash
/// `current`, each destination resolved by `resolve`.
fn istio_outcome(
    routes: &[serde_json::Value],
    resolve: &impl Fn(&serde_json::Value) -> Option<String>,
    current: &str,
    headers: &[(&str, &str)],
) -> Outcome {
    let matches_request = |m: &serde_json::Value| -> bool {
        let uri_ok = m.get("uri").is_none_or(|u| istio_string_matches(u, "/"));
        let method_ok = m
            .get("method")
            .is_none_or(|u| istio_string_matches(u, "GET"));
        let headers_ok = m["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(name, want)| {
                headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case(name) && istio_string_matches(want, v))
            });
        let others_ok = ["queryParams", "authority", "scheme", "port", "sourceLabels"]
            .iter()
            .all(|k| m.get(*k).is_none());
        uri_ok && method_ok && headers_ok && others_ok
    };
    let Some(route) = routes.iter().find(|r| match r["match"].as_array() {
        Some(ms) if !ms.is_empty() => ms.iter().any(matches_request),
        _ => true,
    }) else {
        return Outcome::default();
    };
    let dests = route["route"].as_array().cloned().unwrap_or_default();
    let single = dests.len() == 1;
    let (mut c, mut total) = (0.0, 0.0);
    for d in &dests {
        let w = d["weight"]
            .as_f64()
            .unwrap_or(if single { 100.0 } else { 0.0 });
        total += w;
        if resolve(&d["destination"]).as_deref() == Some(current) {
            c += w;
        }
    }
    let mirrored = if resolve(&route["mirror"]).as_deref() == Some(current) {
        route["mirrorPercentage"]["value"].as_f64().unwrap_or(100.0) / 100.0
    } else {
        0.0
    };
    Outcome {
        canary: if total > 0.0 { c / total } else { 0.0 },
        mirrored,
    }
}

/// Each version's share of the traffic right now, from what sluice wrote.
async fn routing_split(
    client: &Client,
    ns: &str,
    rollout: &str,
    testers: Option<&Testers>,
) -> Result<Vec<Share>> {
    let tester_share = testers.map_or(0.0, |t| t.share);
    let ro = Api::<Rollout>::namespaced(client.clone(), ns)
        .get(rollout)
        .await?;
    let status = ro.status.clone().unwrap_or_default();
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(POD_TEMPLATE_HASH_LABEL))
        .await?;
    let version_of = |hash: &str| -> Option<(String, i32)> {
        replica_sets
            .items
            .iter()
            .find(|rs| rs.labels().get(POD_TEMPLATE_HASH_LABEL).map(String::as_str) == Some(hash))
            .map(|rs| {
                let version = rs
                    .spec
                    .template
                    .as_ref()
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.annotations.as_ref())
                    .and_then(|a| a.get("version").cloned())
                    .unwrap_or_else(|| hash.to_string());
                (
                    version,
                    rs.status
                        .as_ref()
                        .and_then(|s| s.available_replicas)
                        .unwrap_or(0),
                )
            })
    };
    let (Some(current), Some(stable)) = (status.current_pod_hash, status.stable_rs) else {
        return Ok(Vec::new());
    };
    if let Some(bg) = &ro.spec.strategy.blue_green {
        return blue_green_split(client, ns, bg, &current, &stable, &version_of).await;
    }
    // The current canary's dedicated baseline: the stable version, its own pods.
    let baseline_pods = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!(
            "{POD_ROLE_LABEL}={BASELINE_ROLE},{ROLLOUT_LABEL}={rollout}"
        )))
        .await?
        .items
        .iter()
        .filter(|rs| {
            let pod_hash = rs
                .spec
                .template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref())
                .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL));
            pod_hash == Some(&stable)
                && rs.annotations().get(BASELINE_FOR_ANNOTATION) == Some(&current)
        })
        .map(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
        })
        .sum::<i32>() as f64;
    let routing = ro
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.traffic_routing.clone());
    let mut mirrored = 0.0;
    let canary_share = match &routing {
        _ if current == stable => 0.0,
        Some(r) if r.nginx.is_some() => {
            let stable_ingress = &r.nginx.as_ref().expect("checked").stable_ingress;
            let canary = Api::<Ingress>::namespaced(client.clone(), ns)
                .get_opt(&format!("{rollout}-{stable_ingress}-canary"))
                .await?;
            let annotation = |key: &str| {
                canary.as_ref().and_then(|i| {
                    i.annotations()
                        .get(&format!("nginx.ingress.kubernetes.io/{key}"))
                        .cloned()
                })
            };
            let weight = annotation("canary-weight")
                .and_then(|w| w.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 100.0;
            // ingress-nginx: a request whose header matches goes to the canary whatever
            // the weight; any other request is split by the weight.
            let testers_match = testers.is_some_and(|t| {
                annotation("canary-by-header").is_some_and(|h| h.eq_ignore_ascii_case(&t.header))
                    && (annotation("canary-by-header-value").as_deref() == Some(t.value.as_str())
                        || annotation("canary-by-header-pattern").is_some_and(|p| {
                            header_value_matches("RegularExpression", &p, &t.value)
                        }))
            });
            let tester_canary = if testers_match { 1.0 } else { weight };
            (1.0 - tester_share) * weight + tester_share * tester_canary
        }
        Some(r) if r.gateway_api.is_some() => {
            let route_name = &r.gateway_api.as_ref().expect("checked").http_route;
            let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
            let route = Api::<DynamicObject>::namespaced_with(
                client.clone(),
                ns,
                &ApiResource::from_gvk(&gvk),
            )
            .get(route_name)
            .await?;
            let canary = ro
                .spec
                .strategy
                .canary
                .as_ref()
                .and_then(|c| c.canary_service.clone())
                .unwrap_or_default();
            let rules = route.data["spec"]["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let plain = gateway_outcome(&rules, &canary, &[]);
            let tester = match testers {
                Some(t) => gateway_outcome(&rules, &canary, &[(&t.header, &t.value)]),
                None => plain,
            };
            mirrored = (1.0 - tester_share) * plain.mirrored + tester_share * tester.mirrored;
            (1.0 - tester_share) * plain.canary + tester_share * tester.canary
        }
        Some(r) if r.istio.is_some() => {
            let istio = r.istio.as_ref().expect("checked");
            let hashes = istio_hashes(client, ns, &ro, istio).await?;
            let vs = Api::<DynamicObject>::namespaced_with(
                client.clone(),
                ns,
                &istio_resource("VirtualService", "virtualservices"),
            )
            .get(&istio.virtual_service.name)
            .await?;
            let routes = vs.data["spec"]["http"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let resolve = |d: &serde_json::Value| hashes.resolve(ns, d);
            let plain = istio_outcome(&routes, &resolve, &current, &[]);
            let tester = match testers {
                Some(t) => istio_outcome(&routes, &resolve, &current, &[(&t.header, &t.value)]),
                None => plain,
            };
            mirrored = (1.0 - tester_share) * plain.mirrored + tester_share * tester.mirrored;
            (1.0 - tester_share) * plain.canary + tester_share * tester.canary
        }
        _ => {
            // Replica ratio: every available pod takes an equal share.
            let canary_pods = version_of(&current).map_or(0, |v| v.1) as f64;
            let stable_pods = version_of(&stable).map_or(0, |v| v.1) as f64;
            let all = canary_pods + stable_pods + baseline_pods;
            if all > 0.0 { canary_pods / all } else { 0.0 }
        }
    };
    // The stable side (whatever is not the canary's) is spread over every pod the stable
    // Service selects: the stable pods and the baseline's.
    let stable_pods = version_of(&stable).map_or(0, |v| v.1) as f64;
    let baseline_fraction = if stable_pods + baseline_pods > 0.0 {
        baseline_pods / (stable_pods + baseline_pods)
    } else {
        0.0
    };
    let service = |canary: bool| {
        let c = ro.spec.strategy.canary.as_ref();
        let name = if canary {
            c.and_then(|c| c.canary_service.clone())
        } else {
            c.and_then(|c| c.stable_service.clone())
        };
        name.unwrap_or_else(|| rollout.to_string())
    };
    let mut split = Vec::new();
    if let Some((version, _)) = version_of(&stable) {
        split.push(Share {
            version: version.clone(),
            baseline: false,
            hash: stable.clone(),
            service: service(false),
            canary: false,
            share: (1.0 - canary_share) * (1.0 - baseline_fraction),
            mirrored: 0.0,
        });
        if baseline_fraction > 0.0 {
            split.push(Share {
                version,
                baseline: true,
                hash: stable.clone(),
                service: service(false),
                canary: false,
                share: (1.0 - canary_share) * baseline_fraction,
                mirrored: 0.0,
            });
        }
    }
    if current != stable
        && let Some((version, _)) = version_of(&current)
    {
        split.push(Share {
            version,
            baseline: false,
            hash: current,
            service: service(true),
            canary: true,
            share: canary_share,
            mirrored,
        });
    }
    Ok(split)
}

/// Share of the production stream taken by blue-green's preview test traffic (a
/// smoke-test client hitting `previewService`), on top of the production stream.
const PREVIEW_SHARE: f64 = 0.25;

/// Blue-green: production traffic goes wherever `activeService` selects; while the preview
/// differs from it, a smaller test stream goes to `previewService`'s revision.
async fn blue_green_split(
    client: &Client,
    ns: &str,
    bg: &sluice_api::rollout::BlueGreenStrategy,
    current: &str,
    stable: &str,
    version_of: &impl Fn(&str) -> Option<(String, i32)>,
) -> Result<Vec<Share>> {
    let services = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns);
    let selected = |svc: Option<k8s_openapi::api::core::v1::Service>| {
        svc.and_then(|s| s.spec?.selector?.get(POD_TEMPLATE_HASH_LABEL).cloned())
    };
    let mut split = Vec::new();
    let active = selected(services.get_opt(&bg.active_service).await?);
    if let Some(hash) = &active
        && let Some((version, _)) = version_of(hash)
    {
        split.push(Share {
            version,
            hash: hash.clone(),
            service: bg.active_service.clone(),
            canary: hash == current && current != stable,
            baseline: false,
            share: 1.0,
            mirrored: 0.0,
        });
    }
    if let Some(preview_service) = &bg.preview_service {
        let preview = selected(services.get_opt(preview_service).await?);
        if let Some(hash) = preview.filter(|p| Some(p) != active.as_ref())
            && let Some((version, available)) = version_of(&hash)
            && available > 0
        {
            split.push(Share {
                version,
                canary: hash == current,
                hash,
                service: preview_service.clone(),
                baseline: false,
                share: PREVIEW_SHARE,
                mirrored: 0.0,
            });
        }
    }
    Ok(split)
}

impl Share {
    /// The simulator's name for these pods: the version, or its baseline.
    fn key(&self) -> String {
        if self.baseline {
            baseline_version(&self.version)
        } else {
            self.version.clone()
        }
    }
}

fn advance(state: &mut State, split: Vec<Share>) {
    let per_tick = REQUESTS_PER_SECOND * TICK.as_secs_f64();
    state.split = split.iter().map(|s| (s.key(), s.share)).collect();
    state.mirror_split = split
        .iter()
        .filter(|s| s.mirrored > 0.0)
        .map(|s| (s.key(), s.mirrored))
        .collect();
    for s in split {
        let key = s.key();
        if s.mirrored > 0.0 {
            *state.mirrored.entry(key.clone()).or_default() += per_tick * s.mirrored;
        }
        // Baseline pods run the stable version: they behave like it unless a test says.
        let behaviour = state
            .behaviours
            .get(&key)
            .or_else(|| state.behaviours.get(&s.version))
            .copied()
            .unwrap_or_default();
        let requests = per_tick * s.share;
        if requests <= 0.0 {
            continue;
        }
        // Ten latency samples per tick and version stand for its requests.
        let samples: Vec<f64> = (0..10)
            .map(|_| behaviour.latency * state.jitter())
            .collect();
        let c = state
            .counters
            .entry(key)
            .or_insert_with(|| VersionCounters {
                buckets: vec![0.0; BUCKETS.len() + 1],
                ..VersionCounters::default()
            });
        c.version = s.version;
        c.baseline = s.baseline;
        c.hash = s.hash;
        c.service = s.service;
        c.canary = s.canary;
        c.errors += requests * behaviour.error_rate;
        c.ok += requests * (1.0 - behaviour.error_rate);
        for latency in samples {
            let weight = requests / 10.0;
            c.sum += latency * weight;
            for (i, le) in BUCKETS.iter().enumerate() {
                if latency <= *le {
                    c.buckets[i] += weight;
                }
            }
            c.buckets[BUCKETS.len()] += weight;
        }
    }
}

fn render(state: &State, labels: &str) -> String {
    let series_labels = |c: &VersionCounters| {
        let role = if c.baseline {
            format!(",role=\"{BASELINE_ROLE}\"")
        } else {
            String::new()
        };
        format!(
            "{labels},version=\"{}\",pod_template_hash=\"{}\"{role}",
            c.version, c.hash
        )
    };
    let mut out = String::from("# TYPE http_requests_total counter\n");
    for c in state.counters.values() {
        let l = series_labels(c);
        out.push_str(&format!(
            "http_requests_total{{{l},code=\"200\"}} {}\n",
            c.ok
        ));
        out.push_str(&format!(
            "http_requests_total{{{l},code=\"500\"}} {}\n",
            c.errors
        ));
    }
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for c in state.counters.values() {
        let l = series_labels(c);
        for (i, le) in BUCKETS.iter().enumerate() {
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {}\n",
                c.buckets[i]
            ));
        }
        let count = c.buckets[BUCKETS.len()];
        out.push_str(&format!(
            "http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}\n"
        ));
        out.push_str(&format!(
            "http_request_duration_seconds_sum{{{l}}} {}\n",
            c.sum
        ));
        out.push_str(&format!(
            "http_request_duration_seconds_count{{{l}}} {count}\n"
        ));
    }
    // The same requests as the NGINX Ingress controller and an Istio sidecar count them,
    // so the ready-made templates for those sources can be evaluated too.
    let namespace = labels
        .split(',')
        .find_map(|kv| kv.strip_prefix("namespace="))
        .unwrap_or("\"\"");
    // Neither sees pods: a baseline's requests count with the stable ones behind the same
    // Service and revision (summed, so that no series appears twice in one scrape).
    let mut nginx: BTreeMap<String, f64> = BTreeMap::new();
    let mut istio: BTreeMap<String, f64> = BTreeMap::new();
    for c in state.counters.values() {
        let canary = if c.canary { "true" } else { "" };
        for (status, n) in [("200", c.ok), ("500", c.errors)] {
            *nginx
                .entry(format!(
                    "exported_namespace={namespace},service=\"{}\",canary=\"{canary}\",status=\"{status}\"",
                    c.service
                ))
                .or_default() += n;
            *istio
                .entry(format!(
                    "reporter=\"destination\",destination_workload_namespace={namespace},destination_service_name=\"{}\",destination_canonical_revision=\"{}\",response_code=\"{status}\"",
                    c.service, c.version
                ))
                .or_default() += n;
        }
    }
    out.push_str("# TYPE nginx_ingress_controller_requests counter\n");
    for (l, n) in nginx {
        out.push_str(&format!("nginx_ingress_controller_requests{{{l}}} {n}\n"));
    }
    out.push_str("# TYPE istio_requests_total counter\n");
    for (l, n) in istio {
        out.push_str(&format!("istio_requests_total{{{l}}} {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_splits_by_share_and_errors_follow_the_behaviour() {
        let mut state = State {
            noise: 1,
            ..State::default()
        };
        state.behaviours.insert(
            "v2".into(),
            Behaviour {
                error_rate: 0.2,
                latency: 0.1,
            },
        );
        for _ in 0..10 {
            advance(
                &mut state,
                vec![
                    Share {
                        version: "v1".into(),
                        baseline: false,
                        hash: "h1".into(),
                        service: "web-stable".into(),
                        canary: false,
                        share: 0.75,
                        mirrored: 0.0,
                    },
                    Share {
                        version: "v2".into(),
                        baseline: false,
                        hash: "h2".into(),
                        service: "web-canary".into(),
                        canary: true,
                        share: 0.25,
                        mirrored: 0.0,
                    },
                ],
            );
        }
        let (v1, v2) = (&state.counters["v1"], &state.counters["v2"]);
        // One second at 200 rps: 150 to v1, 50 to v2 of which 20 % fail.
        assert!((v1.ok + v1.errors - 150.0).abs() < 1e-9);
        assert!((v2.errors - 10.0).abs() < 1e-9 && (v2.ok - 40.0).abs() < 1e-9);
        let text = render(&state, "namespace=\"n\",service=\"web\"");
        assert!(text.contains("http_requests_total{namespace=\"n\",service=\"web\",version=\"v2\",pod_template_hash=\"h2\",code=\"500\"} 10"), "{text}");
        // v2's ~100 ms latencies fall above the 50 ms bucket, v1's ~20 ms ones below it.
        assert!(
            text.contains("version=\"v2\",pod_template_hash=\"h2\",le=\"0.05\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("version=\"v1\",pod_template_hash=\"h1\",le=\"0.05\"} 150"),
            "{text}"
        );
        assert!(
            text.contains("nginx_ingress_controller_requests{exported_namespace=\"n\",service=\"web-canary\",canary=\"true\",status=\"500\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("istio_requests_total{reporter=\"destination\",destination_workload_namespace=\"n\",destination_service_name=\"web-stable\",destination_canonical_revision=\"v1\",response_code=\"500\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn baseline_pods_are_a_version_of_their_own_that_behaves_like_theirs_unless_set() {
        let mut state = State {
            noise: 1,
            ..State::default()
        };
        state.behaviours.insert(
            "v1".into(),
            Behaviour {
                error_rate: 0.1,
                latency: 0.02,
            },
        );
        let share = |baseline: bool, share: f64| Share {
            version: "v1".into(),
            baseline,
            hash: "h1".into(),
            service: "web-stable".into(),
            canary: false,
            share,
            mirrored: 0.0,
        };
        for _ in 0..10 {
            advance(&mut state, vec![share(false, 0.5), share(true, 0.5)]);
        }
        let b = &state.counters["v1-baseline"];
        assert!((b.errors - 10.0).abs() < 1e-9, "like v1: {b:?}");
        state.behaviours.insert(
            baseline_version("v1"),
            Behaviour {
                error_rate: 0.5,
                latency: 0.02,
            },
        );
        for _ in 0..10 {
            advance(&mut state, vec![share(false, 0.5), share(true, 0.5)]);
        }
        let (v1, b) = (&state.counters["v1"], &state.counters["v1-baseline"]);
        assert!((v1.errors - 20.0).abs() < 1e-9, "{v1:?}");
        assert!((b.errors - 60.0).abs() < 1e-9, "set on its own: {b:?}");
        let text = render(&state, "namespace=\"n\",service=\"web\"");
        assert!(
            text.contains("http_requests_total{namespace=\"n\",service=\"web\",version=\"v1\",pod_template_hash=\"h1\",role=\"baseline\",code=\"500\"} 60\n"),
            "{text}"
        );
        assert!(
            text.contains("http_requests_total{namespace=\"n\",service=\"web\",version=\"v1\",pod_template_hash=\"h1\",code=\"500\"} 20\n"),
            "{text}"
        );
        // Sources that do not see pods count both under the stable Service, once.
        assert!(
            text.contains("nginx_ingress_controller_requests{exported_namespace=\"n\",service=\"web-stable\",canary=\"\",status=\"500\"} 80\n"),
            "{text}"
        );
    }
}
