//! The sequential provider's statistics and verdicts, as pure functions: anytime-valid
//! tests of canary against baseline on raw counts, after Lindon, Sanden and Shirikian,
//! *Rapid Regression Detection in Software Deployments through Sequential Testing*
//! (KDD 2022) and Lindon and Malek, *Anytime-Valid Inference for Multinomial Count Data*
//! (NeurIPS 2022).
//!
//! The runtime reads, at every look, the counts per slice of one `interval` since the
//! run's origin (its start plus `initialDelay`) and calls [`test_counts`] or
//! [`test_histogram`]; nothing here does I/O or reads a clock.
//!
//! - Counts (errors of requests): the e-value of the ratio of the two Poisson rates
//!   ([`rate_ratio`]), conditioned on each slice's total so that neither the traffic split
//!   nor the baseline's own rate has to stay put.
//! - Histograms: for each finite bucket boundary `le`, the observations above it are
//!   events among all observations, tested the same way; the e-value is the average over
//!   the boundaries (an average of e-values is one), so a regression anywhere in the
//!   distribution is found without choosing a quantile. Under equal distributions the
//!   conditional law is hypergeometric, which only makes each test conservative.
//!
//! The verdict ([`Verdict`]): Failed as soon as the e-value has reached `1/alpha` after
//! any slice (Ville's inequality bounds that by `alpha` for a canary within the
//! tolerance, however often one looks); Successful when the confidence sequence excludes
//! a regression beyond the tolerance (only for metrics with a `count`: a background
//! analysis keeps watching), or at the last look without evidence and with at least
//! `minCanaryCount` canary requests; Undecided otherwise.

pub mod rate_ratio;

use std::fmt::Write as _;

use sluice_api::analysis::{JudgeDirection, SequentialMetric};

pub use rate_ratio::{Alternative, CountSlice, RateRatio};

/// The verdict of one look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The evidence reached `1/alpha`: a regression beyond the tolerance.
    Failed,
    /// No regression beyond the tolerance: the confidence sequence excludes one, or the
    /// last look found no evidence.
    Successful,
    /// The last look without evidence but with too little canary traffic to call it a pass.
    TooLittleTraffic,
    /// Keep looking.
    Undecided,
}

/// Which look this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Look {
    /// 1 for the first look.
    pub number: i32,
    /// True for the metric's last look (`count` reached).
    pub last: bool,
    /// True when the metric may end early on a pass (it has a `count`).
    pub early_success: bool,
}

/// The effect whose confidence sequence is reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    /// What the ratio is of, e.g. `error-rate ratio`, `share above le=0.25`.
    pub what: String,
    pub estimate: f64,
    /// Confidence sequence bounds (0 and infinity for open sides).
    pub lower: f64,
    pub upper: f64,
    /// The level of that confidence sequence (alpha, or alpha / boundaries).
    pub alpha: f64,
}

/// What one look found.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The e-value after the last slice.
    pub e_value: f64,
    /// The e-value after each slice, oldest first.
    pub path: Vec<f64>,
    /// The sequential p-value, `min(1, 1 / max(path))`.
    pub p_value: f64,
    /// The level the e-value is compared with, as `1/alpha`.
    pub threshold: f64,
    /// The reported effect: the ratio with the strongest evidence.
    pub effect: Effect,
    /// Canary and baseline totals (requests, or observations).
    pub canary_total: f64,
    pub baseline_total: f64,
    /// Canary and baseline events (counts only).
    pub events: Option<(f64, f64)>,
    /// Quantiles `(q, canary, baseline)` of a histogram (bucket interpolation).
    pub quantiles: Vec<(f64, f64, f64)>,
    pub verdict: Verdict,
}

impl Report {
    /// The measurement's value: the e-value, four significant digits.
    pub fn value(&self) -> String {
        significant(self.e_value)
    }

    /// One line for the measurement's message.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "e-value {} (p {}, fails at {})",
            significant(self.e_value),
            significant(self.p_value),
            significant(self.threshold)
        );
        let e = &self.effect;
        let _ = write!(
            s,
            "; {} {} [{}, {}]",
            e.what,
            significant(e.estimate),
            significant(e.lower),
            significant(e.upper)
        );
        match self.events {
            Some((x, y)) => {
                let _ = write!(
                    s,
                    "; canary {}/{}, baseline {}/{}",
                    significant(x),
                    significant(self.canary_total),
                    significant(y),
                    significant(self.baseline_total)
                );
            }
            None => {
                let _ = write!(
                    s,
                    "; canary {} observations, baseline {}",
                    significant(self.canary_total),
                    significant(self.baseline_total)
                );
                for (q, c, b) in &self.quantiles {
                    let _ = write!(
                        s,
                        ", p{} {} vs {}",
                        q * 100.0,
                        significant(*c),
                        significant(*b)
                    );
                }
            }
        }
        let _ = write!(s, " over {} slices", self.path.len());
        s
    }
}

/// Four significant digits, plainly for ordinary magnitudes.
fn significant(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            // No data for it (a ratio of no events, a quantile of no observations).
            "n/a".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-4..1e6).contains(&a) {
        return format!("{v:.3e}");
    }
    let digits = (3 - a.log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The e-value of one [`RateRatio`] for the metric's direction and tolerance.
pub fn e_value(spec: &SequentialMetric, r: &RateRatio) -> f64 {
    let greater = || capped(r.ln_e_value(Alternative::Greater(spec.allowed_increase)));
    let less = || capped(r.ln_e_value(Alternative::Less(spec.allowed_decrease)));
    match spec.direction {
        JudgeDirection::Increase => greater(),
        JudgeDirection::Decrease => less(),
        // Each side is an e-value under the null between the tolerances; so is their mean.
        JudgeDirection::Either => 0.5 * (greater() + less()),
    }
}

/// The largest e-value reported: far beyond any `1/alpha`, and finite, so that means
/// over histogram boundaries and the measurement's value stay numbers.
pub const MAX_E_VALUE: f64 = 1e300;

fn capped(ln_e: f64) -> f64 {
    ln_e.min(MAX_E_VALUE.ln()).exp()
}

/// True when the confidence sequence `(lower, upper)` excludes every ratio beyond the
/// tolerance in the bad direction.
fn excludes_regression(spec: &SequentialMetric, lower: f64, upper: f64) -> bool {
    let below = upper < spec.allowed_increase;
    let above = lower > spec.allowed_decrease;
    match spec.direction {
        JudgeDirection::Increase => below,
        JudgeDirection::Decrease => above,
        JudgeDirection::Either => below && above,
    }
}

fn verdict(
    spec: &SequentialMetric,
    max_e: f64,
    excluded: bool,
    canary_total: f64,
    look: Look,
) -> Verdict {
    let enough = canary_total >= spec.min_canary_count;
    if max_e >= 1.0 / spec.alpha {
        Verdict::Failed
    } else if look.early_success && excluded && enough {
        Verdict::Successful
    } else if look.last {
        if enough {
            Verdict::Successful
        } else {
            Verdict::TooLittleTraffic
        }
    } else {
        Verdict::Undecided
    }
}

/// Tests the event counts of `slices` (oldest first) as of this look.
pub fn test_counts(spec: &SequentialMetric, slices: &[CountSlice], look: Look) -> Report {
    let mut evidence = RateRatio::new();
    let mut path = Vec::with_capacity(slices.len());
    for s in slices {
        evidence.add(s);
        path.push(e_value(spec, &evidence));
    }
    let e = path.last().copied().unwrap_or(1.0);
    let max_e = path.iter().copied().fold(1.0, f64::max);
    let (lower, upper) = evidence.confidence_sequence(spec.alpha);
    let totals = evidence.totals();
    Report {
        e_value: e,
        p_value: (1.0 / max_e).min(1.0),
        path,
        threshold: 1.0 / spec.alpha,
        effect: Effect {
            what: "event-rate ratio".into(),
            estimate: evidence.naive_ratio(),
            lower,
            upper,
            alpha: spec.alpha,
        },
        canary_total: totals.canary_total,
        baseline_total: totals.baseline_total,
        events: Some((totals.canary_events, totals.baseline_events)),
        quantiles: Vec::new(),
        verdict: verdict(
            spec,
            max_e,
            excludes_regression(spec, lower, upper),
            totals.canary_total,
            look,
        ),
    }
}

/// One slice of a histogram: per side, `(le, observations at or below le)` for each
/// bucket, `le` infinite for `+Inf`, in any order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSlice {
    pub canary: Vec<(f64, f64)>,
    pub baseline: Vec<(f64, f64)>,
}

/// Buckets sorted by `le`, cumulative counts made non-decreasing, and the total (the
/// `+Inf` bucket, else the largest count).
fn normalise(buckets: &[(f64, f64)]) -> (Vec<(f64, f64)>, f64) {
    let mut b: Vec<(f64, f64)> = buckets
        .iter()
        .filter(|(le, _)| !le.is_nan())
        .map(|&(le, c)| (le, if c.is_finite() { c.max(0.0) } else { 0.0 }))
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut running: f64 = 0.0;
    for bucket in &mut b {
        running = running.max(bucket.1);
        bucket.1 = running;
    }
    (b, running)
}

/// Observations at or below `le`: the bucket with that boundary, else the nearest below.
fn at_or_below(buckets: &[(f64, f64)], le: f64) -> f64 {
    buckets
        .iter()
        .take_while(|b| b.0 <= le)
        .last()
        .map_or(0.0, |b| b.1)
}

/// The `q` quantile by linear interpolation inside its bucket (as PromQL's
/// `histogram_quantile`): NaN without observations.
fn quantile(buckets: &[(f64, f64)], total: f64, q: f64) -> f64 {
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, c) in buckets {
        if c >= rank {
            if le.is_infinite() {
                return previous.0;
            }
            let width = c - previous.1;
            let lower = if previous.0 == 0.0 && le <= 0.0 {
                le
            } else {
                previous.0
            };
            return if width <= 0.0 {
                le
            } else {
                lower + (le - lower) * (rank - previous.1) / width
            };
        }
        previous = (le, c);
    }
    previous.0
}

/// The quantiles shown with a histogram's verdict.
const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// The evidence of a histogram so far: one [`RateRatio`] per finite bucket boundary, of
/// the observations above it among all observations.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramEvidence {
    bounds: Vec<f64>,
    evidence: Vec<RateRatio>,
    pooled_canary: Vec<f64>,
    pooled_baseline: Vec<f64>,
    canary_total: f64,
    baseline_total: f64,
}

impl HistogramEvidence {
    /// No evidence yet, for these boundaries (a slice's other boundaries are ignored).
    pub fn new(mut bounds: Vec<f64>) -> Self {
        bounds.retain(|b| b.is_finite());
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let j = bounds.len();
        HistogramEvidence {
            bounds,
            evidence: vec![RateRatio::new(); j],
            pooled_canary: vec![0.0; j],
            pooled_baseline: vec![0.0; j],
            canary_total: 0.0,
            baseline_total: 0.0,
        }
    }

    /// Adds one slice.
    pub fn add(&mut self, slice: &HistogramSlice) {
        let ((c, n), (b, m)) = (normalise(&slice.canary), normalise(&slice.baseline));
        self.canary_total += n;
        self.baseline_total += m;
        for (j, &le) in self.bounds.iter().enumerate() {
            let (below_c, below_b) = (at_or_below(&c, le), at_or_below(&b, le));
            self.pooled_canary[j] += below_c;
            self.pooled_baseline[j] += below_b;
            self.evidence[j].add(&CountSlice {
                canary_events: n - below_c,
                canary_total: n,
                baseline_events: m - below_b,
                baseline_total: m,
            });
        }
    }

    /// The mean over the boundaries of their e-values (1 without boundaries).
    pub fn e_value(&self, spec: &SequentialMetric) -> f64 {
        if self.evidence.is_empty() {
            return 1.0;
        }
        self.evidence.iter().map(|r| e_value(spec, r)).sum::<f64>() / self.evidence.len() as f64
    }
}

/// Tests the histogram `slices` (oldest first) as of this look.
pub fn test_histogram(spec: &SequentialMetric, slices: &[HistogramSlice], look: Look) -> Report {
    let bounds: Vec<f64> = slices
        .iter()
        .flat_map(|s| s.canary.iter().chain(s.baseline.iter()).map(|x| x.0))
        .collect();
    let mut h = HistogramEvidence::new(bounds);
    let mut path = Vec::with_capacity(slices.len());
    for s in slices {
        h.add(s);
        path.push(h.e_value(spec));
    }
    let HistogramEvidence {
        bounds,
        evidence,
        pooled_canary,
        pooled_baseline,
        canary_total,
        baseline_total,
    } = h;
    let e = path.last().copied().unwrap_or(1.0);
    let max_e = path.iter().copied().fold(1.0, f64::max);
    // Success needs every boundary's sequence to exclude a regression: each at alpha/J,
    // so that all cover at once with probability 1 - alpha. Boundaries never exceeded on
    // either side carry no information and are left out.
    let informative: Vec<usize> = (0..bounds.len())
        .filter(|&j| {
            let t = evidence[j].totals();
            t.canary_events + t.baseline_events > 0.0
        })
        .collect();
    let level = spec.alpha / bounds.len().max(1) as f64;
    let sequences: Vec<(usize, f64, f64)> = informative
        .iter()
        .map(|&j| {
            let (lo, hi) = evidence[j].confidence_sequence(level);
            (j, lo, hi)
        })
        .collect();
    let excluded = !sequences.is_empty()
        && sequences
            .iter()
            .all(|&(_, lo, hi)| excludes_regression(spec, lo, hi));
    // Report the boundary with the strongest evidence (the first when none has any).
    let strongest = informative
        .iter()
        .copied()
        .max_by(|&a, &b| e_value(spec, &evidence[a]).total_cmp(&e_value(spec, &evidence[b])));
    let effect = match strongest {
        Some(j) => {
            let (_, lower, upper) =
                sequences
                    .iter()
                    .copied()
                    .find(|s| s.0 == j)
                    .unwrap_or((j, 0.0, f64::INFINITY));
            Effect {
                what: format!("share above le={}", significant(bounds[j])),
                estimate: evidence[j].naive_ratio(),
                lower,
                upper,
                alpha: level,
            }
        }
        None => Effect {
            what: "share above a bucket boundary".into(),
            estimate: f64::NAN,
            lower: 0.0,
            upper: f64::INFINITY,
            alpha: level,
        },
    };
    let with_inf = |pooled: &[f64], total: f64| {
        let mut b: Vec<(f64, f64)> = bounds.iter().copied().zip(pooled.iter().copied()).collect();
        b.push((f64::INFINITY, total));
        b
    };
    let (qc, qb) = (
        with_inf(&pooled_canary, canary_total),
        with_inf(&pooled_baseline, baseline_total),
    );
    let quantiles = QUANTILES
        .iter()
        .map(|&q| {
            (
                q,
                quantile(&qc, canary_total, q),
                quantile(&qb, baseline_total, q),
            )
        })
        .collect();
    Report {
        e_value: e,
        p_value: (1.0 / max_e).min(1.0),
        path,
        threshold: 1.0 / spec.alpha,
        effect,
        canary_total,
        baseline_total,
        events: None,
        quantiles,
        verdict: verdict(spec, max_e, excluded, canary_total, look),
    }
}

#[cfg(test)]
mod tests;
