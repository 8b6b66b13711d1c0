//! Tests of the AnalysisRun planning core (`core::analysis`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use sluice_api::analysis::{
    AnalysisPhase, AnalysisRunArgument, AnalysisRunStatus, AnalysisSpec, ArgumentValueFrom, DryRun,
    JudgeMetric, JudgeThresholds, Measurement, MeasurementRetention, Metric, MetricProvider,
    PodTemplateHashValue, PrometheusMetric,
};
use sluice_api::duration::HumanDuration;

use super::analysis::*;

use AnalysisPhase::{Error, Failed, Inconclusive, Running, Successful};

fn arg(name: &str, value: &str) -> AnalysisRunArgument {
    AnalysisRunArgument {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// A Prometheus metric with the given conditions and Argo's default limits.
fn metric(name: &str, success: Option<&str>, failure: Option<&str>) -> Metric {
    Metric {
        name: name.into(),
        interval: None,
        initial_delay: None,
        count: None,
        success_condition: success.map(String::from),
        failure_condition: failure.map(String::from),
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        provider: MetricProvider {
            prometheus: Some(PrometheusMetric {
                query: "up".into(),
                ..Default::default()
            }),
            judge: None,
            sequential: None,
            web: None,
            job: None,
        },
    }
}

fn judge_metric(success: Option<&str>) -> Metric {
    let mut m = metric("judge", success, None);
    m.provider = MetricProvider {
        prometheus: None,
        judge: Some(JudgeMetric {
            connection: Default::default(),
            lookback: HumanDuration::from_secs(300),
            step: HumanDuration::from_secs(30),
            signals: vec![],
            group_weights: Default::default(),
            thresholds: JudgeThresholds::default(),
            confidence: 0.98,
        }),
        sequential: None,
        web: None,
        job: None,
    };
    m
}

fn sequential_metric(count: Option<i32>) -> Metric {
    serde_json::from_value(serde_json::json!({
        "name": "errors", "interval": "1m", "initialDelay": "30s", "count": count,
        "provider": { "sequential": { "address": "http://p", "counts": {
            "canary": { "events": "e", "total": "t" },
            "baseline": { "events": "e", "total": "t" } } } },
    }))
    .unwrap()
}

#[test]
fn a_sequential_metric_first_looks_after_one_complete_slice() {
    let m = sequential_metric(Some(5));
    let s = spec(vec![m.clone()]);
    let status = AnalysisRunStatus::default();
    // initialDelay 30 s, then one interval of evidence.
    let schedule = due(&s, &status, ts(0), ts(60));
    assert!(schedule.due_now.is_empty());
    assert_eq!(schedule.next, Some(ts(90)));
    assert_eq!(due(&s, &status, ts(0), ts(90)).due_now, ["errors"]);
    let (origin, look) = sequential_look(&status, &m, ts(0));
    assert_eq!(origin, ts(30));
    assert_eq!(
        look,
        crate::core::sequential::Look {
            number: 1,
            last: false,
            early_success: true
        }
    );
}

#[test]
fn sequential_metrics_need_an_interval_and_no_conditions() {
    let mut m = sequential_metric(None);
    m.interval = None;
    let err = validate_spec(&spec(vec![m])).unwrap_err();
    assert!(err.to_string().contains("needs an interval"), "{err}");
    let mut m = sequential_metric(None);
    m.success_condition = Some("result > 1.0".into());
    let err = validate_spec(&spec(vec![m])).unwrap_err();
    assert!(err.to_string().contains("no successCondition"), "{err}");
    assert!(validate_spec(&spec(vec![sequential_metric(Some(3))])).is_ok());
}

#[test]
fn undecided_looks_keep_a_sequential_metric_running_until_the_last() {
    let m = sequential_metric(Some(3));
    let s = spec(vec![m.clone()]);
    let mut status = AnalysisRunStatus::default();
    for (i, t) in [(1, 90), (2, 150)] {
        record(
            &s,
            &mut status,
            "errors",
            measured(AnalysisPhase::Inconclusive, t),
        );
        assert_eq!(
            status.metric_results[0].phase,
            AnalysisPhase::Running,
            "look {i}"
        );
        let (_, look) = sequential_look(&status, &m, ts(0));
        assert_eq!((look.number, look.last), (i + 1, i + 1 == 3));
    }
    // The last look had too little traffic: Inconclusive, a human decides.
    let mut inconclusive = status.clone();
    record(
        &s,
        &mut inconclusive,
        "errors",
        measured(AnalysisPhase::Inconclusive, 210),
    );
    assert_eq!(
        inconclusive.metric_results[0].phase,
        AnalysisPhase::Inconclusive
    );
    // A pass at the last look completes it.
    let mut passed = status.clone();
    record(
        &s,
        &mut passed,
        "errors",
        measured(AnalysisPhase::Successful, 210),
    );
    assert_eq!(passed.metric_results[0].phase, AnalysisPhase::Successful);
    // A failed look fails it at once.
    let mut failed = status;
    record(
        &s,
        &mut failed,
        "errors",
        measured(AnalysisPhase::Failed, 210),
    );
    assert_eq!(failed.metric_results[0].phase, AnalysisPhase::Failed);
    assert_eq!(run_phase(&s, &failed, false).0, AnalysisPhase::Failed);
}

#[test]
fn an_early_pass_ends_a_sequential_metric_before_its_count() {
    let m = sequential_metric(Some(10));
    let s = spec(vec![m]);
    let mut status = AnalysisRunStatus::default();
    record(
        &s,
        &mut status,
        "errors",
        measured(AnalysisPhase::Successful, 90),
    );
    assert_eq!(status.metric_results[0].phase, AnalysisPhase::Successful);
    assert!(due(&s, &status, ts(0), ts(1000)).due_now.is_empty());
    assert_eq!(run_phase(&s, &status, false).0, AnalysisPhase::Successful);
}

fn spec(metrics: Vec<Metric>) -> AnalysisSpec {
    AnalysisSpec {
        metrics,
        ..Default::default()
    }
}

fn ts(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(secs)
}

fn measured(phase: AnalysisPhase, finished: i64) -> Measurement {
    Measurement {
        phase,
        value: Some(format!("[{finished}]")),
        started_at: Some(Time(ts(finished - 1))),
        finished_at: Some(Time(ts(finished))),
        message: None,
    }
}

fn numbers(v: &[f64]) -> MetricValue {
    MetricValue::Numbers(v.to_vec())
}

#[test]
fn substitutes_args() {
    let args = [arg("service", "web"), arg("ns", "prod")];
    let cases = [
        (
            "rate({service=\"{{args.service}}\"}[5m])",
            "rate({service=\"web\"}[5m])",
        ),
        ("{{ args.service }}/{{args.ns}}", "web/prod"),
        (
            "{{args.service}}-{{ args.service}}-{{args.service }}",
            "web-web-web",
        ),
        ("no placeholders", "no placeholders"),
        // Not an arg: left for whoever owns it.
        ("{{templates.x}} {{args.ns}}", "{{templates.x}} prod"),
        ("unterminated {{args.ns", "unterminated {{args.ns"),
    ];
    for (query, want) in cases {
        assert_eq!(
            substitute_args(query, &args).as_deref(),
            Ok(want),
            "{query}"
        );
    }
}

#[test]
fn substitution_is_single_pass() {
    let args = [arg("a", "{{args.b}}"), arg("b", "no")];
    assert_eq!(
        substitute_args("{{args.a}}", &args).as_deref(),
        Ok("{{args.b}}")
    );
}

#[test]
fn substitution_errors_name_the_arg() {
    let unresolved = AnalysisRunArgument {
        name: "hash".into(),
        value: None,
        value_from: Some(ArgumentValueFrom {
            pod_template_hash_value: Some(PodTemplateHashValue::Latest),
            ..Default::default()
        }),
    };
    let empty = AnalysisRunArgument {
        name: "empty".into(),
        ..Default::default()
    };
    let args = [arg("service", "web"), unresolved, empty];
    let cases = [
        (
            "{{args.missing}}",
            AnalysisError::UnknownArg("missing".into()),
        ),
        (
            "{{ args.hash }}",
            AnalysisError::UnresolvedValueFrom("hash".into()),
        ),
        (
            "{{args.service}} {{args.empty}}",
            AnalysisError::MissingValue("empty".into()),
        ),
    ];
    for (query, want) in cases {
        let got = substitute_args(query, &args).unwrap_err();
        assert_eq!(got, want, "{query}");
    }
    let text = AnalysisError::UnknownArg("missing".into()).to_string();
    assert!(text.contains("{{args.missing}}"), "{text}");
}

#[test]
fn check_condition_catches_compile_errors() {
    for good in [
        "result[0] >= 0.99",
        "result.all(x, x < 0.05)",
        "size(result) == 0 || result[0] < 1",
        "result >= 90.0",
    ] {
        assert_eq!(check_condition(good), Ok(()), "{good}");
    }
    for bad in ["result[0] >=", "result[0] >= 0.99 ||", "(result", ""] {
        let err = check_condition(bad).unwrap_err();
        assert!(!err.is_empty() && !err.contains('\n'), "{bad}: {err:?}");
    }
}

#[test]
fn validate_spec_rejects_bad_metrics() {
    let mut bad_interval = metric("m", Some("result[0] > 0"), None);
    bad_interval.interval = Some(HumanDuration::Text("5 parsecs".into()));
    let cases = [
        (metric("m", Some("result[0] > 0"), None), None),
        (
            metric("m", Some("result[0] >"), None),
            Some("successCondition"),
        ),
        (metric("m", None, Some("(")), Some("failureCondition")),
        (bad_interval, Some("interval")),
        (metric("m", None, None), Some("needs a successCondition")),
        (judge_metric(None), None),
    ];
    for (m, want) in cases {
        let got = validate_spec(&spec(vec![m.clone()]));
        match want {
            None => assert_eq!(got, Ok(()), "{m:?}"),
            Some(text) => {
                let err = got.unwrap_err().to_string();
                assert!(err.contains(text), "{err}");
            }
        }
    }
}

#[test]
fn evaluates_conditions() {
    let ok = Some("result[0] >= 0.99");
    let bad = Some("result[0] < 0.9");
    let cases = [
        // (success, failure, result, phase)
        (ok, None, numbers(&[0.995]), Successful),
        (ok, None, numbers(&[0.5]), Failed),
        (None, bad, numbers(&[0.5]), Failed),
        (None, bad, numbers(&[0.95]), Successful),
        (ok, bad, numbers(&[0.995]), Successful),
        (ok, bad, numbers(&[0.5]), Failed),
        (ok, bad, numbers(&[0.95]), Inconclusive),
        // Both hold: failure wins.
        (Some("true"), Some("true"), numbers(&[1.0]), Failed),
        // Ints and doubles compare.
        (Some("result[0] > 1"), None, numbers(&[2.0]), Successful),
        (
            Some("result.all(x, x < 1)"),
            None,
            numbers(&[0.1, 0.2]),
            Successful,
        ),
        (
            Some("result.all(x, x < 1)"),
            None,
            numbers(&[0.1, 2.0]),
            Failed,
        ),
    ];
    for (success, failure, result, want) in cases {
        let m = metric("m", success, failure);
        let (phase, message) = evaluate(&m, &result);
        assert_eq!(
            phase, want,
            "{success:?} {failure:?} {result:?}: {message:?}"
        );
        assert_eq!(message.is_none(), want == Successful, "{message:?}");
    }
}

#[test]
fn evaluation_errors_are_error_phase() {
    let cases = [
        // (success, result, text in the message)
        ("result[1] > 0", numbers(&[1.0]), "Index out of bounds"),
        ("result > 1", numbers(&[1.0]), "no matching overload"),
        ("result[0]", numbers(&[1.0]), "not a bool"),
        ("foo > 1", numbers(&[1.0]), "foo"),
        ("result[0] >", numbers(&[1.0]), "does not compile"),
    ];
    for (success, result, text) in cases {
        let (phase, message) = evaluate(&metric("m", Some(success), None), &result);
        assert_eq!(phase, Error, "{success}");
        let message = message.unwrap();
        assert!(message.contains(text), "{success}: {message}");
        assert!(message.contains(success), "names the condition: {message}");
    }
}

#[test]
fn empty_result_never_passes() {
    let cases = [
        // Index out of range on no data.
        (Some("result[0] >= 0.99"), None, Error),
        (None, Some("result[0] > 0.05"), Error),
        // Vacuously true over no data: still not a pass.
        (Some("result.all(x, x < 0.05)"), None, Inconclusive),
        (None, Some("result.exists(x, x > 0.05)"), Inconclusive),
        // A failure on no data stays a failure.
        (Some("size(result) > 0"), None, Failed),
    ];
    for (success, failure, want) in cases {
        let (phase, message) = evaluate(&metric("m", success, failure), &numbers(&[]));
        assert_eq!(phase, want, "{success:?} {failure:?}: {message:?}");
        let message = message.unwrap();
        assert!(message.starts_with("query returned no data"), "{message}");
    }
}

#[test]
fn nan_is_reported_and_never_passes() {
    // cel 0.15 has no ordering for NaN: `<`, `>`, `<=`, `>=` with a NaN operand fail to
    // evaluate ("no matching overload"), so those conditions give Error, not false.
    let cases = [
        (Some("result[0] >= 0.99"), None, Error),
        // Argo would pass this (NaN > 0.05 is false there).
        (None, Some("result[0] > 0.05"), Error),
        (Some("result[0] >= 0.99"), Some("result[0] < 0.9"), Error),
        // Conditions that hold on NaN still do not pass it.
        (Some("result[0] != result[0]"), None, Inconclusive),
        (Some("size(result) == 1"), None, Inconclusive),
        (None, Some("size(result) == 0"), Inconclusive),
        (Some("size(result) == 0"), None, Failed),
    ];
    for (success, failure, want) in cases {
        let result = numbers(&[f64::NAN]);
        let (phase, message) = evaluate(&metric("m", success, failure), &result);
        assert_eq!(phase, want, "{success:?} {failure:?}: {message:?}");
        let message = message.unwrap();
        assert!(message.contains("result contains NaN"), "{message}");
    }
    let (phase, message) = evaluate(&judge_metric(None), &MetricValue::Score(f64::NAN));
    assert_eq!(phase, Failed);
    assert!(message.unwrap().contains("NaN"));
}

#[test]
fn judge_score() {
    let cases = [
        (None, 100.0, Successful),
        (None, 95.0, Successful),
        (None, 80.0, Inconclusive),
        (None, 75.0, Inconclusive),
        (None, 74.9, Failed),
        (Some("result >= 50.0"), 60.0, Successful),
        (Some("result >= 50.0"), 40.0, Failed),
    ];
    for (success, score, want) in cases {
        let (phase, message) = evaluate(&judge_metric(success), &MetricValue::Score(score));
        assert_eq!(phase, want, "{success:?} {score}: {message:?}");
    }
    // A Prometheus metric without conditions cannot pass by default.
    let (phase, _) = evaluate(&metric("m", None, None), &numbers(&[1.0]));
    assert_eq!(phase, Error);
}

#[test]
fn metric_value_text() {
    assert_eq!(numbers(&[0.993, 1.0]).to_string(), "[0.993, 1]");
    assert_eq!(numbers(&[]).to_string(), "[]");
    assert_eq!(MetricValue::Score(87.5).to_string(), "87.5");
}

fn timed(interval: Option<i64>, delay: Option<i64>, count: Option<i32>) -> Metric {
    let mut m = metric("m", Some("result[0] > 0"), None);
    m.interval = interval.map(HumanDuration::from_secs);
    m.initial_delay = delay.map(HumanDuration::from_secs);
    m.count = count;
    m
}

/// Records `phases` with finish times `at`, then asks what is due at `now`.
fn schedule_after(m: Metric, history: &[(AnalysisPhase, i64)], now: i64) -> Schedule {
    let spec = spec(vec![m]);
    let mut status = AnalysisRunStatus::default();
    for &(phase, at) in history {
        record(&spec, &mut status, "m", measured(phase, at));
    }
    due(&spec, &status, ts(0), ts(now))
}

#[test]
fn schedules_measurements() {
    let due_now = |v: bool| if v { vec!["m".to_string()] } else { vec![] };
    let cases = [
        // (metric, history, now, due now, next)
        (timed(None, None, None), vec![], 0, true, None),
        (timed(None, Some(30), None), vec![], 29, false, Some(30)),
        (timed(None, Some(30), None), vec![], 30, true, None),
        // Measured once without an interval.
        (
            timed(None, None, None),
            vec![(Successful, 5)],
            1000,
            false,
            None,
        ),
        // Every interval after the last finish; the initial delay applies once.
        (
            timed(Some(60), Some(30), Some(3)),
            vec![(Successful, 31)],
            90,
            false,
            Some(91),
        ),
        (
            timed(Some(60), Some(30), Some(3)),
            vec![(Successful, 31)],
            91,
            true,
            None,
        ),
        (
            timed(Some(60), None, Some(3)),
            vec![(Successful, 1), (Successful, 61)],
            121,
            true,
            None,
        ),
        // Count reached.
        (
            timed(Some(60), None, Some(2)),
            vec![(Successful, 1), (Successful, 61)],
            1000,
            false,
            None,
        ),
        // No count with an interval: until the run ends.
        (
            timed(Some(60), None, None),
            vec![(Successful, 1), (Successful, 61), (Successful, 121)],
            150,
            false,
            Some(181),
        ),
        // An error is retried sooner, and does not use up the count.
        (
            timed(Some(60), None, Some(1)),
            vec![(Error, 1)],
            5,
            false,
            Some(11),
        ),
        (timed(None, None, None), vec![(Error, 1)], 11, true, None),
        // A decided metric is not measured again.
        (
            timed(Some(60), None, None),
            vec![(Failed, 1)],
            1000,
            false,
            None,
        ),
    ];
    for (m, history, now, want_due, want_next) in cases {
        let got = schedule_after(m.clone(), &history, now);
        assert_eq!(got.due_now, due_now(want_due), "{m:?} {history:?} at {now}");
        assert_eq!(got.next, want_next.map(ts), "{m:?} {history:?} at {now}");
    }
}

#[test]
fn schedule_takes_earliest_next_and_stops_when_finished() {
    let mut a = timed(Some(60), Some(10), None);
    a.name = "a".into();
    let mut b = timed(Some(60), Some(20), None);
    b.name = "b".into();
    let mut c = timed(None, None, None);
    c.name = "c".into();
    let spec = spec(vec![a, b, c]);
    let mut status = AnalysisRunStatus::default();
    let got = due(&spec, &status, ts(100), ts(100));
    assert_eq!(got.due_now, vec!["c".to_string()]);
    assert_eq!(got.next, Some(ts(110)));
    status.phase = Some(Successful);
    assert_eq!(
        due(&spec, &status, ts(100), ts(1000)),
        Schedule::default(),
        "nothing is due once the run has a verdict"
    );
}

/// Records `phases` into a fresh status for `m` and returns the metric's result.
fn after(m: Metric, phases: &[AnalysisPhase]) -> sluice_api::analysis::MetricResult {
    let spec = spec(vec![m]);
    let mut status = AnalysisRunStatus::default();
    for (i, &phase) in phases.iter().enumerate() {
        record(&spec, &mut status, "m", measured(phase, i as i64));
    }
    status.metric_results.pop().unwrap()
}

#[test]
fn limits_decide_the_metric() {
    let with = |failure_limit: i32, inconclusive_limit: i32, count: Option<i32>| {
        let mut m = timed(Some(60), None, count);
        m.failure_limit = failure_limit;
        m.inconclusive_limit = inconclusive_limit;
        m
    };
    let cases = [
        (with(0, 0, None), vec![Failed], Failed),
        (with(2, 0, None), vec![Failed, Failed], Running),
        (with(2, 0, None), vec![Failed, Failed, Failed], Failed),
        (
            with(2, 0, Some(3)),
            vec![Failed, Successful, Failed],
            Successful,
        ),
        (with(0, 0, None), vec![Inconclusive], Inconclusive),
        (with(0, 1, None), vec![Inconclusive], Running),
        (with(0, 0, Some(2)), vec![Successful], Running),
        (
            with(0, 0, Some(2)),
            vec![Successful, Successful],
            Successful,
        ),
        // consecutiveErrorLimit 4: the 5th error in a row decides.
        (with(0, 0, None), vec![Error; 4], Running),
        (with(0, 0, None), vec![Error; 5], Error),
        (
            with(0, 0, None),
            vec![
                Error, Error, Error, Error, Successful, Error, Error, Error, Error,
            ],
            Running,
        ),
        // Errors do not complete a counted metric.
        (with(0, 0, Some(1)), vec![Error], Running),
        (with(0, 0, Some(1)), vec![Error, Successful], Successful),
        // Precedence: failed before consecutive errors before inconclusive.
        (with(0, 0, None), vec![Inconclusive, Failed], Failed),
    ];
    for (m, phases, want) in cases {
        let r = after(m.clone(), &phases);
        assert_eq!(
            r.phase, want,
            "{phases:?} limits {}/{}: {:?}",
            m.failure_limit, m.inconclusive_limit, r.message
        );
    }
}

#[test]
fn counters() {
    let r = after(
        timed(Some(60), None, None),
        &[Error, Error, Successful, Inconclusive, Error, Failed],
    );
    let got = (
        r.count,
        r.successful,
        r.failed,
        r.inconclusive,
        r.error,
        r.consecutive_error,
    );
    // count excludes errors; the Failed reset consecutiveError.
    assert_eq!(got, (3, 1, 1, 1, 3, 0));
    let r = after(timed(Some(60), None, None), &[Successful, Error, Error]);
    assert_eq!(r.consecutive_error, 2);
    assert!(r.message.is_none());
    let r = after(timed(Some(60), None, None), &[Error; 5]);
    assert_eq!(
        r.message.as_deref(),
        Some("consecutive errors (5) > consecutiveErrorLimit (4)")
    );
}

#[test]
fn retention_keeps_newest_last() {
    let record_n = |retention: Vec<MeasurementRetention>, n: i64| {
        let mut spec = spec(vec![timed(Some(60), None, None)]);
        spec.measurement_retention = retention;
        let mut status = AnalysisRunStatus::default();
        for i in 0..n {
            record(&spec, &mut status, "m", measured(Successful, i));
        }
        let r = status.metric_results.pop().unwrap();
        let finished: Vec<i64> = r
            .measurements
            .iter()
            .map(|m| m.finished_at.as_ref().unwrap().0.as_second())
            .collect();
        (finished, r.count)
    };
    let keep = |name: &str, limit: i32| MeasurementRetention {
        metric_name: name.into(),
        limit,
    };
    let cases = [
        (vec![], 12, (2..12).collect::<Vec<_>>()),
        (vec![], 3, vec![0, 1, 2]),
        (vec![keep("m", 3)], 5, vec![2, 3, 4]),
        (vec![keep("*", 2)], 5, vec![3, 4]),
        (vec![keep("*", 2), keep("m", 4)], 5, vec![1, 2, 3, 4]),
        (vec![keep("other", 1)], 11, (1..11).collect()),
    ];
    for (retention, n, want) in cases {
        let (finished, count) = record_n(retention.clone(), n);
        assert_eq!(finished, want, "{retention:?} after {n}");
        assert_eq!(count as i64, n, "counters are not truncated");
    }
}

#[test]
fn dry_run_never_decides() {
    let mut real = timed(None, None, None);
    real.name = "real".into();
    let mut shadow = timed(Some(60), None, Some(2));
    shadow.name = "shadow".into();
    for dry in ["shadow", "*"] {
        let mut spec = spec(vec![real.clone(), shadow.clone()]);
        spec.dry_run = vec![DryRun {
            metric_name: dry.into(),
        }];
        let mut status = AnalysisRunStatus::default();
        record(&spec, &mut status, "shadow", measured(Failed, 1));
        let shadow_result = &status.metric_results[0];
        assert!(shadow_result.dry_run);
        assert_eq!(shadow_result.phase, Failed, "reported as it is");
        let (phase, message) = run_phase(&spec, &status, false);
        if dry == "*" {
            // Everything is dry-run: done once every metric is done.
            assert_eq!(phase, Running, "{dry}: {message}");
            record(&spec, &mut status, "real", measured(Failed, 2));
            let (phase, message) = run_phase(&spec, &status, false);
            assert_eq!(phase, Successful, "{dry}");
            assert!(
                message.contains("dry run: real Failed, shadow Failed"),
                "{message}"
            );
        } else {
            assert_eq!(phase, Running, "{dry}: {message}");
            assert!(message.contains("real"), "{message}");
            record(&spec, &mut status, "real", measured(Successful, 2));
            assert_eq!(run_phase(&spec, &status, false).0, Successful, "{dry}");
        }
    }
}

#[test]
fn run_waits_for_running_dry_run_metrics() {
    let mut real = timed(None, None, None);
    real.name = "real".into();
    let mut shadow = timed(Some(60), None, Some(2));
    shadow.name = "shadow".into();
    let mut spec = spec(vec![real, shadow]);
    spec.dry_run = vec![DryRun {
        metric_name: "shadow".into(),
    }];
    let mut status = AnalysisRunStatus::default();
    record(&spec, &mut status, "real", measured(Successful, 1));
    record(&spec, &mut status, "shadow", measured(Successful, 1));
    assert_eq!(run_phase(&spec, &status, false).0, Running);
    assert_eq!(run_phase(&spec, &status, true).0, Successful);
    record(&spec, &mut status, "shadow", measured(Successful, 61));
    assert_eq!(run_phase(&spec, &status, false).0, Successful);
}

#[test]
fn run_phase_precedence() {
    let names = ["a", "b", "c"];
    let run = |phases: [Option<AnalysisPhase>; 3], terminated: bool| {
        let metrics = names
            .iter()
            .map(|n| {
                let mut m = timed(None, None, None);
                m.name = n.to_string();
                m.consecutive_error_limit = 0;
                m
            })
            .collect();
        let spec = spec(metrics);
        let mut status = AnalysisRunStatus::default();
        for (name, phase) in names.iter().zip(phases) {
            if let Some(phase) = phase {
                let mut m = measured(phase, 1);
                m.value = Some(format!("[{name}]"));
                m.message = Some(format!("{name} said so"));
                record(&spec, &mut status, name, m);
            }
        }
        run_phase(&spec, &status, terminated)
    };
    let cases = [
        (
            [Some(Inconclusive), Some(Error), Some(Failed)],
            false,
            Failed,
            "c",
        ),
        ([Some(Inconclusive), Some(Error), None], false, Error, "b"),
        (
            [Some(Inconclusive), Some(Successful), None],
            false,
            Inconclusive,
            "a",
        ),
        (
            [Some(Successful), Some(Successful), None],
            false,
            Running,
            "c",
        ),
        (
            [Some(Successful), Some(Successful), Some(Successful)],
            false,
            Successful,
            "",
        ),
        (
            [Some(Successful), None, None],
            true,
            Successful,
            "terminated",
        ),
        ([Some(Failed), None, None], true, Failed, "a"),
    ];
    for (phases, terminated, want, named) in cases {
        let (phase, message) = run(phases, terminated);
        assert_eq!(phase, want, "{phases:?} terminated={terminated}: {message}");
        assert!(message.contains(named), "{phases:?}: {message}");
        if matches!(want, Failed | Error | Inconclusive) {
            assert!(
                message.contains(&format!("metric \"{named}\""))
                    && message.contains(&format!("[{named}]"))
                    && message.contains(&format!("{named} said so")),
                "names the metric and its last measurement: {message}"
            );
        }
    }
}

fn web_metric(success: Option<&str>, failure: Option<&str>) -> Metric {
    let mut m = metric("health", success, failure);
    m.provider = serde_json::from_value(serde_json::json!({
        "web": { "url": "http://h/health" }
    }))
    .unwrap();
    m
}

#[test]
fn json_path_picks_one_value_many_as_a_list_and_none_is_an_error() {
    let answer = serde_json::json!({
        "data": { "ok": true, "successPercent": 0.95, "checks": [{"up": 1}, {"up": 0}] }
    });
    // Argo Rollouts' kubectl-style braces, RFC 9535, and kubectl's rootless form.
    for path in ["{$.data.ok}", "$.data.ok", ".data.ok", " { $.data.ok } "] {
        assert_eq!(
            pick_json_path(&answer, path),
            Ok(serde_json::json!(true)),
            "{path}"
        );
    }
    assert_eq!(
        pick_json_path(&answer, "{$.data}").unwrap()["successPercent"],
        serde_json::json!(0.95)
    );
    assert_eq!(
        pick_json_path(&answer, "$.data.checks[*].up"),
        Ok(serde_json::json!([1, 0]))
    );
    assert_eq!(
        pick_json_path(&answer, "{$.data.missing}"),
        Err(JsonPathError::NoMatch {
            path: "{$.data.missing}".into()
        })
    );
    let err = pick_json_path(&answer, "$.data[").unwrap_err();
    assert!(matches!(err, JsonPathError::Invalid { .. }), "{err:?}");
    assert_eq!(
        JsonPathError::NoMatch { path: "$.x".into() }.to_string(),
        "jsonPath \"$.x\" matched nothing in the response"
    );
}

#[test]
fn json_results_are_judged_as_cel_values() {
    let answer =
        serde_json::json!({ "ok": true, "successPercent": 0.95, "count": 12, "status": "pass" });
    let value = MetricValue::Json(answer.clone());
    let cases = [
        ("result.ok && result.successPercent >= 0.90", Successful),
        ("result.successPercent >= 0.99", Failed),
        // An integer compares with an int and a double alike.
        ("result.count > 10 && result.count >= 11.5", Successful),
        ("result.status in ['ok', 'pass', 'UP']", Successful),
        ("result.status == 'fail'", Failed),
    ];
    for (success, want) in cases {
        let (phase, message) = evaluate(&web_metric(Some(success), None), &value);
        assert_eq!(phase, want, "{success}: {message:?}");
    }
    let (phase, message) = evaluate(
        &web_metric(Some("result.missing == 1"), None),
        &MetricValue::Json(answer),
    );
    assert_eq!(phase, Error, "{message:?}");
    assert_eq!(
        evaluate(
            &web_metric(Some("result == 'pass'"), None),
            &MetricValue::Json(serde_json::json!("pass"))
        )
        .0,
        Successful
    );
    assert_eq!(
        MetricValue::Json(serde_json::json!({"ok": true})).to_string(),
        r#"{"ok":true}"#
    );
}

#[test]
fn a_null_json_result_is_never_a_pass() {
    let (phase, message) = evaluate(
        &web_metric(None, Some("result == 'fail'")),
        &MetricValue::Json(serde_json::Value::Null),
    );
    assert_eq!(phase, Inconclusive, "{message:?}");
    assert!(message.unwrap().starts_with("result is null"));
}

#[test]
fn a_web_metric_needs_a_condition() {
    let spec = AnalysisSpec {
        metrics: vec![web_metric(None, None)],
        ..Default::default()
    };
    assert_eq!(
        validate_spec(&spec),
        Err(AnalysisError::NoWebCondition("health".into()))
    );
}
