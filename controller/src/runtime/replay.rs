//! Replaying an analysis over a past time window: the same scheduler, measurements and
//! verdict as the AnalysisRun controller, with the clock moved through the window instead
//! of waiting for it. What it prints is what the controller would have decided then.
//!
//! Only providers that can answer about the past are replayed: a Prometheus query (and
//! the judges built on it) is evaluated at a past time; a `web` endpoint answers only
//! about now, so its metrics are left out and named, never faked (see [`not_replayable`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use sluice_api::analysis::{
    AnalysisPhase, AnalysisRunArgument, AnalysisRunStatus, AnalysisSpec, Measurement, Metric,
};

use super::analysis::Measurer;
use crate::core::analysis as plan;

/// One measurement the replay took.
#[derive(Debug, Clone)]
pub struct ReplayedMeasurement {
    pub metric: String,
    pub measurement: Measurement,
}

/// The outcome of a replay.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Every measurement, in time order.
    pub measurements: Vec<ReplayedMeasurement>,
    /// The verdict the controller would have reached; Running when the window ended first.
    pub phase: AnalysisPhase,
    pub message: String,
    /// The run status the controller would have written.
    pub status: AnalysisRunStatus,
    /// Metrics left out, each with why it cannot be replayed.
    pub skipped: Vec<(String, String)>,
}

/// Why a metric cannot be replayed over a past window, if it cannot.
pub fn not_replayable(metric: &Metric) -> Option<String> {
    if metric.provider.web.is_some() {
        return Some(
            "web provider: an HTTP endpoint answers only about now, not about a past window"
                .to_string(),
        );
    }
    metric.provider.job.as_ref().map(|_| {
        "job provider: a Job runs now, against what is deployed now; it cannot be run in the past"
            .to_string()
    })
}

/// Evaluates `spec` with `args` as if its run had started at `from`, measuring each metric
/// when the controller would have (initialDelay, interval, count, error retries), with
/// each query evaluated at that past time, until the verdict or `to`.
pub async fn replay(
    measurer: &Measurer,
    namespace: &str,
    spec: &AnalysisSpec,
    args: &[AnalysisRunArgument],
    from: Timestamp,
    to: Timestamp,
) -> Result<Replay, String> {
    plan::validate_spec(spec).map_err(|e| format!("invalid analysis: {e}"))?;
    let skipped: Vec<(String, String)> = spec
        .metrics
        .iter()
        .filter_map(|m| not_replayable(m).map(|why| (m.name.clone(), why)))
        .collect();
    let kept = AnalysisSpec {
        metrics: spec
            .metrics
            .iter()
            .filter(|m| not_replayable(m).is_none())
            .cloned()
            .collect(),
        ..spec.clone()
    };
    if kept.metrics.is_empty() {
        return Err(format!(
            "nothing to replay: {}",
            skipped
                .iter()
                .map(|(name, why)| format!("metric {name}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let spec = &kept;
    let args = measurer.resolve_args(namespace, args).await?;
    let mut status = AnalysisRunStatus::default();
    let mut measurements = Vec::new();
    let mut now = from;
    loop {
        let schedule = plan::due(spec, &status, from, now);
        for name in &schedule.due_now {
            let Some(metric) = spec.metrics.iter().find(|m| &m.name == name) else {
                continue;
            };
            let mut m = measurer
                .measure(namespace, metric, &args, now, (&status, from))
                .await;
            // A replayed measurement happened at the time it stands for.
            m.started_at = Some(Time(now));
            m.finished_at = Some(Time(now));
            plan::record(spec, &mut status, name, m.clone());
            measurements.push(ReplayedMeasurement {
                metric: name.clone(),
                measurement: m,
            });
        }
        let (phase, _) = plan::run_phase(spec, &status, false);
        if phase != AnalysisPhase::Running && phase != AnalysisPhase::Pending {
            break;
        }
        match plan::due(spec, &status, from, now).next {
            // The scheduler never asks for the same instant twice; the guard keeps a
            // misconfigured spec from looping.
            Some(next) if next <= to => now = next.max(now + SignedDuration::from_millis(1)),
            _ => break,
        }
    }
    let (phase, message) = plan::run_phase(spec, &status, false);
    let message = if phase == AnalysisPhase::Running {
        format!("the window ended before a verdict ({message})")
    } else {
        message
    };
    // A pass of the replayable metrics is not a pass of the analysis: the skipped ones
    // could have failed it. A failure stands (any failed metric fails the run).
    let names = skipped
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let (phase, message) = match phase {
        AnalysisPhase::Successful if !skipped.is_empty() => (
            AnalysisPhase::Inconclusive,
            format!("the replayed metrics passed, but {names} could not be replayed ({message})"),
        ),
        _ if !skipped.is_empty() => (phase, format!("{message}; not replayed: {names}")),
        _ => (phase, message),
    };
    status.phase = Some(phase);
    status.message = Some(message.clone());
    Ok(Replay {
        measurements,
        phase,
        message,
        status,
        skipped,
    })
}
