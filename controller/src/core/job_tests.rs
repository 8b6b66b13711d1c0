//! Tests of the job provider's pure part (`core::job`) and of the rules for measurements
//! in flight (`core::analysis::{due, complete, terminate_in_flight}`).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::json;
use sluice_api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunArgument, AnalysisRunStatus, AnalysisSpec, Measurement,
    Metric,
};

use super::analysis::{self, AnalysisError};
use super::job::*;

use AnalysisPhase::{Failed, Inconclusive, Running, Successful};

fn ts(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(secs)
}

fn job_metric(extra: serde_json::Value) -> Metric {
    let mut m = json!({
        "name": "smoke",
        "provider": { "job": { "spec": { "backoffLimit": 0, "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "check", "image": "curlimages/curl:8.11.1",
                "command": ["curl", "-fsS"],
                "args": ["http://{{args.service}}.{{ args.namespace }}.svc/healthz"],
                "env": [
                    { "name": "TARGET", "value": "{{args.service}}" },
                    { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                ] }],
            "initContainers": [{ "name": "wait", "image": "busybox", "args": ["{{args.service}}"] }],
        } } } } },
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    serde_json::from_value(m).unwrap()
}

fn run(labels: serde_json::Value) -> AnalysisRun {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": { "name": "web-6c9f8-2-1", "namespace": "shop",
            "uid": "0b0d9a8e-5d1e-4a55-9d39-2f7f5d1c0001", "labels": labels },
        "spec": { "metrics": [] },
    }))
    .unwrap()
}

fn args() -> Vec<AnalysisRunArgument> {
    ["service", "namespace"]
        .iter()
        .zip(["web-canary", "shop"])
        .map(|(name, value)| AnalysisRunArgument {
            name: name.to_string(),
            value: Some(value.to_string()),
            value_from: None,
        })
        .collect()
}

#[test]
fn job_names_are_the_run_metric_and_number_when_they_fit() {
    assert_eq!(
        job_name("web-6c9f8-2-1", "smoke", 1),
        "web-6c9f8-2-1-smoke-1"
    );
    assert_eq!(
        job_name("web-6c9f8-2-1", "smoke", 12),
        "web-6c9f8-2-1-smoke-12"
    );
}

/// Pinned: a controller upgraded while a Job runs must find it under the same name.
#[test]
fn long_or_unusual_names_are_cut_with_a_hash_to_63_characters() {
    let long_run = "checkout-frontend-with-a-very-long-name-7d9f8c6b5a-3-1";
    let name = job_name(long_run, "http-smoke-test", 3);
    assert_eq!(
        name,
        "checkout-frontend-with-a-very-long-name-7d9f8c6b5a-rx2sj76g8g-3"
    );
    assert!(name.len() <= MAX_JOB_NAME);
    // Another metric of the same run gets another name, though the cut leaves the same
    // prefix.
    assert_ne!(name, job_name(long_run, "http-smoke-test-2", 3));
    // Upper case and underscores are not valid in a name: made `-`, and hashed, so that
    // `Error_Rate` and `error-rate` do not share Jobs.
    let odd = job_name("web-1", "Error_Rate", 1);
    assert!(odd.starts_with("web-1-error-rate-"), "{odd}");
    assert_ne!(odd, job_name("web-1", "error-rate", 1));
    assert!(
        odd.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    );
    // Numbers of any size keep the name within bounds.
    assert!(job_name(long_run, "m", i32::MAX).len() <= MAX_JOB_NAME);
}

#[test]
fn the_measurement_number_counts_verdicts_and_errors_but_not_one_in_flight() {
    let mut status = AnalysisRunStatus::default();
    assert_eq!(measurement_number(&status, "smoke"), 1);
    let s = AnalysisSpec {
        metrics: vec![job_metric(json!({ "interval": "1m", "count": 5 }))],
        ..Default::default()
    };
    analysis::record(&s, &mut status, "smoke", measurement(Running, 0));
    assert_eq!(
        measurement_number(&status, "smoke"),
        1,
        "still the same Job"
    );
    analysis::complete(&s, &mut status, "smoke", measurement(Successful, 10));
    assert_eq!(measurement_number(&status, "smoke"), 2);
    analysis::record(
        &s,
        &mut status,
        "smoke",
        measurement(AnalysisPhase::Error, 20),
    );
    assert_eq!(
        measurement_number(&status, "smoke"),
        3,
        "an error took a number"
    );
}

#[test]
fn the_job_substitutes_args_in_containers_and_carries_sluices_metadata() {
    let metric = job_metric(json!({}));
    let spec = metric.provider.job.as_ref().unwrap();
    let run = run(json!({ "sluice.dev/rollout": "web", "team": "shop" }));
    let job = job_for(&run, &metric.name, spec, &args(), 2).unwrap();
    assert_eq!(job.metadata.name.as_deref(), Some("web-6c9f8-2-1-smoke-2"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("shop"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("AnalysisRun", "web-6c9f8-2-1", Some(true))
    );
    assert_eq!(owner.api_version, "sluice.dev/v1alpha1");
    assert!(controlled_by(&job, "0b0d9a8e-5d1e-4a55-9d39-2f7f5d1c0001"));
    assert!(!controlled_by(&job, "another-uid"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels
            .get("sluice.dev/analysis-run-uid")
            .map(String::as_str),
        Some("0b0d9a8e-5d1e-4a55-9d39-2f7f5d1c0001")
    );
    assert_eq!(
        labels.get("sluice.dev/rollout").map(String::as_str),
        Some("web")
    );
    assert!(
        !labels.contains_key("team"),
        "only sluice's labels of the run"
    );
    let annotations = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["sluice.dev/analysis-run"], "web-6c9f8-2-1");
    assert_eq!(annotations["sluice.dev/metric"], "smoke");
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let check = &pod.containers[0];
    assert_eq!(
        check.args.as_deref(),
        Some(&["http://web-canary.shop.svc/healthz".to_string()][..])
    );
    assert_eq!(
        check.command.as_deref(),
        Some(&["curl".to_string(), "-fsS".to_string()][..])
    );
    let env = check.env.as_ref().unwrap();
    assert_eq!(env[0].value.as_deref(), Some("web-canary"));
    assert!(
        env[1].value_from.is_some(),
        "other env sources pass through"
    );
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.args.as_deref(), Some(&["web-canary".to_string()][..]));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(job.spec.as_ref().unwrap().backoff_limit, Some(0));
}

#[test]
fn the_metrics_labels_are_kept_but_cannot_move_the_job_to_another_shard() {
    let mut metric = job_metric(json!({}));
    let spec = metric.provider.job.as_mut().unwrap();
    spec.metadata = Some(
        serde_json::from_value(json!({
            "labels": { "app": "smoke", "sluice.dev/controller-instance": "other",
                        "sluice.dev/analysis-run-uid": "forged" },
            "annotations": { "owner": "team-a" },
        }))
        .unwrap(),
    );
    let run = run(json!({ "sluice.dev/controller-instance": "east" }));
    let job = job_for(&run, "smoke", spec, &args(), 1).unwrap();
    let labels = job.metadata.labels.unwrap();
    assert_eq!(labels["app"], "smoke");
    assert_eq!(labels["sluice.dev/controller-instance"], "east");
    assert_eq!(
        labels["sluice.dev/analysis-run-uid"],
        "0b0d9a8e-5d1e-4a55-9d39-2f7f5d1c0001"
    );
    assert_eq!(job.metadata.annotations.unwrap()["owner"], "team-a");

    let unsharded = self::run(json!({}));
    let job = job_for(&unsharded, "smoke", spec, &args(), 1).unwrap();
    assert!(
        !job.metadata
            .labels
            .unwrap()
            .contains_key("sluice.dev/controller-instance")
    );
}

#[test]
fn an_unresolved_arg_says_which_container_and_field() {
    let metric = job_metric(json!({}));
    let spec = metric.provider.job.as_ref().unwrap();
    let only_service = &args()[..1];
    let err = job_for(&run(json!({})), "smoke", spec, only_service, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "job container check: args[0]: {{args.namespace}} names no arg of the analysis"
    );
}

fn job(conditions: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "web-1-smoke-1", "namespace": "shop" },
        "status": { "conditions": conditions },
    }))
    .unwrap()
}

#[test]
fn a_jobs_final_conditions_decide_its_measurement() {
    assert_eq!(outcome(&job(json!([]))), None);
    assert_eq!(
        outcome(&job(json!([
            { "type": "SuccessCriteriaMet", "status": "True" },
        ]))),
        None,
        "pods may still be terminating"
    );
    assert_eq!(
        outcome(&job(json!([
            { "type": "SuccessCriteriaMet", "status": "True" },
            { "type": "Complete", "status": "True" },
        ]))),
        Some((Successful, "Job web-1-smoke-1 completed".to_string()))
    );
    assert_eq!(
        outcome(&job(json!([
            { "type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded" },
            { "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
              "message": "Job has reached the specified backoff limit" },
        ]))),
        Some((
            Failed,
            "Job web-1-smoke-1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
                .to_string()
        ))
    );
    assert_eq!(
        outcome(&job(json!([{ "type": "Failed", "status": "False" }]))),
        None
    );
}

fn measurement(phase: AnalysisPhase, at: i64) -> Measurement {
    Measurement {
        phase,
        value: None,
        started_at: Some(Time(ts(at))),
        finished_at: (phase != Running).then(|| Time(ts(at))),
        message: None,
    }
}

#[test]
fn a_metric_in_flight_is_resumed_never_measured_again_until_it_finishes() {
    let s = AnalysisSpec {
        metrics: vec![job_metric(json!({ "interval": "30s", "count": 3 }))],
        ..Default::default()
    };
    let mut status = AnalysisRunStatus::default();
    let first = analysis::due(&s, &status, ts(0), ts(0));
    assert_eq!(first.due_now, ["smoke"]);
    assert!(first.in_flight.is_empty());

    analysis::record(&s, &mut status, "smoke", measurement(Running, 0));
    // Long after its interval, still in flight: nothing new is due and no time is.
    let later = analysis::due(&s, &status, ts(0), ts(600));
    assert!(later.due_now.is_empty(), "{later:?}");
    assert_eq!(later.in_flight, ["smoke"]);
    assert_eq!(
        later.next, None,
        "the Job's watch event brings the run back"
    );
    assert_eq!(analysis::in_flight(&s, &status), ["smoke"]);
    assert_eq!(analysis::run_phase(&s, &status, false).0, Running);

    // The Job finished at 100 s: one successful measurement (not two), the next one
    // interval after it.
    analysis::complete(&s, &mut status, "smoke", measurement(Successful, 100));
    let r = &status.metric_results[0];
    assert_eq!((r.count, r.successful, r.measurements.len()), (1, 1, 1));
    let next = analysis::due(&s, &status, ts(0), ts(100));
    assert!(next.in_flight.is_empty());
    assert_eq!(next.next, Some(ts(130)));
}

#[test]
fn a_failed_job_fails_the_metric_by_its_failure_limit() {
    let s = AnalysisSpec {
        metrics: vec![job_metric(
            json!({ "interval": "10s", "count": 3, "failureLimit": 1 }),
        )],
        ..Default::default()
    };
    let mut status = AnalysisRunStatus::default();
    for (i, phase) in [Failed, Failed].into_iter().enumerate() {
        let at = 20 * i as i64;
        analysis::record(&s, &mut status, "smoke", measurement(Running, at));
        analysis::complete(&s, &mut status, "smoke", measurement(phase, at + 5));
    }
    let r = &status.metric_results[0];
    assert_eq!((r.failed, r.phase), (2, Failed));
    let (phase, message) = analysis::run_phase(&s, &status, false);
    assert_eq!(phase, Failed);
    assert!(
        message.contains("failed (2) > failureLimit (1)"),
        "{message}"
    );
}

#[test]
fn a_measurement_cut_short_by_the_run_ending_decides_nothing() {
    let s = AnalysisSpec {
        metrics: vec![job_metric(json!({}))],
        ..Default::default()
    };
    let mut status = AnalysisRunStatus::default();
    analysis::record(&s, &mut status, "smoke", measurement(Running, 0));
    analysis::terminate_in_flight(&mut status, "smoke", ts(50), "terminated".into());
    let r = &status.metric_results[0];
    let last = r.measurements.last().unwrap();
    assert_eq!(last.phase, Inconclusive);
    assert_eq!(last.finished_at, Some(Time(ts(50))));
    assert_eq!(last.message.as_deref(), Some("terminated"));
    assert_eq!((r.count, r.inconclusive, r.phase), (0, 0, Running));
    assert!(analysis::in_flight(&s, &status).is_empty());
    assert_eq!(
        analysis::run_phase(&s, &status, true),
        (Successful, "terminated".to_string())
    );
}

#[test]
fn a_job_metric_takes_no_conditions() {
    let s = AnalysisSpec {
        metrics: vec![job_metric(json!({ "successCondition": "true" }))],
        ..Default::default()
    };
    assert_eq!(
        analysis::validate_spec(&s),
        Err(AnalysisError::JobCondition("smoke".into()))
    );
    let plain = AnalysisSpec {
        metrics: vec![job_metric(json!({}))],
        ..Default::default()
    };
    assert_eq!(analysis::validate_spec(&plain), Ok(()));
}
