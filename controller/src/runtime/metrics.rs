//! The controller's own metrics, in the Prometheus text format (`prometheus-client`),
//! served on `/metrics`. One process-wide set ([`metrics`]), as a Prometheus default
//! registry would be: the reconcilers record into it, the HTTP handler encodes it.
//!
//! Names and labels are a contract with users' dashboards and alerts (see
//! docs/operations.md): change them deliberately.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `rollout` or `analysisrun`.
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: &'static str,
    /// `success`, or the error's stable category (`conflict`, `api`, `timeout`, ...).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub phase: String,
    pub strategy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeasurementLabels {
    /// `prometheus`, `judge`, `sequential` or `web`.
    pub provider: &'static str,
    /// Successful, Failed, Inconclusive or Error.
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// The webhook's name in the notifications ConfigMap.
    pub webhook: String,
    /// `delivered`, `failed` (refused, or retries given up) or `dropped` (never sent: a
    /// full queue, a body that would not render, the webhook gone from the config).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateLabels {
    /// `preRollout`, `weightIncrease`, `prePromotion`, `postRollout` or `rollback`.
    pub point: &'static str,
    /// `passed` (answered 2xx) or `held` (any other answer, or none).
    pub outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
type DepthSource = Box<dyn Fn() -> usize + Send + Sync>;

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Histograms<ControllerLabels>,
    /// Reconciles that waited for the caches to show the last reconcile's own writes.
    cache_waits: Family<ControllerLabels, Counter>,
    stale_reads: Family<ControllerLabels, Counter>,
    pub measurements: Family<MeasurementLabels, Counter>,
    pub measurement_duration: Histograms<ProviderLabels>,
    pub leader: Gauge,
    /// How long reconciles waited between becoming due and starting ([`super::queue`]).
    queue_wait: Histograms<ControllerLabels>,
    queue_depth: Family<ControllerLabels, Gauge>,
    /// Per controller, what counts its due objects at scrape time.
    queue_depth_sources: Mutex<HashMap<&'static str, DepthSource>>,
    rollouts: Family<RolloutLabels, Gauge>,
    notifications: Family<NotificationLabels, Counter>,
    gate_calls: Family<GateLabels, Counter>,
    /// Each Rollout's (phase, strategy), as its last reconcile planned it.
    rollout_phases: Mutex<HashMap<String, RolloutLabels>>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles, by controller and result (success or the error's category)",
            reconciles.clone(),
        );
        let reconcile_duration: Histograms<ControllerLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles took",
            reconcile_duration.clone(),
        );
        let cache_waits = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "cache_waits",
            "Reconciles deferred until the caches showed the previous reconcile's own writes",
            cache_waits.clone(),
        );
        let stale_reads = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "stale_reads",
            "Objects read from the API because their cache was known to be behind (a 409, or a watch later than the wait bound)",
            stale_reads.clone(),
        );
        let measurements = Family::<MeasurementLabels, Counter>::default();
        registry.register(
            "analysis_measurements",
            "Analysis measurements taken, by provider and phase",
            measurements.clone(),
        );
        let measurement_duration: Histograms<ProviderLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "analysis_measurement_duration_seconds",
            "How long a measurement took (its Prometheus queries included)",
            measurement_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without election)",
            leader.clone(),
        );
        let queue_depth = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Objects due for a reconcile that has not started (waiting for a worker or the rate limit)",
            queue_depth.clone(),
        );
        let queue_wait: Histograms<ControllerLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "queue_wait_seconds",
            "How long a reconcile waited between becoming due and starting",
            queue_wait.clone(),
        );
        let rollouts = Family::<RolloutLabels, Gauge>::default();
        registry.register(
            "rollouts",
            "Rollouts served by this replica, by phase and strategy",
            rollouts.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications to webhooks, by webhook and outcome",
            notifications.clone(),
        );
        let gate_calls = Family::<GateLabels, Counter>::default();
        registry.register(
            "gate_calls",
            "Calls of gates (spec.strategy.gates), by point and outcome",
            gate_calls.clone(),
        );
        // Series that exist from the start, at zero, so that `rate()` and `increase()` see
        // their first increment and alerts can tell "none yet" from "not exported".
        for controller in ["rollout", "analysisrun"] {
            cache_waits
                .get_or_create(&ControllerLabels { controller })
                .inc_by(0);
            stale_reads
                .get_or_create(&ControllerLabels { controller })
                .inc_by(0);
            reconciles
                .get_or_create(&ReconcileLabels {
                    controller,
                    result: "success",
                })
                .inc_by(0);
        }
        Metrics {
            registry,
            reconciles,
            reconcile_duration,
            cache_waits,
            stale_reads,
            measurements,
            measurement_duration,
            leader,
            queue_wait,
            queue_depth,
            queue_depth_sources: Mutex::new(HashMap::new()),
            rollouts,
            notifications,
            gate_calls,
            rollout_phases: Mutex::new(HashMap::new()),
        }
    }

    /// A notification to `webhook` ended with `outcome`.
    pub fn notified(&self, webhook: &str, outcome: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                webhook: webhook.to_string(),
                outcome,
            })
            .inc();
    }

    /// A call of a gate at `point` ended with `outcome`.
    pub fn gate_called(&self, point: &'static str, outcome: &'static str) {
        self.gate_calls
            .get_or_create(&GateLabels { point, outcome })
            .inc();
    }

    /// Records a reconcile's outcome and duration.
    pub fn reconciled(&self, controller: &'static str, result: &'static str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        self.reconcile_duration
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
    }

    /// A reconcile of `controller` started after waiting `waited` in the queue.
    pub fn queue_waited(&self, controller: &'static str, waited: Duration) {
        self.queue_wait
            .get_or_create(&ControllerLabels { controller })
            .observe(waited.as_secs_f64());
    }

    /// A reconcile of `controller` was deferred until the caches show its last writes.
    pub fn cache_waited(&self, controller: &'static str) {
        self.cache_waits
            .get_or_create(&ControllerLabels { controller })
            .inc();
    }

    /// An object of `controller` was read from the API: its cache was behind.
    pub fn stale_read(&self, controller: &'static str) {
        self.stale_reads
            .get_or_create(&ControllerLabels { controller })
            .inc();
    }

    /// The phase the last plan gave Rollout `key` (None: it is gone).
    pub fn rollout_phase(&self, key: String, phase: Option<(String, &'static str)>) {
        let mut phases = self.rollout_phases.lock().expect("metrics lock poisoned");
        match phase {
            Some((phase, strategy)) => {
                phases.insert(key, RolloutLabels { phase, strategy });
            }
            None => {
                phases.remove(&key);
            }
        }
    }

    /// `count` gives `controller`'s queue depth when scraped (replacing an earlier one).
    pub fn queue_depth_source(&self, controller: &'static str, count: DepthSource) {
        self.queue_depth_sources
            .lock()
            .expect("metrics lock poisoned")
            .insert(controller, count);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        for (controller, count) in self
            .queue_depth_sources
            .lock()
            .expect("metrics lock poisoned")
            .iter()
        {
            let depth = i64::try_from(count()).unwrap_or(i64::MAX);
            self.queue_depth
                .get_or_create(&ControllerLabels { controller })
                .set(depth);
        }
        {
            let phases = self.rollout_phases.lock().expect("metrics lock poisoned");
            self.rollouts.clear();
            for labels in phases.values() {
                self.rollouts.get_or_create(labels).inc();
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exported_at_zero_before_their_first_increment() {
        let text = Metrics::new().encode();
        for line in [
            "sluice_cache_waits_total{controller=\"rollout\"} 0",
            "sluice_cache_waits_total{controller=\"analysisrun\"} 0",
            "sluice_stale_reads_total{controller=\"rollout\"} 0",
            "sluice_reconciles_total{controller=\"rollout\",result=\"success\"} 0",
            "sluice_reconciles_total{controller=\"analysisrun\",result=\"success\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn the_exposition_names_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.reconciled("rollout", "success", Duration::from_millis(3));
        m.reconciled("rollout", "conflict", Duration::from_millis(5));
        m.measurements
            .get_or_create(&MeasurementLabels {
                provider: "prometheus",
                phase: "Successful".into(),
            })
            .inc();
        m.leader.set(1);
        m.queue_depth_source("rollout", Box::new(|| 7));
        m.queue_waited("rollout", Duration::from_millis(500));
        m.cache_waited("rollout");
        m.stale_read("rollout");
        m.rollout_phase("shop/web".into(), Some(("Paused".into(), "canary")));
        m.rollout_phase("shop/api".into(), Some(("Paused".into(), "canary")));
        m.rollout_phase("shop/old".into(), Some(("Healthy".into(), "blueGreen")));
        m.rollout_phase("shop/old".into(), None);
        let text = m.encode();
        for line in [
            "sluice_reconciles_total{controller=\"rollout\",result=\"success\"} 1",
            "sluice_reconciles_total{controller=\"rollout\",result=\"conflict\"} 1",
            "sluice_reconcile_duration_seconds_count{controller=\"rollout\"} 2",
            "sluice_analysis_measurements_total{provider=\"prometheus\",phase=\"Successful\"} 1",
            "sluice_leader 1",
            "sluice_queue_depth{controller=\"rollout\"} 7",
            "sluice_queue_wait_seconds_count{controller=\"rollout\"} 1",
            "sluice_cache_waits_total{controller=\"rollout\"} 1",
            "sluice_stale_reads_total{controller=\"rollout\"} 1",
            "sluice_rollouts{phase=\"Paused\",strategy=\"canary\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(
            !text.contains("Healthy"),
            "a deleted Rollout is not counted:\n{text}"
        );
    }
}
