//! The planning core: pure functions from (spec, observed state, now) to what should be
//! done. No Kubernetes client, no tokio, no clock, no I/O.
//!
//! `plan(&Rollout, &Observed, now) -> Plan` is the whole interface the runtime uses.

pub mod action;
pub mod analysis;
pub mod baseline;
pub mod bluegreen;
pub mod canary;
mod common;
pub mod conditions;
pub mod gate;
#[cfg(test)]
mod gate_tests;
pub mod hash;
pub mod job;
#[cfg(test)]
mod job_tests;
pub mod judge;
pub mod notice;
#[cfg(test)]
mod notice_tests;
pub mod observed;
mod phase;
pub mod pod_metadata;
#[cfg(test)]
mod pod_metadata_tests;
pub mod replicas;
pub mod restart;
#[cfg(test)]
mod restart_tests;
pub mod routes;
#[cfg(test)]
mod routes_tests;
pub mod sequential;
pub mod workload_ref;
#[cfg(test)]
mod workload_ref_tests;

#[cfg(test)]
mod analysis_tests;
#[cfg(test)]
mod bluegreen_tests;
#[cfg(test)]
mod canary_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testkit;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use sluice_api::rollout::{Rollout, RolloutPhase, RolloutStatus, StrategyKind};

pub use action::{Action, PlannedEvent};
pub use observed::{
    AnalysisRunState, BaselineState, Observed, PodState, ReplicaSetState, WorkloadState,
};

/// The outcome of planning one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Changes to make, in order.
    pub actions: Vec<Action>,
    /// The status the Rollout should have; written only if it differs from the stored one.
    pub status: RolloutStatus,
    /// When to look again at the latest (end of a pause, a scale-down delay, the progress
    /// deadline); None when only a change in the cluster can move the rollout.
    pub requeue_after: Option<Duration>,
    /// Events to record (transitions only).
    pub events: Vec<PlannedEvent>,
    /// Transitions to tell subscribers about, once the status is written.
    pub notices: Vec<notice::Notice>,
    /// The gates to call now (see `core::gate`); the runtime stops calling any not listed.
    pub gate_calls: Vec<gate::GateCall>,
}

/// Plans one reconcile of a Rollout.
pub fn plan(rollout: &Rollout, observed: &Observed, now: Timestamp) -> Plan {
    // Without its Deployment a workloadRef Rollout has no template to check.
    if let (Some(reference), None) = (&rollout.spec.workload_ref, &observed.workload) {
        let mut missing = observed.missing.clone();
        let deployment = format!("Deployment {}", reference.name);
        if !missing.contains(&deployment) {
            missing.insert(0, deployment);
        }
        let message = format!("not found: {}", missing.join(", "));
        return invalid(rollout, "ReferenceNotFound", &message, now);
    }
    if let Some(problem) = spec_problem(rollout) {
        return invalid(rollout, "InvalidSpec", &problem, now);
    }
    if !observed.missing.is_empty() {
        let message = format!("not found: {}", observed.missing.join(", "));
        return invalid(rollout, "ReferenceNotFound", &message, now);
    }
    if !observed.unusable.is_empty() {
        let message = format!("cannot use: {}", observed.unusable.join("; "));
        return invalid(rollout, "InvalidReference", &message, now);
    }
    let template_hash = hash::pod_template_hash(&rollout.spec.template);
    match (
        &rollout.spec.strategy.canary,
        &rollout.spec.strategy.blue_green,
    ) {
        (Some(canary), None) => {
            let steps_hash = hash::value_hash(&canary.steps);
            let p = canary::plan(rollout, canary, observed, &template_hash, &steps_hash, now);
            finish(rollout, observed, p, StrategyKind::Canary, now)
        }
        (None, Some(blue_green)) => {
            let p = bluegreen::plan(rollout, blue_green, observed, &template_hash, now);
            finish(rollout, observed, p, StrategyKind::BlueGreen, now)
        }
        _ => invalid(
            rollout,
            "InvalidSpec",
            "strategy must set exactly one of canary and blueGreen",
            now,
        ),
    }
}

/// What every strategy's plan gets: run housekeeping and the common status fields.
fn finish(
    rollout: &Rollout,
    observed: &Observed,
    mut p: Plan,
    strategy: StrategyKind,
    now: Timestamp,
) -> Plan {
    let revision = p.status.current_pod_hash.clone().unwrap_or_default();
    let stable = p.status.stable_rs.clone().unwrap_or_default();
    let mut gates = gate::Gates {
        calls: std::mem::take(&mut p.gate_calls),
    };
    let mut wake = common::Wake::default();
    gates.settle(
        &gate::Subject::of(rollout, &revision, &stable),
        &observed.gate_answers,
        &mut p.status,
        &mut p.events,
        &mut wake,
        now,
    );
    p.gate_calls = gates.calls;
    if let Some(at) = wake.0 {
        let after = common::until(now, at);
        p.requeue_after = Some(p.requeue_after.map_or(after, |r| r.min(after)));
    }
    let housekeeping = analysis_housekeeping(&p.status, observed, &p.actions);
    p.actions.extend(housekeeping);
    let restart = restart::plan(rollout, observed, &p.status, now);
    p.actions.extend(restart.actions);
    p.status.restarted_at = restart.restarted_at;
    p.requeue_after = match (p.requeue_after, restart.requeue_after) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let relabel = pod_metadata::plan(rollout, observed, &p.status, &mut p.actions);
    p.actions.extend(relabel);
    let (scale, scaled_down) = workload_ref::plan(rollout, observed, &p.status);
    p.actions.extend(scale);
    p.events.extend(scaled_down);
    let step = match strategy {
        StrategyKind::Canary => rollout.spec.strategy.canary.as_ref().map(|c| c.steps.len()),
        StrategyKind::BlueGreen => rollout
            .spec
            .strategy
            .blue_green
            .as_ref()
            .map(|b| bluegreen::stages(b).len()),
    }
    .map(|count| notice::StepPosition {
        completed: p.status.current_step_index.unwrap_or(0).max(0) as u32,
        count: count as u32,
    });
    p.notices = notice::collect(
        std::mem::take(&mut p.notices),
        &p.events,
        &p.status,
        step,
        now,
    );
    p.status.observed_generation = rollout.metadata.generation;
    p.status.strategy = Some(strategy);
    p.status.selector = Some(selector_string(&rollout.spec.selector));
    p
}

/// Finished AnalysisRuns kept per Rollout, of each outcome (successful, unsuccessful).
pub const ANALYSIS_RUN_HISTORY: usize = 5;

/// Runs the status no longer points at are stopped (a promote past an analysis step, a
/// superseded revision), and finished runs beyond the history are deleted, newest kept.
fn analysis_housekeeping(
    status: &RolloutStatus,
    observed: &Observed,
    planned: &[Action],
) -> Vec<Action> {
    use sluice_api::analysis::AnalysisPhase;
    let canary = status.canary.as_ref();
    let blue_green = status.blue_green.as_ref();
    let current = [
        canary.and_then(|c| c.current_step_analysis_run.as_deref()),
        canary.and_then(|c| c.current_background_analysis_run.as_deref()),
        blue_green.and_then(|b| b.pre_promotion_analysis_run.as_deref()),
        blue_green.and_then(|b| b.post_promotion_analysis_run.as_deref()),
    ];
    let already = |name: &str| {
        planned.iter().any(|a| {
            matches!(a, Action::TerminateAnalysisRun { name: n } | Action::CreateAnalysisRun { name: n, .. } if n == name)
        })
    };
    let mut actions = Vec::new();
    let finished = AnalysisRunState::finished;
    for run in &observed.analysis_runs {
        if !finished(run)
            && !run.terminating
            && !current.contains(&Some(run.name.as_str()))
            && !already(&run.name)
        {
            actions.push(Action::TerminateAnalysisRun {
                name: run.name.clone(),
            });
        }
    }
    for successful in [true, false] {
        let mut done: Vec<&AnalysisRunState> = observed
            .analysis_runs
            .iter()
            .filter(|r| finished(r) && (r.phase == Some(AnalysisPhase::Successful)) == successful)
            .filter(|r| !current.contains(&Some(r.name.as_str())))
            .collect();
        done.sort_by_key(|r| std::cmp::Reverse((r.created, r.name.clone())));
        actions.extend(done.into_iter().skip(ANALYSIS_RUN_HISTORY).map(|r| {
            Action::DeleteAnalysisRun {
                name: r.name.clone(),
            }
        }));
    }
    actions
}

/// What admission cannot check: the selector must select the template's pods, and the
/// managed routes must be ones the router can hold. The `InvalidSpec` message, or None;
/// public for `kubectl sluice lint`, which reports the same offline.
pub fn spec_problem(rollout: &Rollout) -> Option<String> {
    if let Some(problem) = rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .and_then(routes::spec_problem)
    {
        return Some(problem);
    }
    if let Some(problem) = pod_metadata::spec_problem(rollout) {
        return Some(problem);
    }
    let labels = rollout
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let selector = &rollout.spec.selector;
    if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
    {
        return Some("spec.selector is empty: it would select every pod".into());
    }
    for (k, v) in selector.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Some(format!(
                "spec.selector matchLabels {k}={v} does not match spec.template.metadata.labels"
            ));
        }
    }
    None
}

/// A Rollout that cannot be acted on: nothing is changed in the cluster; it is reported
/// with `InvalidSpec=True`, `Stalled=True`, phase Degraded and a Warning Event.
fn invalid(rollout: &Rollout, reason: &str, message: &str, now: Timestamp) -> Plan {
    use conditions::{set, types};
    let old = rollout.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let g = rollout.metadata.generation;
    status.observed_generation = g;
    status.phase = Some(RolloutPhase::Degraded);
    status.message = Some(message.to_string());
    status.strategy = match (
        &rollout.spec.strategy.canary,
        &rollout.spec.strategy.blue_green,
    ) {
        (Some(_), None) => Some(StrategyKind::Canary),
        (None, Some(_)) => Some(StrategyKind::BlueGreen),
        _ => None,
    };
    status.selector = Some(selector_string(&rollout.spec.selector));
    let cs = &mut status.conditions;
    set(cs, types::INVALID_SPEC, true, reason, message, g, now);
    set(cs, types::STALLED, true, reason, message, g, now);
    set(cs, types::READY, false, reason, message, g, now);
    set(cs, types::RECONCILING, false, reason, message, g, now);
    let events = if conditions::get(&old.conditions, types::INVALID_SPEC)
        .is_some_and(|c| c.status == "True" && c.message == message)
    {
        Vec::new()
    } else {
        vec![PlannedEvent {
            warning: true,
            reason: reason.to_string(),
            action: "Validate".into(),
            message: message.to_string(),
        }]
    };
    Plan {
        actions: Vec::new(),
        status,
        requeue_after: None,
        events,
        notices: Vec::new(),
        gate_calls: Vec::new(),
    }
}

/// A label selector in the string form of `kubectl get -l` and the scale subresource.
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({values})", e.key),
        });
    }
    parts.join(",")
}
