//! What every strategy's planner does the same way: wake-ups, controller pauses, run
//! names, entering a revision, which revision is stable, ReplicaSet bookkeeping and
//! Service selectors.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use sluice_api::rollout::{
    PauseCondition, PauseReason, RolloutAnalysis, RolloutStatus, StrategyKind,
};

use super::action::{Action, PlannedEvent};
use super::observed::{Observed, ReplicaSetState};

/// Whole seconds from a spec field; negative values (which admission refuses) count as 0.
pub(super) fn secs(n: i32) -> SignedDuration {
    SignedDuration::from_secs(n.max(0) as i64)
}

/// How long from `now` until `at`; zero when it has passed.
pub(super) fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = at.duration_since(now);
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

/// Keeps the earliest wake-up time.
#[derive(Debug, Default)]
pub(super) struct Wake(pub(super) Option<Timestamp>);

impl Wake {
    pub(super) fn at(&mut self, t: Timestamp) {
        self.0 = Some(self.0.map_or(t, |w| w.min(t)));
    }
}

/// True when the ReplicaSet of `hash` is at `replicas`, every pod of it existing and
/// available.
pub(super) fn stable_rs_settled(observed: &Observed, hash: &str, replicas: i32) -> bool {
    observed.replica_set(hash).is_some_and(|rs| {
        rs.replicas == replicas && rs.available >= replicas && rs.current == replicas
    })
}

/// Whether a controller pause still holds.
pub(super) enum PauseState {
    Waiting,
    Over,
}

/// A pause the controller enters: the first visit records it; it ends when its duration
/// has passed or when a promote cleared `pauseConditions`.
pub(super) fn pause_state(
    status: &mut RolloutStatus,
    reason: PauseReason,
    duration: Option<&sluice_api::HumanDuration>,
    now: Timestamp,
    wake: &mut Wake,
) -> PauseState {
    if !status.controller_pause {
        status.controller_pause = true;
        status.pause_conditions.push(PauseCondition {
            reason,
            start_time: Time(now),
            gate: None,
        });
    }
    let Some(cond) = status.pause_conditions.iter().find(|c| c.reason == reason) else {
        // The controller paused here and the condition is gone: promoted.
        status.controller_pause = false;
        return PauseState::Over;
    };
    // Admission refuses unparsable durations; one that slips through waits for a human.
    let duration = duration.and_then(|d| d.to_duration().ok());
    if let Some(d) = duration {
        let end = cond.start_time.0 + SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
        if now >= end {
            status.pause_conditions.retain(|c| c.reason != reason);
            status.controller_pause = false;
            return PauseState::Over;
        }
        wake.at(end);
    }
    PauseState::Waiting
}

/// The run to use for an analysis that the status names none for: `base-N` with the
/// first N not taken, so a retry never reuses a finished run — or, when a run of that
/// base is still measuring and nobody stopped it, that one. Such a run was created by a
/// reconcile that stopped (a killed controller) before its status named the run; making
/// a second one would measure twice and stop the first as unreferenced. Runs that
/// `planned` stops are not taken up.
pub(super) fn run_for(observed: &Observed, base: &str, planned: &[Action]) -> RunChoice {
    // A run this plan stops (its revision or stage list was replaced) is not taken up.
    let stopping = |name: &str| {
        planned
            .iter()
            .any(|a| matches!(a, Action::TerminateAnalysisRun { name: n } if n == name))
    };
    let number = |name: &str| {
        name.strip_prefix(base)?
            .strip_prefix('-')?
            .parse::<u32>()
            .ok()
    };
    let orphan = observed
        .analysis_runs
        .iter()
        .filter(|r| !r.finished() && !r.terminating && !stopping(&r.name))
        .filter_map(|r| Some((number(&r.name)?, r)))
        .max_by_key(|(n, _)| *n);
    if let Some((_, run)) = orphan {
        return RunChoice::TakeUp(run.name.clone());
    }
    let name = (1..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| observed.analysis_run(candidate).is_none())
        .expect("an unbounded range always yields a free name");
    RunChoice::Create(name)
}

/// The name of the run for an analysis the status names none for, with the action that
/// creates it when there is no run to take up (see [`run_for`]).
pub(super) fn start_run(
    observed: &Observed,
    base: &str,
    analysis: &RolloutAnalysis,
    role: String,
    actions: &mut Vec<Action>,
) -> String {
    match run_for(observed, base, actions) {
        RunChoice::TakeUp(name) => name,
        RunChoice::Create(name) => {
            actions.push(Action::CreateAnalysisRun {
                name: name.clone(),
                analysis: analysis.clone(),
                role,
            });
            name
        }
    }
}

/// What [`run_for`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RunChoice {
    /// A running run of this analysis that the status lost track of.
    TakeUp(String),
    /// A fresh name: the run is to be created.
    Create(String),
}

/// The stable revision: the recorded one while its ReplicaSet exists; otherwise (the
/// first revision, or a stable ReplicaSet someone deleted) the template's, which then has
/// nothing to compare with and becomes stable directly.
pub(super) fn stable_hash(
    status: &RolloutStatus,
    observed: &Observed,
    template_hash: &str,
) -> String {
    match status.stable_rs.as_deref() {
        Some(h) if h == template_hash || observed.replica_set(h).is_some() => h.to_string(),
        _ => template_hash.to_string(),
    }
}

/// The revision number of a ReplicaSet created now.
pub(super) fn next_revision(observed: &Observed) -> i64 {
    observed
        .replica_sets
        .iter()
        .map(|rs| rs.revision)
        .max()
        .unwrap_or(0)
        + 1
}

/// Pod counts of the status, from every revision's ReplicaSet.
pub(super) fn count_replicas(
    status: &mut RolloutStatus,
    observed: &Observed,
    current: Option<&ReplicaSetState>,
) {
    let all = &observed.replica_sets;
    status.replicas = all.iter().map(|rs| rs.current).sum();
    status.ready_replicas = all.iter().map(|rs| rs.ready).sum();
    status.available_replicas = all.iter().map(|rs| rs.available).sum();
    status.updated_replicas = current.map_or(0, |rs| rs.current);
    status.hpa_replicas = Some(status.replicas);
}

/// Deletes scaled-down ReplicaSets beyond `revisionHistoryLimit`, newest kept, except
/// those `keep` protects (the current and stable revisions, what a Service selects).
pub(super) fn prune_history(
    observed: &Observed,
    revision_history_limit: i32,
    keep: impl Fn(&ReplicaSetState) -> bool,
    actions: &mut Vec<Action>,
) {
    let mut old: Vec<&ReplicaSetState> = observed
        .replica_sets
        .iter()
        .filter(|rs| !keep(rs) && rs.replicas == 0 && rs.current == 0)
        .collect();
    old.sort_by_key(|rs| std::cmp::Reverse(rs.revision));
    for rs in old.into_iter().skip(revision_history_limit.max(0) as usize) {
        actions.push(Action::DeleteReplicaSet {
            name: rs.name.clone(),
        });
    }
}

/// Points each (Service, revision) pair's selector at the revision, when the Service
/// exists, selects something else, and the revision's ReplicaSet exists.
pub(super) fn point_services<'a>(
    observed: &Observed,
    pairs: impl IntoIterator<Item = (Option<&'a String>, &'a String)>,
    actions: &mut Vec<Action>,
) {
    for (service, hash) in pairs {
        if let Some(service) = service
            && observed
                .services
                .get(service)
                .is_some_and(|h| h.as_deref() != Some(hash))
            && observed.replica_set(hash).is_some()
        {
            actions.push(Action::SetServiceSelector {
                service: service.clone(),
                hash: hash.clone(),
            });
        }
    }
}

/// What entering the plan's revision decided before anything else: see [`enter_revision`].
pub(super) struct Entered {
    /// The template is not the one the status recorded.
    pub(super) new_template: bool,
    /// The strategy's runs that the restart of its steps stops.
    pub(super) actions: Vec<Action>,
    /// The new revision's Event (none for the first revision).
    pub(super) events: Vec<PlannedEvent>,
}

/// The prologue of every strategy's plan. A new template, or a changed step (stage) list,
/// starts the steps afresh: index 0, no pause, no promote-full, and the strategy's runs
/// stopped; a new template also supersedes what was in flight. Then both hashes are
/// recorded, and an abort gets its `abortedAt` (the abort action only sets `abort`; the
/// delays count from the first plan that sees it).
pub(super) fn enter_revision(
    status: &mut RolloutStatus,
    strategy: StrategyKind,
    template_hash: &str,
    steps_hash: &str,
    now: Timestamp,
) -> Entered {
    let mut actions = Vec::new();
    let mut events = Vec::new();
    let new_template = status.current_pod_hash.as_deref() != Some(template_hash);
    if new_template || status.current_step_hash.as_deref() != Some(steps_hash) {
        status.current_step_index = Some(0);
        status.pause_conditions.clear();
        status.controller_pause = false;
        status.promote_full = false;
        let runs = match strategy {
            StrategyKind::Canary => status.canary.as_mut().map(|c| {
                [
                    c.current_step_analysis_run.take(),
                    c.current_background_analysis_run.take(),
                ]
            }),
            StrategyKind::BlueGreen => status.blue_green.as_mut().map(|b| {
                [
                    b.pre_promotion_analysis_run.take(),
                    b.post_promotion_analysis_run.take(),
                ]
            }),
        };
        for run in runs.into_iter().flatten().flatten() {
            actions.push(Action::TerminateAnalysisRun { name: run });
        }
        if new_template {
            let verb = match strategy {
                StrategyKind::Canary => "rolling out",
                StrategyKind::BlueGreen => "previewing",
            };
            // A new template supersedes whatever was in flight, aborted or not: the abort
            // is cleared and the progress clock restarts.
            status.abort = false;
            status.aborted_at = None;
            status.progressed_at = Some(Time(now));
            if status.current_pod_hash.is_some() {
                events.push(PlannedEvent {
                    warning: false,
                    reason: "NewRevision".into(),
                    action: format!("Revision-{template_hash}"),
                    message: format!("pod template changed: {verb} revision {template_hash}"),
                });
            }
        }
    }
    status.current_pod_hash = Some(template_hash.to_string());
    status.current_step_hash = Some(steps_hash.to_string());
    if status.abort && status.aborted_at.is_none() {
        status.aborted_at = Some(Time(now));
    }
    Entered {
        new_template,
        actions,
        events,
    }
}
