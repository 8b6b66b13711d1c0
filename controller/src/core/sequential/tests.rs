use super::*;

fn spec(direction: JudgeDirection, allowed_increase: f64) -> SequentialMetric {
    serde_json::from_value::<SequentialMetric>(serde_json::json!({
        "address": "http://p",
        "counts": {
            "canary": { "events": "e", "total": "t" },
            "baseline": { "events": "e", "total": "t" },
        },
    }))
    .map(|mut s| {
        s.direction = direction;
        s.allowed_increase = allowed_increase;
        s
    })
    .unwrap()
}

fn counts(x: f64, n: f64, y: f64, b: f64) -> CountSlice {
    CountSlice {
        canary_events: x,
        canary_total: n,
        baseline_events: y,
        baseline_total: b,
    }
}

const INTERIM: Look = Look {
    number: 2,
    last: false,
    early_success: true,
};
const LAST: Look = Look {
    number: 5,
    last: true,
    early_success: true,
};

#[test]
fn defaults_are_the_documented_ones() {
    let s = spec(JudgeDirection::Increase, 1.0);
    assert_eq!(
        (
            s.alpha,
            s.allowed_increase,
            s.allowed_decrease,
            s.min_canary_count
        ),
        (0.01, 1.0, 1.0, 100.0)
    );
    assert!(s.histogram.is_none() && s.counts.is_some());
}

#[test]
fn a_doubled_error_rate_fails_and_its_ratio_is_reported() {
    let s = spec(JudgeDirection::Increase, 1.0);
    let slices = [counts(60.0, 3000.0, 30.0, 3000.0); 3];
    let r = test_counts(&s, &slices, INTERIM);
    assert_eq!(r.verdict, Verdict::Failed);
    assert!(r.e_value >= 100.0, "{}", r.e_value);
    assert_eq!(r.path.len(), 3);
    assert!(r.path.windows(2).all(|w| w[1] > w[0]), "{:?}", r.path);
    assert!((r.p_value - 1.0 / r.e_value).abs() < 1e-12);
    assert!((r.effect.estimate - 2.0).abs() < 1e-12);
    assert!(r.effect.lower > 1.0 && r.effect.upper > 2.0);
    assert_eq!(r.events, Some((180.0, 90.0)));
    let summary = r.summary();
    assert!(summary.contains("event-rate ratio 2 ["), "{summary}");
    assert!(
        summary.contains("canary 180/9000, baseline 90/9000 over 3 slices"),
        "{summary}"
    );
}

#[test]
fn the_failure_stands_once_crossed_even_if_the_evidence_falls_back() {
    // A burst of canary errors, then many slices of equal rates: the e-value falls under
    // 1/alpha again, but it crossed, and Ville's bound counts the crossing.
    let s = spec(JudgeDirection::Increase, 1.0);
    let mut slices = vec![counts(80.0, 3000.0, 20.0, 3000.0)];
    slices.extend([counts(30.0, 3000.0, 30.0, 3000.0); 40]);
    let r = test_counts(&s, &slices, INTERIM);
    assert!(r.path[0] >= 100.0 && r.e_value < 100.0, "{:?}", r.path);
    assert_eq!(r.verdict, Verdict::Failed);
    assert!((r.p_value - 1.0 / r.path[0]).abs() < 1e-9);
}

#[test]
fn identical_versions_wait_then_pass_at_the_last_look() {
    let s = spec(JudgeDirection::Increase, 1.0);
    let slices = [counts(30.0, 3000.0, 31.0, 3000.0); 5];
    let interim = test_counts(&s, &slices, INTERIM);
    assert_eq!(interim.verdict, Verdict::Undecided);
    assert!(interim.e_value < 1.0);
    // With no tolerance the confidence sequence cannot exclude every increase: only the
    // last look passes.
    assert!(interim.effect.upper > 1.0);
    assert_eq!(test_counts(&s, &slices, LAST).verdict, Verdict::Successful);
}

#[test]
fn a_tolerance_lets_an_identical_canary_pass_early() {
    let s = spec(JudgeDirection::Increase, 1.5);
    let few = [counts(30.0, 3000.0, 30.0, 3000.0); 2];
    assert_eq!(test_counts(&s, &few, INTERIM).verdict, Verdict::Undecided);
    let many = [counts(30.0, 3000.0, 30.0, 3000.0); 20];
    let r = test_counts(&s, &many, INTERIM);
    assert_eq!(r.verdict, Verdict::Successful, "{}", r.summary());
    assert!(r.effect.upper < 1.5);
    // Not when the metric has no count (a background analysis keeps watching).
    let watching = Look {
        early_success: false,
        ..INTERIM
    };
    assert_eq!(test_counts(&s, &many, watching).verdict, Verdict::Undecided);
}

#[test]
fn too_little_traffic_is_not_a_pass() {
    let s = spec(JudgeDirection::Increase, 1.0);
    let slices = [counts(0.0, 10.0, 0.0, 10.0); 5];
    let r = test_counts(&s, &slices, LAST);
    assert_eq!(r.verdict, Verdict::TooLittleTraffic);
    assert_eq!(r.e_value, 1.0);
    assert_eq!(
        test_counts(&s, &[], LAST).verdict,
        Verdict::TooLittleTraffic
    );
}

#[test]
fn direction_decides_which_change_is_evidence() {
    let fewer = [counts(10.0, 3000.0, 60.0, 3000.0); 3];
    let increase = spec(JudgeDirection::Increase, 1.0);
    let decrease = spec(JudgeDirection::Decrease, 1.0);
    let either = spec(JudgeDirection::Either, 1.0);
    // Far fewer canary errors: no evidence for Increase, whose confidence sequence even
    // excludes any increase (an early pass).
    let r = test_counts(&increase, &fewer, INTERIM);
    assert!(r.e_value < 0.1, "{}", r.e_value);
    assert_eq!(r.verdict, Verdict::Successful);
    assert_eq!(
        test_counts(&decrease, &fewer, INTERIM).verdict,
        Verdict::Failed
    );
    let r = test_counts(&either, &fewer, INTERIM);
    assert_eq!(r.verdict, Verdict::Failed);
    // The mean of the two sides: half of the decrease side's e-value, plus a little.
    let d = test_counts(&decrease, &fewer, INTERIM).e_value;
    let i = test_counts(&increase, &fewer, INTERIM).e_value;
    assert!(d > 1e6);
    assert!((r.e_value / (0.5 * (d + i)) - 1.0).abs() < 1e-12);
}

fn lognormal_buckets(bounds: &[f64], median: f64, n: f64) -> Vec<(f64, f64)> {
    // Cumulative counts of a log-normal (sigma 0.5) at each boundary, and +Inf.
    let cdf = |x: f64| 0.5 * libm::erfc(-((x / median).ln() / 0.5) / std::f64::consts::SQRT_2);
    let mut b: Vec<(f64, f64)> = bounds
        .iter()
        .map(|&le| (le, (n * cdf(le)).round()))
        .collect();
    b.push((f64::INFINITY, n));
    b
}

const BOUNDS: [f64; 8] = [0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0];

#[test]
fn a_slower_histogram_fails_and_an_equal_one_does_not() {
    let s = spec(JudgeDirection::Increase, 1.0);
    let slice = |canary_median: f64| HistogramSlice {
        canary: lognormal_buckets(&BOUNDS, canary_median, 3000.0),
        baseline: lognormal_buckets(&BOUNDS, 0.1, 3000.0),
    };
    let slower = test_histogram(&s, &[slice(0.15)], INTERIM);
    assert_eq!(slower.verdict, Verdict::Failed, "{}", slower.summary());
    // Overwhelming evidence stays a number (capped), never infinity.
    let far = test_histogram(&s, &[slice(1.0)], INTERIM);
    assert!(
        far.e_value <= MAX_E_VALUE && far.e_value > 1e250,
        "{}",
        far.e_value
    );
    assert!(far.p_value > 0.0 && far.value().parse::<f64>().unwrap().is_finite());
    assert!(slower.effect.estimate > 1.0);
    assert!(slower.effect.what.starts_with("share above le="));
    let (q, c, b) = slower.quantiles[0];
    assert_eq!(q, 0.5);
    assert!((b - 0.1).abs() < 0.01 && (c - 0.15).abs() < 0.02, "{c} {b}");
    let equal = test_histogram(&s, &[slice(0.1), slice(0.1)], INTERIM);
    assert_eq!(equal.verdict, Verdict::Undecided);
    assert!(equal.e_value < 1.0);
    assert_eq!(
        test_histogram(&s, &[slice(0.1), slice(0.1)], LAST).verdict,
        Verdict::Successful
    );
    let summary = slower.summary();
    assert!(
        summary.contains("canary 3000 observations, baseline 3000"),
        "{summary}"
    );
    assert!(summary.contains(", p50 "), "{summary}");
}

#[test]
fn histogram_buckets_in_any_order_and_a_missing_side_are_handled() {
    let s = spec(JudgeDirection::Increase, 1.0);
    let mut shuffled = lognormal_buckets(&BOUNDS, 0.2, 3000.0);
    shuffled.reverse();
    let slice = HistogramSlice {
        canary: shuffled,
        baseline: lognormal_buckets(&BOUNDS, 0.1, 3000.0),
    };
    assert_eq!(
        test_histogram(&s, &[slice], INTERIM).verdict,
        Verdict::Failed
    );
    let no_baseline = HistogramSlice {
        canary: lognormal_buckets(&BOUNDS, 0.2, 3000.0),
        baseline: Vec::new(),
    };
    let r = test_histogram(&s, &[no_baseline], LAST);
    assert_eq!(r.e_value, 1.0, "no baseline, no evidence");
    assert_eq!(r.baseline_total, 0.0);
}

#[test]
fn quantiles_interpolate_like_histogram_quantile() {
    let b = [(0.1, 50.0), (0.2, 90.0), (f64::INFINITY, 100.0)];
    assert!((quantile(&b, 100.0, 0.5) - 0.1).abs() < 1e-12);
    assert!((quantile(&b, 100.0, 0.25) - 0.05).abs() < 1e-12);
    assert!((quantile(&b, 100.0, 0.7) - 0.15).abs() < 1e-12);
    // In the +Inf bucket: the highest finite boundary, as Prometheus.
    assert_eq!(quantile(&b, 100.0, 0.99), 0.2);
    assert!(quantile(&b, 0.0, 0.5).is_nan());
}

#[test]
fn values_are_short() {
    assert_eq!(significant(123.456), "123.5");
    assert_eq!(significant(0.5), "0.5");
    assert_eq!(significant(1.0), "1");
    assert_eq!(significant(2.5e7), "2.500e7");
    assert_eq!(significant(f64::INFINITY), "inf");
    assert_eq!(significant(f64::NAN), "n/a");
}
