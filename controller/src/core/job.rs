//! The `job` provider's pure part: the Job a measurement runs (its name, owner, labels
//! and the args put into its containers) and what a Job's conditions say about the
//! measurement. The runtime creates, reads (from its cache) and deletes the Jobs.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use sluice_api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunArgument, AnalysisRunStatus, JobMetric,
};
use sluice_api::labels::{
    ANALYSIS_RUN_ANNOTATION, ANALYSIS_RUN_UID_LABEL, CONTROLLER_INSTANCE_LABEL, METRIC_ANNOTATION,
    ROLLOUT_LABEL,
};

use super::analysis::{AnalysisError, substitute_args};
use super::hash::value_hash;

/// Longest Job name: the Job controller puts the name in its pods' `job-name` label,
/// whose values are at most 63 characters.
pub const MAX_JOB_NAME: usize = 63;

/// Which measurement of `metric` the next Job is, counting from 1: every measurement
/// taken so far (verdicts and errors) plus one, as Argo Rollouts numbers its Jobs. A
/// measurement in flight is counted nowhere, so the Job it runs keeps its number until it
/// finishes, and a controller restarted between creating the Job and recording it finds
/// the same name again.
pub fn measurement_number(status: &AnalysisRunStatus, metric: &str) -> i32 {
    status
        .metric_results
        .iter()
        .find(|r| r.name == metric)
        .map_or(0, |r| r.count + r.error)
        + 1
}

/// The name of the Job of measurement `number` of `metric` in `run`:
/// `<run>-<metric>-<number>` when that is a valid name of at most [`MAX_JOB_NAME`]
/// characters; otherwise as much of it as fits, lower-cased with other characters made
/// `-`, then `-<hash of run and metric>-<number>`, so that names stay distinct.
pub fn job_name(run: &str, metric: &str, number: i32) -> String {
    let full = format!("{run}-{metric}");
    let suffix = format!("-{number}");
    let valid = full
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && full.starts_with(|c: char| c.is_ascii_alphanumeric())
        && full.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid && full.len() + suffix.len() <= MAX_JOB_NAME {
        return full + &suffix;
    }
    let hash = value_hash(&(run, metric));
    let room = MAX_JOB_NAME - suffix.len() - hash.len() - 1;
    let cleaned: String = full
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(room)
        .collect();
    let prefix = cleaned.trim_matches('-');
    if prefix.is_empty() {
        format!("{hash}{suffix}")
    } else {
        format!("{prefix}-{hash}{suffix}")
    }
}

/// Why a job metric's Job cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobSpecError {
    /// An `{{args.NAME}}` in a container that no arg resolves.
    #[error("job container {container}: {field}: {reason}")]
    Arg {
        container: String,
        field: String,
        reason: String,
    },
    /// The run has no uid yet (it was never stored), so nothing can be owned by it.
    #[error("the AnalysisRun has no uid")]
    NoRunUid,
}

/// The Job of measurement `number` of `metric` (whose provider is `job`) in `run`: the
/// metric's Job spec with `{{args.NAME}}` replaced in every container's `command`, `args`
/// and `env[].value`, its labels and annotations with sluice's added (the run's uid,
/// which sluice's Job watch selects on; the run's Rollout and shard labels; the run's
/// and the metric's names), controlled by the run so that it goes when the run goes.
pub fn job_for(
    run: &AnalysisRun,
    metric: &str,
    job: &JobMetric,
    args: &[AnalysisRunArgument],
    number: i32,
) -> Result<Job, JobSpecError> {
    let uid = run.uid().ok_or(JobSpecError::NoRunUid)?;
    let owner = run
        .controller_owner_ref(&())
        .ok_or(JobSpecError::NoRunUid)?;
    let mut spec = job.spec.clone();
    if let Some(pod) = spec.template.spec.as_mut() {
        for container in pod.containers.iter_mut() {
            substitute_container(container, args)?;
        }
        for container in pod.init_containers.iter_mut().flatten() {
            substitute_container(container, args)?;
        }
    }
    let metadata = job.metadata.clone().unwrap_or_default();
    let mut labels = metadata.labels;
    let run_labels = run.labels();
    for key in [ROLLOUT_LABEL, CONTROLLER_INSTANCE_LABEL] {
        match run_labels.get(key) {
            Some(value) => labels.insert(key.to_string(), value.clone()),
            // Only the run's: a label the template set would put the Job in another shard.
            None => labels.remove(key),
        };
    }
    labels.insert(ANALYSIS_RUN_UID_LABEL.to_string(), uid);
    let mut annotations = metadata.annotations;
    annotations.insert(ANALYSIS_RUN_ANNOTATION.to_string(), run.name_any());
    annotations.insert(METRIC_ANNOTATION.to_string(), metric.to_string());
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&run.name_any(), metric, number)),
            namespace: run.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

fn substitute_container(
    container: &mut Container,
    args: &[AnalysisRunArgument],
) -> Result<(), JobSpecError> {
    let name = container.name.clone();
    let fail = |field: String, e: AnalysisError| JobSpecError::Arg {
        container: name.clone(),
        field,
        reason: match e {
            // Its own wording speaks of a query.
            AnalysisError::UnknownArg(arg) => {
                format!("{{{{args.{arg}}}}} names no arg of the analysis")
            }
            other => other.to_string(),
        },
    };
    for (i, text) in container.command.iter_mut().flatten().enumerate() {
        *text = substitute_args(text, args).map_err(|e| fail(format!("command[{i}]"), e))?;
    }
    for (i, text) in container.args.iter_mut().flatten().enumerate() {
        *text = substitute_args(text, args).map_err(|e| fail(format!("args[{i}]"), e))?;
    }
    for env in container.env.iter_mut().flatten() {
        if let Some(value) = env.value.as_mut() {
            *value =
                substitute_args(value, args).map_err(|e| fail(format!("env {}", env.name), e))?;
        }
    }
    Ok(())
}

/// True when `job` is controlled by the run whose uid is `run_uid`: a Job of the expected
/// name that is not is someone else's, never a measurement of this run.
pub fn controlled_by(job: &Job, run_uid: &str) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == run_uid)
}

/// What a Job's conditions say about its measurement: Successful once it is `Complete`,
/// Failed once it is `Failed` (with the Job's reason and message), None while it runs.
/// Only those two final conditions count: `SuccessCriteriaMet` and `FailureTarget` come
/// while pods may still be terminating.
pub fn outcome(job: &Job) -> Option<(AnalysisPhase, String)> {
    let name = job.name_any();
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().find_map(|c| {
        if c.status != "True" {
            return None;
        }
        let detail = match (c.reason.as_deref(), c.message.as_deref()) {
            (Some(r), Some(m)) if !m.is_empty() => format!(": {r}: {m}"),
            (Some(r), _) => format!(": {r}"),
            (None, Some(m)) if !m.is_empty() => format!(": {m}"),
            _ => String::new(),
        };
        match c.type_.as_str() {
            "Complete" => Some((AnalysisPhase::Successful, format!("Job {name} completed"))),
            "Failed" => Some((AnalysisPhase::Failed, format!("Job {name} failed{detail}"))),
            _ => None,
        }
    })
}
