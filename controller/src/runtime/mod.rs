//! Runtime: wires the kube-runtime Controller to the core and the adapters.
//!
//! Reconcile is always observe (caches, plus reads of the referenced objects) → `plan`
//! (pure) → execute the actions (adapters, idempotent) → write the status only if it
//! changed → record the plan's Events → requeue at the plan's next deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::jiff::Timestamp;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use sluice_api::analysis::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate};
use sluice_api::labels::{CONTROLLER_INSTANCE_LABEL, POD_TEMPLATE_HASH_LABEL, ROLLOUT_LABEL};
use sluice_api::rollout::Rollout;
use tracing::{debug, error, info, warn};

use crate::adapters::cache::Caches;
use crate::adapters::router::Router;
use crate::adapters::router::gateway::http_route_resource;
use crate::adapters::router::istio::{destination_rule_resource, virtual_service_resource};
use crate::adapters::written::{Cache, Written};
use crate::adapters::{AdapterError, analysis as runs, status};
use crate::adapters::{workload, workload_ref};
use crate::core::{self, Action, AnalysisRunState, Observed, PodState};
use expectations::{Expectations, Waiting};
use references::Referenced;

pub mod analysis;
pub mod backoff;
pub mod expectations;
pub mod gates;
pub mod job_metrics;
pub mod leader;
pub mod malformed;
pub mod metrics;
pub mod notifier;
pub mod queue;
pub mod rate_limit;
pub mod references;
pub mod replay;
pub mod templates;
pub mod watches;

#[cfg(test)]
mod reconcile_tests;

/// A client for the given kubeconfig, or, without one, the in-cluster config (falling
/// back to `$KUBECONFIG` / `~/.kube/config`). Shared by `sluice-controller` and
/// `kubectl-sluice`.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    Ok(Client::try_from(config(kubeconfig).await?)?)
}

/// As [`client`], with every request first waiting for the rate limit (`qps` 0: none).
pub async fn limited_client(
    kubeconfig: Option<&std::path::Path>,
    qps: u32,
    burst: u32,
) -> anyhow::Result<Client> {
    let builder = kube::client::ClientBuilder::try_from(config(kubeconfig).await?)?;
    Ok(match rate_limit::layer(qps, burst) {
        Some(limit) => builder.with_layer(&limit).build(),
        None => builder.build(),
    })
}

/// As [`client`], with a kubeconfig context other than the current one (`--context`);
/// the kubeconfig is `kubeconfig`, or `$KUBECONFIG` / `~/.kube/config`.
pub async fn client_in_context(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> anyhow::Result<Client> {
    use anyhow::Context as _;
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let Some(context) = context else {
        return client(kubeconfig).await;
    };
    let kc = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?,
        None => Kubeconfig::read().context("reading the kubeconfig")?,
    };
    let options = KubeConfigOptions {
        context: Some(context.to_string()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .with_context(|| format!("kubeconfig context {context}"))?;
    Ok(Client::try_from(config)?)
}

async fn config(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Config> {
    use anyhow::Context as _;
    use kube::config::{KubeConfigOptions, Kubeconfig};
    Ok(match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster config and no usable kubeconfig")?,
    })
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when None.
    pub namespace: Option<String>,
    /// Serve only Rollouts (and AnalysisRuns) labelled `sluice.dev/controller-instance`
    /// with this value; without one, only those without the label. Several controllers
    /// share a cluster this way, one shard each.
    pub instance_id: Option<String>,
    /// Most reconciles of one kind running at once.
    pub concurrency: u16,
    /// Set once the Rollout controller's caches have all listed (for `/readyz`).
    pub caches_synced: Arc<std::sync::atomic::AtomicBool>,
    /// Where the plans' notices go.
    pub notifier: notifier::Notifier,
}

/// Reconciles of one kind at once, by default. Reconciles read only caches, so they are
/// short; what bounds the work is the client's rate limit, and this only keeps a burst
/// of events from queueing thousands of tasks on that limit.
pub const DEFAULT_CONCURRENCY: u16 = 16;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: None,
            instance_id: None,
            concurrency: DEFAULT_CONCURRENCY,
            caches_synced: Arc::default(),
            notifier: notifier::Notifier::disabled(),
        }
    }
}

impl Settings {
    /// `config` selecting the objects of this controller's shard.
    pub fn instance_selector(&self, config: watcher::Config) -> watcher::Config {
        config.labels(&self.shard_labels())
    }

    /// The label selector of this controller's shard, to combine with others.
    pub fn shard_labels(&self) -> String {
        match &self.instance_id {
            Some(id) => format!("{CONTROLLER_INSTANCE_LABEL}={id}"),
            None => format!("!{CONTROLLER_INSTANCE_LABEL}"),
        }
    }
}

/// Shared state of the reconcilers.
struct Context {
    client: Client,
    /// The Rollouts as the Controller's own watch holds them, to tell when it shows
    /// sluice's own last status write.
    rollouts: Store<DeserializeGuard<Rollout>>,
    replica_sets: Store<ReplicaSet>,
    /// The pods of sluice's revisions, metadata only, for `spec.restartAt`.
    pods: Store<PartialObjectMeta<Pod>>,
    /// Guarded like the Rollouts: one run that does not deserialize must not keep this
    /// cache from ever listing, which would stall every Rollout's reconcile.
    analysis_runs: Store<DeserializeGuard<AnalysisRun>>,
    /// The objects Rollouts refer to (Services, Ingresses, HTTPRoutes, templates).
    caches: Caches,
    /// Resolves (true) once every cache above has synced; false if one was dropped.
    /// Shared, because `Store::wait_until_ready` wakes only one of several concurrent
    /// waiters (kube-runtime 5.0's DelayedInit keeps a single oneshot waker), which left
    /// all but one reconcile hanging at start-up.
    caches_ready: Shared<BoxFuture<'static, bool>>,
    /// For the malformed-object reports, which repeat (and then count as a series).
    recorder: Recorder,
    /// Who records the plans' Events.
    reporter: Reporter,
    /// Consecutive failures per Rollout, for exponential backoff.
    failures: backoff::Failures<ObjectRef<DeserializeGuard<Rollout>>>,
    /// What each Rollout's last reconcile wrote that the caches have not shown yet.
    expectations: Expectations<ObjectRef<DeserializeGuard<Rollout>>>,
    /// Rollouts whose cached copy is known to be behind: read from the API next time.
    stale: expectations::Stale<ObjectRef<DeserializeGuard<Rollout>>>,
    /// When each Rollout became due: its place in line, and the queue metrics.
    queue: Arc<RolloutQueue>,
    /// `--concurrency` reconciles at once, in the queue's order.
    gate: Arc<queue::Gate>,
    /// The Deployments `workloadRef`s name: watched from the first reconcile of a Rollout
    /// that has one (set `want_deployments`), never before.
    deployments: Store<Deployment>,
    want_deployments: tokio::sync::watch::Sender<bool>,
    /// Set once a Rollout routes through Istio: the VirtualService and DestinationRule
    /// caches are started then, so a cluster without Istio's CRDs has no failing watch.
    want_istio: tokio::sync::watch::Sender<bool>,
    notifier: notifier::Notifier,
    /// Calls the gates the plans want called (`spec.strategy.gates`).
    gatekeeper: gates::Gatekeeper,
}

type RolloutKey = ObjectRef<DeserializeGuard<Rollout>>;
type RolloutQueue = queue::Queue<RolloutKey>;

/// The Rollouts that own `owner_references` (a ReplicaSet's, an AnalysisRun's), keyed as
/// the Controller keys them.
fn owning_rollouts(meta: &kube::api::ObjectMeta) -> Vec<RolloutKey> {
    let ns = meta.namespace.clone().unwrap_or_default();
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == workload::rollout_kind())
        .map(|o| ObjectRef::new(&o.name).within(&ns))
        .collect()
}

impl Context {
    /// The resourceVersion the cache behind `written` holds of its object; None when the
    /// cache does not hold it.
    fn cached_version(&self, written: &Written) -> Option<Option<String>> {
        fn version<K: Resource>(object: Option<Arc<K>>) -> Option<Option<String>> {
            object.map(|o| o.meta().resource_version.clone())
        }
        let (ns, name) = (written.namespace.as_str(), written.name.as_str());
        match written.cache {
            Cache::Rollout => version(self.rollouts.get(&ObjectRef::new(name).within(ns))),
            Cache::ReplicaSet => version(self.replica_sets.get(&ObjectRef::new(name).within(ns))),
            Cache::AnalysisRun => version(self.analysis_runs.get(&ObjectRef::new(name).within(ns))),
            Cache::Service => version(self.caches.service(ns, name)),
            Cache::Ingress => version(self.caches.ingress(ns, name)),
            Cache::HttpRoute => version(self.caches.http_route(ns, name)),
            Cache::VirtualService => version(self.caches.virtual_service(ns, name)),
            Cache::DestinationRule => version(self.caches.destination_rule(ns, name)),
            Cache::Pod => version(self.pods.get(&ObjectRef::new(name).within(ns))),
            // Only the AnalysisRun controller writes Jobs, and waits for its own cache.
            Cache::Job => None,
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error("a watch cache stopped (the controller is shutting down)")]
    CacheClosed,
    #[error("reconcile took longer than {0:?}")]
    Timeout(Duration),
    #[error("the {0} cache has not listed them yet")]
    CacheSyncing(&'static str),
}

impl ReconcileError {
    /// A stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Adapter(e) => e.category(),
            ReconcileError::CacheClosed => "shutdown",
            ReconcileError::Timeout(_) => "timeout",
            ReconcileError::CacheSyncing(_) => "cache_syncing",
        }
    }
}

/// An Api over one namespace, or over all of them.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the Rollout controller until `shutdown` resolves (in-flight reconciles finish;
/// those still waiting for a place are not started).
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = settings.namespace.as_deref();
    let gate = queue::Gate::new(settings.concurrency);
    let web = match crate::adapters::web::WebClient::new() {
        Ok(w) => w,
        Err(e) => {
            error!(error = %e, "cannot build the web client for gates: not serving");
            return;
        }
    };
    // A gate that answers anew brings its Rollout back (see `gates`).
    let (gate_wake, gate_woken) = futures::channel::mpsc::unbounded();
    let gatekeeper = gates::Gatekeeper::new(client.clone(), web, gate_wake);
    let shutdown = {
        let gate = gate.clone();
        async move {
            shutdown.await;
            gate.close();
        }
    };

    // Only sluice's own ReplicaSets and AnalysisRuns are cached: label-selected watches
    // keep memory proportional to what sluice manages, not to the cluster. Revisions and
    // baselines both carry the Rollout label (a baseline has no hash label of its own).
    let (replica_sets, rs_writer) = reflector::store();
    let rs_stream = watches::cached_touched(
        api::<ReplicaSet>(&client, ns),
        watcher::Config::default().labels(ROLLOUT_LABEL),
        rs_writer,
    );
    // The pods of the revisions (they carry the hash label), metadata only: what
    // `spec.restartAt` needs is names, owners and creation and deletion times.
    let (pods, pod_writer) = reflector::store();
    let pod_stream = watches::cached_touched(
        api::<PartialObjectMeta<Pod>>(&client, ns),
        watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL),
        pod_writer,
    );
    let (analysis_runs, run_writer) = reflector::store();
    let run_stream = watches::cached_touched(
        api::<DeserializeGuard<AnalysisRun>>(&client, ns),
        watcher::Config::default().labels(ROLLOUT_LABEL),
        run_writer,
    );
    // What Rollouts refer to, cached so that a reconcile reads nothing from the API. The
    // Ingress cache also holds the canary Ingresses sluice owns.
    let (services, service_writer) = reflector::store();
    let service_stream = watches::cached_touched(
        api::<Service>(&client, ns),
        watcher::Config::default(),
        service_writer,
    );
    let (ingresses, ingress_writer) = reflector::store();
    let ingress_stream = watches::cached_touched(
        api::<Ingress>(&client, ns),
        watcher::Config::default(),
        ingress_writer,
    );
    let route_writer = reflector::store::Writer::new(http_route_resource());
    let http_routes = route_writer.as_reader();
    let route_stream = watches::cached_touched(
        http_routes_api(&client, ns),
        watcher::Config::default(),
        route_writer,
    );
    let (templates, template_writer) = reflector::store();
    let template_stream = watches::cached_touched(
        api::<DeserializeGuard<AnalysisTemplate>>(&client, ns),
        watcher::Config::default(),
        template_writer,
    );
    // Cluster-scoped, so watched cluster-wide even when the controller is namespaced.
    let (cluster_templates, cluster_template_writer) = reflector::store();
    let cluster_template_stream = watches::cached_touched(
        Api::<DeserializeGuard<ClusterAnalysisTemplate>>::all(client.clone()),
        watcher::Config::default(),
        cluster_template_writer,
    );
    // Deployments only once a Rollout names one (`workloadRef`): most Rollouts never do,
    // and every Deployment of the cluster would otherwise sit in this cache.
    let (deployments, deployment_writer) = reflector::store();
    let (want_deployments, mut deployments_wanted) = tokio::sync::watch::channel(false);
    let deployment_stream = {
        let api = api::<Deployment>(&client, ns);
        futures::stream::once(async move {
            let _ = deployments_wanted.wait_for(|wanted| *wanted).await;
            watches::cached_touched(api, watcher::Config::default(), deployment_writer)
        })
        .flatten()
    };
    // Istio's objects only once a Rollout routes through Istio, like the Deployments.
    let (want_istio, istio_wanted) = tokio::sync::watch::channel(false);
    let on_demand = |resource: kube::api::ApiResource| {
        let writer = reflector::store::Writer::new(resource.clone());
        let reader = writer.as_reader();
        let api = dynamic_api(&client, ns, &resource);
        let mut wanted = istio_wanted.clone();
        let stream = futures::stream::once(async move {
            let _ = wanted.wait_for(|wanted| *wanted).await;
            watches::cached_touched(api, watcher::Config::default(), writer)
        })
        .flatten();
        (reader, stream)
    };
    let (virtual_services, vs_stream) = on_demand(virtual_service_resource());
    let (destination_rules, dr_stream) = on_demand(destination_rule_resource());
    let caches = Caches {
        services,
        ingresses,
        http_routes,
        virtual_services,
        destination_rules,
        templates,
        cluster_templates,
    };

    // Lists are consistent reads (`MostRecent`, kube's default), not `any_semantic`:
    // after an apiserver restart a cached list (resourceVersion=0) can be older than the
    // new watch cache, every watch from it fails with 410 Gone, and the watcher re-lists
    // into the same stale answer (seen in e2e: no event for minutes). client-go falls
    // back to a consistent list; kube-runtime does not, so always ask for one.
    let (rollouts, rollout_writer) = reflector::store();
    let queue = Arc::new(RolloutQueue::default());
    {
        let (queue, rollouts) = (queue.clone(), rollouts.clone());
        metrics::metrics().queue_depth_source(
            "rollout",
            Box::new(move || queue.depth(Instant::now(), |key| rollouts.get(key).is_some())),
        );
    }
    let rollout_stream = {
        let queue = queue.clone();
        watches::cached_applied(
            api::<DeserializeGuard<Rollout>>(&client, ns),
            settings.instance_selector(watcher::Config::default()),
            rollout_writer,
        )
        .inspect_ok(move |r| {
            queue.triggered(vec![ObjectRef::from_obj(r)]);
        })
    };
    let (rs_stream, run_stream) = {
        let (q1, q2) = (queue.clone(), queue.clone());
        (
            rs_stream.inspect_ok(move |rs: &ReplicaSet| {
                q1.triggered(owning_rollouts(&rs.metadata));
            }),
            run_stream.inspect_ok(move |run: &DeserializeGuard<AnalysisRun>| {
                q2.triggered(owning_rollouts(run.meta()));
            }),
        )
    };
    // Every due Rollout is handed over at once; the gate limits and orders them.
    let controller = Controller::for_stream(rollout_stream, rollouts.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(0));
    let caches_ready = {
        let (rs, runs, c) = (replica_sets.clone(), analysis_runs.clone(), caches.clone());
        let pods = pods.clone();
        async move {
            rs.wait_until_ready().await.is_ok()
                && pods.wait_until_ready().await.is_ok()
                && runs.wait_until_ready().await.is_ok()
                && c.services.wait_until_ready().await.is_ok()
                && c.ingresses.wait_until_ready().await.is_ok()
                && c.http_routes.wait_until_ready().await.is_ok()
                && c.templates.wait_until_ready().await.is_ok()
                && c.cluster_templates.wait_until_ready().await.is_ok()
        }
        .boxed()
        .shared()
    };
    {
        let (ready, synced) = (caches_ready.clone(), settings.caches_synced.clone());
        tokio::spawn(async move {
            if ready.await {
                synced.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let reporter = Reporter {
        controller: "sluice".into(),
        instance: std::env::var("HOSTNAME").ok(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        rollouts: rollouts.clone(),
        replica_sets: replica_sets.clone(),
        pods,
        analysis_runs,
        caches,
        caches_ready,
        recorder: Recorder::new(client.clone(), reporter.clone()),
        reporter,
        failures: backoff::Failures::default(),
        expectations: Expectations::default(),
        stale: Default::default(),
        queue: queue.clone(),
        gate,
        deployments,
        want_deployments,
        want_istio,
        notifier: settings.notifier.clone(),
        gatekeeper,
    });

    let referring = |kind: Referenced| {
        let (rollouts, queue) = (rollouts.clone(), queue.clone());
        move |namespace: Option<String>, name: String| {
            queue.triggered(references::referring(&rollouts, kind, namespace, &name))
        }
    };
    let deployment_refs = referring(Referenced::Deployment);
    let (vs_refs, dr_refs) = (
        referring(Referenced::VirtualService),
        referring(Referenced::DestinationRule),
    );
    let (service_refs, ingress_refs, route_refs, template_refs, cluster_template_refs) = (
        referring(Referenced::Service),
        referring(Referenced::Ingress),
        referring(Referenced::HttpRoute),
        referring(Referenced::AnalysisTemplate),
        referring(Referenced::ClusterAnalysisTemplate),
    );
    let owner_queue = queue.clone();
    let gate_queue = queue.clone();
    controller
        .reconcile_on(
            gate_woken.flat_map(move |key| futures::stream::iter(gate_queue.triggered(vec![key]))),
        )
        .owns_stream(rs_stream)
        .owns_stream(run_stream)
        // A pod's owner is its ReplicaSet, whose owner is the Rollout: a pod on its way
        // out brings back a restart waiting for it. Only those: a pod created, scheduled
        // or getting ready changes its ReplicaSet's status, which brings the Rollout back
        // already, while the end of a termination (counted out of that status when it
        // began) does not. Every other pod update would be a reconcile for nothing.
        .watches_stream(pod_stream, {
            let (sets, queue) = (replica_sets, queue.clone());
            move |pod: PartialObjectMeta<Pod>| {
                if pod.metadata.deletion_timestamp.is_none() {
                    return Vec::new();
                }
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let owners = pod
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|o| o.kind == "ReplicaSet")
                    .filter_map(|o| sets.get(&ObjectRef::new(&o.name).within(&ns)))
                    .flat_map(|rs| owning_rollouts(&rs.metadata))
                    .collect();
                queue.triggered(owners)
            }
        })
        // An object a Rollout refers to appearing, vanishing or being edited is a reason
        // to look again: a missing reference resolves, a hand-edited selector is restored,
        // a weight another writer (a GitOps sync) put back is re-asserted. A canary
        // Ingress brings back the Rollout that owns it.
        // A change of a Deployment's template is a new revision of the Rollouts taking
        // their template from it.
        .watches_stream(deployment_stream, move |d: Deployment| {
            deployment_refs(d.namespace(), d.name_any())
        })
        .watches_stream(service_stream, move |svc: Service| {
            service_refs(svc.namespace(), svc.name_any())
        })
        .watches_stream(ingress_stream, move |ing: Ingress| {
            let owner = owning_rollouts(&ing.metadata);
            let mut refs = ingress_refs(ing.namespace(), ing.name_any());
            refs.extend(owner_queue.triggered(owner));
            refs
        })
        .watches_stream_with(
            route_stream,
            move |route: kube::api::DynamicObject| route_refs(route.namespace(), route.name_any()),
            http_route_resource(),
        )
        .watches_stream_with(
            vs_stream,
            move |vs: kube::api::DynamicObject| vs_refs(vs.namespace(), vs.name_any()),
            virtual_service_resource(),
        )
        .watches_stream_with(
            dr_stream,
            move |dr: kube::api::DynamicObject| dr_refs(dr.namespace(), dr.name_any()),
            destination_rule_resource(),
        )
        .watches_stream(
            template_stream,
            move |t: DeserializeGuard<AnalysisTemplate>| template_refs(t.namespace(), t.name_any()),
        )
        .watches_stream(
            cluster_template_stream,
            move |t: DeserializeGuard<ClusterAnalysisTemplate>| {
                cluster_template_refs(None, t.name_any())
            },
        )
        // The streams above retry by themselves and pass no error on, so this backoff
        // of the Controller's (over all its streams at once) has nothing to wait for.
        .trigger_backoff(backoff::WatchBackoff::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        // Failures are logged with their category by `error_policy`.
        .for_each(|_| async {})
        .await;
    info!("controller stopped");
}

/// Every HTTPRoute the controller may route through (one namespace, or all).
fn http_routes_api(client: &Client, namespace: Option<&str>) -> Api<kube::api::DynamicObject> {
    dynamic_api(client, namespace, &http_route_resource())
}

/// Every object of `resource` the controller may read (one namespace, or all).
fn dynamic_api(
    client: &Client,
    namespace: Option<&str>,
    resource: &kube::api::ApiResource,
) -> Api<kube::api::DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Longest a reconcile may take. A hung API call would otherwise hold this Rollout's slot
/// for ever (the controller never runs two reconciles of one object at once); timing out
/// turns it into an error that is retried with backoff.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a reconcile waits for a cache started on demand (the Deployments') to list;
/// then it fails and is retried with backoff.
pub(crate) const CACHE_SYNC_WAIT: Duration = Duration::from_secs(10);

async fn reconcile(
    guard: Arc<DeserializeGuard<Rollout>>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let key = ObjectRef::from_obj(&*guard);
    let Some(_place) = ctx.gate.enter(ctx.queue.rank(&key, Instant::now())).await else {
        return Ok(Requeue::await_change());
    };
    let started = Instant::now();
    let waited = ctx.queue.started(&key, started);
    metrics::metrics().queue_waited("rollout", waited);
    // The object as it is now, not as it was when it joined the line.
    let guard = ctx.rollouts.get(&key).unwrap_or(guard);
    // Boxed: every due Rollout waits in the gate as one of these futures, and an unboxed
    // reconcile would make each of them as large as its deepest state (at N=1,000 the
    // peak RSS was 84 MiB with the gate unboxed, 66 MiB boxed and with its order fixed).
    let result = tokio::time::timeout(RECONCILE_TIMEOUT, Box::pin(reconcile_inner(guard, ctx)))
        .await
        .unwrap_or(Err(ReconcileError::Timeout(RECONCILE_TIMEOUT)));
    let outcome = result.as_ref().map_or_else(|e| e.category(), |_| "success");
    metrics::metrics().reconciled("rollout", outcome, started.elapsed());
    result
}

async fn reconcile_inner(
    guard: Arc<DeserializeGuard<Rollout>>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let rollout = match &guard.0 {
        Ok(r) => r,
        Err(_) => {
            report_malformed(&ctx, &guard).await?;
            return Ok(Requeue::await_change());
        }
    };
    // Planning from a cache that has not synced yet would look like "no ReplicaSets": a
    // restarted controller would take a new revision for the first one and skip its
    // steps. Wait for the first full list of every cache the plan reads.
    if !ctx.caches_ready.clone().await {
        return Err(ReconcileError::CacheClosed);
    }
    let key = ObjectRef::from_obj(&*guard);
    if rollout.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector take the children.
        ctx.expectations.forget(&key);
        ctx.gatekeeper.forget(&key);
        metrics::metrics().rollout_phase(key.to_string(), None);
        return Ok(Requeue::await_change());
    }
    // Planning before the caches show this Rollout's own last writes would repeat what
    // that reconcile decided, and its status write would conflict. The watch event that
    // brings the last of them runs this again; the requeue only bounds the wait.
    let mut stale = ctx.stale.take(&key);
    match ctx
        .expectations
        .waiting(&key, Instant::now(), |w| ctx.cached_version(w))
    {
        Waiting::For(wait) => {
            debug!(rollout = %rollout.name_any(), ?wait, "waiting for the caches to show our last writes");
            metrics::metrics().cache_waited("rollout");
            if stale {
                ctx.stale.mark(key.clone());
            }
            return Ok(ctx.queue.requeue(&key, wait));
        }
        Waiting::GaveUp(unshown) => stale |= unshown.iter().any(|w| w.cache == Cache::Rollout),
        Waiting::Done => {}
    }
    // A cached Rollout known to be behind the stored one would plan a status write that
    // can only conflict: read it once from the API (see `expectations::Stale`).
    let fresh;
    let rollout = if stale {
        metrics::metrics().stale_read("rollout");
        let api: Api<Rollout> = Api::namespaced(
            ctx.client.clone(),
            &key.namespace.clone().unwrap_or_default(),
        );
        fresh = api.get(&key.name).await.map_err(AdapterError::from)?;
        &fresh
    } else {
        rollout
    };
    // A template from a Deployment is resolved into a copy: everything below sees an
    // ordinary Rollout.
    let (rollout, workload) = if rollout.spec.workload_ref.is_some() {
        ctx.want_deployments
            .send_if_modified(|wanted| !std::mem::replace(wanted, true));
        tokio::time::timeout(CACHE_SYNC_WAIT, ctx.deployments.wait_until_ready())
            .await
            .map_err(|_| ReconcileError::CacheSyncing("Deployment"))?
            .map_err(|_| ReconcileError::CacheClosed)?;
        workload_ref::resolve(rollout, &ctx.deployments)
    } else {
        (std::borrow::Cow::Borrowed(rollout), None)
    };
    let rollout = rollout.as_ref();
    let routes_through_istio = rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.traffic_routing.as_ref())
        .is_some_and(|t| t.istio.is_some());
    if routes_through_istio {
        ctx.want_istio
            .send_if_modified(|wanted| !std::mem::replace(wanted, true));
        for (store, kind) in [
            (&ctx.caches.virtual_services, "VirtualService"),
            (&ctx.caches.destination_rules, "DestinationRule"),
        ] {
            tokio::time::timeout(CACHE_SYNC_WAIT, store.wait_until_ready())
                .await
                .map_err(|_| ReconcileError::CacheSyncing(kind))?
                .map_err(|_| ReconcileError::CacheClosed)?;
        }
    }
    debug!(rollout = %rollout.name_any(), "observing");
    let mut observed = observe(&ctx, rollout);
    observed.workload = workload;
    observed.gate_answers = ctx.gatekeeper.answers(&key);
    debug!(rollout = %rollout.name_any(), ?observed, "planning");
    let plan = core::plan(rollout, &observed, Timestamp::now());
    let strategy = if rollout.spec.strategy.blue_green.is_some() {
        "blueGreen"
    } else {
        "canary"
    };
    metrics::metrics().rollout_phase(
        key.to_string(),
        plan.status.phase.map(|p| (format!("{p:?}"), strategy)),
    );
    let router = rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| Router::for_rollout(&ctx.client, &ctx.caches, rollout, c));
    // Whatever was written before a failure is waited for just the same.
    let mut written = Vec::new();
    let outcome = act(&ctx, rollout, router.as_ref(), &plan, &mut written).await;
    ctx.expectations
        .record(key.clone(), written, Instant::now());
    let status_written = outcome?;
    for event in &plan.events {
        publish(&ctx, rollout, event).await;
    }
    // Only now that the status records when each gate was first called (its timeout
    // counts from there).
    ctx.gatekeeper.want(&key, rollout, &plan.gate_calls);
    // Only now that the status records the transitions: a reconcile that failed before
    // plans them again, one after finds them recorded (see `core::notice`).
    ctx.notifier.notify(
        rollout,
        &plan.notices,
        plan.status.phase.map(|p| format!("{p:?}")),
    );
    if !plan.actions.is_empty() || status_written {
        info!(
            rollout = %format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any()),
            actions = plan.actions.len(),
            phase = ?plan.status.phase,
            step = ?plan.status.current_step_index,
            "reconciled"
        );
    }
    ctx.failures.forget(&key);
    Ok(match plan.requeue_after {
        Some(after) => ctx
            .queue
            .deadline(&key, after.max(Duration::from_millis(50))),
        None => Requeue::await_change(),
    })
}

/// Executes the plan's actions, then writes its status when it changed (true if so),
/// adding to `written` what each write left for the caches to show.
async fn act(
    ctx: &Context,
    rollout: &Rollout,
    router: Option<&Router>,
    plan: &core::Plan,
    written: &mut Vec<Written>,
) -> Result<bool, ReconcileError> {
    for action in &plan.actions {
        written.extend(execute(ctx, rollout, router, &plan.status, action).await?);
    }
    // The write carries the resourceVersion the plan was made from, so a user action
    // (abort, promote, ...) patched in since makes it fail with a conflict instead of
    // being overwritten. That conflict is an error like any other: the watch event of
    // the user's patch brings the Rollout back at once, and the backoff only decides
    // when to try again if none comes.
    let Some(stored) = status::write(&ctx.client, rollout, &plan.status).await? else {
        return Ok(false);
    };
    written.extend(workload::written(
        Cache::Rollout,
        &rollout.namespace().unwrap_or_default(),
        &stored,
    ));
    Ok(true)
}

/// Reads what the core needs, all from the caches: ReplicaSets, AnalysisRuns, the
/// referenced Services and templates, and the router's state.
fn observe(ctx: &Context, rollout: &Rollout) -> Observed {
    let namespace = rollout.namespace().unwrap_or_default();
    let uid = rollout.uid();
    let owned = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == uid.as_ref())
    };
    let owned_sets: Vec<_> = ctx
        .replica_sets
        .state()
        .into_iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()) && owned(&rs.metadata))
        .collect();
    let replica_sets: Vec<_> = owned_sets
        .iter()
        .filter_map(|rs| workload::observe_replica_set(rs))
        .collect();
    // What a baseline runs: the template of the stable revision's ReplicaSet (copied only
    // when the Rollout asks for a baseline).
    let wants_baseline = rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(|c| c.baseline.as_ref())
        .is_some_and(|b| b.enabled);
    let stable_hash = rollout.status.as_ref().and_then(|s| s.stable_rs.as_deref());
    let stable_template = owned_sets
        .iter()
        .filter(|_| wants_baseline)
        .find(|rs| {
            workload::observe_replica_set(rs).is_some_and(|r| Some(r.hash.as_str()) == stable_hash)
        })
        .and_then(|rs| rs.spec.template.clone());
    // The pods of the revisions, by their controlling ReplicaSet; their labels and
    // annotations only when role metadata is wanted or still to be taken off.
    let role_metadata = core::pod_metadata::reads_pod_metadata(rollout, &replica_sets);
    let copy_metadata = |m: Option<&std::collections::BTreeMap<String, String>>| {
        m.filter(|_| role_metadata).cloned().unwrap_or_default()
    };
    let revision_names: std::collections::BTreeSet<String> =
        replica_sets.iter().map(|rs| rs.name.clone()).collect();
    let pods = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter_map(|p| {
            let owner = p
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
            revision_names.contains(&owner.name).then(|| PodState {
                name: p.name_any(),
                replica_set: owner.name.clone(),
                created: p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                terminating: p.metadata.deletion_timestamp.is_some(),
                labels: copy_metadata(p.metadata.labels.as_ref()),
                annotations: copy_metadata(p.metadata.annotations.as_ref()),
            })
        })
        .collect();
    let mut observed = Observed {
        pods,
        replica_sets,
        baselines: owned_sets
            .iter()
            .filter_map(|rs| workload::observe_baseline(rs))
            .collect(),
        stable_template,
        analysis_runs: ctx
            .analysis_runs
            .state()
            .iter()
            .filter(|r| r.namespace().as_deref() == Some(namespace.as_str()) && owned(r.meta()))
            .map(|r| run_state(r))
            .collect(),
        ..Observed::default()
    };
    let strategy = &rollout.spec.strategy;
    let services: Vec<&String> = match (&strategy.canary, &strategy.blue_green) {
        (Some(c), _) => [&c.canary_service, &c.stable_service]
            .into_iter()
            .flatten()
            .collect(),
        (None, Some(b)) => std::iter::once(&b.active_service)
            .chain(b.preview_service.as_ref())
            .collect(),
        (None, None) => Vec::new(),
    };
    for service in services {
        match workload::service_hash(&ctx.caches, &namespace, service) {
            workload::ServiceRef::Pins(hash) => {
                observed.services.insert(service.clone(), hash);
            }
            workload::ServiceRef::Unusable(why) => observed.unusable.push(why),
            workload::ServiceRef::Missing => observed
                .missing
                .push(format!("Service {namespace}/{service}")),
        }
    }
    if let Some(canary) = &strategy.canary
        && let Some(router) = Router::for_rollout(&ctx.client, &ctx.caches, rollout, canary)
    {
        // A router that selects pods by itself (Istio's DestinationRule subsets) pins a
        // revision only where it agrees with the Service: otherwise the Service reads as
        // pinning none, the core points it again, and `execute` points both.
        for service in [&canary.canary_service, &canary.stable_service]
            .into_iter()
            .flatten()
        {
            if let Some(pinned) = observed.services.get_mut(service)
                && let Ok(Some(subset)) = router.subset_hash(service)
                && subset != *pinned
            {
                *pinned = None;
            }
        }
        // A reference of the wrong shape (a spec.rules that is no list, an Ingress name
        // taken by a foreign object) is reported as unusable, like a Service that selects
        // nothing, rather than failing every reconcile.
        match router.missing_references() {
            Ok(missing) => observed.missing.extend(missing),
            Err(e) => observed.unusable.push(e.to_string()),
        }
        if observed.missing.is_empty() && observed.unusable.is_empty() {
            match router.current_weight() {
                Ok(weight) => observed.router_weight = weight,
                Err(e) => observed.unusable.push(e.to_string()),
            }
            match router.current_routes() {
                Ok(routes) => observed.router_routes = routes,
                Err(e) => observed.unusable.push(e.to_string()),
            }
        }
    }
    // Each analysis with the field it is written in, for the messages.
    let analyses: Vec<(String, &sluice_api::rollout::RolloutAnalysis)> =
        match (&strategy.canary, &strategy.blue_green) {
            (Some(c), _) => c
                .steps
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    s.analysis
                        .as_ref()
                        .map(|a| (format!("spec.strategy.canary.steps[{i}].analysis"), a))
                })
                .chain(
                    c.analysis
                        .as_ref()
                        .map(|b| ("spec.strategy.canary.analysis".to_string(), &b.analysis)),
                )
                .collect(),
            (None, Some(b)) => [
                ("prePromotionAnalysis", &b.pre_promotion_analysis),
                ("postPromotionAnalysis", &b.post_promotion_analysis),
            ]
            .into_iter()
            .filter_map(|(f, a)| {
                a.as_ref()
                    .map(|a| (format!("spec.strategy.blueGreen.{f}"), a))
            })
            .collect(),
            (None, None) => Vec::new(),
        };
    for (field, analysis) in analyses {
        let (missing, unusable) = runs::check(&ctx.caches, rollout, analysis);
        observed.missing.extend(missing);
        observed
            .unusable
            .extend(unusable.into_iter().map(|why| format!("{field}: {why}")));
    }
    observed
}

/// What the planner sees of a run. A run that does not deserialize has no verdict that
/// can be trusted and will never measure: it is an Error (the analysis controller marks
/// it so too), never a silent pass and never a wait for ever.
fn run_state(guard: &DeserializeGuard<AnalysisRun>) -> AnalysisRunState {
    let meta = guard.meta();
    let created = meta.creation_timestamp.as_ref().map(|t| t.0);
    match &guard.0 {
        Ok(r) => AnalysisRunState {
            name: r.name_any(),
            phase: r.status.as_ref().and_then(|s| s.phase),
            message: r.status.as_ref().and_then(|s| s.message.clone()),
            created,
            terminating: r.spec.terminate,
        },
        Err(invalid) => AnalysisRunState {
            name: guard.name_any(),
            phase: Some(sluice_api::analysis::AnalysisPhase::Error),
            message: Some(format!("the AnalysisRun cannot be read: {}", invalid.error)),
            created,
            terminating: false,
        },
    }
}

async fn execute(
    ctx: &Context,
    rollout: &Rollout,
    router: Option<&Router>,
    planned: &sluice_api::rollout::RolloutStatus,
    action: &Action,
) -> Result<Vec<Written>, ReconcileError> {
    let client = &ctx.client;
    let namespace = rollout.namespace().unwrap_or_default();
    let one = match action {
        Action::CreateReplicaSet {
            hash,
            revision,
            replicas,
            pod_metadata,
        } => {
            let rs = workload::build_replica_set(rollout, hash, *revision, *replicas, pod_metadata);
            workload::create_replica_set(client, &rs).await?
        }
        Action::ScaleReplicaSet {
            name,
            replicas,
            scale_down_at,
        } => {
            workload::scale_replica_set(client, &namespace, name, *replicas, *scale_down_at).await?
        }
        Action::CreateBaselineReplicaSet {
            stable_hash,
            canary_hash,
            replicas,
            template,
        } => {
            let rs = workload::build_baseline_replica_set(
                rollout,
                stable_hash,
                canary_hash,
                *replicas,
                template,
            );
            workload::create_replica_set(client, &rs).await?
        }
        Action::DeleteReplicaSet { name } => {
            workload::delete_replica_set(client, &namespace, name).await?
        }
        Action::SetServiceSelector { service, hash } => {
            let mut out: Vec<Written> =
                workload::set_service_selector(client, &namespace, service, hash)
                    .await?
                    .into_iter()
                    .collect();
            if let Some(router) = router {
                out.extend(router.set_subset_hash(service, hash).await?);
            }
            return Ok(out);
        }
        Action::SetCanaryWeight { weight } => match router {
            Some(router) => router.set_weight(*weight).await?,
            None => None,
        },
        Action::SetManagedRoutes { routes } => match router {
            Some(router) => router.set_routes(routes).await?,
            None => None,
        },
        Action::CreateAnalysisRun {
            name,
            analysis: spec,
            role,
        } => {
            let run = runs::NewRun {
                name,
                role,
                analysis: spec,
                stable_hash: planned.stable_rs.as_deref().unwrap_or_default(),
                latest_hash: planned.current_pod_hash.as_deref().unwrap_or_default(),
            };
            runs::create_run(client, &ctx.caches, rollout, run).await?
        }
        Action::TerminateAnalysisRun { name } => {
            runs::terminate_run(client, &namespace, name).await?
        }
        Action::DeleteAnalysisRun { name } => runs::delete_run(client, &namespace, name).await?,
        Action::EvictPod { name } => {
            let cached = ctx.pods.get(&ObjectRef::new(name).within(&namespace));
            let version = cached.and_then(|p| p.metadata.resource_version.clone());
            workload::evict_pod(client, &namespace, name, version.as_deref()).await?
        }
        Action::ScaleDeployment { name, replicas } => {
            workload_ref::scale_deployment(client, &namespace, name, *replicas).await?;
            None
        }
        Action::PatchPodMetadata {
            pod,
            labels,
            annotations,
        } => workload::patch_pod_metadata(client, &namespace, pod, labels, annotations).await?,
        Action::SetReplicaSetPodMetadata {
            name,
            labels,
            annotations,
            applied,
        } => {
            workload::set_replica_set_pod_metadata(
                client,
                &namespace,
                name,
                labels,
                annotations,
                applied,
            )
            .await?
        }
    };
    Ok(one.into_iter().collect())
}

async fn publish(ctx: &Context, rollout: &Rollout, planned: &core::PlannedEvent) {
    let event = Event {
        type_: if planned.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: planned.reason.clone(),
        note: Some(planned.message.chars().take(1000).collect()),
        // The API limits `action` to 128 characters.
        action: planned.action.chars().take(128).collect(),
        secondary: None,
    };
    // A Recorder of its own for each Event: a shared one keeps every Event it published
    // for 6 minutes, to count repeats as a series, and prunes that cache on each publish
    // under one lock. The plans' Events are transitions, keyed by revision and step, and
    // seldom repeat (a weight drifting back again); a repeat is one write either way (a
    // create instead of a series patch). At 1,000 Rollouts that cache held thousands of
    // Events and serialised every reconcile's Events on its lock.
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    if let Err(e) = recorder.publish(&event, &rollout.object_ref(&())).await {
        warn!(error = %e, reason = %planned.reason, "could not record event");
    }
}

/// A Rollout that does not even deserialize (e.g. a field of the wrong type written
/// before the CRD's schema was tightened): it gets `InvalidSpec` and one Event, and the
/// controller goes on with the others. Its own status write comes back as a watch event,
/// which finds it reported and writes nothing.
async fn report_malformed(
    ctx: &Context,
    guard: &DeserializeGuard<Rollout>,
) -> Result<(), ReconcileError> {
    malformed::report(&ctx.client, &ctx.recorder, guard, malformed::Shape::Rollout).await?;
    Ok(())
}

/// Exponential backoff per Rollout ([`backoff::delay`]: 0.5 s doubling to 5 min, ±20 %
/// jitter), so a failing Rollout neither spins nor synchronises with others.
fn error_policy(
    guard: Arc<DeserializeGuard<Rollout>>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Requeue {
    let key = ObjectRef::from_obj(&*guard);
    let jitter = backoff::jitter_for(&key, Timestamp::now().subsec_nanosecond().unsigned_abs());
    let attempt = ctx.failures.record(key.clone());
    let delay = backoff::delay(attempt, jitter);
    let rollout = format!(
        "{}/{}",
        guard.namespace().unwrap_or_default(),
        guard.name_any()
    );
    let category = error.category();
    if category == "conflict" {
        // Expected now and then (a user action raced our write); not a failure to alarm on.
        // The stored Rollout is newer than the cache: the retry reads it.
        ctx.stale.mark(key.clone());
        info!(%rollout, category, attempt, retry_in = ?delay, error = %error, "reconcile conflicted");
    } else {
        warn!(%rollout, category, attempt, retry_in = ?delay, error = %error, "reconcile failed");
    }
    ctx.queue.requeue(&key, delay)
}
