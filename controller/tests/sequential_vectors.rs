//! The sequential provider's statistics against an independent implementation of the same
//! formulas in Python (SciPy's adaptive quadrature and root finding where the Rust code
//! uses composite Simpson and bisection). The vectors and the versions that produced them
//! are in `tests/data/sequential_vectors.json`, written by
//! `tests/data/gen_sequential_vectors.py`.

use serde::Deserialize;
use sluice_api::analysis::SequentialMetric;
use sluice_controller::core::sequential::{
    self, Alternative, CountSlice, HistogramSlice, Look, RateRatio, rate_ratio::PRIOR_SCALE,
};

#[derive(Deserialize)]
struct Vectors {
    header: Header,
    count_cases: Vec<CountCase>,
    histogram_cases: Vec<HistogramCase>,
}

#[derive(Deserialize)]
struct Header {
    numpy: String,
    scipy: String,
    prior_scale: f64,
    martingale_check: f64,
}

#[derive(Deserialize)]
struct CountCase {
    name: String,
    slices: Vec<[f64; 4]>,
    r0: f64,
    alpha: f64,
    ln_e_greater: f64,
    ln_e_less: f64,
    estimate: Option<f64>,
    /// None for an open side.
    confidence_sequence: [Option<f64>; 2],
}

#[derive(Deserialize)]
struct HistogramCase {
    name: String,
    slices: Vec<HistogramSides>,
    e_value: f64,
}

#[derive(Deserialize)]
struct HistogramSides {
    /// `[le, cumulative count]`, le None for +Inf.
    canary: Vec<(Option<f64>, f64)>,
    baseline: Vec<(Option<f64>, f64)>,
}

fn vectors() -> Vectors {
    let text = include_str!("data/sequential_vectors.json");
    serde_json::from_str(text).expect("sequential_vectors.json parses")
}

fn evidence(slices: &[[f64; 4]]) -> RateRatio {
    let mut r = RateRatio::new();
    for s in slices {
        r.add(&CountSlice {
            canary_events: s[0],
            canary_total: s[1],
            baseline_events: s[2],
            baseline_total: s[3],
        });
    }
    r
}

fn close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    let scale = expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance * scale,
        "{what}: {actual} vs reference {expected}"
    );
}

#[test]
fn the_reference_is_the_one_described() {
    let v = vectors();
    assert_eq!(v.header.prior_scale, PRIOR_SCALE);
    assert_eq!(
        (v.header.numpy.as_str(), v.header.scipy.as_str()),
        ("1.24.2", "1.10.1")
    );
    assert!((v.header.martingale_check - 1.0).abs() < 1e-8);
    assert!(v.count_cases.len() >= 15 && v.histogram_cases.len() >= 4);
}

#[test]
fn count_e_values_match_the_reference() {
    for c in vectors().count_cases {
        let r = evidence(&c.slices);
        close(
            r.ln_e_value(Alternative::Greater(c.r0)),
            c.ln_e_greater,
            1e-7,
            &format!("{}: ln E against r <= {}", c.name, c.r0),
        );
        close(
            r.ln_e_value(Alternative::Less(1.0 / c.r0)),
            c.ln_e_less,
            1e-7,
            &format!("{}: ln E against r >= {}", c.name, 1.0 / c.r0),
        );
    }
}

#[test]
fn estimates_and_confidence_sequences_match_the_reference() {
    for c in vectors().count_cases {
        let r = evidence(&c.slices);
        if let Some(expected) = c.estimate {
            close(
                r.estimate(),
                expected,
                1e-9,
                &format!("{}: estimate", c.name),
            );
        }
        let (lower, upper) = r.confidence_sequence(c.alpha);
        match c.confidence_sequence[0] {
            Some(lo) => close(lower, lo, 1e-7, &format!("{}: lower bound", c.name)),
            None => assert_eq!(lower, 0.0, "{}", c.name),
        }
        match c.confidence_sequence[1] {
            Some(hi) => close(upper, hi, 1e-7, &format!("{}: upper bound", c.name)),
            None => assert!(upper.is_infinite(), "{}", c.name),
        }
    }
}

#[test]
fn histogram_e_values_match_the_reference() {
    let spec: SequentialMetric = serde_json::from_value(serde_json::json!({
        "address": "http://p", "histogram": { "canary": "a", "baseline": "b" },
    }))
    .unwrap();
    let look = Look {
        number: 1,
        last: false,
        early_success: true,
    };
    let side = |b: &[(Option<f64>, f64)]| {
        b.iter()
            .map(|&(le, c)| (le.unwrap_or(f64::INFINITY), c))
            .collect::<Vec<_>>()
    };
    for c in vectors().histogram_cases {
        let slices: Vec<HistogramSlice> = c
            .slices
            .iter()
            .map(|s| HistogramSlice {
                canary: side(&s.canary),
                baseline: side(&s.baseline),
            })
            .collect();
        let report = sequential::test_histogram(&spec, &slices, look);
        close(
            report.e_value.ln(),
            c.e_value.ln(),
            1e-7,
            &format!("{}: ln E", c.name),
        );
    }
}
