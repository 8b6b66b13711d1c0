//! The expr → CEL translation table, each translation also run by sluice's own condition
//! evaluator on results whose verdict under Argo is known.

use serde_json::json;
use sluice_api::analysis::{AnalysisPhase, Metric};
use sluice_controller::core::analysis::{MetricValue, check_condition, evaluate};

use super::expr::{ResultShape, translate};

fn cel(expr: &str) -> String {
    translate(expr, ResultShape::Numbers)
        .unwrap_or_else(|e| panic!("{expr:?}: {e}"))
        .cel
}

/// Argo's conditions as its documentation and users write them, and their CEL.
const TABLE: &[(&str, &str)] = &[
    ("result[0] >= 0.95", "result[0] >= 0.95"),
    ("result[0] < 1", "result[0] < 1"),
    ("result >= 0.95", "result[0] >= 0.95"),
    ("result < 1", "result[0] < 1"),
    (
        "result[0] >= 0.9 and result[0] <= 1",
        "result[0] >= 0.9 && result[0] <= 1",
    ),
    (
        "result[0] < 0.5 or result[1] < 0.5",
        "result[0] < 0.5 || result[1] < 0.5",
    ),
    ("not (result[0] > 10)", "!(result[0] > 10)"),
    ("!(result[0] > 10)", "!(result[0] > 10)"),
    (
        "len(result) == 0 || result[0] >= 0.95",
        "size(result) == 0 || result[0] >= 0.95",
    ),
    (
        "len(result) > 0 && result[0] >= 0.95",
        "size(result) > 0 && result[0] >= 0.95",
    ),
    (
        "isNaN(result) || result >= 0.95",
        "(result[0] != result[0]) || result[0] >= 0.95",
    ),
    ("all(result, {# > 1})", "result.all(x, x > 1)"),
    ("all(result, # > 1)", "result.all(x, x > 1)"),
    ("any(result, {# < 0.01})", "result.exists(x, x < 0.01)"),
    ("none(result, {# > 100})", "!result.exists(x, x > 100)"),
    ("one(result, {# == 0})", "result.exists_one(x, x == 0)"),
    (
        "len(filter(result, {# > 1})) < 2",
        "size(result.filter(x, x > 1)) < 2",
    ),
    ("result[0] * 100 >= 95", "result[0] * 100.0 >= 95"),
    (
        "(result[0] + result[1]) / 2 < 0.5",
        "(result[0] + result[1]) / 2.0 < 0.5",
    ),
    ("result[0] - result[1] < 0.1", "result[0] - result[1] < 0.1"),
    (
        "result[0] > 0.5 ? result[1] > 0.5 : false",
        "result[0] > 0.5 ? result[1] > 0.5 : false",
    ),
    ("result[0] in [1, 2]", "result[0] in [1, 2]"),
    (
        "result[0] >= 0.95 and (result[1] < 5 or result[2] < 5)",
        "result[0] >= 0.95 && (result[1] < 5 || result[2] < 5)",
    ),
];

#[test]
fn the_translation_table() {
    for (expr, want) in TABLE {
        assert_eq!(&cel(expr), want, "{expr}");
        check_condition(want).unwrap_or_else(|e| panic!("{want:?} does not compile: {e}"));
    }
}

/// A Prometheus metric with this successCondition.
fn metric(success: &str) -> Metric {
    serde_json::from_value(json!({
        "name": "m", "successCondition": success,
        "provider": { "prometheus": { "address": "http://p:9090", "query": "q" } },
    }))
    .unwrap()
}

/// The phase sluice gives `result` under the translated condition.
fn verdict(expr: &str, result: &[f64]) -> AnalysisPhase {
    evaluate(&metric(&cel(expr)), &MetricValue::Numbers(result.to_vec())).0
}

/// What Argo decides on these results, sluice decides on the translations (a number's
/// type and a list's included: `* 100` is a double times a double in CEL).
#[test]
fn translations_decide_as_argo_does() {
    use AnalysisPhase::{Failed, Successful};
    let cases: &[(&str, &[f64], AnalysisPhase)] = &[
        ("result[0] >= 0.95", &[0.97], Successful),
        ("result[0] >= 0.95", &[0.90], Failed),
        ("result < 1", &[0.5], Successful),
        ("result < 1", &[3.0], Failed),
        ("result[0] >= 0.9 and result[0] <= 1", &[0.95], Successful),
        ("not (result[0] > 10)", &[11.0], Failed),
        ("all(result, {# > 1})", &[2.0, 3.0], Successful),
        ("all(result, {# > 1})", &[2.0, 0.5], Failed),
        ("any(result, {# < 0.01})", &[0.5, 0.001], Successful),
        ("none(result, {# > 100})", &[101.0], Failed),
        ("one(result, {# == 0})", &[0.0, 1.0], Successful),
        ("len(filter(result, {# > 1})) < 2", &[2.0, 3.0], Failed),
        ("result[0] * 100 >= 95", &[0.96], Successful),
        ("(result[0] + result[1]) / 2 < 0.5", &[0.2, 0.4], Successful),
        ("len(result) > 0 && result[0] >= 0.95", &[0.99], Successful),
        ("result[0] in [1, 2]", &[2.0], Successful),
    ];
    for (expr, result, want) in cases {
        assert_eq!(
            verdict(expr, result),
            *want,
            "{expr} on {result:?} (CEL {})",
            cel(expr)
        );
    }
}

/// Argo passes a NaN or an empty result under `isNaN(result) || ...` and
/// `len(result) == 0 || ...`; sluice never does, and the translation says so.
#[test]
fn nan_and_empty_results_are_never_a_pass_and_the_notes_say_so() {
    let t = translate("isNaN(result) || result >= 0.95", ResultShape::Numbers).unwrap();
    assert!(t.notes.iter().any(|n| n.contains("NaN")), "{:?}", t.notes);
    assert!(
        t.notes.iter().any(|n| n.contains("result[0]")),
        "{:?}",
        t.notes
    );
    assert_ne!(
        verdict("isNaN(result) || result >= 0.95", &[f64::NAN]),
        AnalysisPhase::Successful
    );
    let t = translate(
        "len(result) == 0 || result[0] >= 0.95",
        ResultShape::Numbers,
    )
    .unwrap();
    assert!(t.notes.iter().any(|n| n.contains("empty")), "{:?}", t.notes);
    assert_ne!(
        verdict("len(result) == 0 || result[0] >= 0.95", &[]),
        AnalysisPhase::Successful
    );
    assert!(
        translate("result[0] >= 0.95", ResultShape::Numbers)
            .unwrap()
            .notes
            .is_empty()
    );
}

/// A web result is the JSON value in both: no `[0]`.
#[test]
fn web_results_keep_their_shape() {
    let t = translate(
        "result.ok == true and result.successPercent >= 0.9",
        ResultShape::Json,
    )
    .unwrap();
    assert_eq!(t.cel, "result.ok == true && result.successPercent >= 0.9");
    assert!(t.notes.is_empty());
    assert_eq!(
        translate("result == \"pass\"", ResultShape::Json)
            .unwrap()
            .cel,
        "result == \"pass\""
    );
    assert_eq!(
        translate("result.status matches '^ok'", ResultShape::Json)
            .unwrap()
            .cel,
        "result.status.matches(\"^ok\")"
    );
}

/// What cannot be translated safely is refused with the reason, never guessed at.
#[test]
fn untranslatable_expressions_are_refused_with_the_reason() {
    let cases = [
        ("default(result, 0) < 0.05", "default()"),
        ("asInt(result) > 1", "asInt()"),
        ("isInf(result)", "isInf()"),
        ("result[0] ** 2 > 4", "**"),
        ("result[0] > threshold", "threshold"),
        ("result[0] >= {{args.min}}", "unexpected"),
        ("result[0] >=", "ends too early"),
        ("result[0] > 1 1", "after a complete expression"),
        ("result[0:2]", "slices"),
        ("'open", "not closed"),
        ("# > 1", "outside a predicate"),
        ("result[0] not in [1]", "not in"),
        ("result.foo()", "method call"),
        ("1..3", "no CEL translation"),
    ];
    for (expr, why) in cases {
        let err = translate(expr, ResultShape::Numbers)
            .expect_err(expr)
            .to_string();
        assert!(err.contains(why), "{expr}: {err}");
    }
}

#[test]
fn strings_and_nested_predicates_are_printed_as_cel() {
    assert_eq!(
        translate(r#"result.name == 'a"b'"#, ResultShape::Json)
            .unwrap()
            .cel,
        r#"result.name == "a\"b""#
    );
    assert_eq!(
        translate(
            "all(result.items, {all(#.values, {# > 0})})",
            ResultShape::Json
        )
        .unwrap()
        .cel,
        "result.items.all(x, x.values.all(x2, x2 > 0))"
    );
    assert_eq!(cel("-result[0] < -1"), "-result[0] < -1");
    assert_eq!(
        cel("result[0] - (result[1] - result[2]) > 0"),
        "result[0] - (result[1] - result[2]) > 0"
    );
}
