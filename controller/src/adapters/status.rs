//! Writing a Rollout's status: only when it changed, and never over a user action.

use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use sluice_api::rollout::{Rollout, RolloutStatus};

use super::AdapterError;

/// Timestamps that only record when something else changed: a status that differs only
/// in these is not written. State-bearing times (`abortedAt`, `progressedAt`, a pause's
/// `startTime`) are not among them: the abort delay, the progress deadline and timed
/// pauses count from them, so they must always be persisted.
const TIMESTAMP_FIELDS: &[&str] = &["lastTransitionTime"];

fn without_timestamps(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for f in TIMESTAMP_FIELDS {
                map.remove(*f);
            }
            map.values_mut().for_each(without_timestamps);
        }
        Value::Array(items) => items.iter_mut().for_each(without_timestamps),
        _ => {}
    }
}

/// True when the two statuses differ in more than timestamps.
pub fn differs(old: Option<&RolloutStatus>, new: &RolloutStatus) -> bool {
    let mut a = serde_json::to_value(old.cloned().unwrap_or_default()).expect("status serializes");
    let mut b = serde_json::to_value(new).expect("status serializes");
    without_timestamps(&mut a);
    without_timestamps(&mut b);
    a != b
}

/// Replaces the status of the Rollout as it was read (its resourceVersion): when a user
/// action (abort, promote, ...) patched the status in between, the write fails with a
/// conflict and the next reconcile plans again from the new state, so no action is lost.
/// Returns the Rollout as stored after the write; None when the status had not changed
/// (and nothing was sent).
pub async fn write(
    client: &Client,
    rollout: &Rollout,
    status: &RolloutStatus,
) -> Result<Option<Rollout>, AdapterError> {
    if !differs(rollout.status.as_ref(), status) {
        return Ok(None);
    }
    let mut updated = rollout.clone();
    updated.status = Some(status.clone());
    updated.metadata.managed_fields = None;
    let api: Api<Rollout> =
        Api::namespaced(client.clone(), &rollout.namespace().unwrap_or_default());
    let stored = api
        .replace_status(&rollout.name_any(), &PostParams::default(), &updated)
        .await?;
    Ok(Some(stored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn transition_times_alone_do_not_count_as_a_change() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
        let condition = |at: &str| Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Healthy".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(at.parse().unwrap()),
        };
        let a = RolloutStatus {
            conditions: vec![condition("2026-01-01T00:00:00Z")],
            current_step_index: Some(2),
            ..RolloutStatus::default()
        };
        let mut b = a.clone();
        b.conditions = vec![condition("2026-01-01T00:05:00Z")];
        assert!(!differs(Some(&a), &b));
        b.current_step_index = Some(3);
        assert!(differs(Some(&a), &b));
        assert!(differs(None, &b));
    }

    #[test]
    fn state_bearing_times_are_always_written() {
        let a = RolloutStatus::default();
        let b = RolloutStatus {
            aborted_at: Some(Time("2026-01-01T00:00:00Z".parse().unwrap())),
            ..RolloutStatus::default()
        };
        assert!(
            differs(Some(&a), &b),
            "the abort delay counts from abortedAt"
        );
        let c = RolloutStatus {
            progressed_at: Some(Time("2026-01-01T00:00:00Z".parse().unwrap())),
            ..RolloutStatus::default()
        };
        assert!(
            differs(Some(&a), &c),
            "the progress deadline counts from progressedAt"
        );
    }
}
