//! The dedicated baseline of a canary (`strategy.canary.baseline`): a fresh ReplicaSet of
//! the stable pod template at the canary's size, for the judge to compare the canary
//! with pods as young as its own.
//!
//! Its pods keep the stable revision's pod-template hash, so whatever routes to the stable
//! revision routes to them too (a baseline without traffic has no metrics), and carry
//! `sluice.dev/role: baseline`. Its own selector includes that label, so it never adopts
//! stable pods, and the stable ReplicaSet never adopts its pods because they carry the
//! baseline's controller reference (the ReplicaSet controller ignores pods another
//! controller owns).
//!
//! Budget: the baseline runs beside the revisions by design, so its pods come on top of
//! `maxSurge` (the way a router's canary runs beside a full-size stable) and are never
//! counted as available capacity; the revisions' moves are planned exactly as without it.

use sluice_api::rollout::BaselineStatus;

use super::action::Action;
use super::observed::{BaselineState, Observed};

/// The name of the baseline ReplicaSet of canary `canary_hash`, running `stable_hash`.
/// One name per canary: a new revision gets a fresh baseline, never the previous one's
/// warmed-up pods.
pub fn replica_set_name(rollout: &str, stable_hash: &str, canary_hash: &str) -> String {
    format!("{rollout}-{stable_hash}-baseline-{canary_hash}")
}

/// What the canary planner knows that decides the baseline.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub rollout: &'a str,
    pub stable_hash: &'a str,
    pub canary_hash: &'a str,
    /// The Rollout asks for a baseline (`canary.baseline.enabled`).
    pub enabled: bool,
    /// The canary is working through its steps (not promoting, aborted, or stable).
    pub in_progress: bool,
    /// `spec.paused`: the baseline stays as it stands, like the revisions.
    pub frozen: bool,
    /// The canary's target size now.
    pub canary_target: i32,
}

/// The baseline the current canary should have, if any: None when none is wanted (not
/// asked for, no canary in progress, or no stable template to copy).
pub fn wanted<'a>(input: &Input<'_>, observed: &'a Observed) -> Option<Option<&'a BaselineState>> {
    (input.enabled && input.in_progress && observed.stable_template.is_some()).then(|| {
        observed
            .baselines
            .iter()
            .find(|b| b.stable_hash == input.stable_hash && b.canary_hash == input.canary_hash)
    })
}

/// True when a step sized at `canary_target` may count as done as far as the baseline is
/// concerned: with no baseline wanted always; otherwise once the baseline has the
/// canary's size and all its pods are available (the analysis that follows needs them).
pub fn ready(wanted: Option<Option<&BaselineState>>, canary_target: i32) -> bool {
    match wanted {
        None => true,
        Some(b) => {
            b.is_some_and(|b| b.replicas == canary_target && b.available >= canary_target)
                || (canary_target == 0 && b.is_none_or(|b| b.current == 0))
        }
    }
}

/// What to do with the baseline ReplicaSets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// `status.canary.baseline`.
    pub status: Option<BaselineStatus>,
}

/// Creates, sizes and removes baseline ReplicaSets: the current canary's follows the
/// canary's size; every other one (a superseded canary's, or any once the canary is
/// promoted, aborted or rolled back) is scaled to zero, then deleted once its pods are gone.
pub fn plan(input: &Input<'_>, observed: &Observed) -> Outcome {
    let mut out = Outcome::default();
    let wanted = wanted(input, observed);
    let mine = wanted.flatten();
    for b in &observed.baselines {
        if mine.is_some_and(|m| m.name == b.name) {
            continue;
        }
        if b.replicas > 0 {
            out.actions.push(Action::ScaleReplicaSet {
                name: b.name.clone(),
                replicas: 0,
                scale_down_at: None,
            });
        } else if b.current == 0 {
            out.actions.push(Action::DeleteReplicaSet {
                name: b.name.clone(),
            });
        }
    }
    if wanted.is_none() {
        return out;
    }
    let target = match (input.frozen, mine) {
        (true, Some(b)) => b.replicas,
        (true, None) => 0,
        (false, _) => input.canary_target.max(0),
    };
    match mine {
        Some(b) if b.replicas != target => out.actions.push(Action::ScaleReplicaSet {
            name: b.name.clone(),
            replicas: target,
            scale_down_at: None,
        }),
        Some(_) => {}
        None if target > 0 => {
            let Some(template) = observed.stable_template.clone() else {
                return out;
            };
            out.actions.push(Action::CreateBaselineReplicaSet {
                stable_hash: input.stable_hash.to_string(),
                canary_hash: input.canary_hash.to_string(),
                replicas: target,
                template: Box::new(template),
            });
        }
        None => return out,
    }
    out.status = Some(BaselineStatus {
        replica_set: mine.map_or_else(
            || replica_set_name(input.rollout, input.stable_hash, input.canary_hash),
            |b| b.name.clone(),
        ),
        pod_template_hash: input.stable_hash.to_string(),
        replicas: target,
        available_replicas: mine.map_or(0, |b| b.available),
    });
    out
}
