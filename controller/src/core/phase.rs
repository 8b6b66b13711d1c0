//! The phase and conditions of a Rollout, the same for every strategy: from where the
//! strategy's plan stands (aborted, settled, paused, in flight), set `phase`, `message`,
//! the kstatus / Argo CD conditions and `progressedAt`, apply the progress deadline, and
//! plan the Event of a phase change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use sluice_api::rollout::{Rollout, RolloutPhase, RolloutStatus};

use super::Plan;
use super::action::PlannedEvent;
use super::common::{secs, until};
use super::conditions::{self as c, types};
use super::notice::{Notice, Trigger};

/// Inputs of the phase and condition computation: the Rollout (its generation, progress
/// deadline and stored status) and where the strategy's plan stands.
pub(super) struct PhaseInput<'a> {
    pub(super) rollout: &'a Rollout,
    pub(super) mode_aborted: bool,
    /// Why this plan aborted the rollout, when it did.
    pub(super) abort_reason: Option<String>,
    pub(super) settled: bool,
    pub(super) paused: bool,
    /// Paused only at a timed pause step, which ends on its own: no Event of its own (the
    /// StepCompleted that reached it tells it), unlike a pause that waits for someone.
    pub(super) timed_pause: bool,
    /// What the rollout is doing, for the Progressing and Paused messages (a generic
    /// message when None).
    pub(super) detail: Option<String>,
    pub(super) min_available: i32,
    pub(super) now: Timestamp,
}

/// Sets the phase, message and conditions of a strategy's plan from where it stands, runs
/// the progress deadline, and plans the phase-change Event.
pub(super) fn with_phase(mut plan: Plan, input: PhaseInput) -> Plan {
    let now = input.now;
    let status = &mut plan.status;
    let g = input.rollout.metadata.generation;
    let spec = &input.rollout.spec;
    let stored = RolloutStatus::default();
    let old = input.rollout.status.as_ref().unwrap_or(&stored);
    let was_paused = old.phase == Some(RolloutPhase::Paused);

    // Pods becoming available is progress. The deadline does not run while paused and
    // restarts when the pause ends.
    let counts_changed = (status.updated_replicas, status.available_replicas)
        != (old.updated_replicas, old.available_replicas);
    if counts_changed || (was_paused && !input.paused) || status.progressed_at.is_none() {
        status.progressed_at = Some(Time(now));
    }
    let progressed_at = status.progressed_at.as_ref().map(|t| t.0).unwrap_or(now);
    let deadline = progressed_at + secs(spec.progress_deadline_seconds);
    let in_flight = !input.settled && !input.mode_aborted && !input.paused;
    let deadline_exceeded = in_flight && now >= deadline;
    if in_flight && !deadline_exceeded {
        plan.requeue_after = Some(
            plan.requeue_after
                .map_or(until(now, deadline), |r| r.min(until(now, deadline))),
        );
    }
    if deadline_exceeded && spec.progress_deadline_abort && !status.abort {
        // Picked up as an abort (traffic to stable) by the next reconcile.
        status.abort = true;
        status.aborted_at = Some(Time(now));
    }

    if let Some(reason) = &input.abort_reason {
        plan.notices
            .push(Notice::of(Trigger::AnalysisFailed, reason.clone()));
    }
    let status = &mut plan.status;
    let (phase, message) = if input.mode_aborted {
        let kept = (old.phase == Some(RolloutPhase::Degraded) && old.abort)
            .then(|| old.message.clone())
            .flatten();
        (
            RolloutPhase::Degraded,
            input.abort_reason.or(kept).unwrap_or_else(|| {
                "rollout aborted: traffic is back on the stable revision".into()
            }),
        )
    } else if deadline_exceeded {
        (
            RolloutPhase::Degraded,
            format!(
                "no progress for {}s (progressDeadlineSeconds)",
                spec.progress_deadline_seconds
            ),
        )
    } else if input.paused {
        (
            RolloutPhase::Paused,
            input
                .detail
                .unwrap_or_else(|| "paused: waiting for the pause to end or a promote".into()),
        )
    } else if input.settled {
        (
            RolloutPhase::Healthy,
            "the stable revision is fully available".into(),
        )
    } else {
        (
            RolloutPhase::Progressing,
            input.detail.unwrap_or_else(|| "rolling out".into()),
        )
    };
    status.phase = Some(phase);
    status.message = Some(message.clone());

    let cs = &mut status.conditions;
    c::set(
        cs,
        types::READY,
        phase == RolloutPhase::Healthy,
        &format!("{phase:?}"),
        &message,
        g,
        now,
    );
    c::set(
        cs,
        types::RECONCILING,
        matches!(phase, RolloutPhase::Progressing | RolloutPhase::Paused),
        &format!("{phase:?}"),
        &message,
        g,
        now,
    );
    c::set(
        cs,
        types::STALLED,
        phase == RolloutPhase::Degraded,
        if input.mode_aborted {
            "RolloutAborted"
        } else if deadline_exceeded {
            "ProgressDeadlineExceeded"
        } else {
            "NotStalled"
        },
        &message,
        g,
        now,
    );
    c::set(
        cs,
        types::PAUSED,
        input.paused,
        if input.paused { "Paused" } else { "NotPaused" },
        &message,
        g,
        now,
    );
    let available = status.available_replicas >= input.min_available;
    c::set(
        cs,
        types::AVAILABLE,
        available,
        if available {
            "MinimumReplicasAvailable"
        } else {
            "MinimumReplicasUnavailable"
        },
        &format!(
            "{} of at least {} pods available",
            status.available_replicas, input.min_available
        ),
        g,
        now,
    );
    if input.mode_aborted {
        c::set(
            cs,
            types::PROGRESSING,
            false,
            "RolloutAborted",
            &message,
            g,
            now,
        );
    } else if deadline_exceeded {
        c::set(
            cs,
            types::PROGRESSING,
            false,
            "ProgressDeadlineExceeded",
            &message,
            g,
            now,
        );
    } else if input.paused {
        c::set_unknown(cs, types::PROGRESSING, "RolloutPaused", &message, g, now);
    } else if input.settled {
        c::set(
            cs,
            types::PROGRESSING,
            true,
            "NewReplicaSetAvailable",
            &message,
            g,
            now,
        );
    } else {
        c::set(
            cs,
            types::PROGRESSING,
            true,
            "ReplicaSetUpdated",
            &message,
            g,
            now,
        );
    }
    c::set(cs, types::INVALID_SPEC, false, "Valid", "", g, now);

    // An Event is a write the apiserver shares with every tenant (they were half of
    // sluice's writes at scale), so a phase change gets one only when no other Event of
    // the same plan says it already: entering Progressing is told by NewRevision or
    // StepCompleted (except when coming back from Degraded: a retry, a deadline
    // recovered), becoming Healthy by RolloutCompleted (except a first revision). A timed
    // pause gets none: it is a step under way that ends on its own, and the StepCompleted
    // (or NewRevision) that reached it says so; RolloutPaused is for pauses that wait
    // for someone (`pause: {}`, an inconclusive analysis, `spec.paused`).
    let told = |reason: &str| plan.events.iter().any(|e| e.reason == reason);
    let reason = match phase {
        RolloutPhase::Degraded if input.mode_aborted => Some((true, "RolloutAborted")),
        RolloutPhase::Degraded => Some((true, "ProgressDeadlineExceeded")),
        RolloutPhase::Paused if input.timed_pause => None,
        RolloutPhase::Paused => Some((false, "RolloutPaused")),
        RolloutPhase::Healthy if told("RolloutCompleted") => None,
        RolloutPhase::Healthy => Some((false, "RolloutHealthy")),
        RolloutPhase::Progressing if old.phase == Some(RolloutPhase::Degraded) => {
            Some((false, "RolloutProgressing"))
        }
        RolloutPhase::Progressing => None,
    };
    if old.phase != Some(phase)
        && let Some((warning, reason)) = reason
    {
        // A phase is entered once per step and revision; entering it again at
        // another step is a new event, not a repeat.
        let action = format!(
            "{phase:?}-{}-Step{}",
            status.current_pod_hash.as_deref().unwrap_or_default(),
            status.current_step_index.unwrap_or(0)
        );
        plan.events.push(PlannedEvent {
            warning,
            reason: reason.into(),
            action,
            message,
        });
    }
    plan
}
