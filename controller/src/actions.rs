//! User actions on a Rollout, as status or spec patches, so Git stays the owner of the
//! spec. One implementation used by `kubectl-sluice`, the dashboard and the tests.
//!
//! Status patches carry the `resourceVersion` they were decided on, so two people acting
//! at once cannot silently undo each other: the second gets a conflict and acts again on
//! what the first did.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use sluice_api::Rollout;

/// The field manager of user actions, distinct from the controller's.
pub const ACTIONS_FIELD_MANAGER: &str = "sluice-actions";

/// A user action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    /// Traffic back to stable, new revision scaled down: `status.abort = true`.
    Abort,
    /// Undo an abort: the rollout resumes at the step it was on.
    Retry,
    /// Past the current pause; when not paused, skip the current step.
    Promote,
    /// Skip every remaining step and analysis.
    PromoteFull,
    /// `spec.paused = true`.
    Pause,
    /// `spec.paused = false`.
    Resume,
}

impl UserAction {
    /// Parses a command word (`promote-full`, `abort`, ...).
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "abort" => UserAction::Abort,
            "retry" => UserAction::Retry,
            "promote" => UserAction::Promote,
            "promote-full" => UserAction::PromoteFull,
            "pause" => UserAction::Pause,
            "resume" => UserAction::Resume,
            _ => return None,
        })
    }

    /// What the action did, for confirmations.
    pub fn done(&self) -> &'static str {
        match self {
            UserAction::Abort => "aborted: traffic goes back to the stable revision",
            UserAction::Retry => "retried: the rollout resumes at its current step",
            UserAction::Promote => "promoted past the current step",
            UserAction::PromoteFull => "promoted fully: the remaining steps are skipped",
            UserAction::Pause => "paused",
            UserAction::Resume => "resumed",
        }
    }
}

/// The patch an action makes, given the Rollout as it is now: (patch of the status
/// subresource?, merge patch body).
pub fn patch_for(action: UserAction, rollout: &Rollout) -> (bool, Value) {
    let rv = rollout.resource_version();
    let status = rollout.status.clone().unwrap_or_default();
    match action {
        UserAction::Abort => (
            true,
            json!({ "metadata": { "resourceVersion": rv }, "status": { "abort": true } }),
        ),
        // A retry measures afresh rather than re-reading the failed run, and its progress
        // deadline counts from the retry: from the old progressedAt, a rollout aborted at
        // its deadline (progressDeadlineAbort) would abort again at once.
        UserAction::Retry if rollout.spec.strategy.blue_green.is_some() => (
            true,
            json!({ "metadata": { "resourceVersion": rv }, "status": {
                "abort": false,
                "abortedAt": null,
                "progressedAt": null,
                "blueGreen": { "prePromotionAnalysisRun": null, "postPromotionAnalysisRun": null },
            } }),
        ),
        UserAction::Retry => (
            true,
            json!({ "metadata": { "resourceVersion": rv }, "status": {
                "abort": false,
                "abortedAt": null,
                "progressedAt": null,
                "canary": { "currentStepAnalysisRun": null },
            } }),
        ),
        UserAction::Promote if !status.pause_conditions.is_empty() => (
            true,
            json!({ "metadata": { "resourceVersion": rv }, "status": { "pauseConditions": null } }),
        ),
        // Blue-green: skip the current stage; the planner stops a run left behind.
        UserAction::Promote if rollout.spec.strategy.blue_green.is_some() => (
            true,
            json!({ "metadata": { "resourceVersion": rv }, "status": {
                "currentStepIndex": status.current_step_index.unwrap_or(0) + 1,
            } }),
        ),
        UserAction::Promote => (
            true,
            json!({ "metadata": { "resourceVersion": rv }, "status": {
                "currentStepIndex": status.current_step_index.unwrap_or(0) + 1,
                "canary": { "currentStepAnalysisRun": null },
            } }),
        ),
        UserAction::PromoteFull => (
            true,
            json!({ "metadata": { "resourceVersion": rv }, "status": { "promoteFull": true } }),
        ),
        UserAction::Pause => (false, json!({ "spec": { "paused": true } })),
        UserAction::Resume => (false, json!({ "spec": { "paused": false } })),
    }
}

/// Applies an action to the named Rollout and returns it as patched. When the controller
/// wrote the status between our read and our patch (a conflict), the action is decided
/// again on the fresh Rollout, a few times, before the conflict is reported.
pub async fn apply(
    client: &Client,
    namespace: &str,
    name: &str,
    action: UserAction,
) -> Result<Rollout, kube::Error> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams {
        field_manager: Some(ACTIONS_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut attempt = 0;
    loop {
        let rollout = api.get(name).await?;
        let (on_status, body) = patch_for(action, &rollout);
        let result = if on_status {
            api.patch_status(name, &params, &Patch::Merge(&body)).await
        } else {
            api.patch(name, &params, &Patch::Merge(&body)).await
        };
        match result {
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 5 => attempt += 1,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(status: Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web", "namespace": "ns", "resourceVersion": "42" },
            "spec": {
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } } },
                "strategy": { "canary": { "steps": [] } },
            },
            "status": status,
        }))
        .unwrap()
    }

    /// True when the patch sets the field at `pointer` to null. `v["a"]["b"] == Null`
    /// would also hold when the patch does not mention the field at all, and a merge
    /// patch that leaves a field out leaves it as it is.
    fn clears(patch: &Value, pointer: &str) -> bool {
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        patch
            .pointer(parent)
            .and_then(Value::as_object)
            .and_then(|o| o.get(key))
            == Some(&Value::Null)
    }

    #[test]
    fn clears_tells_a_null_from_an_absent_field() {
        let patch = json!({ "status": { "a": null, "b": 1 } });
        assert!(clears(&patch, "/status/a"));
        assert!(!clears(&patch, "/status/b"));
        assert!(!clears(&patch, "/status/c"), "absent is not cleared");
        assert!(!clears(&patch, "/spec/a"));
    }

    #[test]
    fn promote_clears_a_pause_or_skips_the_step() {
        let paused = rollout(
            json!({ "currentStepIndex": 3, "pauseConditions": [{ "reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z" }] }),
        );
        let (on_status, body) = patch_for(UserAction::Promote, &paused);
        assert!(on_status);
        assert!(clears(&body, "/status/pauseConditions"), "{body}");
        assert!(
            body["status"].get("currentStepIndex").is_none(),
            "a pause is ended, not skipped twice"
        );
        assert_eq!(body["metadata"]["resourceVersion"], "42");

        let running = rollout(json!({ "currentStepIndex": 3 }));
        let (_, body) = patch_for(UserAction::Promote, &running);
        assert_eq!(body["status"]["currentStepIndex"], 4);
    }

    #[test]
    fn blue_green_retry_and_promote_reset_their_own_runs() {
        let mut r = rollout(json!({ "currentStepIndex": 1 }));
        r.spec.strategy.canary = None;
        r.spec.strategy.blue_green =
            Some(serde_json::from_value(json!({ "activeService": "web" })).unwrap());
        let (_, retry) = patch_for(UserAction::Retry, &r);
        assert!(
            clears(&retry, "/status/blueGreen/prePromotionAnalysisRun"),
            "{retry}"
        );
        assert!(
            clears(&retry, "/status/blueGreen/postPromotionAnalysisRun"),
            "{retry}"
        );
        assert!(clears(&retry, "/status/abortedAt"), "{retry}");
        assert!(retry["status"].get("canary").is_none(), "{retry}");
        let (_, promote) = patch_for(UserAction::Promote, &r);
        assert_eq!(promote["status"]["currentStepIndex"], 2);
        assert!(promote["status"].get("canary").is_none());
    }

    #[test]
    fn abort_retry_and_pause_patch_the_right_fields() {
        let r = rollout(json!({}));
        assert_eq!(
            patch_for(UserAction::Abort, &r),
            (
                true,
                json!({ "metadata": { "resourceVersion": "42" }, "status": { "abort": true } })
            )
        );
        let (_, retry) = patch_for(UserAction::Retry, &r);
        assert_eq!(retry["status"]["abort"], false);
        assert!(clears(&retry, "/status/abortedAt"), "{retry}");
        assert!(
            clears(&retry, "/status/progressedAt"),
            "the progress deadline counts from the retry: {retry}"
        );
        assert!(
            clears(&retry, "/status/canary/currentStepAnalysisRun"),
            "a retry measures afresh: {retry}"
        );
        assert_eq!(
            patch_for(UserAction::Pause, &r),
            (false, json!({ "spec": { "paused": true } }))
        );
        assert_eq!(
            patch_for(UserAction::Resume, &r),
            (false, json!({ "spec": { "paused": false } }))
        );
        assert_eq!(
            patch_for(UserAction::PromoteFull, &r).1["status"]["promoteFull"],
            true
        );
        assert_eq!(
            UserAction::parse("promote-full"),
            Some(UserAction::PromoteFull)
        );
        assert_eq!(UserAction::parse("nope"), None);
    }
}
