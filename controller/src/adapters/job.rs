//! The `job` provider's Kubernetes calls: create a measurement's Job (idempotent across a
//! controller restart), read one the cache does not hold, delete one whose run ended.
//! Which Job, with what in it, and what its conditions mean is `core::job`'s.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::written::{Cache, Written};
use super::{AdapterError, FIELD_MANAGER};
use crate::core::job::controlled_by;

/// Longest one Job call may take: a call that never answers would otherwise hold the
/// run's reconcile until its whole budget is gone.
pub const JOB_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a measurement's Job could not be created: the measurement's Error message.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The apiserver answered with a refusal (422 invalid, 403 forbidden, ...): its reason.
    #[error("the apiserver refused Job {name}: {message}")]
    Refused { name: String, message: String },
    /// A Job of that name exists and is not this run's.
    #[error("Job {name} already exists and is not controlled by this AnalysisRun")]
    NotOurs { name: String },
    /// No answer, or no connection.
    #[error("creating Job {name}: {reason}")]
    Failed { name: String, reason: String },
}

/// Creates `job` (its namespace set), controlled by the run whose uid is `run_uid`, and
/// returns the stored Job. A Job of that name that already exists and is controlled by
/// the same run is the Job of this measurement (a controller restarted between creating
/// it and recording the measurement), returned as it is.
pub async fn create(client: &Client, job: &Job, run_uid: &str) -> Result<Job, CreateError> {
    let name = job.name_any();
    let failed = |reason: String| CreateError::Failed {
        name: name.clone(),
        reason,
    };
    let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    let created = tokio::time::timeout(JOB_CALL_TIMEOUT, api.create(&params, job))
        .await
        .map_err(|_| failed(format!("no answer within {JOB_CALL_TIMEOUT:?}")))?;
    match created {
        Ok(stored) => Ok(stored),
        Err(kube::Error::Api(status)) if status.code == 409 && status.reason == "AlreadyExists" => {
            // Rare (a restart in the middle of a measurement), so one GET, not a cache.
            let existing = tokio::time::timeout(JOB_CALL_TIMEOUT, api.get_opt(&name))
                .await
                .map_err(|_| failed(format!("no answer within {JOB_CALL_TIMEOUT:?}")))?
                .map_err(|e| failed(super::error_chain(&e)))?;
            match existing {
                Some(existing) if controlled_by(&existing, run_uid) => Ok(existing),
                Some(_) => Err(CreateError::NotOurs { name }),
                // Deleted in between: the next measurement creates it again.
                None => Err(failed("it was deleted while being created".into())),
            }
        }
        Err(kube::Error::Api(status)) => Err(CreateError::Refused {
            name,
            message: status.message,
        }),
        Err(e) => Err(failed(super::error_chain(&e))),
    }
}

/// The Job `namespace/name` as the API holds it, None when there is none: for a Job
/// the cache does not hold (deleted, or a watch that is behind).
pub async fn get(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Job>, AdapterError> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    tokio::time::timeout(JOB_CALL_TIMEOUT, api.get_opt(name))
        .await
        .map_err(|_| {
            AdapterError::Invalid(format!(
                "reading Job {name}: no answer within {JOB_CALL_TIMEOUT:?}"
            ))
        })?
        .map_err(AdapterError::from)
}

/// Deletes the Job `namespace/name` and, in the background, its pods (the Job
/// controller's own default is to orphan them). A Job already gone is fine.
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<Written, AdapterError> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let deleted = tokio::time::timeout(
        JOB_CALL_TIMEOUT,
        api.delete(name, &DeleteParams::background()),
    )
    .await
    .map_err(|_| {
        AdapterError::Invalid(format!(
            "deleting Job {name}: no answer within {JOB_CALL_TIMEOUT:?}"
        ))
    })?;
    match deleted {
        Ok(_) => Ok(Written::gone(Cache::Job, namespace, name)),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Ok(Written::gone(Cache::Job, namespace, name))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::mock_api;
    use http::Method;
    use serde_json::json;

    const UID: &str = "0b0d9a8e-5d1e-4a55-9d39-2f7f5d1c0001";

    fn job(owner_uid: &str) -> serde_json::Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": { "name": "r-smoke-1", "namespace": "shop", "resourceVersion": "7",
                "ownerReferences": [{ "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
                    "name": "r", "uid": owner_uid, "controller": true }] },
            "spec": { "template": { "spec": { "restartPolicy": "Never",
                "containers": [{ "name": "c", "image": "busybox" }] } } },
        })
    }

    fn parsed(value: serde_json::Value) -> Job {
        serde_json::from_value(value).unwrap()
    }

    fn status(code: u16, reason: &str, message: &str) -> (u16, serde_json::Value) {
        (
            code,
            json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": reason, "message": message, "code": code }),
        )
    }

    #[tokio::test]
    async fn a_job_is_created_in_the_runs_namespace_by_sluices_field_manager() {
        let (result, seen) = mock_api::exchange(vec![(201, job(UID))], |client| async move {
            create(&client, &parsed(job(UID)), UID).await
        })
        .await;
        assert_eq!(result.unwrap().name_any(), "r-smoke-1");
        assert_eq!(seen[0].method, Method::POST);
        assert_eq!(seen[0].path, "/apis/batch/v1/namespaces/shop/jobs");
        assert_eq!(
            seen[0].query.get("fieldManager").map(String::as_str),
            Some("sluice")
        );
        assert_eq!(
            seen[0].body.as_ref().unwrap()["metadata"]["name"],
            "r-smoke-1"
        );
    }

    #[tokio::test]
    async fn an_existing_job_of_the_same_run_is_this_measurements_job() {
        let (result, seen) = mock_api::exchange(
            vec![
                status(
                    409,
                    "AlreadyExists",
                    "jobs.batch \"r-smoke-1\" already exists",
                ),
                (200, job(UID)),
            ],
            |client| async move { create(&client, &parsed(job(UID)), UID).await },
        )
        .await;
        assert_eq!(result.unwrap().resource_version().as_deref(), Some("7"));
        assert_eq!(seen[1].method, Method::GET);
        assert_eq!(
            seen[1].path,
            "/apis/batch/v1/namespaces/shop/jobs/r-smoke-1"
        );
    }

    #[tokio::test]
    async fn an_existing_job_of_someone_else_is_an_error_that_says_so() {
        let (result, _) = mock_api::exchange(
            vec![
                status(
                    409,
                    "AlreadyExists",
                    "jobs.batch \"r-smoke-1\" already exists",
                ),
                (200, job("another-run")),
            ],
            |client| async move { create(&client, &parsed(job(UID)), UID).await },
        )
        .await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "Job r-smoke-1 already exists and is not controlled by this AnalysisRun"
        );
    }

    #[tokio::test]
    async fn a_refused_job_carries_the_apiservers_reason() {
        let reason = "Job.batch \"r-smoke-1\" is invalid: spec.template.spec.containers[0].image: Required value";
        let (result, _) =
            mock_api::exchange(vec![status(422, "Invalid", reason)], |client| async move {
                create(&client, &parsed(job(UID)), UID).await
            })
            .await;
        assert_eq!(
            result.unwrap_err().to_string(),
            format!("the apiserver refused Job r-smoke-1: {reason}")
        );
    }

    #[tokio::test]
    async fn deleting_takes_the_pods_too_and_a_job_already_gone_is_fine() {
        let (result, seen) = mock_api::exchange(
            vec![
                (
                    200,
                    json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" }),
                ),
                mock_api::not_found("jobs.batch", "r-smoke-2"),
            ],
            |client| async move {
                (
                    delete(&client, "shop", "r-smoke-1").await,
                    delete(&client, "shop", "r-smoke-2").await,
                )
            },
        )
        .await;
        assert_eq!(
            result.0.unwrap(),
            Written::gone(Cache::Job, "shop", "r-smoke-1")
        );
        assert_eq!(
            result.1.unwrap(),
            Written::gone(Cache::Job, "shop", "r-smoke-2")
        );
        assert_eq!(seen[0].method, Method::DELETE);
        assert_eq!(
            seen[0].path,
            "/apis/batch/v1/namespaces/shop/jobs/r-smoke-1"
        );
        assert_eq!(
            seen[0].body.as_ref().unwrap()["propagationPolicy"],
            "Background"
        );
    }

    #[tokio::test]
    async fn a_job_the_api_does_not_hold_reads_as_none() {
        let (result, _) = mock_api::exchange(
            vec![mock_api::not_found("jobs.batch", "r-smoke-1")],
            |client| async move { get(&client, "shop", "r-smoke-1").await },
        )
        .await;
        assert!(result.unwrap().is_none());
    }
}
