//! Objects sluice cannot read: a field of the wrong type, written while the CRD's schema
//! was looser (an upgrade tightened it) or by a writer that skipped validation. Each one
//! gets `InvalidSpec=True` (reason `Malformed`) and one Warning Event, once, and the
//! controllers go on with the others. One implementation for every kind sluice watches:
//! the Rollout, AnalysisRun and template controllers all call [`report`].
//!
//! A `DeserializeGuard` error carries only metadata and serde's message, which names no
//! field and no stored status. So the object is read again as plain JSON (one GET per
//! event, for malformed objects only): the stored status says whether it was already
//! reported, and deserializing the JSON once more, tracking the path, names the field.

use std::collections::BTreeSet;
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Map, Value, json};
use sluice_api::analysis::AnalysisSpec;
use tracing::{debug, warn};

use crate::adapters::{AdapterError, update_params};
use crate::core::conditions::types;

/// The reason of the conditions and of the Event of a malformed object.
pub const REASON: &str = "Malformed";

/// What the status of a malformed object says besides `InvalidSpec`, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Phase Degraded; `Stalled=True`, `Ready=False`, `Reconciling=False` (so kstatus,
    /// Flux and Argo CD read it as failed).
    Rollout,
    /// Phase Error (it can never measure, so the Rollout that owns it aborts), unless it
    /// had a verdict already: that verdict stands.
    AnalysisRun,
    /// Only `InvalidSpec`, as for a template whose condition does not compile.
    Template,
}

/// What to do about a malformed object.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The merge patch of the status subresource; None when the stored status already
    /// says all of it (only timestamps would change).
    pub patch: Option<Value>,
    /// True when the object was not reported with this message before: publish the
    /// Event. A restarted controller decides from the stored status, so it does not
    /// publish again either.
    pub event: bool,
}

/// Decides the status of a malformed object from the object as stored (plain JSON) and
/// the message saying what is wrong with it. Pure: `now` is only the transition time of
/// conditions whose status changes.
pub fn decide(shape: Shape, stored: &Value, message: &str, now: Timestamp) -> Decision {
    let old = stored.get("status").cloned().unwrap_or(Value::Null);
    let mut status = match &old {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let generation = stored.pointer("/metadata/generation").cloned();
    if let Some(g) = generation.clone() {
        status.insert("observedGeneration".into(), g);
    }
    let mut wanted = vec![(types::INVALID_SPEC, "True")];
    match shape {
        Shape::Rollout => {
            status.insert("phase".into(), json!("Degraded"));
            status.insert("message".into(), json!(message));
            wanted.extend([
                (types::STALLED, "True"),
                (types::READY, "False"),
                (types::RECONCILING, "False"),
            ]);
        }
        Shape::AnalysisRun => {
            let finished = matches!(
                status.get("phase").and_then(Value::as_str),
                Some("Successful" | "Failed" | "Error" | "Inconclusive")
            );
            if !finished {
                status.insert("phase".into(), json!("Error"));
                status.insert("message".into(), json!(message));
                status.insert("completedAt".into(), json!(now.to_string()));
            }
        }
        Shape::Template => {}
    }
    let old_conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                // What the schema's list-map could not hold anyway (no string type).
                .filter(|c| c.get("type").is_some_and(Value::is_string))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let already_reported = old_conditions.iter().any(|c| {
        c["type"] == types::INVALID_SPEC
            && c["status"] == "True"
            && c["reason"] == REASON
            && c["message"] == message
    });
    let mut conditions = old_conditions;
    for (type_, value) in wanted {
        let previous = conditions.iter().position(|c| c["type"] == type_);
        let since = previous
            .map(|i| &conditions[i])
            .filter(|c| c["status"] == value)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now.to_string()));
        let mut condition = json!({
            "type": type_, "status": value, "reason": REASON, "message": message,
            "lastTransitionTime": since,
        });
        if let Some(g) = generation.clone() {
            condition["observedGeneration"] = g;
        }
        match previous {
            Some(i) => conditions[i] = condition,
            None => conditions.push(condition),
        }
    }
    status.insert("conditions".into(), Value::Array(conditions));
    let status = Value::Object(status);
    // The stored resourceVersion makes the patch conditional: decided from what is
    // stored, it must not land on something else.
    let patch = (status != old).then(|| {
        json!({
            "metadata": { "resourceVersion": stored.pointer("/metadata/resourceVersion") },
            "status": status,
        })
    });
    Decision {
        patch,
        event: !already_reported,
    }
}

/// What is wrong with `object` as `K` sees it, naming the field (`spec.replicas: invalid
/// value: ...`); None when it reads fine now (fixed since the watch event).
pub fn problem<K: serde::de::DeserializeOwned>(shape: Shape, object: &Value) -> Option<String> {
    let error = serde_path_to_error::deserialize::<_, K>(object).err()?;
    let path = error.path().to_string();
    // serde loses the path inside `#[serde(flatten)]`: the analysis kinds flatten their
    // AnalysisSpec into `spec`, so read that part again on its own to find the field.
    if path == "spec" && matches!(shape, Shape::AnalysisRun | Shape::Template) {
        let inner = serde_path_to_error::deserialize::<_, AnalysisSpec>(&object["spec"]);
        if let Err(e) = inner
            && e.path().to_string() != "."
        {
            return Some(format!("spec.{}: {}", e.path(), e.inner()));
        }
    }
    Some(match path.as_str() {
        "." => error.inner().to_string(),
        _ => format!("{path}: {}", error.inner()),
    })
}

/// True the first time a status write for this version of the object was refused.
fn refused_once(stored: &Value) -> bool {
    static REFUSED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let key = format!(
        "{}/{}",
        stored
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        stored
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    );
    REFUSED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key)
}

/// The Recorder of the controllers' Events (`reportingController: sluice`).
pub fn recorder(client: &Client) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "sluice".into(),
            instance: std::env::var("HOSTNAME").ok(),
        },
    )
}

/// Reports an object that did not deserialize as `K`: reads it as stored, writes its
/// `InvalidSpec` status when that is not there yet, and publishes one Warning Event on
/// the transition. Repeated calls for an unchanged object write nothing.
pub async fn report<K>(
    client: &Client,
    recorder: &Recorder,
    guard: &DeserializeGuard<K>,
    shape: Shape,
) -> Result<(), AdapterError>
where
    K: Resource<DynamicType = ()> + serde::de::DeserializeOwned,
{
    let Err(invalid) = &guard.0 else {
        return Ok(());
    };
    let resource = ApiResource::erase::<K>(&());
    let name = guard.name_any();
    let namespace = guard.namespace();
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let Some(stored) = api.get_opt(&name).await? else {
        return Ok(()); // deleted meanwhile
    };
    let stored = serde_json::to_value(&stored).expect("an object serializes");
    let Some(problem) = problem::<K>(shape, &stored) else {
        // Reads fine now: the watch event of the fix is on its way.
        debug!(error = %invalid.error, "malformed object fixed meanwhile");
        return Ok(());
    };
    let message = format!("the {} cannot be read: {problem}", resource.kind);
    let decision = decide(shape, &stored, &message, Timestamp::now());
    let mut event = decision.event;
    if let Some(patch) = &decision.patch {
        match api
            .patch_status(&name, &update_params(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            // The apiserver validates the whole object on a status write, and a CEL rule
            // over the stored bad field cannot even be evaluated ("invalid data"), which
            // validation ratcheting does not excuse: no status can be written. The Event
            // is then all that says it, once per version of the object in this process.
            Err(kube::Error::Api(s)) if s.code == 422 => {
                event = refused_once(&stored);
                if event {
                    warn!(kind = %resource.kind, object = %name, error = %s.message,
                        "the apiserver refuses the status of a malformed object");
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let object = format!("{}/{name}", namespace.as_deref().unwrap_or_default());
    if event {
        let event = Event {
            type_: EventType::Warning,
            reason: REASON.into(),
            note: Some(message.chars().take(1000).collect()),
            action: "Read".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &guard.object_ref(&())).await {
            warn!(error = %e, kind = %resource.kind, %object, "could not record event");
        }
        warn!(kind = %resource.kind, %object, %problem, "malformed object reported");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::analysis::AnalysisRun;
    use sluice_api::rollout::Rollout;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn stored(status: Value) -> Value {
        json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": { "name": "web", "namespace": "shop", "generation": 3, "resourceVersion": "41" },
            "spec": { "replicas": "three" },
            "status": status,
        })
    }

    /// The object as the apiserver would store it after `decision`'s patch.
    fn after(mut object: Value, decision: &Decision) -> Value {
        if let Some(patch) = &decision.patch {
            object["status"] = patch["status"].clone();
        }
        object
    }

    #[test]
    fn a_malformed_rollout_is_reported_once_then_left_alone() {
        let message = "the Rollout cannot be read: spec.replicas: invalid type";
        let first = decide(Shape::Rollout, &stored(Value::Null), message, at(10));
        assert!(first.event, "the first report publishes the Event");
        let patch = first.patch.as_ref().expect("the first report writes");
        assert_eq!(patch["metadata"]["resourceVersion"], "41");
        let status = &patch["status"];
        assert_eq!(status["phase"], "Degraded");
        assert_eq!(status["observedGeneration"], 3);
        let condition = |t: &str| {
            status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .cloned()
                .unwrap()
        };
        assert_eq!(condition("InvalidSpec")["status"], "True");
        assert_eq!(condition("InvalidSpec")["reason"], "Malformed");
        assert_eq!(condition("InvalidSpec")["message"], message);
        assert_eq!(condition("Stalled")["status"], "True");
        assert_eq!(condition("Ready")["status"], "False");
        assert_eq!(condition("Reconciling")["status"], "False");

        // The write brings the object back (a watch event): later, same problem.
        let again = decide(
            Shape::Rollout,
            &after(stored(Value::Null), &first),
            message,
            at(99),
        );
        assert_eq!(
            again,
            Decision {
                patch: None,
                event: false
            },
            "no second write, no second Event"
        );
    }

    #[test]
    fn transition_times_move_only_for_conditions_that_change() {
        let old = json!({
            "phase": "Healthy",
            "conditions": [
                { "type": "Ready", "status": "True", "reason": "Healthy", "message": "",
                  "lastTransitionTime": "2026-01-01T00:00:00Z" },
                { "type": "Stalled", "status": "True", "reason": "RolloutAborted", "message": "x",
                  "lastTransitionTime": "2026-01-01T00:00:05Z" },
                { "type": "Available", "status": "True", "reason": "Available", "message": "",
                  "lastTransitionTime": "2026-01-01T00:00:07Z" },
            ],
        });
        let d = decide(Shape::Rollout, &stored(old), "m", at(1_800_000_000));
        let conditions = d.patch.unwrap()["status"]["conditions"].clone();
        let since = |t: &str| {
            conditions
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()["lastTransitionTime"]
                .clone()
        };
        let now = json!(at(1_800_000_000).to_string());
        assert_eq!(since("Ready"), now, "Ready went True -> False");
        assert_eq!(since("InvalidSpec"), now, "new condition");
        assert_eq!(since("Stalled"), "2026-01-01T00:00:05Z", "already True");
        assert_eq!(
            since("Available"),
            "2026-01-01T00:00:07Z",
            "conditions sluice does not set here are kept"
        );
    }

    #[test]
    fn a_new_problem_is_a_new_report() {
        let first = decide(Shape::Template, &stored(Value::Null), "a", at(10));
        let later = after(stored(Value::Null), &first);
        let other = decide(Shape::Template, &later, "b", at(20));
        assert!(other.event && other.patch.is_some());
    }

    #[test]
    fn a_malformed_run_is_an_error_unless_it_had_a_verdict() {
        let d = decide(
            Shape::AnalysisRun,
            &stored(json!({ "phase": "Running" })),
            "m",
            at(10),
        );
        let status = &d.patch.as_ref().unwrap()["status"];
        assert_eq!(status["phase"], "Error");
        assert_eq!(status["message"], "m");
        let next = decide(
            Shape::AnalysisRun,
            &after(stored(json!({ "phase": "Running" })), &d),
            "m",
            at(20),
        );
        assert_eq!(next.patch, None, "completedAt is not rewritten");
        let done = decide(
            Shape::AnalysisRun,
            &stored(json!({ "phase": "Successful", "message": "passed" })),
            "m",
            at(10),
        );
        let status = &done.patch.as_ref().unwrap()["status"];
        assert_eq!(
            (&status["phase"], &status["message"]),
            (&json!("Successful"), &json!("passed"))
        );
    }

    #[test]
    fn the_problem_names_the_field() {
        let rollout = stored(Value::Null);
        let found = problem::<Rollout>(Shape::Rollout, &rollout).unwrap();
        assert!(found.starts_with("spec.replicas: invalid type"), "{found}");
        let run = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": { "name": "r" },
            "spec": { "metrics": [{ "name": "m", "count": 4294967296_i64, "successCondition": "true",
                "provider": { "prometheus": { "address": "http://p", "query": "up" } } }] },
        });
        let found = problem::<AnalysisRun>(Shape::AnalysisRun, &run).unwrap();
        assert!(found.starts_with("spec.metrics[0].count: "), "{found}");
    }

    fn guard(object: &Value) -> DeserializeGuard<Rollout> {
        serde_json::from_value(object.clone()).unwrap()
    }

    #[tokio::test]
    async fn report_writes_and_publishes_once_then_only_reads() {
        use crate::adapters::mock_api::exchange;
        let object = stored(Value::Null);
        let (result, seen) = exchange(
            vec![
                (200, object.clone()),
                (200, object.clone()),
                (200, json!({})),
            ],
            |client| async move {
                let recorder = recorder(&client);
                report(&client, &recorder, &guard(&object), Shape::Rollout).await
            },
        )
        .await;
        result.expect("reported");
        let calls: Vec<_> = seen
            .iter()
            .map(|s| (s.method.as_str(), s.path.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                (
                    "GET",
                    "/apis/sluice.dev/v1alpha1/namespaces/shop/rollouts/web"
                ),
                (
                    "PATCH",
                    "/apis/sluice.dev/v1alpha1/namespaces/shop/rollouts/web/status"
                ),
                ("POST", "/apis/events.k8s.io/v1/namespaces/shop/events"),
            ]
        );
        let message = seen[1].body.as_ref().unwrap()["status"]["message"].clone();
        assert!(
            message
                .as_str()
                .unwrap()
                .starts_with("the Rollout cannot be read: spec.replicas: "),
            "{message}"
        );
        assert_eq!(seen[2].body.as_ref().unwrap()["reason"], "Malformed");

        // The object as stored after that write: reading it is all the next report does.
        let reported = after(
            stored(Value::Null),
            &decide(
                Shape::Rollout,
                &stored(Value::Null),
                message.as_str().unwrap(),
                at(1),
            ),
        );
        let (result, seen) = exchange(vec![(200, reported.clone())], |client| async move {
            let recorder = recorder(&client);
            report(&client, &recorder, &guard(&reported), Shape::Rollout).await
        })
        .await;
        result.expect("nothing to do");
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test]
    async fn a_refused_status_write_leaves_one_event_and_no_retry_loop() {
        use crate::adapters::mock_api::exchange;
        let mut object = stored(Value::Null);
        object["metadata"]["uid"] = json!("uid-refused");
        let refused = (
            422,
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                    "reason": "Invalid", "message": "invalid data, expected int, got string" }),
        );
        for (round, expected) in [(1, 3), (2, 2)] {
            let mut responses = vec![(200, object.clone()), refused.clone()];
            if round == 1 {
                responses.push((200, json!({})));
            }
            let doc = object.clone();
            let (result, seen) = exchange(responses, |client| async move {
                let recorder = recorder(&client);
                report(&client, &recorder, &guard(&doc), Shape::Rollout).await
            })
            .await;
            result.expect("a refused write is not an error to retry");
            assert_eq!(seen.len(), expected, "round {round}: {seen:#?}");
        }
    }
}
