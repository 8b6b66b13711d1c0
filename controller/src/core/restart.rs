//! `spec.restartAt`: every pod of the Rollout's revisions created before it is evicted,
//! one at a time, only while the others keep availability within `maxUnavailable`; the
//! ReplicaSets replace them. `status.restartedAt` records when none was left.
//!
//! Argo Rollouts' semantics (`rollout/restart.go`): the stable revision first, then the
//! current one (a canary in flight), then older ones; one pod at a time, and none while a
//! pod of the Rollout is still terminating. A restart is not a revision: no steps, no
//! traffic change, no new ReplicaSet.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use sluice_api::rollout::{Rollout, RolloutStatus};

use super::common::until;
use super::replicas::resolve;
use super::{Action, Observed, PodState, ReplicaSetState};

/// What the restart adds to a reconcile's plan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestartPlan {
    /// At most one `EvictPod`.
    pub actions: Vec<Action>,
    /// `status.restartedAt` as it should be.
    pub restarted_at: Option<Time>,
    /// Set when `spec.restartAt` is still in the future: look again then.
    pub requeue_after: Option<Duration>,
}

/// Where a restart stands, for the tests and the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No restart asked for, or it finished already.
    Idle,
    /// `spec.restartAt` is later than now.
    Scheduled,
    /// Evict this pod now.
    Evict(String),
    /// Pods remain to be replaced, but the budget (or a pod still terminating, or a
    /// replacement not yet available) says wait; the ReplicaSets' and pods' watch events
    /// bring the Rollout back.
    Waiting,
    /// Every pod was created after `spec.restartAt`, every one the revisions want exists,
    /// and they are available.
    Finished,
}

/// How many pods a restart may have unavailable at once: the canary's `maxUnavailable`
/// against `spec.replicas`, at least one (with `maxUnavailable: 0` a restart could never
/// start; Argo Rollouts also restarts one pod at a time then); blue-green, which has no
/// `maxUnavailable`, restarts one pod at a time.
pub fn allowance(rollout: &Rollout) -> i32 {
    let max_unavailable = rollout
        .spec
        .strategy
        .canary
        .as_ref()
        .map_or(IntOrString::Int(1), |c| c.max_unavailable.clone());
    resolve(&max_unavailable, rollout.spec.replicas, false).max(1)
}

/// Decides the restart step of this reconcile.
pub fn progress(
    rollout: &Rollout,
    observed: &Observed,
    status: &RolloutStatus,
    now: Timestamp,
) -> Progress {
    let Some(restart_at) = rollout.spec.restart_at.as_ref().map(|t| t.0) else {
        return Progress::Idle;
    };
    if status
        .restarted_at
        .as_ref()
        .is_some_and(|t| t.0 >= restart_at)
    {
        return Progress::Idle;
    }
    if restart_at > now {
        return Progress::Scheduled;
    }
    let revisions = in_order(observed, status);
    let pods_of = |rs: &ReplicaSetState| {
        let mut pods: Vec<&PodState> = observed
            .pods
            .iter()
            .filter(|p| p.replica_set == rs.name)
            .collect();
        // Oldest first; by name when created together, so the choice is deterministic.
        pods.sort_by_key(|p| (p.created, p.name.clone()));
        pods
    };
    let old = |p: &&PodState| !p.terminating && p.created.is_none_or(|c| c < restart_at);
    let candidate = revisions
        .iter()
        .find_map(|rs| pods_of(rs).into_iter().find(old));
    let terminating = revisions
        .iter()
        .any(|rs| pods_of(rs).iter().any(|p| p.terminating));
    let desired: i32 = revisions.iter().map(|rs| rs.replicas).sum();
    let available: i32 = revisions
        .iter()
        .map(|rs| rs.available.min(rs.replicas))
        .sum();
    // The pods and the ReplicaSets are separate watches: an evicted pod can be gone from
    // the pods while its ReplicaSet still counts it available and has not made its
    // replacement. A pod missing from the pods is unavailable, whatever the counts say.
    let missing: i32 = revisions
        .iter()
        .map(|rs| {
            let live = pods_of(rs).iter().filter(|p| !p.terminating).count() as i32;
            (rs.replicas - live).max(0)
        })
        .sum();
    let unavailable = (desired - available).max(missing);
    match candidate {
        None if !terminating && unavailable == 0 => Progress::Finished,
        None => Progress::Waiting,
        // One pod on its way out at a time, and only while evicting another keeps the
        // unavailable pods within the allowance. The ReplicaSets' counts lag the pods a
        // little; a terminating pod is counted by the first rule whatever they say.
        Some(_) if terminating || unavailable + 1 > allowance(rollout) => Progress::Waiting,
        Some(pod) => Progress::Evict(pod.name.clone()),
    }
}

/// The revisions that have pods to restart, in Argo's order: stable, current, then the
/// others oldest first. ReplicaSets scaled to zero are left to their scale-down.
fn in_order<'a>(observed: &'a Observed, status: &RolloutStatus) -> Vec<&'a ReplicaSetState> {
    let stable = status.stable_rs.as_deref();
    let current = status.current_pod_hash.as_deref();
    let mut sets: Vec<&ReplicaSetState> = observed
        .replica_sets
        .iter()
        .filter(|rs| rs.replicas > 0)
        .collect();
    sets.sort_by_key(|rs| {
        let rank = if Some(rs.hash.as_str()) == stable {
            0
        } else if Some(rs.hash.as_str()) == current {
            1
        } else {
            2
        };
        (rank, rs.revision, rs.name.clone())
    });
    sets
}

/// The restart's part of a reconcile, given the status the strategy planned.
pub fn plan(
    rollout: &Rollout,
    observed: &Observed,
    status: &RolloutStatus,
    now: Timestamp,
) -> RestartPlan {
    let mut out = RestartPlan {
        restarted_at: status.restarted_at.clone(),
        ..RestartPlan::default()
    };
    match progress(rollout, observed, status, now) {
        Progress::Idle | Progress::Waiting => {}
        Progress::Scheduled => {
            out.requeue_after = rollout.spec.restart_at.as_ref().map(|at| until(now, at.0));
        }
        Progress::Evict(name) => out.actions.push(Action::EvictPod { name }),
        Progress::Finished => out.restarted_at = Some(Time(now)),
    }
    out
}
