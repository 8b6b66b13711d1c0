//! The AnalysisRun controller: takes each metric's measurements when they are due,
//! records them, and sets the run's verdict, which the Rollout controller acts on.
//!
//! Reconcile: resolve args (Secrets are read at measurement time, never copied into the
//! run) → `core::analysis::due` → measure each due metric (Prometheus or the judge; a
//! failed query is an Error measurement, never a reconcile error) → `record` →
//! `run_phase` → write the status if it changed → requeue at the next due time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use sluice_api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunArgument, AnalysisRunStatus, AnalysisSpec, JudgeMetric,
    Measurement, Metric, PrometheusConnection, SequentialMetric, WebMetric,
};
use tracing::{error, info, warn};

use super::expectations::Expectations;
use super::job_metrics::JobMetrics;
use super::malformed::{self, Shape};
use super::metrics;
use super::queue::{Gate, Queue};
use super::{ReconcileError, Settings, api, backoff, watches};
use crate::adapters::AdapterError;
use crate::adapters::job::JOB_CALL_TIMEOUT;
use crate::adapters::prometheus::{PrometheusClient, PrometheusError, QueryRequest, QueryResult};
use crate::adapters::slices::{SliceGrid, SliceSource};
use crate::adapters::web::{WebBody, WebClient, WebRequest, WebTls};
use crate::adapters::workload::written;
use crate::adapters::written::{Cache, Written};
use crate::core::analysis::{self as plan, MetricValue};
use crate::core::judge::{self, SignalSamples, Verdict};
use crate::core::sequential;

const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest one Secret read may take (a bearer token, a secret-valued arg). A read that
/// never answers would otherwise hold the run's reconcile for ever; timing out makes it
/// an Error measurement, which the limits then judge.
pub const SECRET_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a reconcile may take besides its queries and Secret reads: the status write and
/// the args' Secrets (see [`time_budget`]).
const RECONCILE_OVERHEAD: Duration = Duration::from_secs(30);

/// Longest one reconcile of a run with this analysis may take: every query of every
/// metric at its own timeout, each metric's Secret read, and the overhead. Bounded, so a
/// hung call (the API, a Secret, a Prometheus that accepts and never answers) cannot hold
/// the run for ever (the controller never runs two reconciles of one run at once); and
/// not a fixed figure, so that an analysis of many slow queries is not cut short every
/// time and never recorded.
pub fn time_budget(spec: &AnalysisSpec) -> Duration {
    let timeout = |c: &PrometheusConnection| {
        c.timeout
            .as_ref()
            .and_then(|t| t.to_duration().ok())
            .unwrap_or(DEFAULT_QUERY_TIMEOUT)
            + if c.authentication.is_some() {
                SECRET_READ_TIMEOUT
            } else {
                Duration::ZERO
            }
    };
    let secret_args = spec
        .args
        .iter()
        .filter(|a| {
            a.value_from
                .as_ref()
                .is_some_and(|v| v.secret_key_ref.is_some())
        })
        .count() as u32;
    let queries: Duration = spec
        .metrics
        .iter()
        .map(|m| match (&m.provider.prometheus, &m.provider.judge) {
            (Some(p), _) => timeout(&p.connection),
            // Two range queries per signal, over one connection.
            (None, Some(j)) => timeout(&j.connection) * (2 * j.signals.len() as u32).max(1),
            (None, None) => match (&m.provider.sequential, &m.provider.web) {
                // Four counters, or two histograms.
                (Some(s), _) => timeout(&s.connection) * if s.counts.is_some() { 4 } else { 2 },
                (None, Some(w)) => web_timeout(w) + SECRET_READ_TIMEOUT * web_secrets(w),
                // Create (and a GET of one that exists already), a GET of one not
                // cached, or a delete: two calls at most.
                (None, None) if m.provider.job.is_some() => JOB_CALL_TIMEOUT * 2,
                (None, None) => Duration::ZERO,
            },
        })
        .sum();
    let job_cache = if spec.metrics.iter().any(|m| m.provider.job.is_some()) {
        super::CACHE_SYNC_WAIT
    } else {
        Duration::ZERO
    };
    RECONCILE_OVERHEAD + SECRET_READ_TIMEOUT * secret_args + queries + job_cache
}

fn web_timeout(web: &WebMetric) -> Duration {
    Duration::from_secs(web.timeout_seconds.clamp(1, 600).unsigned_abs())
}

fn web_secrets(web: &WebMetric) -> u32 {
    web.headers
        .iter()
        .filter(|h| h.value_from.is_some())
        .count() as u32
}

/// Takes measurements: the one implementation used by the AnalysisRun controller and by
/// `kubectl sluice analyze`, which replays an analysis over a past window.
pub struct Measurer {
    /// For Secrets (bearer tokens, secret-valued args).
    pub client: Client,
    pub prometheus: PrometheusClient,
    pub web: WebClient,
}

/// Shared state of the AnalysisRun reconciler.
struct Context {
    measurer: Measurer,
    /// The Jobs of job metrics.
    jobs: JobMetrics,
    recorder: Recorder,
    /// The runs as the Controller's watch holds them.
    runs: Store<DeserializeGuard<AnalysisRun>>,
    /// Each run's last status write, until the cache shows it: measuring again from the
    /// status before it would take a measurement twice, and its write would conflict.
    expectations: Expectations<ObjectRef<DeserializeGuard<AnalysisRun>>>,
    /// Consecutive failures per run, for exponential backoff.
    failures: backoff::Failures<ObjectRef<DeserializeGuard<AnalysisRun>>>,
    /// When each run became due, for the queue metrics.
    queue: Arc<Queue<ObjectRef<DeserializeGuard<AnalysisRun>>>>,
    /// `--concurrency` reconciles at once, in the queue's order.
    gate: Arc<Gate>,
}

/// Runs the AnalysisRun controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let prometheus = match PrometheusClient::new() {
        Ok(p) => p,
        Err(e) => {
            // Without an HTTP client no metric can be measured; the Rollout controller
            // keeps running and analysis steps stay Pending, which is visible.
            error!(error = %e, "cannot build the Prometheus client: analysis disabled");
            return;
        }
    };
    let web = match WebClient::new() {
        Ok(w) => w,
        Err(e) => {
            error!(error = %e, "cannot build the web client: analysis disabled");
            return;
        }
    };
    // Lists are consistent reads (`MostRecent`, kube's default), not `any_semantic`:
    // after an apiserver restart a cached list (resourceVersion=0) can be older than the
    // new watch cache, every watch from it fails with 410 Gone, and the watcher re-lists
    // into the same stale answer with a growing backoff (seen in e2e: no event for
    // minutes). client-go falls back to a consistent list; kube-runtime does not, so
    // always ask for one.
    let (runs, writer) = reflector::store();
    let queue: Arc<Queue<ObjectRef<DeserializeGuard<AnalysisRun>>>> = Arc::default();
    {
        let (queue, runs) = (queue.clone(), runs.clone());
        metrics::metrics().queue_depth_source(
            "analysisrun",
            Box::new(move || queue.depth(Instant::now(), |key| runs.get(key).is_some())),
        );
    }
    let trigger = {
        let queue = queue.clone();
        watches::cached_applied(
            api::<DeserializeGuard<AnalysisRun>>(&client, settings.namespace.as_deref()),
            settings.instance_selector(watcher::Config::default()),
            writer,
        )
        .inspect_ok(move |run| {
            queue.triggered(vec![ObjectRef::from_obj(run)]);
        })
    };
    // A Job's change (it completed, failed, or was deleted) brings back the run that
    // controls it.
    let (jobs, job_stream) = JobMetrics::new(client.clone(), &settings);
    let job_stream = {
        let queue = queue.clone();
        job_stream.inspect_ok(move |job| {
            queue.triggered(owning_runs(&job.metadata));
        })
    };
    let controller = Controller::for_stream(trigger, runs.clone()).owns_stream(job_stream);
    let gate = Gate::new(settings.concurrency);
    let shutdown = {
        let gate = gate.clone();
        async move {
            shutdown.await;
            gate.close();
        }
    };
    let ctx = Arc::new(Context {
        measurer: Measurer {
            client: client.clone(),
            prometheus,
            web,
        },
        jobs,
        recorder: malformed::recorder(&client),
        runs,
        expectations: Expectations::default(),
        failures: backoff::Failures::default(),
        queue,
        gate,
    });
    controller
        // Every due run is handed over at once; the gate limits and orders them, a due
        // measurement ahead of watch events (see `queue`).
        .with_config(kube::runtime::controller::Config::default().concurrency(0))
        // The watch retries by itself and passes no error on (see `watches`).
        .trigger_backoff(super::backoff::WatchBackoff::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    info!("analysis controller stopped");
}

type RunKey = ObjectRef<DeserializeGuard<AnalysisRun>>;

/// The runs that control `meta`'s object (a Job's), keyed as the Controller keys them.
fn owning_runs(meta: &kube::api::ObjectMeta) -> Vec<RunKey> {
    let ns = meta.namespace.clone().unwrap_or_default();
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.controller == Some(true) && o.kind == "AnalysisRun")
        .map(|o| ObjectRef::new(&o.name).within(&ns))
        .collect()
}

fn terminal(phase: Option<AnalysisPhase>) -> bool {
    matches!(
        phase,
        Some(
            AnalysisPhase::Successful
                | AnalysisPhase::Failed
                | AnalysisPhase::Error
                | AnalysisPhase::Inconclusive
        )
    )
}

async fn reconcile(
    guard: Arc<DeserializeGuard<AnalysisRun>>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let budget = match &guard.0 {
        Ok(run) => time_budget(&run.spec.analysis),
        Err(_) => RECONCILE_OVERHEAD,
    };
    let key = ObjectRef::from_obj(&*guard);
    let Some(_place) = ctx.gate.enter(ctx.queue.rank(&key, Instant::now())).await else {
        return Ok(Requeue::await_change());
    };
    let waited = ctx.queue.started(&key, Instant::now());
    metrics::metrics().queue_waited("analysisrun", waited);
    // The run as it is now, not as it was when it joined the line.
    let guard = ctx.runs.get(&key).unwrap_or(guard);
    if let Some(wait) = ctx
        .expectations
        .wait(&key, Instant::now(), |w| match w.cache {
            Cache::Job => ctx.jobs.cached_version(&w.namespace, &w.name),
            _ => ctx
                .runs
                .get(&ObjectRef::new(&w.name).within(&w.namespace))
                .map(|r| r.resource_version()),
        })
    {
        metrics::metrics().cache_waited("analysisrun");
        return Ok(ctx.queue.requeue(&key, wait));
    }
    let started = Instant::now();
    let mut written = Vec::new();
    let outcome = tokio::time::timeout(
        budget,
        // Boxed, so that a run waiting in the gate is a small future (see the Rollouts').
        Box::pin(reconcile_inner(
            guard,
            &ctx.measurer,
            &ctx.jobs,
            &ctx.recorder,
            &mut written,
        )),
    )
    .await
    .unwrap_or(Err(ReconcileError::Timeout(budget)));
    let result = outcome
        .as_ref()
        .map_or_else(|e| e.category(), |_| "success");
    metrics::metrics().reconciled("analysisrun", result, started.elapsed());
    ctx.expectations
        .record(key.clone(), written, Instant::now());
    if outcome.is_ok() {
        ctx.failures.forget(&key);
    }
    Ok(match outcome? {
        Some(after) => ctx.queue.deadline(&key, after),
        None => Requeue::await_change(),
    })
}

/// Measures what is due, looks again at measurements in flight (Jobs), stops those of a
/// run that ends, and writes the run's status; returns when it is next due (None: only
/// on a change).
async fn reconcile_inner(
    guard: Arc<DeserializeGuard<AnalysisRun>>,
    ctx: &Measurer,
    jobs: &JobMetrics,
    recorder: &Recorder,
    written: &mut Vec<Written>,
) -> Result<Option<Duration>, ReconcileError> {
    let Ok(run) = &guard.0 else {
        // It can never be measured: Error, InvalidSpec and one Event, once; the Rollout
        // that owns it sees an Error too and aborts.
        malformed::report(&ctx.client, recorder, &guard, Shape::AnalysisRun).await?;
        return Ok(None);
    };
    let old = run.status.clone().unwrap_or_default();
    let spec = &run.spec.analysis;
    // A finished run has nothing left to do, unless a Job of it still runs (a status
    // written by a controller that did not stop it).
    if terminal(old.phase) && plan::in_flight(spec, &old).is_empty() {
        return Ok(None);
    }
    let namespace = run.namespace().unwrap_or_default();
    let mut status = old.clone();
    let now = Timestamp::now();
    let started_at = status.started_at.get_or_insert(Time(now)).0;

    // A condition that does not compile (or a duration that does not parse) can never
    // be measured: the run ends in Error at once, with the reason, and the Rollout aborts.
    if let Err(e) = plan::validate_spec(spec) {
        status.phase = Some(AnalysisPhase::Error);
        status.message = Some(format!("invalid analysis: {e}"));
        status.completed_at = Some(Time(now));
        status.observed_generation = run.metadata.generation;
        written.extend(write_status(&ctx.client, run, &status).await?);
        warn!(run = %format!("{namespace}/{}", run.name_any()), error = %e, "invalid analysis");
        return Ok(None);
    }
    if spec.metrics.iter().any(|m| m.provider.job.is_some()) {
        jobs.synced().await?;
    }
    if !run.spec.terminate && !terminal(old.phase) {
        let schedule = plan::due(spec, &status, started_at, now);
        for name in &schedule.in_flight {
            let Some(metric) = spec.metrics.iter().find(|m| &m.name == name) else {
                continue;
            };
            let running = status
                .metric_results
                .iter()
                .find(|r| &r.name == name)
                .and_then(|r| r.measurements.last())
                .cloned();
            let (Some(_), Some(running)) = (&metric.provider.job, running) else {
                continue;
            };
            if let Some(measurement) = jobs.resume(run, &status, name, &running).await? {
                count_measurement("job", &measurement);
                plan::complete(spec, &mut status, name, measurement);
            }
        }
        if !schedule.due_now.is_empty() {
            let args = resolve_args(&ctx.client, &namespace, &spec.args).await;
            for name in &schedule.due_now {
                let Some(metric) = spec.metrics.iter().find(|m| &m.name == name) else {
                    continue;
                };
                let started = Instant::now();
                let measurement = match (&args, &metric.provider.job) {
                    (Ok(args), Some(job)) => {
                        jobs.start(run, &status, name, job, args, written).await
                    }
                    (Ok(args), None) => {
                        ctx.measure(
                            &namespace,
                            metric,
                            args,
                            Timestamp::now(),
                            (&status, started_at),
                        )
                        .await
                    }
                    (Err(e), _) => error_measurement(Timestamp::now(), e.clone()),
                };
                let provider = provider_name(metric);
                // A Job's measurement is counted when it finishes.
                if measurement.phase != AnalysisPhase::Running {
                    count_measurement(provider, &measurement);
                }
                metrics::metrics()
                    .measurement_duration
                    .get_or_create(&metrics::ProviderLabels { provider })
                    .observe(started.elapsed().as_secs_f64());
                plan::record(spec, &mut status, name, measurement);
            }
        }
    }
    let (phase, message) = plan::run_phase(spec, &status, run.spec.terminate);
    if terminal(Some(phase)) {
        // The run ends before these Jobs do: delete them (their pods with them) before
        // the verdict is written, so that a failed delete is retried, not forgotten.
        for name in plan::in_flight(spec, &status) {
            let name = name.to_string();
            let message = match spec.metrics.iter().find(|m| m.name == name) {
                Some(m) if m.provider.job.is_some() => {
                    let job = jobs.stop(run, &status, &name, written).await?;
                    format!("the run ended before Job {job} finished; the Job was deleted")
                }
                _ => "the run ended before the measurement finished".to_string(),
            };
            plan::terminate_in_flight(&mut status, &name, Timestamp::now(), message);
        }
    }
    if !terminal(old.phase) {
        status.phase = Some(phase);
        status.message = Some(message);
    }
    status.observed_generation = run.metadata.generation;
    if terminal(status.phase) && status.completed_at.is_none() {
        status.completed_at = Some(Time(Timestamp::now()));
    }
    if status != old {
        // A conflict (a terminate, a deletion) is an error for the backoff; its watch
        // event brings the run back at once, and the measurement taken here is dropped.
        written.extend(write_status(&ctx.client, run, &status).await?);
        if terminal(Some(phase)) && !terminal(old.phase) {
            info!(run = %format!("{namespace}/{}", run.name_any()), ?phase, "analysis finished");
        }
    }
    if terminal(status.phase) {
        return Ok(None);
    }
    let after = Timestamp::now();
    Ok(match plan::due(spec, &status, started_at, after).next {
        Some(next) => {
            let wait = next.duration_since(after);
            Some(if wait.is_negative() {
                Duration::from_millis(100)
            } else {
                wait.unsigned_abs().max(Duration::from_millis(100))
            })
        }
        None => None,
    })
}

/// The provider label of `metric` in the measurement metrics.
fn provider_name(metric: &Metric) -> &'static str {
    let p = &metric.provider;
    if p.judge.is_some() {
        "judge"
    } else if p.sequential.is_some() {
        "sequential"
    } else if p.web.is_some() {
        "web"
    } else if p.job.is_some() {
        "job"
    } else {
        "prometheus"
    }
}

fn count_measurement(provider: &'static str, measurement: &Measurement) {
    metrics::metrics()
        .measurements
        .get_or_create(&metrics::MeasurementLabels {
            provider,
            phase: format!("{:?}", measurement.phase),
        })
        .inc();
}

/// Replaces the run's status as it was read (a conflict when someone, e.g. a terminate,
/// changed the run meanwhile); returns what the cache must show before the next
/// reconcile.
async fn write_status(
    client: &Client,
    run: &AnalysisRun,
    status: &AnalysisRunStatus,
) -> Result<Option<Written>, ReconcileError> {
    let mut updated = run.clone();
    updated.status = Some(status.clone());
    updated.metadata.managed_fields = None;
    let runs: Api<AnalysisRun> =
        Api::namespaced(client.clone(), &run.namespace().unwrap_or_default());
    let stored = runs
        .replace_status(&run.name_any(), &PostParams::default(), &updated)
        .await
        .map_err(AdapterError::from)?;
    Ok(written(
        Cache::AnalysisRun,
        &run.namespace().unwrap_or_default(),
        &stored,
    ))
}

/// Exponential backoff per run, as for Rollouts ([`backoff::delay`]).
fn error_policy(
    guard: Arc<DeserializeGuard<AnalysisRun>>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Requeue {
    let key = ObjectRef::from_obj(&*guard);
    let jitter = backoff::jitter_for(&key, Timestamp::now().subsec_nanosecond().unsigned_abs());
    let delay = backoff::delay(ctx.failures.record(key.clone()), jitter);
    let category = error.category();
    if category == "conflict" {
        info!(run = %guard.name_any(), category, retry_in = ?delay, %error, "analysis reconcile conflicted");
    } else {
        warn!(run = %guard.name_any(), category, retry_in = ?delay, %error, "analysis reconcile failed");
    }
    ctx.queue.requeue(&key, delay)
}

pub(crate) async fn secret_value(
    client: &Client,
    namespace: &str,
    key: &SecretKeySelector,
) -> Result<String, String> {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let secret = tokio::time::timeout(SECRET_READ_TIMEOUT, secrets.get_opt(&key.name))
        .await
        .map_err(|_| {
            format!(
                "reading Secret {}: no answer within {SECRET_READ_TIMEOUT:?}",
                key.name
            )
        })?
        .map_err(|e| format!("reading Secret {}: {e}", key.name))?
        .ok_or_else(|| format!("Secret {} not found", key.name))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&key.key))
        .ok_or_else(|| format!("Secret {} has no key {}", key.name, key.key))?;
    String::from_utf8(bytes.0.clone())
        .map_err(|_| format!("Secret {} key {} is not UTF-8", key.name, key.key))
}

/// Args with Secret values filled in (read now, never stored in the run).
async fn resolve_args(
    client: &Client,
    namespace: &str,
    args: &[AnalysisRunArgument],
) -> Result<Vec<AnalysisRunArgument>, String> {
    let mut resolved = Vec::with_capacity(args.len());
    for arg in args {
        let mut arg = arg.clone();
        if let Some(secret) = arg
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.clone())
        {
            arg.value = Some(secret_value(client, namespace, &secret).await?);
            arg.value_from = None;
        }
        resolved.push(arg);
    }
    Ok(resolved)
}

fn error_measurement(started: Timestamp, message: String) -> Measurement {
    Measurement {
        phase: AnalysisPhase::Error,
        value: None,
        started_at: Some(Time(started)),
        finished_at: Some(Time(Timestamp::now())),
        message: Some(message),
    }
}

/// A Prometheus connection with its Secret read and its timeout parsed, shared by the
/// Prometheus and judge providers.
struct Connection<'a> {
    address: &'a str,
    headers: Vec<(String, String)>,
    token: Option<String>,
    timeout: Duration,
}

impl<'a> Connection<'a> {
    async fn resolve(
        client: &Client,
        namespace: &str,
        spec: &'a PrometheusConnection,
    ) -> Result<Connection<'a>, String> {
        let token = match &spec.authentication {
            Some(auth) => Some(secret_value(client, namespace, &auth.bearer_token).await?),
            None => None,
        };
        let timeout = match &spec.timeout {
            Some(t) => t.to_duration().map_err(|e| e.to_string())?,
            None => DEFAULT_QUERY_TIMEOUT,
        };
        Ok(Connection {
            address: &spec.address,
            headers: spec
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
            token,
            timeout,
        })
    }

    async fn query(
        &self,
        prometheus: &PrometheusClient,
        query: &str,
        at: Timestamp,
        range: Option<(Duration, Duration)>,
    ) -> Result<QueryResult, PrometheusError> {
        prometheus
            .query(&QueryRequest {
                address: self.address,
                query,
                at,
                range,
                timeout: self.timeout,
                headers: &self.headers,
                bearer_token: self.token.as_deref(),
            })
            .await
    }
}

impl Measurer {
    /// One measurement of one metric, as of `at` (now, or a past time when replaying),
    /// for the run whose status and start are `run` (a sequential metric reads its
    /// evidence from the start and needs to know which look this is). Never fails: a
    /// query that cannot be made or answered is an Error measurement with the reason,
    /// which the limits then judge.
    pub async fn measure(
        &self,
        namespace: &str,
        metric: &Metric,
        args: &[AnalysisRunArgument],
        at: Timestamp,
        run: (&AnalysisRunStatus, Timestamp),
    ) -> Measurement {
        let outcome = if let Some(prom) = &metric.provider.prometheus {
            measure_prometheus(self, namespace, metric, prom, args, at).await
        } else if let Some(judge) = &metric.provider.judge {
            measure_judge(self, namespace, metric, judge, args, at).await
        } else if let Some(sequential) = &metric.provider.sequential {
            measure_sequential(self, namespace, metric, sequential, args, at, run).await
        } else if let Some(web) = &metric.provider.web {
            measure_web(self, namespace, metric, web, args, at).await
        } else if metric.provider.job.is_some() {
            // Only a run can own a Job; the AnalysisRun controller starts it (`JobMetrics`).
            Err("a job metric is measured only by an AnalysisRun, which runs its Job".to_string())
        } else {
            Err("metric has no provider".to_string())
        };
        match outcome {
            Ok(m) => m,
            Err(message) => error_measurement(at, message),
        }
    }

    /// Args with Secret values filled in (read now, never stored in the run).
    pub async fn resolve_args(
        &self,
        namespace: &str,
        args: &[AnalysisRunArgument],
    ) -> Result<Vec<AnalysisRunArgument>, String> {
        resolve_args(&self.client, namespace, args).await
    }
}

async fn measure_prometheus(
    ctx: &Measurer,
    namespace: &str,
    metric: &Metric,
    prom: &sluice_api::analysis::PrometheusMetric,
    args: &[AnalysisRunArgument],
    started: Timestamp,
) -> Result<Measurement, String> {
    let query = plan::substitute_args(&prom.query, args).map_err(|e| e.to_string())?;
    let connection = Connection::resolve(&ctx.client, namespace, &prom.connection).await?;
    let range = match &prom.range_query {
        Some(r) => Some((
            r.lookback.to_duration().map_err(|e| e.to_string())?,
            r.step.to_duration().map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let result = connection
        .query(&ctx.prometheus, &query, started, range)
        .await
        .map_err(|e| e.to_string())?;
    let value = match &result {
        QueryResult::Scalar(x) => MetricValue::Numbers(vec![*x]),
        QueryResult::Vector(samples) => {
            MetricValue::Numbers(samples.iter().map(|s| s.value).collect())
        }
        QueryResult::Matrix(series) => MetricValue::Numbers(
            series
                .iter()
                .filter_map(|s| s.points.last().map(|p| p.1))
                .collect(),
        ),
        QueryResult::String(s) => {
            return Err(format!("query returned a string, not a number: {s:?}"));
        }
    };
    let (phase, message) = plan::evaluate(metric, &value);
    Ok(Measurement {
        phase,
        value: Some(result.describe()),
        started_at: Some(Time(started)),
        finished_at: Some(Time(Timestamp::now())),
        message,
    })
}

/// One web request: args substituted into the URL, headers and body, header Secrets read
/// now (never stored), the answer's JSON picked by `jsonPath` and judged by the
/// conditions. Every failure is the Error measurement's message.
async fn measure_web(
    ctx: &Measurer,
    namespace: &str,
    metric: &Metric,
    web: &WebMetric,
    args: &[AnalysisRunArgument],
    started: Timestamp,
) -> Result<Measurement, String> {
    let substitute = |text: &str| plan::substitute_args(text, args).map_err(|e| e.to_string());
    let url = substitute(&web.url)?;
    let mut headers = Vec::with_capacity(web.headers.len());
    for header in &web.headers {
        let value = match (&header.value, &header.value_from) {
            (_, Some(from)) => secret_value(&ctx.client, namespace, &from.secret_key_ref)
                .await
                .map_err(|e| format!("header {}: {e}", header.key))?,
            (Some(value), None) => substitute(value)?,
            (None, None) => return Err(format!("header {} has no value", header.key)),
        };
        headers.push((header.key.clone(), value));
    }
    let body = match (&web.body, &web.json_body) {
        (Some(text), _) => Some(WebBody::Text(substitute(text)?)),
        (None, Some(json)) => Some(WebBody::Json(json.clone())),
        (None, None) => None,
    };
    let tls = match (&web.ca_bundle, web.insecure) {
        (Some(pem), _) => WebTls::CaBundle(pem),
        (None, true) => WebTls::Insecure,
        (None, false) => WebTls::Platform,
    };
    let answer = ctx
        .web
        .fetch(&WebRequest {
            url: &url,
            method: web.method.unwrap_or_default(),
            headers: &headers,
            body,
            timeout: web_timeout(web),
            tls,
        })
        .await
        .map_err(|e| e.to_string())?;
    let value = match &web.json_path {
        Some(path) => plan::pick_json_path(&answer, path).map_err(|e| e.to_string())?,
        None => answer,
    };
    let value = MetricValue::Json(value);
    let (phase, message) = plan::evaluate(metric, &value);
    let mut text = value.to_string();
    if text.chars().count() > 500 {
        text = text.chars().take(500).collect::<String>() + "… (truncated)";
    }
    Ok(Measurement {
        phase,
        value: Some(text),
        started_at: Some(Time(started)),
        finished_at: Some(Time(Timestamp::now())),
        message,
    })
}

async fn measure_judge(
    ctx: &Measurer,
    namespace: &str,
    metric: &Metric,
    judge_spec: &JudgeMetric,
    args: &[AnalysisRunArgument],
    started: Timestamp,
) -> Result<Measurement, String> {
    let connection = Connection::resolve(&ctx.client, namespace, &judge_spec.connection).await?;
    let lookback = judge_spec
        .lookback
        .to_duration()
        .map_err(|e| e.to_string())?;
    let step = judge_spec.step.to_duration().map_err(|e| e.to_string())?;
    let mut series: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for signal in &judge_spec.signals {
        let mut sides = Vec::with_capacity(2);
        for q in [&signal.canary_query, &signal.baseline_query] {
            let query = plan::substitute_args(q, args).map_err(|e| e.to_string())?;
            let result = connection
                .query(&ctx.prometheus, &query, started, Some((lookback, step)))
                .await
                .map_err(|e| format!("signal {}: {e}", signal.name))?;
            sides.push(match result {
                QueryResult::Matrix(series) => series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| p.1))
                    .collect(),
                QueryResult::Vector(samples) => samples.iter().map(|s| s.value).collect(),
                QueryResult::Scalar(x) => vec![x],
                QueryResult::String(_) => Vec::new(),
            });
        }
        let baseline = sides.pop().unwrap_or_default();
        let canary = sides.pop().unwrap_or_default();
        series.insert(signal.name.clone(), (canary, baseline));
    }
    let samples: Vec<SignalSamples<'_>> = judge_spec
        .signals
        .iter()
        .map(|signal| {
            let (canary, baseline) = &series[&signal.name];
            SignalSamples {
                signal,
                canary,
                baseline,
            }
        })
        .collect();
    let report = judge::judge(judge_spec, &samples);
    let phase = if metric.success_condition.is_some() || metric.failure_condition.is_some() {
        plan::evaluate(metric, &MetricValue::Score(report.score)).0
    } else {
        match report.verdict {
            Verdict::Pass => AnalysisPhase::Successful,
            Verdict::Marginal => AnalysisPhase::Inconclusive,
            Verdict::Fail => AnalysisPhase::Failed,
        }
    };
    Ok(Measurement {
        phase,
        value: Some(format!("{:.1}", report.score)),
        started_at: Some(Time(started)),
        finished_at: Some(Time(Timestamp::now())),
        message: Some(report.summary()),
    })
}

async fn measure_sequential(
    ctx: &Measurer,
    namespace: &str,
    metric: &Metric,
    spec: &SequentialMetric,
    args: &[AnalysisRunArgument],
    at: Timestamp,
    (status, started_at): (&AnalysisRunStatus, Timestamp),
) -> Result<Measurement, String> {
    let connection = Connection::resolve(&ctx.client, namespace, &spec.connection).await?;
    let interval = metric
        .interval
        .as_ref()
        .ok_or("a sequential metric needs an interval")?
        .to_duration()
        .map_err(|e| e.to_string())?;
    let (origin, look) = plan::sequential_look(status, metric, started_at);
    let source = SliceSource {
        prometheus: &ctx.prometheus,
        request: QueryRequest {
            address: connection.address,
            query: "",
            at,
            range: None,
            timeout: connection.timeout,
            headers: &connection.headers,
            bearer_token: connection.token.as_deref(),
        },
        grid: SliceGrid {
            origin,
            interval,
            until: at,
        },
    };
    let substitute = |q: &str| plan::substitute_args(q, args).map_err(|e| e.to_string());
    let report = if let Some(counts) = &spec.counts {
        let selectors = [
            substitute(&counts.canary.events)?,
            substitute(&counts.canary.total)?,
            substitute(&counts.baseline.events)?,
            substitute(&counts.baseline.total)?,
        ];
        let slices = source.counts(&selectors).await.map_err(|e| e.to_string())?;
        sequential::test_counts(spec, &slices, look)
    } else if let Some(histogram) = &spec.histogram {
        let selectors = [
            substitute(&histogram.canary)?,
            substitute(&histogram.baseline)?,
        ];
        let slices = source
            .histograms(&selectors)
            .await
            .map_err(|e| e.to_string())?;
        sequential::test_histogram(spec, &slices, look)
    } else {
        return Err("sequential sets neither counts nor histogram".into());
    };
    let summary = report.summary();
    let (phase, message) = match report.verdict {
        sequential::Verdict::Failed => (
            AnalysisPhase::Failed,
            format!("evidence of a regression: {summary}"),
        ),
        sequential::Verdict::Successful if look.last => (
            AnalysisPhase::Successful,
            format!("no evidence of a regression: {summary}"),
        ),
        sequential::Verdict::Successful => (
            AnalysisPhase::Successful,
            format!("a regression beyond the tolerance is excluded: {summary}"),
        ),
        sequential::Verdict::TooLittleTraffic => (
            AnalysisPhase::Inconclusive,
            format!(
                "too little traffic for a verdict: fewer than minCanaryCount ({}) canary requests; {summary}",
                spec.min_canary_count
            ),
        ),
        sequential::Verdict::Undecided => {
            let low = if report.canary_total < spec.min_canary_count {
                "too little traffic so far; "
            } else {
                ""
            };
            (
                AnalysisPhase::Inconclusive,
                format!("undecided, looking again: {low}{summary}"),
            )
        }
    };
    Ok(Measurement {
        phase,
        value: Some(report.value()),
        started_at: Some(Time(at)),
        finished_at: Some(Time(Timestamp::now())),
        message: Some(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::mock_api;
    use serde_json::json;

    /// Longer than any bound under test: reaching it means the call would hang for ever.
    const FOREVER: Duration = Duration::from_secs(24 * 3600);

    fn run(spec: serde_json::Value) -> AnalysisRun {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": { "name": "r", "namespace": "shop", "resourceVersion": "1" },
            "spec": spec,
        }))
        .unwrap()
    }

    fn context(client: Client) -> Arc<Context> {
        Arc::new(Context {
            measurer: Measurer {
                client: client.clone(),
                prometheus: PrometheusClient::new().unwrap(),
                web: WebClient::new().unwrap(),
            },
            jobs: JobMetrics::for_tests(client.clone(), Vec::new()),
            recorder: malformed::recorder(&client),
            runs: kube::runtime::reflector::store::Writer::default().as_reader(),
            expectations: Expectations::default(),
            failures: backoff::Failures::default(),
            queue: Arc::default(),
            gate: Gate::new(1),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_secret_read_that_never_answers_is_an_error_after_its_timeout() {
        // The mocked API takes the request and never answers.
        let (client, _handle) = mock_api::client();
        let key = SecretKeySelector {
            name: "token".into(),
            key: "t".into(),
            optional: None,
        };
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(FOREVER, secret_value(&client, "shop", &key))
            .await
            .expect("the Secret read is bounded");
        let message = result.unwrap_err();
        assert!(message.contains("Secret token"), "{message}");
        assert!(message.contains("no answer within"), "{message}");
        assert_eq!(started.elapsed(), SECRET_READ_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_whose_status_write_never_answers_times_out() {
        let (client, _handle) = mock_api::client();
        // A condition that does not compile: the reconcile writes the Error verdict at
        // once, and that write never gets an answer.
        let bad = run(
            json!({ "metrics": [{ "name": "m", "successCondition": "result[0] >=",
            "provider": { "prometheus": { "address": "http://p", "query": "up" } } }] }),
        );
        let budget = time_budget(&bad.spec.analysis);
        let guard = Arc::new(DeserializeGuard(Ok(bad)));
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(FOREVER, reconcile(guard, context(client)))
            .await
            .expect("the analysis reconcile is bounded");
        assert!(
            matches!(result, Err(ReconcileError::Timeout(d)) if d == budget),
            "{result:?}"
        );
        assert_eq!(started.elapsed(), budget);
    }

    #[tokio::test(start_paused = true)]
    async fn reporting_a_malformed_run_is_bounded_too() {
        let (client, _handle) = mock_api::client();
        let guard: DeserializeGuard<AnalysisRun> = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": { "name": "r", "namespace": "shop" },
            "spec": { "metrics": "none" },
        }))
        .unwrap();
        assert!(guard.0.is_err());
        let result = tokio::time::timeout(FOREVER, reconcile(Arc::new(guard), context(client)))
            .await
            .expect("the report is bounded");
        assert!(
            matches!(result, Err(ReconcileError::Timeout(_))),
            "{result:?}"
        );
    }

    fn measurer(client: Client) -> Measurer {
        Measurer {
            client,
            prometheus: PrometheusClient::new().unwrap(),
            web: WebClient::without_proxy(),
        }
    }

    fn secret_api() -> Client {
        mock_api::serve(|seen| {
            if seen.path.ends_with("/secrets/tok") {
                (
                    200,
                    json!({ "apiVersion": "v1", "kind": "Secret",
                            "metadata": { "name": "tok", "namespace": "shop" },
                            "data": { "t": "YWJj" } }),
                )
            } else {
                mock_api::not_found("secrets", "other")
            }
        })
        .0
    }

    fn web_metric(spec: serde_json::Value) -> Metric {
        serde_json::from_value(spec).unwrap()
    }

    #[tokio::test]
    async fn a_web_measurement_substitutes_args_reads_header_secrets_and_picks_the_value() {
        let (address, mut seen) =
            crate::adapters::web::tests::serve(200, r#"{"data":{"ok":true,"rate":0.97}}"#).await;
        let metric = web_metric(json!({
            "name": "health",
            "successCondition": "result.ok && result.rate >= 0.95",
            "provider": { "web": {
                "url": format!("{address}/check?service={{{{args.service}}}}"),
                "headers": [
                    { "key": "X-Token", "valueFrom": { "secretKeyRef": { "name": "tok", "key": "t" } } },
                    { "key": "X-Service", "value": "{{ args.service }}" },
                ],
                "jsonPath": "{$.data}",
            } },
        }));
        let args = [AnalysisRunArgument {
            name: "service".into(),
            value: Some("shop".into()),
            value_from: None,
        }];
        let now = Timestamp::now();
        let m = measurer(secret_api())
            .measure(
                "shop",
                &metric,
                &args,
                now,
                (&AnalysisRunStatus::default(), now),
            )
            .await;
        assert_eq!(m.phase, AnalysisPhase::Successful, "{m:?}");
        assert_eq!(m.value.as_deref(), Some(r#"{"ok":true,"rate":0.97}"#));
        let seen = seen.recv().await.unwrap();
        assert_eq!(seen.target, "/check?service=shop");
        assert_eq!(seen.headers.get("x-token").map(String::as_str), Some("abc"));
        assert_eq!(
            seen.headers.get("x-service").map(String::as_str),
            Some("shop")
        );
    }

    #[tokio::test]
    async fn web_failures_are_error_measurements_that_say_why() {
        let (ok, _a) = crate::adapters::web::tests::serve(200, r#"{"status":"pass"}"#).await;
        let (down, _b) = crate::adapters::web::tests::serve(500, "boom").await;
        let cases = [
            (
                json!({ "url": ok.clone(), "jsonPath": "{$.data.ok}" }),
                r#"jsonPath "{$.data.ok}" matched nothing in the response"#.to_string(),
            ),
            (
                json!({ "url": down.clone() }),
                format!("web {down}: HTTP 500: boom"),
            ),
            (
                json!({ "url": ok.clone(), "headers": [
                    { "key": "X-Token", "valueFrom": { "secretKeyRef": { "name": "gone", "key": "t" } } }] }),
                "header X-Token: ".to_string(),
            ),
            (
                json!({ "url": "{{args.nowhere}}" }),
                "no arg \"nowhere\"".to_string(),
            ),
        ];
        for (web, want) in cases {
            let metric = web_metric(json!({
                "name": "health", "successCondition": "result == 'pass'",
                "provider": { "web": web.clone() },
            }));
            let now = Timestamp::now();
            let m = measurer(secret_api())
                .measure(
                    "shop",
                    &metric,
                    &[],
                    now,
                    (&AnalysisRunStatus::default(), now),
                )
                .await;
            assert_eq!(m.phase, AnalysisPhase::Error, "{web}: {m:?}");
            let message = m.message.unwrap_or_default();
            assert!(message.contains(&want), "{web}: {message:?} lacks {want:?}");
        }
    }

    #[tokio::test]
    async fn replay_refuses_a_web_only_analysis_and_leaves_web_metrics_out_of_others() {
        let web = json!({ "name": "health", "successCondition": "result == 'pass'",
            "provider": { "web": { "url": "http://127.0.0.1:1/health" } } });
        let only_web: AnalysisSpec =
            serde_json::from_value(json!({ "metrics": [web.clone()] })).unwrap();
        let now = Timestamp::now();
        let m = measurer(secret_api());
        let err = crate::runtime::replay::replay(&m, "shop", &only_web, &[], now, now)
            .await
            .unwrap_err();
        assert!(
            err.starts_with("nothing to replay: metric health: web provider"),
            "{err}"
        );

        let (prometheus, _seen) = crate::adapters::web::tests::serve(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#,
        )
        .await;
        let mixed: AnalysisSpec = serde_json::from_value(json!({ "metrics": [
            web,
            { "name": "rate", "successCondition": "result[0] >= 0.99",
              "provider": { "prometheus": { "address": prometheus, "query": "up" } } },
        ] }))
        .unwrap();
        let replay = crate::runtime::replay::replay(&m, "shop", &mixed, &[], now, now)
            .await
            .unwrap();
        assert_eq!(replay.measurements.len(), 1);
        assert_eq!(replay.measurements[0].metric, "rate");
        assert_eq!(replay.skipped.len(), 1);
        assert_eq!(replay.skipped[0].0, "health");
        // The replayed metric passed; the analysis as a whole is not claimed to.
        assert_eq!(replay.phase, AnalysisPhase::Inconclusive);
        assert!(
            replay.message.contains("health could not be replayed"),
            "{}",
            replay.message
        );
    }

    /// A run of one job metric whose container's env takes `{{args.svc}}`.
    fn job_run(status: serde_json::Value, terminate: bool) -> AnalysisRun {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": { "name": "r", "namespace": "shop", "resourceVersion": "1",
                          "uid": "run-uid", "labels": { "sluice.dev/rollout": "web" } },
            "spec": {
                "terminate": terminate,
                "args": [{ "name": "svc", "value": "web-canary" }],
                "metrics": [{ "name": "smoke", "provider": { "job": { "spec": {
                    "backoffLimit": 0,
                    "template": { "spec": { "restartPolicy": "Never", "containers": [{
                        "name": "c", "image": "busybox",
                        "env": [{ "name": "SVC", "value": "{{args.svc}}" }] }] } } } } } }],
            },
            "status": status,
        }))
        .unwrap()
    }

    /// The status of a run whose Job `r-smoke-1` is running.
    fn running() -> serde_json::Value {
        json!({
            "phase": "Running", "message": "measuring smoke", "startedAt": "2026-01-01T00:00:00Z",
            "metricResults": [{ "name": "smoke", "phase": "Running", "measurements": [{
                "phase": "Running", "startedAt": "2026-01-01T00:00:00Z",
                "message": "Job r-smoke-1 running" }] }],
        })
    }

    fn job(conditions: serde_json::Value, owner_uid: &str) -> k8s_openapi::api::batch::v1::Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": { "name": "r-smoke-1", "namespace": "shop", "resourceVersion": "9",
                "ownerReferences": [{ "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
                    "name": "r", "uid": owner_uid, "controller": true }] },
            "status": { "conditions": conditions },
        }))
        .unwrap()
    }

    /// An API that creates Jobs, deletes them and stores run statuses, echoing each.
    fn job_api() -> (Client, mock_api::Log) {
        mock_api::serve(|seen| {
            let mut body = seen.body.clone().unwrap_or(json!({}));
            match seen.method.as_str() {
                "POST" => {
                    body["metadata"]["resourceVersion"] = json!("5");
                    (201, body)
                }
                "PUT" => {
                    body["metadata"]["resourceVersion"] = json!("2");
                    (200, body)
                }
                "DELETE" => (
                    200,
                    json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" }),
                ),
                _ => mock_api::not_found("jobs.batch", "r-smoke-1"),
            }
        })
    }

    async fn reconcile_job_run(
        run: AnalysisRun,
        jobs: Vec<k8s_openapi::api::batch::v1::Job>,
    ) -> (Option<Duration>, Vec<Written>, Vec<mock_api::Seen>) {
        let (client, log) = job_api();
        let jobs = JobMetrics::for_tests(client.clone(), jobs);
        let mut written = Vec::new();
        let after = reconcile_inner(
            Arc::new(DeserializeGuard(Ok(run))),
            &measurer(client.clone()),
            &jobs,
            &malformed::recorder(&client),
            &mut written,
        )
        .await
        .unwrap();
        let seen = std::mem::take(&mut *log.lock().unwrap());
        (after, written, seen)
    }

    fn written_status(seen: &[mock_api::Seen]) -> AnalysisRunStatus {
        let put = seen
            .iter()
            .find(|s| s.method == "PUT")
            .expect("a status write");
        assert_eq!(
            put.path,
            "/apis/sluice.dev/v1alpha1/namespaces/shop/analysisruns/r/status"
        );
        serde_json::from_value(put.body.as_ref().unwrap()["status"].clone()).unwrap()
    }

    #[tokio::test]
    async fn a_due_job_metric_creates_its_job_and_records_it_running() {
        let (after, written, seen) = reconcile_job_run(job_run(json!(null), false), vec![]).await;
        let post = seen
            .iter()
            .find(|s| s.method == "POST")
            .expect("a Job created");
        assert_eq!(post.path, "/apis/batch/v1/namespaces/shop/jobs");
        let body = post.body.as_ref().unwrap();
        assert_eq!(body["metadata"]["name"], "r-smoke-1");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "run-uid");
        assert_eq!(
            body["metadata"]["labels"]["sluice.dev/analysis-run-uid"],
            "run-uid"
        );
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            "web-canary"
        );
        let status = written_status(&seen);
        assert_eq!(status.phase, Some(AnalysisPhase::Running));
        let m = &status.metric_results[0].measurements[0];
        assert_eq!(m.phase, AnalysisPhase::Running);
        assert_eq!(m.message.as_deref(), Some("Job r-smoke-1 running"));
        assert_eq!(
            status.metric_results[0].count, 0,
            "counted when it finishes"
        );
        // The next reconcile waits for the Job in the cache and the status; the Job's
        // watch event brings the run back, not a timer.
        assert_eq!(after, None);
        let caches: Vec<Cache> = written.iter().map(|w| w.cache).collect();
        assert_eq!(caches, [Cache::Job, Cache::AnalysisRun]);
    }

    #[tokio::test]
    async fn a_job_still_running_is_no_write_at_all() {
        let (after, written, seen) =
            reconcile_job_run(job_run(running(), false), vec![job(json!([]), "run-uid")]).await;
        assert!(seen.is_empty(), "{seen:#?}");
        assert!(written.is_empty());
        assert_eq!(after, None);
    }

    #[tokio::test]
    async fn a_completed_job_passes_its_measurement_and_a_failed_one_fails_it() {
        let complete = json!([{ "type": "Complete", "status": "True" }]);
        let (_, _, seen) =
            reconcile_job_run(job_run(running(), false), vec![job(complete, "run-uid")]).await;
        assert!(seen.iter().all(|s| s.method == "PUT"), "{seen:#?}");
        let status = written_status(&seen);
        assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:#?}");
        let r = &status.metric_results[0];
        assert_eq!((r.count, r.successful, r.measurements.len()), (1, 1, 1));
        assert_eq!(
            r.measurements[0].message.as_deref(),
            Some("Job r-smoke-1 completed")
        );

        let failed = json!([{ "type": "Failed", "status": "True",
            "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline" }]);
        let (_, _, seen) =
            reconcile_job_run(job_run(running(), false), vec![job(failed, "run-uid")]).await;
        let status = written_status(&seen);
        assert_eq!(status.phase, Some(AnalysisPhase::Failed), "{status:#?}");
        assert_eq!(
            status.metric_results[0].measurements[0].message.as_deref(),
            Some(
                "Job r-smoke-1 failed: DeadlineExceeded: Job was active longer than specified deadline"
            )
        );
    }

    #[tokio::test]
    async fn a_job_gone_or_not_the_runs_is_an_error() {
        // Not in the cache and not in the API (the mock answers 404).
        let (_, _, seen) = reconcile_job_run(job_run(running(), false), vec![]).await;
        assert_eq!(seen[0].method, "GET");
        let status = written_status(&seen);
        let m = &status.metric_results[0].measurements[0];
        assert_eq!(m.phase, AnalysisPhase::Error);
        assert_eq!(
            m.message.as_deref(),
            Some("Job r-smoke-1 no longer exists: it was deleted before it finished")
        );
        let (_, _, seen) =
            reconcile_job_run(job_run(running(), false), vec![job(json!([]), "other")]).await;
        let m = &written_status(&seen).metric_results[0].measurements[0];
        assert_eq!(
            m.message.as_deref(),
            Some("Job r-smoke-1 is not controlled by this AnalysisRun")
        );
    }

    #[tokio::test]
    async fn a_terminated_run_deletes_its_running_job_before_its_verdict() {
        let (_, written, seen) =
            reconcile_job_run(job_run(running(), true), vec![job(json!([]), "run-uid")]).await;
        let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
        assert_eq!(
            methods,
            ["DELETE", "PUT"],
            "the Job goes before the verdict is written"
        );
        assert_eq!(
            seen[0].path,
            "/apis/batch/v1/namespaces/shop/jobs/r-smoke-1"
        );
        assert_eq!(
            seen[0].body.as_ref().unwrap()["propagationPolicy"],
            "Background"
        );
        let status = written_status(&seen);
        assert_eq!(status.phase, Some(AnalysisPhase::Successful));
        assert_eq!(status.message.as_deref(), Some("terminated"));
        let m = &status.metric_results[0].measurements[0];
        assert_eq!(m.phase, AnalysisPhase::Inconclusive);
        assert_eq!(
            m.message.as_deref(),
            Some("the run ended before Job r-smoke-1 finished; the Job was deleted")
        );
        assert!(written.contains(&Written::gone(Cache::Job, "shop", "r-smoke-1")));
    }

    #[tokio::test]
    async fn replay_says_a_job_metric_cannot_be_run_in_the_past() {
        let job = json!({ "name": "smoke", "provider": { "job": { "spec": { "template": {
            "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "busybox" }] } } } } } });
        let only_job: AnalysisSpec =
            serde_json::from_value(json!({ "metrics": [job.clone()] })).unwrap();
        let now = Timestamp::now();
        let m = measurer(secret_api());
        let err = crate::runtime::replay::replay(&m, "shop", &only_job, &[], now, now)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "nothing to replay: metric smoke: job provider: a Job runs now, against what is deployed now; it cannot be run in the past"
        );
        // Beside a replayable metric it is named as not replayed, and the verdict is not
        // claimed for the analysis.
        let (prometheus, _seen) = crate::adapters::web::tests::serve(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#,
        )
        .await;
        let mixed: AnalysisSpec = serde_json::from_value(json!({ "metrics": [
            job,
            { "name": "rate", "successCondition": "result[0] >= 0.99",
              "provider": { "prometheus": { "address": prometheus, "query": "up" } } },
        ] }))
        .unwrap();
        let replay = crate::runtime::replay::replay(&m, "shop", &mixed, &[], now, now)
            .await
            .unwrap();
        assert_eq!(replay.skipped.len(), 1);
        assert_eq!(replay.skipped[0].0, "smoke");
        assert_eq!(replay.phase, AnalysisPhase::Inconclusive);
        assert!(
            replay.message.contains("smoke could not be replayed"),
            "{}",
            replay.message
        );
    }

    #[test]
    fn the_budget_counts_a_job_metrics_calls_and_its_cache() {
        let spec: AnalysisSpec = serde_json::from_value(json!({
            "metrics": [{ "name": "smoke", "provider": { "job": { "spec": { "template": {
                "spec": { "restartPolicy": "Never", "containers": [{ "name": "c" }] } } } } } }],
        }))
        .unwrap();
        // Overhead 30 s, two Job calls of 10 s, the Job cache's first list 10 s.
        assert_eq!(time_budget(&spec), Duration::from_secs(30 + 2 * 10 + 10));
    }

    #[test]
    fn the_budget_counts_a_web_request_and_its_header_secrets() {
        let spec: AnalysisSpec = serde_json::from_value(json!({
            "metrics": [{ "name": "w", "successCondition": "result == 'pass'",
                "provider": { "web": { "url": "http://h", "timeoutSeconds": 5, "headers": [
                    { "key": "A", "valueFrom": { "secretKeyRef": { "name": "s", "key": "a" } } },
                    { "key": "B", "value": "b" },
                ] } } }],
        }))
        .unwrap();
        // Overhead 30 s, the request 5 s, one Secret-valued header 10 s.
        assert_eq!(time_budget(&spec), Duration::from_secs(30 + 5 + 10));
    }

    #[test]
    fn the_budget_counts_every_query_and_secret() {
        let spec: AnalysisSpec = serde_json::from_value(json!({
            "args": [{ "name": "k", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } }],
            "metrics": [
                { "name": "a", "successCondition": "true",
                  "provider": { "prometheus": { "address": "http://p", "query": "up", "timeout": "5s" } } },
                { "name": "b", "provider": { "judge": {
                    "address": "http://p", "lookback": "5m", "step": "30s",
                    "authentication": { "bearerToken": { "name": "s", "key": "t" } },
                    "signals": [
                        { "name": "x", "canaryQuery": "a", "baselineQuery": "b" },
                        { "name": "y", "canaryQuery": "a", "baselineQuery": "b" },
                    ] } } },
            ],
        }))
        .unwrap();
        // Overhead 30 s, one secret arg 10 s, metric a 5 s, metric b 4 queries x (30 s + 10 s).
        assert_eq!(
            time_budget(&spec),
            Duration::from_secs(30 + 10 + 5 + 4 * 40)
        );
    }
}
