//! Classification of one signal: is the canary series High, Low, or not significantly
//! different from the baseline series (Pass), or is there nothing to compare (Nodata)?
//!
//! The steps, in Kayenta's order (`NetflixACAJudge.classifyMetric` and
//! `MannWhitneyClassifier.classify`):
//!
//! 1. NaN samples are dropped (`nanStrategy: Remove`) or replaced by 0 (`Replace`).
//! 2. Infinite samples make the signal an `Error` (Kayenta has no rule for them; a rank
//!    test could order them, but no shift can be measured against infinity, and an
//!    infinite latency quantile is itself a sign of trouble, so it must not pass).
//! 3. With `outlierRemoval`, each side loses the samples outside its fences
//!    (see [`outlier_fences`]).
//! 4. An empty side is `Nodata`.
//! 5. Identical samples, or every sample of both sides equal, `Pass` without a test.
//! 6. Otherwise the Mann-Whitney interval of the shift canary - baseline decides:
//!    `High` when its lower end exceeds `TOLERANCE · |estimate|` and the mean ratio
//!    canary/baseline is at least `allowedIncrease`; `Low` when its upper end is below
//!    `-TOLERANCE · |estimate|` and the mean ratio is at most `allowedDecrease`; `Pass`
//!    otherwise.
//!
//! Then the direction turns the classification into an [`Outcome`]: `Increase` fails on
//! High, `Decrease` on Low, `Either` on both.
//!
//! Where this differs from Kayenta, and why:
//! * Kayenta only looks for High when the direction is Increase or Either (and for Low
//!   when it is Decrease or Either) and calls the other deviation Pass; we always report
//!   what the data shows (a harmless Low stays `Low`, with outcome Pass), so the message
//!   says what happened.
//! * Kayenta adds Gaussian noise when each side is constant (the interval search in R's
//!   algorithm cannot run when all differences tie). Our exact interval needs no noise, so
//!   the result stays deterministic: every difference equals the gap, which is the
//!   estimate and both ends of the interval.
//! * Kayenta's mean ratio is NaN when the canary mean is 0, which makes Low impossible
//!   (a canary whose errors dropped to 0 could never be Low); ours is 0 then. Like
//!   Kayenta, a baseline mean of 0 gives a ratio of 1 (no ratio can be formed).
//! * With `Replace`, Kayenta calls an empty side Pass; we call it Nodata on either
//!   strategy (an empty side is never a silent pass).
//! * Outlier removal is optional here (Kayenta always applies it).

use std::fmt::Write as _;

use serde::Serialize;
use sluice_api::analysis::{JudgeDirection, JudgeSignal, NanStrategy};

use super::mann_whitney::{MannWhitneyResult, mann_whitney};

/// The fraction of |estimate| the interval must clear to count as a change (Kayenta's
/// `tolerance`): a shift too small relative to its own size is noise, not a regression.
pub const TOLERANCE: f64 = 0.25;

/// How many interquartile ranges beyond the quartiles a sample must lie to be an outlier
/// (Kayenta's `IQRDetector(factor = 3.0)`).
pub const OUTLIER_FACTOR: f64 = 3.0;

/// What the comparison of one signal found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Classification {
    /// No significant difference between canary and baseline.
    Pass,
    /// The canary is significantly higher than the baseline.
    High,
    /// The canary is significantly lower than the baseline.
    Low,
    /// A side had no samples (after NaN and outlier removal).
    Nodata,
    /// The samples could not be compared (infinite values, overflow, bad confidence).
    Error,
}

/// How a signal counts in the score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Counts as passing.
    Pass,
    /// Counts as failing (and fails the judgement if the signal is critical).
    Fail,
    /// Left out of the score: no data, and the signal does not require data.
    Excluded,
}

/// What happened to one side's samples before the comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleSummary {
    /// Samples received.
    pub received: usize,
    /// NaN samples among them (dropped or replaced by 0, per the NaN strategy).
    pub nan: usize,
    /// Samples dropped as outliers.
    pub outliers: usize,
    /// Samples compared.
    pub used: usize,
    /// Mean of the compared samples; None when there are none.
    pub mean: Option<f64>,
}

/// The numbers behind a High, Low or Pass from the statistical test.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// The Mann-Whitney test and shift interval (canary - baseline).
    pub test: MannWhitneyResult,
    /// `TOLERANCE · |estimate|`: how far beyond 0 the interval must lie.
    pub margin: f64,
    /// Canary mean / baseline mean (1 when the baseline mean is 0).
    pub mean_ratio: f64,
}

/// The classification of one signal, with everything needed to explain it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalResult {
    /// The signal's name.
    pub name: String,
    /// The signal's group.
    pub group: String,
    /// Which deviation is bad.
    pub direction: JudgeDirection,
    /// Whether a failure of this signal fails the whole judgement.
    pub critical: bool,
    /// Whether missing data fails the signal.
    pub must_have_data: bool,
    /// What the comparison found.
    pub classification: Classification,
    /// How it counts in the score.
    pub outcome: Outcome,
    /// One line saying why, with the numbers.
    pub reason: String,
    /// The canary side's samples.
    pub canary: SampleSummary,
    /// The baseline side's samples.
    pub baseline: SampleSummary,
    /// The test's numbers, when a test ran.
    pub comparison: Option<Comparison>,
}

/// Classifies one signal from its canary and baseline samples, at the given confidence
/// level of the shift interval. Pure and total: every input, including empty, all-NaN and
/// infinite samples, gives a classification.
pub fn classify(
    signal: &JudgeSignal,
    canary: &[f64],
    baseline: &[f64],
    confidence: f64,
) -> SignalResult {
    let (canary_values, canary_summary) =
        prepare(canary, signal.nan_strategy, signal.outlier_removal);
    let (baseline_values, baseline_summary) =
        prepare(baseline, signal.nan_strategy, signal.outlier_removal);
    let mut result = SignalResult {
        name: signal.name.clone(),
        group: signal.group.clone(),
        direction: signal.direction,
        critical: signal.critical,
        must_have_data: signal.must_have_data,
        classification: Classification::Error,
        outcome: Outcome::Fail,
        reason: String::new(),
        canary: canary_summary,
        baseline: baseline_summary,
        comparison: None,
    };

    // Infinite samples survive `prepare` (they are not NaN, and the fences of a sample
    // with an infinity are not finite, so outlier removal keeps everything).
    for (side, values) in [("canary", canary), ("baseline", baseline)] {
        if let Some(v) = values.iter().find(|v| v.is_infinite()) {
            result.reason = format!("the {side} samples include {v}: no shift can be measured");
            return result;
        }
    }

    if canary_values.is_empty() || baseline_values.is_empty() {
        result.classification = Classification::Nodata;
        let missing = match (canary_values.is_empty(), baseline_values.is_empty()) {
            (true, true) => "no canary and no baseline samples",
            (true, false) => "no canary samples",
            _ => "no baseline samples",
        };
        result.reason = missing.to_string();
        for (side, s) in [("canary", &result.canary), ("baseline", &result.baseline)] {
            if s.received > 0 && s.used == 0 {
                let _ = write!(
                    result.reason,
                    "; {side}: {} received, {} NaN, {} outliers",
                    s.received, s.nan, s.outliers
                );
            }
        }
        // Kayenta: a critical signal without data fails like one that must have data.
        result.outcome = if signal.must_have_data || signal.critical {
            result.reason.push_str(if signal.critical {
                " (critical signal)"
            } else {
                " (mustHaveData)"
            });
            Outcome::Fail
        } else {
            result.reason.push_str(" (left out of the score)");
            Outcome::Excluded
        };
        return result;
    }

    if same_values(&canary_values, &baseline_values) {
        result.classification = Classification::Pass;
        result.outcome = Outcome::Pass;
        result.reason = "canary and baseline samples are identical".into();
        return result;
    }
    let first = canary_values[0];
    if canary_values
        .iter()
        .chain(&baseline_values)
        .all(|&v| v == first)
    {
        result.classification = Classification::Pass;
        result.outcome = Outcome::Pass;
        result.reason = format!("every sample equals {}", num(first));
        return result;
    }

    let test = match mann_whitney(&canary_values, &baseline_values, confidence) {
        Ok(test) => test,
        Err(e) => {
            result.reason = format!("cannot compare: {e}");
            return result;
        }
    };
    let canary_mean = result.canary.mean.unwrap_or(0.0);
    let baseline_mean = result.baseline.mean.unwrap_or(0.0);
    let mean_ratio = if baseline_mean == 0.0 {
        1.0
    } else {
        canary_mean / baseline_mean
    };
    let margin = TOLERANCE * test.estimate.abs();

    let above = test.lower > margin;
    let below = test.upper < -margin;
    let high = above && mean_ratio >= signal.allowed_increase;
    let low = below && mean_ratio <= signal.allowed_decrease;
    result.classification = if high {
        Classification::High
    } else if low {
        Classification::Low
    } else {
        Classification::Pass
    };
    let fails = matches!(
        (result.classification, signal.direction),
        (
            Classification::High,
            JudgeDirection::Increase | JudgeDirection::Either
        ) | (
            Classification::Low,
            JudgeDirection::Decrease | JudgeDirection::Either
        )
    );
    result.outcome = if fails { Outcome::Fail } else { Outcome::Pass };

    let mut reason = format!(
        "shift {} in [{}, {}] at {}% (p={}), mean ratio {}",
        num(test.estimate),
        num(test.lower),
        num(test.upper),
        num(test.confidence * 100.0),
        num(test.p_value),
        num(mean_ratio),
    );
    match result.classification {
        Classification::High => {
            reason.push_str(": canary higher");
            if !fails {
                let _ = write!(reason, ", allowed by direction {:?}", signal.direction);
            }
        }
        Classification::Low => {
            reason.push_str(": canary lower");
            if !fails {
                let _ = write!(reason, ", allowed by direction {:?}", signal.direction);
            }
        }
        _ if above => {
            let _ = write!(
                reason,
                ": higher, but the mean ratio is below allowedIncrease {}",
                num(signal.allowed_increase)
            );
        }
        _ if below => {
            let _ = write!(
                reason,
                ": lower, but the mean ratio is above allowedDecrease {}",
                num(signal.allowed_decrease)
            );
        }
        _ => {
            let _ = write!(reason, ": no shift beyond ±{}", num(margin));
        }
    }
    result.reason = reason;
    result.comparison = Some(Comparison {
        test,
        margin,
        mean_ratio,
    });
    result
}

/// Applies the NaN strategy and (optionally) outlier removal to one side's samples.
fn prepare(samples: &[f64], nan: NanStrategy, outlier_removal: bool) -> (Vec<f64>, SampleSummary) {
    let nan_count = samples.iter().filter(|v| v.is_nan()).count();
    let values: Vec<f64> = match nan {
        NanStrategy::Remove => samples.iter().copied().filter(|v| !v.is_nan()).collect(),
        NanStrategy::Replace => samples
            .iter()
            .map(|&v| if v.is_nan() { 0.0 } else { v })
            .collect(),
    };
    let before_outliers = values.len();
    let values = if outlier_removal {
        remove_outliers(&values)
    } else {
        values
    };
    let summary = SampleSummary {
        received: samples.len(),
        nan: nan_count,
        outliers: before_outliers - values.len(),
        used: values.len(),
        mean: mean(&values),
    };
    (values, summary)
}

/// The arithmetic mean; None for no values. Falls back to summing v/n when the plain sum
/// overflows, so finite samples always have a finite mean.
fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let plain = values.iter().sum::<f64>() / n;
    Some(
        if plain.is_finite() || values.iter().any(|v| !v.is_finite()) {
            plain
        } else {
            values.iter().map(|v| v / n).sum()
        },
    )
}

/// Whether both sides hold the same multiset of values (Kayenta compares sorted arrays).
fn same_values(a: &[f64], b: &[f64]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let order = |x: &f64, y: &f64| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal);
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(order);
    b.sort_by(order);
    a == b
}

/// The fences outside which a sample is an outlier: Kayenta's
/// `IQRDetector(factor = 3.0, reduceSensitivity = true)`, exactly:
///
/// * Q1, Q3, P1 and P99 are percentiles by Apache Commons Math's legacy estimator
///   (`StatUtils.percentile`, Hyndman-Fan type 6, numpy's `method="weibull"`): position
///   `p(n+1)/100` in the sorted sample, 1-based, interpolated linearly, clamped to the
///   smallest and largest sample;
/// * lower fence `min(P1, Q1 - 3·(Q3 - Q1))`, upper fence `max(P99, Q3 + 3·(Q3 - Q1))`;
/// * a sample strictly outside the fences is an outlier.
///
/// Widening the fences to the 1st and 99th percentiles means at most about 1% is dropped
/// on each side, and nothing at all from samples of 99 values or fewer (P1 and P99 are
/// then the extremes). That guards against the classic failure of bare IQR fences on
/// mostly-constant series (error counts that are mostly 0 have an IQR of 0, and bare
/// fences would drop every error, hiding the regression being looked for).
///
/// None for an empty sample or one with a non-finite value.
pub fn outlier_fences(samples: &[f64]) -> Option<(f64, f64)> {
    if samples.is_empty() || samples.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let p01 = legacy_percentile(&sorted, 1.0)?;
    let q1 = legacy_percentile(&sorted, 25.0)?;
    let q3 = legacy_percentile(&sorted, 75.0)?;
    let p99 = legacy_percentile(&sorted, 99.0)?;
    let iqr = q3 - q1;
    let lower = p01.min(q1 - OUTLIER_FACTOR * iqr);
    let upper = p99.max(q3 + OUTLIER_FACTOR * iqr);
    Some((lower, upper))
}

/// The samples inside [`outlier_fences`], in their original order. Samples whose fences
/// cannot be computed (empty, non-finite) are returned unchanged.
pub fn remove_outliers(samples: &[f64]) -> Vec<f64> {
    match outlier_fences(samples) {
        Some((lower, upper)) => samples
            .iter()
            .copied()
            .filter(|&v| v >= lower && v <= upper)
            .collect(),
        None => samples.to_vec(),
    }
}

/// Apache Commons Math's `Percentile` with its default (legacy) estimation, on a sorted,
/// non-empty sample.
fn legacy_percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    let pos = p * (n as f64 + 1.0) / 100.0;
    if pos < 1.0 {
        return sorted.first().copied();
    }
    if pos >= n as f64 {
        return sorted.last().copied();
    }
    // 1 <= pos < n, so both neighbours exist.
    let whole = pos.floor();
    let lower = *sorted.get(whole as usize - 1)?;
    let upper = *sorted.get(whole as usize)?;
    Some(lower + (pos - whole) * (upper - lower))
}

/// A number for a message: four significant digits, plain notation for everyday
/// magnitudes, scientific otherwise.
pub(crate) fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor();
    if (-3.0..6.0).contains(&magnitude) {
        let decimals = (3.0 - magnitude).max(0.0) as usize;
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Classification::*;
    use JudgeDirection::{Decrease, Either, Increase};

    fn signal(direction: JudgeDirection) -> JudgeSignal {
        JudgeSignal {
            name: "latency".into(),
            canary_query: String::new(),
            baseline_query: String::new(),
            direction,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            nan_strategy: NanStrategy::Remove,
            outlier_removal: false,
            critical: false,
            must_have_data: false,
            group: "default".into(),
        }
    }

    /// 100, 101, ..., 119.
    fn baseline() -> Vec<f64> {
        (100..120).map(f64::from).collect()
    }

    fn shifted(by: f64) -> Vec<f64> {
        baseline().iter().map(|v| v + by).collect()
    }

    fn run(s: &JudgeSignal, canary: &[f64], base: &[f64]) -> (Classification, Outcome) {
        let r = classify(s, canary, base, 0.98);
        (r.classification, r.outcome)
    }

    #[test]
    fn direction_table() {
        // +50 and -50 on a spread of 20: clearly High and clearly Low; +0.3: noise.
        let table = [
            (Increase, 50.0, High, Outcome::Fail),
            (Increase, -50.0, Low, Outcome::Pass),
            (Increase, 0.3, Pass, Outcome::Pass),
            (Decrease, 50.0, High, Outcome::Pass),
            (Decrease, -50.0, Low, Outcome::Fail),
            (Decrease, 0.3, Pass, Outcome::Pass),
            (Either, 50.0, High, Outcome::Fail),
            (Either, -50.0, Low, Outcome::Fail),
            (Either, 0.3, Pass, Outcome::Pass),
        ];
        for (direction, by, class, outcome) in table {
            assert_eq!(
                run(&signal(direction), &shifted(by), &baseline()),
                (class, outcome),
                "{direction:?} {by}"
            );
        }
    }

    #[test]
    fn the_interval_must_clear_a_quarter_of_the_estimate() {
        // R: wilcox.test(1:30 + s, 1:30, conf.level = 0.98) gives [s - 6, s + 6] and
        // estimate s. High needs s - 6 > s / 4, i.e. s > 8: 7.5 is significant (the
        // interval excludes 0) but within tolerance; 8.5 is High.
        let base: Vec<f64> = (1..=30).map(f64::from).collect();
        let plus = |s: f64| base.iter().map(|v| v + s).collect::<Vec<_>>();
        let minus = |s: f64| base.iter().map(|v| v - s).collect::<Vec<_>>();
        let s = signal(Either);
        let r = classify(&s, &plus(7.5), &base, 0.98);
        assert_eq!(r.classification, Pass);
        let c = r.comparison.unwrap();
        assert_eq!(
            (c.test.lower, c.test.estimate, c.test.upper),
            (1.5, 7.5, 13.5)
        );
        assert_eq!(run(&s, &plus(8.5), &base), (High, Outcome::Fail));
        assert_eq!(run(&s, &minus(7.5), &base), (Pass, Outcome::Pass));
        assert_eq!(run(&s, &minus(8.5), &base), (Low, Outcome::Fail));
    }

    #[test]
    fn mean_ratio_thresholds() {
        // +50 on 100..119: mean ratio 159.5 / 109.5 = 1.4566.
        let mut s = signal(Increase);
        s.allowed_increase = 1.4;
        assert_eq!(run(&s, &shifted(50.0), &baseline()).0, High);
        s.allowed_increase = 1.5;
        let r = classify(&s, &shifted(50.0), &baseline(), 0.98);
        assert_eq!((r.classification, r.outcome), (Pass, Outcome::Pass));
        assert!(r.reason.contains("allowedIncrease"), "{}", r.reason);
        let ratio = r.comparison.unwrap().mean_ratio;
        assert!((ratio - 159.5 / 109.5).abs() < 1e-12);

        // -50: ratio 59.5 / 109.5 = 0.5434.
        let mut s = signal(Decrease);
        s.allowed_decrease = 0.6;
        assert_eq!(run(&s, &shifted(-50.0), &baseline()).0, Low);
        s.allowed_decrease = 0.5;
        assert_eq!(run(&s, &shifted(-50.0), &baseline()).0, Pass);
    }

    #[test]
    fn zero_means() {
        // Canary errors dropped to 0: ratio 0, so Low is possible (Kayenta's NaN is not).
        let s = signal(Decrease);
        let r = classify(&s, &[0.0; 20], &baseline(), 0.98);
        assert_eq!((r.classification, r.outcome), (Low, Outcome::Fail));
        assert_eq!(r.comparison.unwrap().mean_ratio, 0.0);
        // Baseline mean 0: ratio taken as 1, which meets the default allowedIncrease.
        let s = signal(Increase);
        let r = classify(&s, &shifted(0.0), &[0.0; 20], 0.98);
        assert_eq!((r.classification, r.outcome), (High, Outcome::Fail));
        assert_eq!(r.comparison.unwrap().mean_ratio, 1.0);
    }

    #[test]
    fn nan_strategies() {
        let nan = f64::NAN;
        // Remove: NaNs vanish, the rest is compared.
        let mut canary = shifted(50.0);
        canary.extend([nan, nan]);
        let r = classify(&signal(Increase), &canary, &baseline(), 0.98);
        assert_eq!(r.classification, High);
        assert_eq!(
            (r.canary.received, r.canary.nan, r.canary.used),
            (22, 2, 20)
        );

        // Remove, all NaN: no data.
        let r = classify(&signal(Increase), &[nan; 5], &baseline(), 0.98);
        assert_eq!((r.classification, r.outcome), (Nodata, Outcome::Excluded));
        assert!(r.reason.contains("no canary samples"), "{}", r.reason);

        // Replace: NaN counts as 0, so an all-NaN canary is far below the baseline.
        let mut s = signal(Either);
        s.nan_strategy = NanStrategy::Replace;
        let r = classify(&s, &[nan; 20], &baseline(), 0.98);
        assert_eq!((r.classification, r.outcome), (Low, Outcome::Fail));
        assert_eq!(
            (r.canary.nan, r.canary.used, r.canary.outliers),
            (20, 20, 0)
        );
        assert_eq!(r.canary.mean, Some(0.0));
    }

    #[test]
    fn nodata_table() {
        let empty: [f64; 0] = [];
        // (must_have_data, critical) -> outcome
        let table = [
            (false, false, Outcome::Excluded),
            (true, false, Outcome::Fail),
            (false, true, Outcome::Fail),
            (true, true, Outcome::Fail),
        ];
        for (must, critical, outcome) in table {
            let mut s = signal(Increase);
            s.must_have_data = must;
            s.critical = critical;
            for (c, b) in [
                (&empty[..], &baseline()[..]),
                (&baseline()[..], &empty[..]),
                (&empty[..], &empty[..]),
            ] {
                let r = classify(&s, c, b, 0.98);
                assert_eq!((r.classification, r.outcome), (Nodata, outcome));
                assert!(r.comparison.is_none());
            }
        }
    }

    #[test]
    fn degenerate_samples_pass_without_a_test() {
        let s = signal(Either);
        let mut reversed = baseline();
        reversed.reverse();
        let r = classify(&s, &reversed, &baseline(), 0.98);
        assert_eq!((r.classification, r.outcome), (Pass, Outcome::Pass));
        assert!(r.reason.contains("identical"));
        let r = classify(&s, &[3.0; 4], &[3.0; 9], 0.98);
        assert_eq!((r.classification, r.outcome), (Pass, Outcome::Pass));
        // Each side constant but different: an exact, noise-free High.
        let r = classify(&s, &[5.0; 6], &[3.0; 6], 0.98);
        assert_eq!((r.classification, r.outcome), (High, Outcome::Fail));
    }

    #[test]
    fn infinities_and_bad_confidence_are_errors() {
        let s = signal(Increase);
        let mut canary = shifted(0.0);
        canary.push(f64::INFINITY);
        let r = classify(&s, &canary, &baseline(), 0.98);
        assert_eq!((r.classification, r.outcome), (Error, Outcome::Fail));
        assert!(r.reason.contains("inf"), "{}", r.reason);
        let r = classify(&s, &baseline(), &[f64::NEG_INFINITY], 0.98);
        assert_eq!((r.classification, r.outcome), (Error, Outcome::Fail));
        let r = classify(&s, &shifted(1.0), &baseline(), 1.5);
        assert_eq!((r.classification, r.outcome), (Error, Outcome::Fail));
        let r = classify(&s, &[f64::MAX, 0.0], &[-f64::MAX, 1.0], 0.98);
        assert_eq!((r.classification, r.outcome), (Error, Outcome::Fail));
    }

    #[test]
    fn outlier_fences_by_hand() {
        // 1..=199 and one 10000 (n = 200). Positions p(n+1)/100: Q1 at 50.25 -> 50.25,
        // Q3 at 150.75 -> 150.75, IQR 100.5; P1 at 2.01 -> 2.01, P99 at 198.99 -> 198.99.
        // Fences: min(2.01, 50.25 - 301.5) = -251.25, max(198.99, 150.75 + 301.5) = 452.25.
        let mut v: Vec<f64> = (1..=199).map(f64::from).collect();
        v.push(10_000.0);
        let (lo, hi) = outlier_fences(&v).unwrap();
        assert!(
            (lo + 251.25).abs() < 1e-9 && (hi - 452.25).abs() < 1e-9,
            "{lo} {hi}"
        );
        let kept = remove_outliers(&v);
        assert_eq!(kept.len(), 199);
        assert_eq!(kept.last(), Some(&199.0));

        // 99 samples or fewer: P1 and P99 are the extremes, nothing is dropped.
        let mut small: Vec<f64> = (1..=98).map(f64::from).collect();
        small.push(1e9);
        assert_eq!(remove_outliers(&small), small);
        // Mostly zero with a few errors: bare 3·IQR fences would be [0, 0] and drop every
        // error. Widened to P99 (159.39th of 160: 9.39), only the largest goes.
        let mut errors = vec![0.0; 150];
        errors.extend((1..=10).map(f64::from));
        let kept = remove_outliers(&errors);
        assert_eq!(kept.len(), 159);
        assert_eq!(kept.last(), Some(&9.0));

        assert_eq!(outlier_fences(&[]), None);
        assert_eq!(outlier_fences(&[1.0, f64::INFINITY]), None);
        assert_eq!(outlier_fences(&[5.0]), Some((5.0, 5.0)));
    }

    #[test]
    fn outlier_removal_in_classification() {
        let mut s = signal(Increase);
        s.outlier_removal = true;
        let mut canary: Vec<f64> = (1..=199).map(f64::from).collect();
        canary.push(10_000.0);
        let base: Vec<f64> = (1..=199).map(f64::from).collect();
        let r = classify(&s, &canary, &base, 0.98);
        assert_eq!(
            (r.canary.outliers, r.canary.used, r.baseline.outliers),
            (1, 199, 0)
        );
        // Without the spike the two sides are identical.
        assert_eq!(r.classification, Pass);
        assert!(r.reason.contains("identical"));
    }

    #[test]
    fn numbers_in_messages() {
        assert_eq!(num(0.0), "0");
        assert_eq!(num(12.345678), "12.35");
        assert_eq!(num(1234.56), "1235");
        assert_eq!(num(-0.012346), "-0.01235");
        assert_eq!(num(98.0), "98");
        assert_eq!(num(1.5e-7), "1.500e-7");
        assert_eq!(num(2.5e9), "2.500e9");
    }
}
