//! Pod metadata per role: `canaryMetadata` / `stableMetadata` (canary) and
//! `previewMetadata` / `activeMetadata` (blue-green), as in Argo Rollouts. The pods of
//! the stable revision carry the stable (active) role's labels and annotations, the pods
//! of the new revision the canary (preview) role's, until it becomes stable: then its
//! pods are relabelled in place, without being replaced, and without touching the
//! pod-template hash.
//!
//! What sluice applied to a ReplicaSet is recorded on it
//! ([`sluice_api::labels::POD_METADATA_ANNOTATION`]), so that keys a role no longer
//! wants are taken off again, also after a spec edit or a restart. Other ReplicaSets (a
//! demoted revision waiting out its scale-down delay, old revisions) are left as they
//! are: relabelling pods on their way out is writes for nothing.

use std::collections::{BTreeMap, BTreeSet};

use sluice_api::Rollout;
use sluice_api::rollout::{PodMetadata, RolloutStatus};

use super::action::{Action, MetadataChange};
use super::hash::pod_template_hash;
use super::observed::{Observed, ReplicaSetState};

/// The two roles a revision's pods can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The stable (blue-green: active) revision.
    Stable,
    /// The new revision while it is not stable yet: the canary, or the preview.
    New,
}

/// The metadata the Rollout's strategy asks for, by role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleMetadata {
    pub stable: PodMetadata,
    pub new: PodMetadata,
}

impl RoleMetadata {
    /// From the strategy's fields (none set: both empty).
    pub fn of(rollout: &Rollout) -> Self {
        let strategy = &rollout.spec.strategy;
        let (stable, new) = match (&strategy.canary, &strategy.blue_green) {
            (Some(c), _) => (c.stable_metadata.clone(), c.canary_metadata.clone()),
            (None, Some(b)) => (b.active_metadata.clone(), b.preview_metadata.clone()),
            (None, None) => (None, None),
        };
        RoleMetadata {
            stable: stable.unwrap_or_default(),
            new: new.unwrap_or_default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stable.is_empty() && self.new.is_empty()
    }

    pub fn of_role(&self, role: Role) -> &PodMetadata {
        match role {
            Role::Stable => &self.stable,
            Role::New => &self.new,
        }
    }
}

/// Whether [`plan`] needs the pods' labels and annotations: when the strategy sets role
/// metadata, or a ReplicaSet still records some (the spec dropped it, and its keys must
/// come off the pods). Otherwise the runtime leaves them out of [`Observed`], which keeps
/// the per-reconcile copy small for the Rollouts that use none.
pub fn reads_pod_metadata(rollout: &Rollout, replica_sets: &[ReplicaSetState]) -> bool {
    !RoleMetadata::of(rollout).is_empty() || replica_sets.iter().any(|rs| rs.pod_metadata.is_some())
}

/// The role of the revision `hash` once this plan's status holds, if it has one.
pub fn role_of(hash: &str, status: &RolloutStatus, current_hash: &str) -> Option<Role> {
    if status.stable_rs.as_deref() == Some(hash) {
        Some(Role::Stable)
    } else if hash == current_hash {
        Some(Role::New)
    } else {
        None
    }
}

/// The field paths of role labels that are also selector keys: relabelling a pod with
/// one could take it out of its ReplicaSet's selector (which would replace it, forever).
pub fn spec_problem(rollout: &Rollout) -> Option<String> {
    let strategy = &rollout.spec.strategy;
    let fields = match (&strategy.canary, &strategy.blue_green) {
        (Some(c), _) => [
            ("strategy.canary.canaryMetadata", &c.canary_metadata),
            ("strategy.canary.stableMetadata", &c.stable_metadata),
        ],
        (None, Some(b)) => [
            ("strategy.blueGreen.previewMetadata", &b.preview_metadata),
            ("strategy.blueGreen.activeMetadata", &b.active_metadata),
        ],
        (None, None) => return None,
    };
    let selector = &rollout.spec.selector;
    let selector_keys: BTreeSet<&str> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .chain(
            selector
                .match_expressions
                .iter()
                .flatten()
                .map(|e| e.key.as_str()),
        )
        .collect();
    for (path, metadata) in fields {
        for key in metadata.iter().flat_map(|m| m.labels.keys()) {
            if selector_keys.contains(key.as_str()) {
                return Some(format!(
                    "spec.{path}.labels.{key} is a key of spec.selector: pods relabelled \
                     with it could leave their ReplicaSet"
                ));
            }
        }
    }
    None
}

/// The actions that bring the pods of the stable and the new revision, and their
/// ReplicaSets' templates, to their role's metadata; and the role metadata of
/// ReplicaSets this plan creates (set on their template from the start).
pub fn plan(
    rollout: &Rollout,
    observed: &Observed,
    status: &RolloutStatus,
    actions: &mut [Action],
) -> Vec<Action> {
    let wanted = RoleMetadata::of(rollout);
    // The strategy already hashed the template into the status; hashing it again is
    // work on every reconcile.
    let current_hash = status
        .current_pod_hash
        .clone()
        .unwrap_or_else(|| pod_template_hash(&rollout.spec.template));
    for action in actions.iter_mut() {
        if let Action::CreateReplicaSet {
            hash, pod_metadata, ..
        } = action
        {
            *pod_metadata = role_of(hash, status, &current_hash)
                .map(|role| wanted.of_role(role).clone())
                .unwrap_or_default();
        }
    }
    let template = rollout.spec.template.metadata.as_ref();
    let template_labels = template.and_then(|m| m.labels.clone()).unwrap_or_default();
    let template_annotations = template
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for rs in &observed.replica_sets {
        let Some(role) = role_of(&rs.hash, status, &current_hash) else {
            continue;
        };
        let target = wanted.of_role(role);
        let other = match role {
            Role::Stable => &wanted.new,
            Role::New => &wanted.stable,
        };
        let applied = rs.pod_metadata.clone().unwrap_or_default();
        // Keys sluice may have put there and this role does not want: what was recorded,
        // and the other role's (a pod created from the template before the record
        // changed). A key the template itself sets goes back to the template's value.
        let labels = change(
            &target.labels,
            [&applied.labels, &other.labels],
            &template_labels,
        );
        let annotations = change(
            &target.annotations,
            [&applied.annotations, &other.annotations],
            &template_annotations,
        );
        if labels.is_empty() && annotations.is_empty() {
            continue;
        }
        for pod in observed
            .pods
            .iter()
            .filter(|p| p.replica_set == rs.name && !p.terminating)
        {
            let (l, a) = (
                needed(&labels, &pod.labels),
                needed(&annotations, &pod.annotations),
            );
            if !l.is_empty() || !a.is_empty() {
                out.push(Action::PatchPodMetadata {
                    pod: pod.name.clone(),
                    labels: l,
                    annotations: a,
                });
            }
        }
        if applied != *target {
            out.push(Action::SetReplicaSetPodMetadata {
                name: rs.name.clone(),
                labels,
                annotations,
                applied: target.clone(),
            });
        }
    }
    out
}

/// The change that makes a map hold `target`: its entries set, and the keys of `stale`
/// not in it removed (or, when the template sets them, put back to the template's value).
fn change<const N: usize>(
    target: &BTreeMap<String, String>,
    stale: [&BTreeMap<String, String>; N],
    template: &BTreeMap<String, String>,
) -> MetadataChange {
    let mut out: MetadataChange = target
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    for key in stale.iter().flat_map(|m| m.keys()) {
        if !target.contains_key(key) {
            out.insert(key.clone(), template.get(key).cloned());
        }
    }
    out
}

/// The part of `change` a pod holding `has` still needs.
fn needed(change: &MetadataChange, has: &BTreeMap<String, String>) -> MetadataChange {
    change
        .iter()
        .filter(|(k, v)| has.get(*k) != v.as_ref())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
