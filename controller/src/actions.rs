//! User actions on a Rollout, as status or spec patches, so Git stays the owner of the
//! spec. One implementation used by `kubectl-sluice`, the dashboard and the tests.
//!
//! Besides the status actions (promote, abort, ...), three change the spec as their
//! `kubectl` counterparts do: restart (`spec.restartAt`), set image and undo (the pod
//! template).
//!
//! Status patches carry the `resourceVersion` they were decided on, so two people acting
//! at once cannot silently undo each other: the second gets a conflict and acts again on
//! what the first did.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use sluice_api::Rollout;
use sluice_api::labels::{
    POD_ROLE_LABEL, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, ROLLOUT_LABEL,
};

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
    /// `spec.restartAt = now`: every pod is replaced, one at a time.
    Restart,
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
            "restart" => UserAction::Restart,
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
            UserAction::Restart => "restarting: its pods are replaced one at a time",
        }
    }
}

/// The patch an action makes, given the Rollout as it is now: (patch of the status
/// subresource?, merge patch body). Restart is the one that reads the clock: it asks for
/// pods newer than now ([`restart_patch`] with a time of one's own, for tests).
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
        UserAction::Restart => (false, restart_patch(Timestamp::now())),
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

/// Why a spec action (restart, set image, undo) cannot be done as asked.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The request names something the Rollout does not have (a container, a revision).
    #[error("{0}")]
    Refused(String),
}

/// `kubectl sluice restart`: `spec.restartAt = at`, in whole seconds (as Argo Rollouts and
/// pod creation times, which are whole seconds: a pod created later in the same second
/// is not restarted again). A merge patch of the spec, like pause: Git owns the rest.
pub fn restart_patch(at: Timestamp) -> Value {
    let at = Timestamp::from_second(at.as_second()).unwrap_or(at);
    json!({ "spec": { "restartAt": at.to_string() } })
}

/// A Rollout with `workloadRef` has no template of its own to change: a change written
/// into `spec.template` would be refused by admission (one of the two), and the Deployment
/// is where the template lives.
fn refuse_workload_ref(rollout: &Rollout, what: &str) -> Result<(), ActionError> {
    match &rollout.spec.workload_ref {
        Some(r) => Err(ActionError::Refused(format!(
            "{what}: rollout {} takes its pod template from Deployment {} (workloadRef): change the Deployment instead",
            rollout.metadata.name.as_deref().unwrap_or_default(),
            r.name
        ))),
        None => Ok(()),
    }
}

/// `kubectl sluice set image`: a JSON patch setting each named container's image (a
/// container or an init container), each guarded by a `test` of the container's name at
/// that index, so a concurrent edit of the list fails instead of changing the wrong one.
/// Refused, naming the containers there are, when a name is not one of them.
pub fn set_image_patch(
    rollout: &Rollout,
    images: &[(String, String)],
) -> Result<Value, ActionError> {
    refuse_workload_ref(rollout, "set image")?;
    let pod = rollout.spec.template.spec.clone().unwrap_or_default();
    let mut ops = Vec::new();
    for (container, image) in images {
        let found = pod
            .containers
            .iter()
            .position(|c| &c.name == container)
            .map(|i| ("containers", i))
            .or_else(|| {
                pod.init_containers
                    .iter()
                    .flatten()
                    .position(|c| &c.name == container)
                    .map(|i| ("initContainers", i))
            });
        let Some((list, i)) = found else {
            let names: Vec<&str> = pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten())
                .map(|c| c.name.as_str())
                .collect();
            return Err(ActionError::Refused(format!(
                "rollout {} has no container {container:?} (its containers: {})",
                rollout.name_any(),
                names.join(", ")
            )));
        };
        let at = format!("/spec/template/spec/{list}/{i}");
        ops.push(json!({ "op": "test", "path": format!("{at}/name"), "value": container }));
        ops.push(json!({ "op": "add", "path": format!("{at}/image"), "value": image }));
    }
    Ok(Value::Array(ops))
}

/// One revision a Rollout may be rolled back to: a ReplicaSet of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub number: i64,
    pub hash: String,
    pub template: PodTemplateSpec,
}

/// The revisions of a Rollout from its ReplicaSets (baselines are not revisions), by
/// number, oldest first.
pub fn revisions<'a>(
    rollout: &Rollout,
    replica_sets: impl IntoIterator<Item = &'a ReplicaSet>,
) -> Vec<Revision> {
    let uid = rollout.uid();
    let mut out: Vec<Revision> = replica_sets
        .into_iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .filter(|rs| rs.labels().get(POD_ROLE_LABEL).is_none())
        .filter_map(|rs| {
            let hash = rs.labels().get(POD_TEMPLATE_HASH_LABEL)?.clone();
            let number = rs.annotations().get(REVISION_ANNOTATION)?.parse().ok()?;
            let mut template = rs.spec.template.clone()?;
            // sluice adds the hash label to the pods; the Rollout's template has none.
            if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                labels.remove(POD_TEMPLATE_HASH_LABEL);
            }
            let template = as_written(template, &hash);
            Some(Revision {
                number,
                hash,
                template,
            })
        })
        .collect();
    out.sort_by_key(|r| r.number);
    out
}

/// The template a Rollout held, from its ReplicaSet's copy. The apiserver stores a
/// ReplicaSet's pod template with the defaults of the pod API filled in
/// (`imagePullPolicy`, `terminationMessagePath`, `dnsPolicy`, ...), which a Rollout's
/// template does not get; put back as it is, it would hash differently and roll out as a
/// new revision through every step. So those defaults are taken out again, unless the
/// template as stored is the one that hashes to the revision (a user who wrote them).
fn as_written(template: PodTemplateSpec, hash: &str) -> PodTemplateSpec {
    use crate::core::hash::pod_template_hash;
    if pod_template_hash(&template) == hash {
        return template;
    }
    let Ok(mut v) = serde_json::to_value(&template) else {
        return template;
    };
    strip_pod_defaults(&mut v);
    match serde_json::from_value::<PodTemplateSpec>(v) {
        Ok(stripped) => stripped,
        Err(_) => template,
    }
}

/// Removes the values the apiserver's pod defaulting writes, where they hold the default.
fn strip_pod_defaults(template: &mut Value) {
    fn strip(obj: &mut Value, defaults: &[(&str, Value)]) {
        if let Some(map) = obj.as_object_mut() {
            for (key, default) in defaults {
                if map.get(*key) == Some(default) {
                    map.remove(*key);
                }
            }
        }
    }
    let Some(spec) = template.get_mut("spec") else {
        return;
    };
    strip(
        spec,
        &[
            ("restartPolicy", json!("Always")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("dnsPolicy", json!("ClusterFirst")),
            ("securityContext", json!({})),
            ("schedulerName", json!("default-scheduler")),
        ],
    );
    for list in ["containers", "initContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            // `Always` for an untagged or `:latest` image, `IfNotPresent` otherwise.
            let tag = image.rsplit('/').next().unwrap_or(image);
            let pull = if !tag.contains(':') || tag.ends_with(":latest") {
                "Always"
            } else {
                "IfNotPresent"
            };
            strip(
                c,
                &[
                    ("terminationMessagePath", json!("/dev/termination-log")),
                    ("terminationMessagePolicy", json!("File")),
                    ("imagePullPolicy", json!(pull)),
                    ("resources", json!({})),
                ],
            );
            for port in c
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                strip(port, &[("protocol", json!("TCP"))]);
            }
        }
    }
}

/// `kubectl sluice undo`: the revision to go back to (`to`, or by default the newest one
/// before the current template's), and the JSON patch that puts its template in
/// `spec.template` (a replace, so no field of the current template survives), guarded
/// by the Rollout's resourceVersion. Like `kubectl rollout undo`, this changes the spec: a
/// GitOps tool will put its own template back unless Git changes too.
pub fn undo_patch(
    rollout: &Rollout,
    revisions: &[Revision],
    to: Option<i64>,
) -> Result<(Revision, Value), ActionError> {
    refuse_workload_ref(rollout, "undo")?;
    let current = crate::core::hash::pod_template_hash(&rollout.spec.template);
    let available = || {
        let list: Vec<String> = revisions
            .iter()
            .map(|r| {
                if r.hash == current {
                    format!("{} (current)", r.number)
                } else {
                    r.number.to_string()
                }
            })
            .collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    let name = rollout.name_any();
    let target = match to {
        Some(n) => revisions.iter().find(|r| r.number == n).ok_or_else(|| {
            ActionError::Refused(format!(
                "rollout {name} has no revision {n} (revisions: {})",
                available()
            ))
        })?,
        None => {
            let now = revisions
                .iter()
                .find(|r| r.hash == current)
                .map(|r| r.number);
            revisions
                .iter()
                .rev()
                .find(|r| r.hash != current && now.is_none_or(|c| r.number < c))
                .ok_or_else(|| {
                    ActionError::Refused(format!(
                        "rollout {name} has no previous revision (revisions: {})",
                        available()
                    ))
                })?
        }
    };
    if target.hash == current {
        return Err(ActionError::Refused(format!(
            "revision {} is the current template of rollout {name}: nothing to undo",
            target.number
        )));
    }
    let patch = json!([
        { "op": "test", "path": "/metadata/resourceVersion", "value": rollout.resource_version() },
        { "op": "replace", "path": "/spec/template", "value": target.template },
    ]);
    Ok((target.clone(), patch))
}

/// A JSON patch as kube sends it (deserialized into its payload type, so that the
/// json-patch crate need not be named).
fn json_patch(ops: Value) -> Result<Patch<()>, ActionError> {
    Ok(Patch::Json(serde_json::from_value(ops).map_err(|e| {
        ActionError::Refused(format!("building the JSON patch: {e}"))
    })?))
}

fn spec_params() -> PatchParams {
    PatchParams {
        field_manager: Some(ACTIONS_FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// Restarts the named Rollout's pods (`spec.restartAt = at`).
pub async fn restart(
    client: &Client,
    namespace: &str,
    name: &str,
    at: Timestamp,
) -> Result<Rollout, ActionError> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .patch(name, &spec_params(), &Patch::Merge(&restart_patch(at)))
        .await?)
}

/// Sets container images in the named Rollout's template (a new revision).
pub async fn set_image(
    client: &Client,
    namespace: &str,
    name: &str,
    images: &[(String, String)],
) -> Result<Rollout, ActionError> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let ((), patched) = patch_spec_guarded(&api, name, |rollout| {
        Ok(((), set_image_patch(rollout, images)?))
    })
    .await?;
    Ok(patched)
}

/// Rolls the named Rollout back to revision `to` (default: the previous one); returns the
/// revision gone back to and the Rollout as patched.
pub async fn undo(
    client: &Client,
    namespace: &str,
    name: &str,
    to: Option<i64>,
) -> Result<(Revision, Rollout), ActionError> {
    let api: Api<Rollout> = Api::namespaced(client.clone(), namespace);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let listed = sets
        .list(&ListParams::default().labels(&format!("{ROLLOUT_LABEL}={name}")))
        .await?;
    patch_spec_guarded(&api, name, |rollout| {
        undo_patch(rollout, &revisions(rollout, &listed.items), to)
    })
    .await
}

/// Reads the Rollout, decides a spec JSON patch guarded by its resourceVersion (`plan`),
/// and sends it. The controller writes the status all the time, and every status write
/// moves the resourceVersion, so the guard fails (422) far more often for that than for
/// a concurrent spec change: when the Rollout was written since it was read, the patch
/// is decided again on the fresh Rollout, a few times, as [`apply`] does after a 409.
async fn patch_spec_guarded<T>(
    api: &Api<Rollout>,
    name: &str,
    plan: impl Fn(&Rollout) -> Result<(T, Value), ActionError>,
) -> Result<(T, Rollout), ActionError> {
    let mut attempt = 0;
    loop {
        let rollout = api.get(name).await?;
        let (decided, ops) = plan(&rollout)?;
        match api.patch(name, &spec_params(), &json_patch(ops)?).await {
            Ok(patched) => return Ok((decided, patched)),
            Err(kube::Error::Api(s)) if s.code == 422 && attempt < 5 => {
                let now = api.get(name).await?;
                if now.resource_version() == rollout.resource_version() {
                    // Not the guard: the patch itself was refused.
                    return Err(kube::Error::Api(s).into());
                }
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(rv: &str, containers: &[&str]) -> Value {
        let containers: Vec<Value> = containers
            .iter()
            .map(|c| json!({ "name": c, "image": "app:v1" }))
            .collect();
        json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web", "namespace": "ns", "resourceVersion": rv },
            "spec": {
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": containers } },
                "strategy": { "canary": { "steps": [] } },
            },
        })
    }

    fn guard_failed() -> Value {
        json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "the server rejected our request due to an error in our request",
            "reason": "Invalid", "code": 422 })
    }

    /// A write between the read and the patch fails the patch's guard (undo's
    /// resourceVersion, which every status write of the controller moves; here set
    /// image's container names, a sidecar added in front): the action is decided again
    /// on the Rollout as it is now.
    #[tokio::test]
    async fn a_spec_action_raced_by_a_status_write_is_decided_again_on_the_fresh_rollout() {
        let (result, seen) = crate::adapters::mock_api::exchange(
            vec![
                (200, stored("1", &["web"])),
                (422, guard_failed()),
                (200, stored("2", &["sidecar", "web"])),
                (200, stored("2", &["sidecar", "web"])),
                (200, stored("3", &["sidecar", "web"])),
            ],
            |client| async move {
                set_image(&client, "ns", "web", &[("web".into(), "app:v2".into())]).await
            },
        )
        .await;
        let patched = result.expect("the retry succeeds");
        assert_eq!(patched.resource_version().as_deref(), Some("3"));
        let patches: Vec<&Value> = seen
            .iter()
            .filter(|r| r.method == http::Method::PATCH)
            .filter_map(|r| r.body.as_ref())
            .collect();
        assert_eq!(patches.len(), 2, "{seen:?}");
        // The second patch is decided on the Rollout read after the first was refused.
        assert_eq!(
            patches[0][0]["path"],
            "/spec/template/spec/containers/0/name"
        );
        assert_eq!(
            patches[1][0]["path"],
            "/spec/template/spec/containers/1/name"
        );
    }

    /// A 422 with the Rollout unchanged is the patch itself refused: no retry.
    #[tokio::test]
    async fn a_refused_spec_patch_on_an_unchanged_rollout_is_reported_at_once() {
        let (result, seen) = crate::adapters::mock_api::exchange(
            vec![
                (200, stored("1", &["web"])),
                (422, guard_failed()),
                (200, stored("1", &["web"])),
            ],
            |client| async move {
                set_image(&client, "ns", "web", &[("web".into(), "bad image".into())]).await
            },
        )
        .await;
        match result {
            Err(ActionError::Kube(kube::Error::Api(s))) => assert_eq!(s.code, 422),
            other => panic!("expected the 422, got {other:?}"),
        }
        assert_eq!(
            seen.iter()
                .filter(|r| r.method == http::Method::PATCH)
                .count(),
            1
        );
    }

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
        assert_eq!(UserAction::parse("restart"), Some(UserAction::Restart));
        let (on_status, restart) = patch_for(UserAction::Restart, &r);
        assert!(!on_status, "restart changes the spec");
        let at: Timestamp = restart["spec"]["restartAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((Timestamp::now() - at).get_seconds().abs() <= 2, "{at}");
    }

    #[test]
    fn restart_sets_restart_at_in_whole_seconds_on_the_spec() {
        let at: Timestamp = "2026-12-01T23:30:00.750Z".parse().unwrap();
        assert_eq!(
            restart_patch(at),
            json!({ "spec": { "restartAt": "2026-12-01T23:30:00Z" } })
        );
    }

    fn with_containers(r: &mut Rollout, spec: Value) {
        r.spec.template.spec = Some(serde_json::from_value(spec).unwrap());
    }

    #[test]
    fn set_image_patches_the_named_containers_guarded_by_their_names() {
        let mut r = rollout(json!({}));
        with_containers(
            &mut r,
            json!({
                "initContainers": [{ "name": "migrate", "image": "m:1" }],
                "containers": [{ "name": "web", "image": "app:1" }, { "name": "proxy", "image": "p:1" }],
            }),
        );
        let images = vec![
            ("proxy".to_string(), "p:2".to_string()),
            ("migrate".to_string(), "m:2".to_string()),
        ];
        let patch = set_image_patch(&r, &images).unwrap();
        assert_eq!(
            patch,
            json!([
                { "op": "test", "path": "/spec/template/spec/containers/1/name", "value": "proxy" },
                { "op": "add", "path": "/spec/template/spec/containers/1/image", "value": "p:2" },
                { "op": "test", "path": "/spec/template/spec/initContainers/0/name", "value": "migrate" },
                { "op": "add", "path": "/spec/template/spec/initContainers/0/image", "value": "m:2" },
            ])
        );
        // Applied to the Rollout, it changes exactly those images.
        let mut doc = serde_json::to_value(&r).unwrap();
        let ops: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut doc, &ops).unwrap();
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][0]["image"],
            "app:1"
        );
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][1]["image"],
            "p:2"
        );
        assert_eq!(
            doc["spec"]["template"]["spec"]["initContainers"][0]["image"],
            "m:2"
        );

        let err = set_image_patch(&r, &[("db".into(), "x".into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rollout web has no container \"db\" (its containers: web, proxy, migrate)"
        );
    }

    fn replica_set(
        r: &Rollout,
        revision: i64,
        image: &str,
        extra_label: Option<&str>,
    ) -> ReplicaSet {
        let mut template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "web", "image": image }] },
        }))
        .unwrap();
        if let Some(l) = extra_label {
            template
                .metadata
                .as_mut()
                .unwrap()
                .labels
                .as_mut()
                .unwrap()
                .insert(l.into(), "yes".into());
        }
        let hash = crate::core::hash::pod_template_hash(&template);
        template
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("web-{hash}"),
                "labels": { POD_TEMPLATE_HASH_LABEL: hash, ROLLOUT_LABEL: "web" },
                "annotations": { REVISION_ANNOTATION: revision.to_string() },
                "ownerReferences": [{ "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                    "name": "web", "uid": r.metadata.uid.clone().unwrap(), "controller": true }],
            },
            "spec": { "selector": { "matchLabels": { "app": "web" } }, "template": template },
        }))
        .unwrap()
    }

    #[test]
    fn undo_takes_the_apiserver_defaults_out_of_the_stored_template() {
        let written: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "web", "image": "app:1", "ports": [{ "containerPort": 80 }] }] },
        }))
        .unwrap();
        let hash = crate::core::hash::pod_template_hash(&written);
        let stored: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": {
                "containers": [{ "name": "web", "image": "app:1",
                    "ports": [{ "containerPort": 80, "protocol": "TCP" }],
                    "imagePullPolicy": "IfNotPresent", "resources": {},
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File" }],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst", "securityContext": {}, "schedulerName": "default-scheduler",
            },
        }))
        .unwrap();
        assert_ne!(crate::core::hash::pod_template_hash(&stored), hash);
        assert_eq!(as_written(stored, &hash), written);
        // Written with a default on purpose: kept, since that is what hashes to it.
        let mut explicit = written.clone();
        explicit.spec.as_mut().unwrap().dns_policy = Some("ClusterFirst".into());
        let hash = crate::core::hash::pod_template_hash(&explicit);
        assert_eq!(as_written(explicit.clone(), &hash), explicit);
    }

    #[test]
    fn undo_goes_back_to_the_previous_revision_or_the_one_asked_for() {
        let mut r = rollout(json!({}));
        r.metadata.uid = Some("uid-1".into());
        with_containers(
            &mut r,
            json!({ "containers": [{ "name": "web", "image": "app:3" }] }),
        );
        let mut foreign = replica_set(&r, 9, "other:1", None);
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "uid-2".into();
        let sets = vec![
            replica_set(&r, 2, "app:2", Some("team")),
            replica_set(&r, 1, "app:1", None),
            replica_set(&r, 3, "app:3", None),
            foreign,
        ];
        let revs = revisions(&r, &sets);
        assert_eq!(
            revs.iter().map(|r| r.number).collect::<Vec<_>>(),
            [1, 2, 3],
            "only the Rollout's own ReplicaSets, by number"
        );
        assert!(
            revs.iter().all(|r| {
                r.template
                    .metadata
                    .as_ref()
                    .unwrap()
                    .labels
                    .as_ref()
                    .unwrap()
                    .get(POD_TEMPLATE_HASH_LABEL)
                    .is_none()
            }),
            "the hash label sluice added is not part of the template"
        );

        let (target, patch) = undo_patch(&r, &revs, None).unwrap();
        assert_eq!(target.number, 2);
        assert_eq!(
            patch[0],
            json!({ "op": "test", "path": "/metadata/resourceVersion", "value": "42" })
        );
        assert_eq!(
            patch[1]["op"], "replace",
            "the whole template is replaced: {patch}"
        );
        assert_eq!(patch[1]["path"], "/spec/template");
        assert_eq!(patch[1]["value"]["spec"]["containers"][0]["image"], "app:2");
        assert_eq!(
            patch[1]["value"]["metadata"]["labels"],
            json!({ "app": "web", "team": "yes" })
        );
        assert_eq!(
            crate::core::hash::pod_template_hash(&target.template),
            target.hash,
            "the template gone back to hashes to its revision: no new ReplicaSet"
        );

        let (target, _) = undo_patch(&r, &revs, Some(1)).unwrap();
        assert_eq!(target.number, 1);
        let err = undo_patch(&r, &revs, Some(7)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rollout web has no revision 7 (revisions: 1, 2, 3 (current))"
        );
        let err = undo_patch(&r, &revs, Some(3)).unwrap_err();
        assert!(err.to_string().contains("nothing to undo"), "{err}");
        let err = undo_patch(&r, &revs[2..], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rollout web has no previous revision (revisions: 3 (current))"
        );
    }
}
