//! The dashboard's own reflector caches. Pages and live streams render from these alone,
//! so a page view costs no API call; every change bumps a counter that wakes the streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use sluice_api::analysis::AnalysisRun;
use sluice_api::labels::{POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, ROLLOUT_LABEL};
use sluice_api::rollout::Rollout;
use sluice_controller::runtime::api;
use tokio::sync::watch;

/// Read-only views of the caches, cheap to clone.
#[derive(Clone)]
pub struct Caches {
    /// Every Rollout in scope; one that does not deserialize is kept as its error.
    pub rollouts: Store<DeserializeGuard<Rollout>>,
    /// sluice's ReplicaSets (those with the pod-template-hash label).
    pub replica_sets: Store<ReplicaSet>,
    /// AnalysisRuns created by sluice (those with the rollout label).
    pub runs: Store<AnalysisRun>,
    /// Events about sluice objects (Rollouts and AnalysisRuns).
    pub events: Store<Event>,
    /// Bumped on every change to any cache.
    pub changes: watch::Receiver<u64>,
    /// True once every cache has listed once.
    ready: Arc<AtomicBool>,
}

impl Caches {
    /// Starts watching; the returned future drives the reflectors and never ends on its
    /// own (watch errors are retried with kube's default backoff).
    pub fn start(client: &Client, namespace: Option<&str>) -> (Self, BoxFuture<'static, ()>) {
        let (tx, changes) = watch::channel(0u64);
        let bump = move || tx.send_modify(|n| *n = n.wrapping_add(1));

        let (rollouts, rollout_writer) = reflector::store();
        let (replica_sets, rs_writer) = reflector::store();
        let (runs, run_writer) = reflector::store();
        let (events, event_writer) = reflector::store();
        // Label- and field-selected like the controller's own watches, so memory follows
        // what sluice manages rather than the size of the cluster.
        let streams = futures::stream::select_all([
            watcher(
                api::<DeserializeGuard<Rollout>>(client, namespace),
                watcher::Config::default(),
            )
            .backoff(sluice_controller::runtime::backoff::WatchBackoff::default())
            .reflect(rollout_writer)
            .map(|_| ())
            .boxed(),
            watcher(
                api::<ReplicaSet>(client, namespace),
                watcher::Config::default().labels(POD_TEMPLATE_HASH_LABEL),
            )
            .backoff(sluice_controller::runtime::backoff::WatchBackoff::default())
            .reflect(rs_writer)
            .map(|_| ())
            .boxed(),
            watcher(
                api::<AnalysisRun>(client, namespace),
                watcher::Config::default().labels(ROLLOUT_LABEL),
            )
            .backoff(sluice_controller::runtime::backoff::WatchBackoff::default())
            .reflect(run_writer)
            .map(|_| ())
            .boxed(),
            watcher(
                api::<Event>(client, namespace),
                watcher::Config::default().fields(&format!(
                    "involvedObject.apiVersion={}/{}",
                    sluice_api::GROUP,
                    sluice_api::VERSION
                )),
            )
            .backoff(sluice_controller::runtime::backoff::WatchBackoff::default())
            .reflect(event_writer)
            .map(|_| ())
            .boxed(),
        ]);
        let ready = Arc::new(AtomicBool::new(false));
        let caches = Caches {
            rollouts,
            replica_sets,
            runs,
            events,
            changes,
            ready: ready.clone(),
        };
        let waiting = caches.clone();
        let run = async move {
            let became_ready = async move {
                let all = futures::join!(
                    waiting.rollouts.wait_until_ready(),
                    waiting.replica_sets.wait_until_ready(),
                    waiting.runs.wait_until_ready(),
                    waiting.events.wait_until_ready(),
                );
                if all.0.is_ok() && all.1.is_ok() && all.2.is_ok() && all.3.is_ok() {
                    ready.store(true, Ordering::Release);
                }
            };
            let watching = streams.for_each(|()| {
                bump();
                futures::future::ready(())
            });
            futures::join!(became_ready, watching);
        }
        .boxed();
        (caches, run)
    }

    /// Caches filled from fixed objects, for tests of the views and routes; the returned
    /// handle changes Rollouts afterwards, as a watch event would.
    pub fn fixed(
        rollouts: Vec<Rollout>,
        replica_sets: Vec<ReplicaSet>,
        runs: Vec<AnalysisRun>,
        events: Vec<Event>,
    ) -> (Self, FixedRollouts) {
        fn fill<K>(items: Vec<K>) -> (Store<K>, reflector::store::Writer<K>)
        where
            K: kube::runtime::reflector::Lookup + Clone + 'static,
            K::DynamicType: Default + Eq + std::hash::Hash + Clone,
        {
            let (store, mut writer) = reflector::store();
            writer.apply_watcher_event(&watcher::Event::Init);
            for item in items {
                writer.apply_watcher_event(&watcher::Event::InitApply(item));
            }
            writer.apply_watcher_event(&watcher::Event::InitDone);
            (store, writer)
        }
        let (tx, changes) = watch::channel(0);
        let (rollouts, rollout_writer) = fill(
            rollouts
                .into_iter()
                .map(|r| DeserializeGuard(Ok(r)))
                .collect(),
        );
        let caches = Caches {
            rollouts,
            replica_sets: fill(replica_sets).0,
            runs: fill(runs).0,
            events: fill(events).0,
            changes,
            ready: Arc::new(AtomicBool::new(true)),
        };
        (
            caches,
            FixedRollouts {
                writer: rollout_writer,
                changes: tx,
            },
        )
    }

    /// Marks the caches as not listed yet (or listed, again), for tests.
    #[cfg(test)]
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// True once every cache has listed once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Every readable Rollout, sorted by namespace and name.
    pub fn all_rollouts(&self) -> Vec<Arc<DeserializeGuard<Rollout>>> {
        let mut all = self.rollouts.state();
        all.sort_by_key(|g| (g.namespace(), g.name_any()));
        all
    }

    /// One Rollout (or its deserialization error).
    pub fn rollout(&self, namespace: &str, name: &str) -> Option<Arc<DeserializeGuard<Rollout>>> {
        self.rollouts
            .find(|g| g.namespace().as_deref() == Some(namespace) && g.name_any() == name)
    }

    /// The ReplicaSets a Rollout owns, newest revision first.
    pub fn replica_sets_of(&self, rollout: &Rollout) -> Vec<Arc<ReplicaSet>> {
        let mut owned = self
            .replica_sets
            .state_filter(|rs| owned_by(&rs.metadata, rollout));
        owned.sort_by_key(|rs| std::cmp::Reverse(revision(rs)));
        owned
    }

    /// The AnalysisRuns a Rollout owns, newest first.
    pub fn runs_of(&self, rollout: &Rollout) -> Vec<Arc<AnalysisRun>> {
        let mut owned = self.runs.state_filter(|r| owned_by(&r.metadata, rollout));
        owned.sort_by_key(|r| {
            std::cmp::Reverse((
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                r.name_any(),
            ))
        });
        owned
    }

    /// Events about a Rollout or about runs it owns, newest first.
    pub fn events_of(&self, rollout: &Rollout, runs: &[Arc<AnalysisRun>]) -> Vec<Arc<Event>> {
        let namespace = rollout.namespace();
        let name = rollout.name_any();
        let mut events = self.events.state_filter(|e| {
            let o = &e.involved_object;
            o.namespace == namespace
                && match o.kind.as_deref() {
                    Some("Rollout") => o.name.as_deref() == Some(name.as_str()),
                    Some("AnalysisRun") => {
                        runs.iter().any(|r| Some(r.name_any()) == o.name.clone())
                    }
                    _ => false,
                }
        });
        events.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
        events
    }
}

fn owned_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    r: &Rollout,
) -> bool {
    meta.namespace == r.metadata.namespace
        && meta
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == r.metadata.uid.as_ref())
}

/// The `sluice.dev/revision` of a ReplicaSet (0 when missing or unreadable).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// When an Event last happened, from whichever of its time fields is set.
pub fn event_time(e: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    // Microsecond times first: Events from kube's Recorder (events.k8s.io) carry
    // `eventTime`, while `lastTimestamp` has whole seconds and would shuffle a burst.
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Changes the Rollouts of [`Caches::fixed`].
pub struct FixedRollouts {
    writer: reflector::store::Writer<DeserializeGuard<Rollout>>,
    changes: watch::Sender<u64>,
}

impl FixedRollouts {
    /// Stores the Rollout (added or modified) and wakes the live streams.
    pub fn apply(&mut self, rollout: Rollout) {
        self.writer
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(rollout))));
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}
