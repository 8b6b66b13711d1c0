//! Server-rendered SVG charts of a metric's measurements over time, against the
//! thresholds read from its success and failure conditions. No script, no external
//! asset: the SVG is part of the page, so it also works without JavaScript.

use maud::{Markup, html};
use sluice_api::analysis::{AnalysisPhase, Measurement, Metric};

/// A horizontal line: where a condition flips.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// `success` or `failure` (used as a CSS class and in the label).
    pub kind: &'static str,
    /// The comparison as written, normalised to have `result` on the left (`>=`, `<`, ...).
    pub op: String,
    pub value: f64,
}

/// Thresholds of a metric: every `result… OP number` (or `number OP result…`) comparison
/// in its conditions, and the judge's pass and marginal scores.
pub fn thresholds(metric: &Metric) -> Vec<Threshold> {
    let mut out = Vec::new();
    if let Some(c) = &metric.success_condition {
        out.extend(comparisons(c, "success"));
    }
    if let Some(c) = &metric.failure_condition {
        out.extend(comparisons(c, "failure"));
    }
    if let Some(judge) = &metric.provider.judge
        && metric.success_condition.is_none()
        && metric.failure_condition.is_none()
    {
        out.push(Threshold {
            kind: "success",
            op: ">=".into(),
            value: judge.thresholds.pass,
        });
        out.push(Threshold {
            kind: "marginal",
            op: ">=".into(),
            value: judge.thresholds.marginal,
        });
    }
    out
}

/// Finds `result`, `result[N]` or `result.x` compared with a numeric literal. Anything
/// more complex is left out of the chart (the condition itself is shown in text).
pub fn comparisons(condition: &str, kind: &'static str) -> Vec<Threshold> {
    let tokens = tokenize(condition);
    let mut out = Vec::new();
    for i in 0..tokens.len() {
        let Tok::Op(op) = &tokens[i] else { continue };
        let (left, right) = (tokens[..i].last(), tokens.get(i + 1));
        match (left, right) {
            (Some(Tok::Result), Some(Tok::Num(n))) => out.push(Threshold {
                kind,
                op: op.clone(),
                value: *n,
            }),
            (Some(Tok::Num(n)), Some(Tok::Result)) => out.push(Threshold {
                kind,
                op: flip(op),
                value: *n,
            }),
            _ => {}
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `result`, with any `[N]` or `.field` accessors folded in.
    Result,
    Num(f64),
    Op(String),
    Other,
}

fn tokenize(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if &s[start..i] == "result" {
                // Fold accessors: result[0], result.value, result[0].x
                loop {
                    if i < b.len() && b[i] == b'[' {
                        match s[i..].find(']') {
                            Some(end) => i += end + 1,
                            None => break,
                        }
                    } else if i < b.len() && b[i] == b'.' {
                        i += 1;
                        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                            i += 1;
                        }
                    } else {
                        break;
                    }
                }
                out.push(Tok::Result);
            } else {
                out.push(Tok::Other);
            }
        } else if c.is_ascii_digit()
            || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit) && !after_operand(&out))
        {
            let start = i;
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || b[i] == b'.'
                    || b[i] == b'e'
                    || b[i] == b'E'
                    || ((b[i] == b'-' || b[i] == b'+') && matches!(b[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            match s[start..i].parse::<f64>() {
                Ok(n) => out.push(Tok::Num(n)),
                Err(_) => out.push(Tok::Other),
            }
        } else if let Some(op) = ["<=", ">=", "==", "!=", "<", ">"]
            .into_iter()
            .find(|op| s[i..].starts_with(op))
        {
            out.push(Tok::Op(op.into()));
            i += op.len();
        } else {
            out.push(Tok::Other);
            i += s[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

fn after_operand(tokens: &[Tok]) -> bool {
    matches!(tokens.last(), Some(Tok::Result | Tok::Num(_)))
}

fn flip(op: &str) -> String {
    match op {
        "<" => ">",
        ">" => "<",
        "<=" => ">=",
        ">=" => "<=",
        other => other,
    }
    .into()
}

/// The first number in a measurement's value (`[0.993]`, `0.5`, `[1 2]`), if any.
pub fn first_number(value: &str) -> Option<f64> {
    tokenize(value).into_iter().find_map(|t| match t {
        Tok::Num(n) if n.is_finite() => Some(n),
        _ => None,
    })
}

fn phase_class(phase: AnalysisPhase) -> &'static str {
    match phase {
        AnalysisPhase::Successful => "ok",
        AnalysisPhase::Failed => "bad",
        AnalysisPhase::Error => "err",
        AnalysisPhase::Inconclusive => "warn",
        AnalysisPhase::Pending | AnalysisPhase::Running => "run",
    }
}

const W: f64 = 600.0;
const H: f64 = 180.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (0.001..10_000.0).contains(&a) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}

/// The chart of one metric: measurements as points joined in time order (coloured by
/// their verdict; those without a numeric value drawn on the axis), thresholds as dashed
/// lines. `label` names the chart for screen readers.
pub fn metric_chart(label: &str, measurements: &[Measurement], thresholds: &[Threshold]) -> Markup {
    let points: Vec<(f64, Option<f64>, &Measurement)> = measurements
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let t = m
                .finished_at
                .as_ref()
                .or(m.started_at.as_ref())
                .map(|t| t.0.as_millisecond() as f64 / 1000.0)
                .unwrap_or(i as f64);
            (t, m.value.as_deref().and_then(first_number), m)
        })
        .collect();
    let values = points
        .iter()
        .filter_map(|p| p.1)
        .chain(thresholds.iter().map(|t| t.value));
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.1
    } else {
        lo.abs().max(1.0) * 0.1
    };
    let (lo, hi) = (lo - pad, hi + pad);
    let (t0, t1) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let x = |t: f64| {
        if points.len() < 2 || t1 <= t0 {
            LEFT + (W - LEFT - RIGHT) / 2.0
        } else {
            LEFT + (t - t0) / (t1 - t0) * (W - LEFT - RIGHT)
        }
    };
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let line: String = points
        .iter()
        .filter_map(|(t, v, _)| v.map(|v| format!("{:.1},{:.1}", x(*t), y(v))))
        .collect::<Vec<_>>()
        .join(" ");
    let time_label = |m: &Measurement| {
        m.finished_at
            .as_ref()
            .or(m.started_at.as_ref())
            .map(|t| t.0.strftime("%H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let described = format!(
        "{label}: {} measurement(s){}",
        measurements.len(),
        thresholds
            .iter()
            .map(|t| format!(", {} when result {} {}", t.kind, t.op, fmt_num(t.value)))
            .collect::<String>()
    );
    html! {
        svg.chart viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(described) preserveAspectRatio="xMidYMid meet" {
            title { (described) }
            rect.plot x=(LEFT) y=(TOP) width=(W - LEFT - RIGHT) height=(H - TOP - BOTTOM) {}
            text.axis x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" { (fmt_num(hi)) }
            text.axis x=(LEFT - 6.0) y=(H - BOTTOM) text-anchor="end" { (fmt_num(lo)) }
            @if let (Some(first), Some(last)) = (points.first(), points.last()) {
                text.axis x=(LEFT) y=(H - 8.0) text-anchor="start" { (time_label(first.2)) }
                @if points.len() > 1 {
                    text.axis x=(W - RIGHT) y=(H - 8.0) text-anchor="end" { (time_label(last.2)) }
                }
            }
            @for t in thresholds {
                line class=(format!("threshold {}", t.kind)) x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(t.value))) y2=(format!("{:.1}", y(t.value))) {}
                text class=(format!("threshold-label {}", t.kind)) x=(W - RIGHT - 4.0) y=(format!("{:.1}", y(t.value) - 4.0)) text-anchor="end" {
                    (t.kind) " " (t.op) " " (fmt_num(t.value))
                }
            }
            @if !line.is_empty() {
                polyline.series points=(line) {}
            }
            @for (t, v, m) in &points {
                @let cy = v.map_or(H - BOTTOM, y);
                circle class=(format!("point {}", phase_class(m.phase))) cx=(format!("{:.1}", x(*t))) cy=(format!("{cy:.1}")) r="4" {
                    title {
                        (time_label(m)) " " (format!("{:?}", m.phase))
                        @if let Some(value) = &m.value { " " (value) }
                        @if let Some(msg) = &m.message { ": " (msg) }
                    }
                }
            }
        }
    }
}

/// The chart of a sequential metric: its evidence path, the e-value of each look on a
/// log10 scale (e-values span many orders of magnitude), against the line `1/alpha` at
/// which the test fails.
pub fn evidence_chart(label: &str, measurements: &[Measurement], alpha: f64) -> Markup {
    let logged: Vec<Measurement> = measurements
        .iter()
        .map(|m| Measurement {
            value: m
                .value
                .as_deref()
                .and_then(first_number)
                .filter(|e| *e > 0.0)
                .map(|e| format!("{}", e.log10())),
            ..m.clone()
        })
        .collect();
    let line = Threshold {
        kind: "failure",
        op: ">=".into(),
        value: (1.0 / alpha).log10(),
    };
    metric_chart(&format!("{label} (log10 e-value)"), &logged, &[line])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_evidence_chart_draws_log_e_values_against_one_over_alpha() {
        let m = |value: &str, phase| Measurement {
            phase,
            value: Some(value.into()),
            started_at: None,
            finished_at: None,
            message: Some("e-value".into()),
        };
        let svg = evidence_chart(
            "errors",
            &[
                m("0.5", AnalysisPhase::Inconclusive),
                m("10", AnalysisPhase::Inconclusive),
                m("1.000e4", AnalysisPhase::Failed),
            ],
            0.01,
        )
        .into_string();
        assert!(
            svg.contains("errors (log10 e-value): 3 measurement(s), failure when result &gt;= 2"),
            "{svg}"
        );
        // The line at log10(100) = 2 and the last point at log10(1e4) = 4, the top.
        assert!(svg.contains("failure &gt;= 2"), "{svg}");
        assert!(svg.contains("point bad"), "{svg}");
        // The axis spans log10(0.5) to log10(1e4), padded by a tenth.
        assert!(svg.contains(">4.43<") && svg.contains(">-0.731<"), "{svg}");
    }

    #[test]
    fn reads_thresholds_from_conditions() {
        assert_eq!(
            comparisons("result[0] >= 0.99", "success"),
            vec![Threshold {
                kind: "success",
                op: ">=".into(),
                value: 0.99
            }]
        );
        // Literal on the left is turned around; both bounds of a range are found.
        let both = comparisons("0.5 < result && result <= 2e3", "failure");
        assert_eq!(both.len(), 2);
        assert_eq!((both[0].op.as_str(), both[0].value), (">", 0.5));
        assert_eq!((both[1].op.as_str(), both[1].value), ("<=", 2000.0));
        assert_eq!(comparisons("result[0] > -1.5", "failure")[0].value, -1.5);
        // Nothing numeric to draw.
        assert!(comparisons("isNaN(result[0])", "failure").is_empty());
        assert!(comparisons("result[0] >= other", "success").is_empty());
        // Whatever a template says, reading it never panics (non-ASCII, unclosed `[`).
        assert_eq!(
            comparisons("«résultat» ≥ 1 && result > 2", "success").len(),
            1
        );
        assert!(comparisons("result[0", "success").is_empty());
        assert!(comparisons("", "success").is_empty());
    }

    #[test]
    fn reads_the_first_number_of_a_value() {
        assert_eq!(first_number("[0.993]"), Some(0.993));
        assert_eq!(first_number("[12 13]"), Some(12.0));
        assert_eq!(first_number("-3"), Some(-3.0));
        assert_eq!(first_number("[NaN]"), None);
        assert_eq!(first_number("[]"), None);
    }

    #[test]
    fn chart_draws_points_and_threshold_and_escapes_messages() {
        let m: Vec<Measurement> = serde_json::from_value(serde_json::json!([
            { "phase": "Successful", "value": "[0.995]", "finishedAt": "2026-01-01T00:00:00Z" },
            { "phase": "Failed", "value": "[0.7]", "finishedAt": "2026-01-01T00:01:00Z", "message": "<script>x</script>" },
            { "phase": "Error", "finishedAt": "2026-01-01T00:02:00Z", "message": "no data" },
        ]))
        .unwrap();
        let t = comparisons("result[0] >= 0.99", "success");
        let svg = metric_chart("success-rate", &m, &t).into_string();
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
        assert!(svg.contains("class=\"point bad\""), "{svg}");
        assert!(svg.contains("class=\"threshold success\""), "{svg}");
        assert!(svg.contains("success &gt;= 0.99"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(!svg.contains("<script>"), "{svg}");
        // Two numeric values: one line segment between them.
        assert!(svg.contains("<polyline"), "{svg}");
    }
}
