//! AnalysisRun planning: argument substitution, evaluation of a measurement against the
//! metric's CEL conditions, when each metric is due, how a measurement updates the metric,
//! and the verdict of the whole run.
//!
//! Everything here is pure: the runtime takes the measurements (queries Prometheus, runs the
//! judge) and passes `now` in. The semantics follow Argo Rollouts, except where Argo lets a
//! measurement without usable data pass: here an empty or NaN result never counts as a pass.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use sluice_api::analysis::{
    AnalysisPhase, AnalysisRunArgument, AnalysisRunStatus, AnalysisSpec, JudgeThresholds,
    Measurement, Metric, MetricResult,
};
use sluice_api::duration::HumanDuration;

/// Measurements kept per metric when `measurementRetention` does not say (as Argo Rollouts).
pub const DEFAULT_RETENTION: usize = 10;

/// How soon a metric is measured again after a measurement that errored, when its interval
/// is longer or absent: a transient error (Prometheus restarting) should not cost a whole
/// interval, and a metric measured once must be retried rather than pass. Argo Rollouts'
/// `DefaultErrorRetryInterval`.
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// Why an analysis cannot be run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalysisError {
    /// A query uses `{{args.NAME}}` but no arg has that name.
    #[error("query references {{{{args.{0}}}}} but the analysis has no arg {0:?}")]
    UnknownArg(String),
    /// The arg exists but has neither a value nor a `valueFrom`.
    #[error("arg {0:?} has no value")]
    MissingValue(String),
    /// The arg reads its value from elsewhere and the caller has not resolved it.
    #[error("arg {0:?} has a valueFrom that has not been resolved")]
    UnresolvedValueFrom(String),
    /// A successCondition or failureCondition is not valid CEL.
    #[error("metric {metric:?}: {field} does not compile: {reason}")]
    InvalidCondition {
        metric: String,
        field: &'static str,
        reason: String,
    },
    /// An interval or initialDelay cannot be read.
    #[error("metric {metric:?}: {field}: {reason}")]
    InvalidDuration {
        metric: String,
        field: &'static str,
        reason: String,
    },
    /// A Prometheus metric with no condition would pass whatever it measures.
    #[error("metric {0:?}: a prometheus metric needs a successCondition or a failureCondition")]
    NoCondition(String),
    /// A web metric with no condition would pass whatever the endpoint answers.
    #[error("metric {0:?}: a web metric needs a successCondition or a failureCondition")]
    NoWebCondition(String),
    /// A sequential metric without an interval, or with conditions.
    #[error("metric {metric:?}: {reason}")]
    InvalidSequential {
        metric: String,
        reason: &'static str,
    },
    /// A job metric with conditions: its verdict is the Job's.
    #[error(
        "metric {0:?}: a job metric takes no successCondition or failureCondition: its verdict is the Job's (Complete or Failed)"
    )]
    JobCondition(String),
}

/// Replaces every `{{args.NAME}}` (spaces allowed inside the braces) in `query` by the
/// value of the arg `NAME`.
///
/// Substitution is a single pass, so a value that itself contains `{{args.X}}` is not
/// expanded again. Other `{{...}}` placeholders are left as they are: they are not ours to
/// interpret. Args with `valueFrom` must have been resolved into `value` by the caller.
pub fn substitute_args(query: &str, args: &[AnalysisRunArgument]) -> Result<String, AnalysisError> {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        match after[..close].trim().strip_prefix("args.") {
            Some(name) => {
                out.push_str(&rest[..open]);
                out.push_str(arg_value(name.trim(), args)?);
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[..open + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn arg_value<'a>(name: &str, args: &'a [AnalysisRunArgument]) -> Result<&'a str, AnalysisError> {
    let arg = args
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| AnalysisError::UnknownArg(name.to_string()))?;
    match (&arg.value, &arg.value_from) {
        (Some(value), _) => Ok(value),
        (None, Some(_)) => Err(AnalysisError::UnresolvedValueFrom(name.to_string())),
        (None, None) => Err(AnalysisError::MissingValue(name.to_string())),
    }
}

/// Checks that a condition is valid CEL, so that a template with a broken condition is
/// rejected (InvalidSpec) before any run measures with it. Compiles only: whether the
/// expression type-checks against `result` is only known when it is evaluated.
pub fn check_condition(expr: &str) -> Result<(), String> {
    cel::Program::compile(expr)
        .map(|_| ())
        .map_err(|e| first_line(&e.to_string()))
}

/// Checks what can be checked before running: conditions compile, durations parse, and a
/// Prometheus metric has a condition. The scheduling functions assume a spec that passed.
pub fn validate_spec(spec: &AnalysisSpec) -> Result<(), AnalysisError> {
    for metric in &spec.metrics {
        let conditions = [
            ("successCondition", &metric.success_condition),
            ("failureCondition", &metric.failure_condition),
        ];
        for (field, condition) in conditions {
            if let Some(expr) = condition {
                check_condition(expr).map_err(|reason| AnalysisError::InvalidCondition {
                    metric: metric.name.clone(),
                    field,
                    reason,
                })?;
            }
        }
        let durations = [
            ("interval", &metric.interval),
            ("initialDelay", &metric.initial_delay),
        ];
        for (field, duration) in durations {
            if let Some(d) = duration {
                d.to_duration()
                    .map_err(|e| AnalysisError::InvalidDuration {
                        metric: metric.name.clone(),
                        field,
                        reason: e.to_string(),
                    })?;
            }
        }
        if metric.provider.sequential.is_some() {
            let reason = if metric.interval.is_none() {
                Some(
                    "a sequential metric needs an interval: its evidence is counted in slices of one interval",
                )
            } else if metric.success_condition.is_some() || metric.failure_condition.is_some() {
                Some(
                    "a sequential metric takes no successCondition or failureCondition: its verdict is the test's",
                )
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(AnalysisError::InvalidSequential {
                    metric: metric.name.clone(),
                    reason,
                });
            }
        } else if metric.provider.job.is_some() {
            if metric.success_condition.is_some() || metric.failure_condition.is_some() {
                return Err(AnalysisError::JobCondition(metric.name.clone()));
            }
        } else if metric.provider.judge.is_none()
            && metric.success_condition.is_none()
            && metric.failure_condition.is_none()
        {
            return Err(if metric.provider.web.is_some() {
                AnalysisError::NoWebCondition(metric.name.clone())
            } else {
                AnalysisError::NoCondition(metric.name.clone())
            });
        }
    }
    Ok(())
}

/// What a measurement produced, as the conditions see it in `result`.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// A Prometheus result: a vector's samples in order, or a scalar as one number. Bound
    /// as a CEL list of doubles (`result[0] >= 0.99`).
    Numbers(Vec<f64>),
    /// The judge's score, 0 to 100. Bound as a CEL double (`result >= 90.0`).
    Score(f64),
    /// A web answer, or the part its `jsonPath` picked: bound as the CEL value of the
    /// JSON (`result.ok && result.successPercent >= 0.9`, `result == "pass"`). Integers
    /// are CEL ints, other numbers doubles; CEL compares the two with each other.
    Json(serde_json::Value),
}

impl MetricValue {
    /// Why this value cannot support a pass, if it cannot.
    fn data_problem(&self) -> Option<&'static str> {
        match self {
            MetricValue::Numbers(v) if v.is_empty() => Some("query returned no data"),
            MetricValue::Numbers(v) if v.iter().any(|x| x.is_nan()) => Some("result contains NaN"),
            MetricValue::Score(s) if s.is_nan() => Some("result contains NaN"),
            MetricValue::Json(serde_json::Value::Null) => Some("result is null"),
            _ => None,
        }
    }

    fn to_cel(&self) -> cel::Value {
        match self {
            MetricValue::Numbers(v) => {
                cel::Value::List(Arc::new(v.iter().map(|x| cel::Value::Float(*x)).collect()))
            }
            MetricValue::Score(s) => cel::Value::Float(*s),
            // A JSON value always converts: its map keys are strings.
            MetricValue::Json(v) => cel::to_value(v).unwrap_or(cel::Value::Null),
        }
    }
}

/// The text stored in `Measurement.value`: `[0.993, 1]` for numbers, `87.5` for a score.
impl fmt::Display for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricValue::Numbers(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            MetricValue::Score(s) => write!(f, "{s}"),
            MetricValue::Json(v) => write!(f, "{v}"),
        }
    }
}

/// Why a web answer has no value to judge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPathError {
    /// The path is not valid JSONPath.
    #[error("jsonPath {path:?} is not valid JSONPath: {reason}")]
    Invalid { path: String, reason: String },
    /// The path matched nothing in the answer.
    #[error("jsonPath {path:?} matched nothing in the response")]
    NoMatch { path: String },
}

/// The value `path` picks from `answer`: RFC 9535 JSONPath, with the braces of Argo
/// Rollouts' kubectl-style paths (`{$.data.ok}`) accepted, and a path without its `$`
/// (`.data.ok`, as kubectl writes it) rooted at the answer. One match is that value;
/// several (a wildcard, a filter) are the list of them; none is an error, never a
/// silent null.
pub fn pick_json_path(
    answer: &serde_json::Value,
    path: &str,
) -> Result<serde_json::Value, JsonPathError> {
    use jsonpath_rust::JsonPath;
    let trimmed = path.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(trimmed)
        .trim();
    let rooted = if inner.starts_with('$') {
        inner.to_string()
    } else {
        format!("${inner}")
    };
    let found = answer.query(&rooted).map_err(|e| JsonPathError::Invalid {
        path: path.to_string(),
        reason: first_line(&e.to_string()),
    })?;
    match found.as_slice() {
        [] => Err(JsonPathError::NoMatch {
            path: path.to_string(),
        }),
        [one] => Ok((*one).clone()),
        many => Ok(serde_json::Value::Array(
            many.iter().map(|v| (*v).clone()).collect(),
        )),
    }
}

/// The verdict of one measurement, and a message when it is not a plain pass.
///
/// As Argo Rollouts: Failed when the failureCondition holds (it wins when both hold), or
/// when the successCondition does not hold and there is no failureCondition; Successful
/// when the successCondition holds, or when the failureCondition does not hold and there is
/// no successCondition; Inconclusive when both are set and neither holds. A condition that
/// cannot be evaluated (index out of range, wrong type, not a bool) makes the measurement
/// Error. A judge score without conditions is judged by the metric's thresholds
/// (`>= pass` Successful, `>= marginal` Inconclusive, else Failed).
///
/// Unlike Argo, an empty or NaN result is never Successful: a condition that would pass
/// it (`result.all(x, x < 0.01)` on no data, or a failureCondition NaN makes false)
/// gives Inconclusive, so that a missing metric stops the rollout for a human instead of
/// promoting it. To treat "no series" as zero, write it in the query (`... or vector(0)`).
pub fn evaluate(metric: &Metric, result: &MetricValue) -> (AnalysisPhase, Option<String>) {
    let problem = result.data_problem();
    // With a problem, every message starts with it: it is usually the real cause.
    let explain = |detail: String| match problem {
        Some(p) => format!("{p}: {detail}"),
        None => detail,
    };
    let run = |field: &str, expr: &Option<String>| match expr {
        None => Ok(None),
        Some(expr) => run_condition(expr, result)
            .map(Some)
            .map_err(|e| explain(format!("{field} {expr:?}: {e}"))),
    };
    let succeeded = match run("successCondition", &metric.success_condition) {
        Ok(b) => b,
        Err(message) => return (AnalysisPhase::Error, Some(message)),
    };
    let failed = match run("failureCondition", &metric.failure_condition) {
        Ok(b) => b,
        Err(message) => return (AnalysisPhase::Error, Some(message)),
    };
    let (phase, detail) = match (succeeded, failed) {
        (_, Some(true)) => (AnalysisPhase::Failed, "failureCondition holds".to_string()),
        (Some(true), _) => (AnalysisPhase::Successful, String::new()),
        (Some(false), None) => (
            AnalysisPhase::Failed,
            "successCondition does not hold".to_string(),
        ),
        (None, Some(false)) => (AnalysisPhase::Successful, String::new()),
        (Some(false), Some(false)) => (
            AnalysisPhase::Inconclusive,
            "neither successCondition nor failureCondition holds".to_string(),
        ),
        (None, None) => match (result, &metric.provider.judge) {
            (MetricValue::Score(score), Some(judge)) => by_thresholds(*score, &judge.thresholds),
            _ => {
                return (
                    AnalysisPhase::Error,
                    Some(explain(
                        "metric has neither successCondition nor failureCondition".to_string(),
                    )),
                );
            }
        },
    };
    match (phase, problem) {
        (AnalysisPhase::Successful, None) => (phase, None),
        (AnalysisPhase::Successful, Some(p)) => (
            AnalysisPhase::Inconclusive,
            Some(format!("{p}: not counted as a pass")),
        ),
        (_, _) => (phase, Some(explain(detail))),
    }
}

/// The judge's own verdict on a score, for judge metrics without conditions.
fn by_thresholds(score: f64, thresholds: &JudgeThresholds) -> (AnalysisPhase, String) {
    if score >= thresholds.pass {
        (AnalysisPhase::Successful, String::new())
    } else if score >= thresholds.marginal {
        (
            AnalysisPhase::Inconclusive,
            format!(
                "score {score} is below pass ({}) but not below marginal ({})",
                thresholds.pass, thresholds.marginal
            ),
        )
    } else {
        (
            AnalysisPhase::Failed,
            format!("score {score} is below marginal ({})", thresholds.marginal),
        )
    }
}

/// Evaluates one condition with `result` bound; anything but a bool is an error.
fn run_condition(expr: &str, result: &MetricValue) -> Result<bool, String> {
    let program = cel::Program::compile(expr)
        .map_err(|e| format!("does not compile: {}", first_line(&e.to_string())))?;
    let mut context = cel::Context::default();
    context.add_variable_from_value("result", result.to_cel());
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("evaluates to {other:?}, not a bool")),
        Err(e) => Err(e.to_string()),
    }
}

/// cel's parse errors add the source and a caret on further lines; one line fits a status.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// Which metrics to measure now, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    /// Names of the metrics to measure now, in spec order.
    pub due_now: Vec<String>,
    /// The earliest time a metric not due now becomes due; None when none will be.
    pub next: Option<Timestamp>,
    /// Names of the metrics whose last measurement is still Running (a Job that has not
    /// finished): the runtime looks at it again instead of taking a new one, when what it
    /// waits for changes (the Job's watch event), not at a time.
    pub in_flight: Vec<String>,
}

/// Which metrics are due at `now` for a run that started at `started_at`.
///
/// A metric's first measurement is due `initialDelay` after `started_at`; each next one
/// `interval` after the previous measurement finished (or started, when it has no finish
/// time), or [`ERROR_RETRY_INTERVAL`] after one that errored if that is sooner. A metric
/// stops once it has `count` measurements (one without an interval; errors do not count,
/// as Argo Rollouts), or once its phase is decided. Nothing is due once the run has a
/// completed phase: to terminate a run, the caller records the phase [`run_phase`] gives
/// with `terminated` in `status.phase`. Metrics whose durations do not parse are never due
/// ([`validate_spec`] rejects them first). A metric whose last measurement is still in
/// flight (Pending or Running) is never due: it is listed in `in_flight` and its next
/// measurement is counted from when that one finishes ([`complete`]).
pub fn due(
    spec: &AnalysisSpec,
    status: &AnalysisRunStatus,
    started_at: Timestamp,
    now: Timestamp,
) -> Schedule {
    let mut schedule = Schedule::default();
    if status.phase.is_some_and(is_completed) {
        return schedule;
    }
    for metric in &spec.metrics {
        let result = find(status, &metric.name);
        if result.is_some_and(|r| !is_completed(r.phase) && last_in_flight(r).is_some()) {
            schedule.in_flight.push(metric.name.clone());
            continue;
        }
        let Some(at) = next_measurement(metric, result, started_at) else {
            continue;
        };
        if at <= now {
            schedule.due_now.push(metric.name.clone());
        } else {
            schedule.next = Some(schedule.next.map_or(at, |next| next.min(at)));
        }
    }
    schedule
}

/// When `metric` should next be measured; None when it is done.
fn next_measurement(
    metric: &Metric,
    result: Option<&MetricResult>,
    started_at: Timestamp,
) -> Option<Timestamp> {
    let interval = parse(&metric.interval)?;
    if let Some(r) = result {
        if is_completed(r.phase) {
            return None;
        }
        if effective_count(metric, interval).is_some_and(|count| r.count >= count) {
            return None;
        }
    }
    let Some(last) = result.and_then(|r| r.measurements.last()) else {
        let delay = parse(&metric.initial_delay)?.unwrap_or_default();
        // A sequential metric's first look waits for its first complete slice.
        let first_slice = match (&metric.provider.sequential, interval) {
            (Some(_), Some(i)) => i,
            _ => Duration::ZERO,
        };
        return Some(add(started_at, delay + first_slice));
    };
    let from = last
        .finished_at
        .as_ref()
        .or(last.started_at.as_ref())
        .map_or(started_at, |t| t.0);
    let wait = match (last.phase, interval) {
        (AnalysisPhase::Error, Some(i)) => i.min(ERROR_RETRY_INTERVAL),
        (_, Some(i)) => i,
        // Without an interval the only measurement left to take is a retry: the last one
        // errored (or never finished).
        (_, None) => ERROR_RETRY_INTERVAL,
    };
    Some(add(from, wait))
}

/// Parses an optional duration: `None` when it is invalid, `Some(None)` when absent.
fn parse(duration: &Option<HumanDuration>) -> Option<Option<Duration>> {
    match duration {
        None => Some(None),
        Some(d) => d.to_duration().ok().map(Some),
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// How many measurements complete the metric: `count`, else one without an interval, else
/// unbounded (measured until the run ends).
fn effective_count(metric: &Metric, interval: Option<Duration>) -> Option<i32> {
    match (metric.count, interval) {
        (Some(count), _) => Some(count.max(1)),
        (None, None) => Some(1),
        (None, Some(_)) => None,
    }
}

/// The metric's last measurement when it is still in flight (Pending or Running).
fn last_in_flight(result: &MetricResult) -> Option<&Measurement> {
    result
        .measurements
        .last()
        .filter(|m| !is_completed(m.phase))
}

/// The metrics whose last measurement is still in flight, in spec order, whatever the
/// metric's phase: what a run that ends must stop ([`terminate_in_flight`]).
pub fn in_flight<'a>(spec: &'a AnalysisSpec, status: &AnalysisRunStatus) -> Vec<&'a str> {
    spec.metrics
        .iter()
        .filter(|m| find(status, &m.name).is_some_and(|r| last_in_flight(r).is_some()))
        .map(|m| m.name.as_str())
        .collect()
}

/// Records the outcome of `metric`'s measurement in flight: the Running measurement is
/// replaced by `measurement` and counted as [`record`] counts a new one. Without one in
/// flight this is [`record`].
pub fn complete(
    spec: &AnalysisSpec,
    status: &mut AnalysisRunStatus,
    metric: &str,
    measurement: Measurement,
) {
    if let Some(result) = status.metric_results.iter_mut().find(|r| r.name == metric)
        && last_in_flight(result).is_some()
    {
        result.measurements.pop();
    }
    record(spec, status, metric, measurement);
}

/// Ends `metric`'s measurement in flight because the run ended before it finished (as
/// Argo Rollouts: Inconclusive, with why). It is counted nowhere, so it decides nothing:
/// the run's verdict is what it was without it.
pub fn terminate_in_flight(
    status: &mut AnalysisRunStatus,
    metric: &str,
    finished_at: Timestamp,
    message: String,
) {
    let Some(result) = status.metric_results.iter_mut().find(|r| r.name == metric) else {
        return;
    };
    if let Some(last) = result.measurements.last_mut()
        && !is_completed(last.phase)
    {
        last.phase = AnalysisPhase::Inconclusive;
        last.finished_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            finished_at,
        ));
        last.message = Some(message);
    }
}

fn is_completed(phase: AnalysisPhase) -> bool {
    !matches!(phase, AnalysisPhase::Pending | AnalysisPhase::Running)
}

fn find<'a>(status: &'a AnalysisRunStatus, name: &str) -> Option<&'a MetricResult> {
    status.metric_results.iter().find(|r| r.name == name)
}

/// True when `metric` only reports: named in `dryRun`, or `dryRun` has `*`.
pub fn is_dry_run(spec: &AnalysisSpec, metric: &str) -> bool {
    spec.dry_run
        .iter()
        .any(|d| d.metric_name == metric || d.metric_name == "*")
}

/// How many measurements of `metric` to keep: its own `measurementRetention`, else the
/// `*` one, else [`DEFAULT_RETENTION`].
pub fn retention(spec: &AnalysisSpec, metric: &str) -> usize {
    let by_name = |name: &str| {
        spec.measurement_retention
            .iter()
            .find(|r| r.metric_name == name)
    };
    by_name(metric)
        .or_else(|| by_name("*"))
        .map_or(DEFAULT_RETENTION, |r| r.limit.max(1) as usize)
}

/// Records a measurement of `metric`: appends it (keeping the newest
/// [`retention`] measurements, newest last), updates the counters and the metric's phase.
///
/// Counters as Argo Rollouts: `count` counts measurements that produced a verdict (errors
/// are counted in `error` only, so that a metric measured once is retried after an error
/// rather than completed by it); any non-error verdict resets `consecutiveError`. A
/// measurement still Pending or Running is kept but counted nowhere. The phase is, in this
/// order: Failed when failed > failureLimit, Error when consecutiveError >
/// consecutiveErrorLimit, Inconclusive when inconclusive > inconclusiveLimit, Successful
/// when `count` measurements are done, else Running. Dry-run metrics are marked so and get
/// a phase, which [`run_phase`] ignores. A metric not in the spec is ignored: the runtime
/// only measures the names [`due`] gives.
pub fn record(
    spec: &AnalysisSpec,
    status: &mut AnalysisRunStatus,
    metric: &str,
    measurement: Measurement,
) {
    let Some(def) = spec.metrics.iter().find(|m| m.name == metric) else {
        return;
    };
    let index = match status.metric_results.iter().position(|r| r.name == metric) {
        Some(i) => i,
        None => {
            status.metric_results.push(MetricResult {
                name: metric.to_string(),
                phase: AnalysisPhase::Running,
                measurements: Vec::new(),
                count: 0,
                successful: 0,
                failed: 0,
                inconclusive: 0,
                error: 0,
                consecutive_error: 0,
                dry_run: false,
                message: None,
            });
            status.metric_results.len() - 1
        }
    };
    let result = &mut status.metric_results[index];
    result.dry_run = is_dry_run(spec, metric);
    match measurement.phase {
        AnalysisPhase::Successful => result.successful += 1,
        AnalysisPhase::Failed => result.failed += 1,
        AnalysisPhase::Inconclusive => result.inconclusive += 1,
        AnalysisPhase::Error => result.error += 1,
        AnalysisPhase::Pending | AnalysisPhase::Running => {}
    }
    match measurement.phase {
        AnalysisPhase::Successful | AnalysisPhase::Failed | AnalysisPhase::Inconclusive => {
            result.count += 1;
            result.consecutive_error = 0;
        }
        AnalysisPhase::Error => result.consecutive_error += 1,
        AnalysisPhase::Pending | AnalysisPhase::Running => {}
    }
    result.measurements.push(measurement);
    let keep = retention(spec, metric);
    if result.measurements.len() > keep {
        let excess = result.measurements.len() - keep;
        result.measurements.drain(..excess);
    }
    let (phase, message) = metric_phase(def, result);
    result.phase = phase;
    result.message = message;
}

/// The phase of a metric from its counters, and why.
fn metric_phase(metric: &Metric, r: &MetricResult) -> (AnalysisPhase, Option<String>) {
    let failure_limit = metric.failure_limit.max(0);
    let error_limit = metric.consecutive_error_limit.max(0);
    let inconclusive_limit = metric.inconclusive_limit.max(0);
    if r.failed > failure_limit {
        let m = format!("failed ({}) > failureLimit ({failure_limit})", r.failed);
        return (AnalysisPhase::Failed, Some(m));
    }
    if r.consecutive_error > error_limit {
        let m = format!(
            "consecutive errors ({}) > consecutiveErrorLimit ({error_limit})",
            r.consecutive_error
        );
        return (AnalysisPhase::Error, Some(m));
    }
    if metric.provider.sequential.is_some() {
        return sequential_phase(metric, r);
    }
    if r.inconclusive > inconclusive_limit {
        let m = format!(
            "inconclusive ({}) > inconclusiveLimit ({inconclusive_limit})",
            r.inconclusive
        );
        return (AnalysisPhase::Inconclusive, Some(m));
    }
    // An unparsable interval never gets here in practice (validate_spec), and counting it
    // as absent at worst completes the metric after one measurement.
    let interval = parse(&metric.interval).flatten();
    match effective_count(metric, interval) {
        Some(count) if r.count >= count => {
            let m = format!(
                "{} measurements: {} successful, {} failed, {} inconclusive, {} errors",
                r.count, r.successful, r.failed, r.inconclusive, r.error
            );
            (AnalysisPhase::Successful, Some(m))
        }
        _ => (AnalysisPhase::Running, None),
    }
}

/// The phase of a sequential metric past its failure and error limits: each look is a
/// verdict of the test on all the evidence so far, so the last look decides. Successful
/// when it passed (early, or at the last look); Inconclusive when the last look (`count`)
/// had too little traffic; else Running: an undecided look is Inconclusive but does not
/// count against `inconclusiveLimit`, it only means "keep looking".
fn sequential_phase(metric: &Metric, r: &MetricResult) -> (AnalysisPhase, Option<String>) {
    let last = r.measurements.last();
    let done = metric.count.is_some_and(|count| r.count >= count.max(1));
    match last.map(|m| m.phase) {
        Some(AnalysisPhase::Successful) => {
            let m = if done {
                format!("no evidence of a regression after {} looks", r.count)
            } else {
                format!("no regression beyond the tolerance after {} looks", r.count)
            };
            (AnalysisPhase::Successful, Some(m))
        }
        Some(AnalysisPhase::Inconclusive) if done => {
            let m = format!("{} looks without a verdict", r.count);
            (AnalysisPhase::Inconclusive, Some(m))
        }
        _ => (AnalysisPhase::Running, None),
    }
}

/// Where a sequential metric's evidence starts (the run's start plus `initialDelay`), and
/// which look the next measurement of it is.
pub fn sequential_look(
    status: &AnalysisRunStatus,
    metric: &Metric,
    started_at: Timestamp,
) -> (Timestamp, crate::core::sequential::Look) {
    let delay = parse(&metric.initial_delay).flatten().unwrap_or_default();
    let number = find(status, &metric.name).map_or(0, |r| r.count) + 1;
    let look = crate::core::sequential::Look {
        number,
        last: metric.count.is_some_and(|count| number >= count),
        early_success: metric.count.is_some(),
    };
    (add(started_at, delay), look)
}

/// The verdict of the run and why, naming the metric that decides it.
///
/// Over the metrics that are not dry-run: Failed if any is Failed, else Error if any is
/// Error, else Inconclusive if any is Inconclusive (first in spec order). Successful when
/// every such metric is Successful and every dry-run metric is done too (as Argo Rollouts,
/// the run waits for its dry-run metrics, which would otherwise report one measurement).
/// When `terminated`, a run with none of those verdicts ends Successful ("terminated").
/// Otherwise Running.
pub fn run_phase(
    spec: &AnalysisSpec,
    status: &AnalysisRunStatus,
    terminated: bool,
) -> (AnalysisPhase, String) {
    let metrics: Vec<(&Metric, Option<&MetricResult>, bool)> = spec
        .metrics
        .iter()
        .map(|m| {
            let result = find(status, &m.name);
            let dry = is_dry_run(spec, &m.name) || result.is_some_and(|r| r.dry_run);
            (m, result, dry)
        })
        .collect();
    let deciding = [
        AnalysisPhase::Failed,
        AnalysisPhase::Error,
        AnalysisPhase::Inconclusive,
    ];
    for phase in deciding {
        let found = metrics
            .iter()
            .find_map(|&(m, r, dry)| r.filter(|r| !dry && r.phase == phase).map(|r| (m, r)));
        if let Some((metric, result)) = found {
            return (phase, describe(metric, result));
        }
    }
    let waiting: Vec<&str> = metrics
        .iter()
        .filter(|&&(_, r, dry)| {
            let phase = r.map_or(AnalysisPhase::Pending, |r| r.phase);
            if dry {
                !is_completed(phase)
            } else {
                phase != AnalysisPhase::Successful
            }
        })
        .map(|(m, _, _)| m.name.as_str())
        .collect();
    if waiting.is_empty() {
        // Dry-run verdicts are what dry run is for: say them, since they did not count.
        let dry_verdicts: Vec<String> = metrics
            .iter()
            .filter_map(|&(m, r, dry)| {
                r.filter(|r| dry && r.phase != AnalysisPhase::Successful)
                    .map(|r| format!("{} {:?}", m.name, r.phase))
            })
            .collect();
        let decisive = metrics.iter().filter(|&&(_, _, dry)| !dry).count();
        let mut message = format!("{decisive} metrics successful");
        if !dry_verdicts.is_empty() {
            message.push_str(&format!(" (dry run: {})", dry_verdicts.join(", ")));
        }
        return (AnalysisPhase::Successful, message);
    }
    if terminated {
        return (AnalysisPhase::Successful, "terminated".to_string());
    }
    (
        AnalysisPhase::Running,
        format!("measuring {}", waiting.join(", ")),
    )
}

/// `metric "x" Failed: failed (1) > failureLimit (0); last measurement [0.2]: message`.
fn describe(metric: &Metric, result: &MetricResult) -> String {
    let mut text = format!("metric {:?} {:?}", metric.name, result.phase);
    if let Some(m) = &result.message {
        text.push_str(": ");
        text.push_str(m);
    }
    if let Some(last) = result.measurements.last() {
        text.push_str("; last measurement");
        if let Some(v) = &last.value {
            text.push(' ');
            text.push_str(v);
        }
        if let Some(m) = &last.message {
            text.push_str(": ");
            text.push_str(m);
        }
    }
    text
}
