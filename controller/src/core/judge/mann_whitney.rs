//! The two-sided Mann-Whitney U test (Wilcoxon rank-sum test) of a canary sample against
//! a baseline sample, with the confidence interval of the location shift.
//!
//! This is the asymptotic code path of R's `wilcox.test(canary, baseline,
//! exact = FALSE, correct = TRUE, conf.int = TRUE, conf.level = confidence)`, which is
//! also what Kayenta's `MannWhitney` ports:
//!
//! * `u` is R's `W`: the rank sum of the canary minus `n(n+1)/2`, i.e. the number of
//!   (canary, baseline) pairs where the canary is larger, ties counting one half. SciPy's
//!   `mannwhitneyu(canary, baseline).statistic` is the same number.
//! * `z = (u - nm/2 - sign(u - nm/2)/2) / sigma` with the tie-corrected
//!   `sigma^2 = nm/12 * ((N+1) - sum(t^3 - t) / (N(N-1)))`, and the two-sided
//!   `p = 2 * P(Z > |z|)` (at most 1).
//! * The interval: R solves, for the shift `d`, `W(d) = ±z_{1-alpha/2}` where `W(d)` is the
//!   same corrected statistic computed on `(canary - d, baseline)`. `W(d)` is a step
//!   function of `d` that only jumps where `d` equals one of the pairwise differences
//!   `canary_i - baseline_j`, so the root R's `uniroot` homes in on is exactly one of those
//!   differences. We compute that difference directly (an order statistic of the pairwise
//!   differences, found without materialising all `n·m` of them) instead of searching for
//!   it numerically: the result is R's as its `tol.root` goes to 0 (R's default `tol.root`
//!   of 1e-4 leaves R up to about 1e-4 away from it). R's fall-back to the extreme
//!   differences (`min(x) - max(y)`, `max(x) - min(y)`) for samples too small to reach the
//!   confidence level is kept.
//! * The estimate is the Hodges-Lehmann estimator, the median of all pairwise differences
//!   (what R returns on its exact path). R's and Kayenta's asymptotic paths return instead
//!   a root of the statistic at 0, found numerically; every such root lies between the two
//!   middle pairwise differences (and equals the median when `n·m` is odd), so they only
//!   differ from ours within that gap.
//!
//! The normal distribution: `p = erfc(|z|/√2)` with the `libm` crate's `erfc` (FreeBSD
//! msun's, the C library's, under 1 ulp), so p-values keep their relative accuracy far
//! into the tail; the quantile `z_{1-alpha/2}` is [`upper_quantile`], Newton's method on
//! that `erfc` (agrees with R's `qnorm` to 1e-15). `statrs` was tried first: its port of
//! Boost's `erfc` stores Boost's single-precision offsets as doubles and is only accurate
//! to about 1e-10 relative.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

/// The confidence level of the shift interval when none is configured (Kayenta's).
pub const DEFAULT_CONFIDENCE: f64 = 0.98;

/// Below this many candidate pairwise differences the order-statistic search sorts them
/// directly; above it, it narrows them down first, so memory stays O(n + m) for long series.
const DIRECT_SELECTION_LIMIT: u64 = 4096;

/// The outcome of [`mann_whitney`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MannWhitneyResult {
    /// The U statistic of the canary (R's `W`): pairs where the canary is larger, ties
    /// counting one half. Ranges from 0 to `n·m`.
    pub u: f64,
    /// The continuity- and tie-corrected normal statistic of `u`.
    pub z: f64,
    /// The two-sided p-value of "no shift" under the normal approximation.
    pub p_value: f64,
    /// The Hodges-Lehmann estimate of the shift canary - baseline.
    pub estimate: f64,
    /// Lower end of the confidence interval of the shift.
    pub lower: f64,
    /// Upper end of the confidence interval of the shift.
    pub upper: f64,
    /// The confidence level of the interval.
    pub confidence: f64,
}

/// Which of the two samples a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Side {
    /// The samples of the new version.
    Canary,
    /// The samples of the version it is compared with.
    Baseline,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Canary => "canary",
            Side::Baseline => "baseline",
        })
    }
}

/// Why [`mann_whitney`] could not compare two samples.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum MannWhitneyError {
    /// One side has no samples.
    #[error("no {0} samples")]
    Empty(Side),
    /// One side has a NaN or infinite sample; ranks and differences would be meaningless.
    #[error("the {0} samples include a non-finite value ({1})")]
    NonFinite(Side, f64),
    /// The confidence level is not strictly between 0 and 1.
    #[error("confidence level {0} is not strictly between 0 and 1")]
    InvalidConfidence(f64),
    /// Every sample of both sides has the same value: the ranks carry no information.
    #[error("all samples are equal")]
    AllTied,
    /// The samples are so far apart that their differences overflow.
    #[error("the samples are too far apart to subtract without overflow")]
    Overflow,
}

/// Runs the two-sided Mann-Whitney U test of `canary` against `baseline` and computes the
/// `confidence` interval of the shift canary - baseline (see the module documentation for
/// the exact definitions). Never panics; rejects empty or non-finite input with an error.
pub fn mann_whitney(
    canary: &[f64],
    baseline: &[f64],
    confidence: f64,
) -> Result<MannWhitneyResult, MannWhitneyError> {
    validate(canary, Side::Canary)?;
    validate(baseline, Side::Baseline)?;
    if confidence.is_nan() || confidence <= 0.0 || confidence >= 1.0 {
        return Err(MannWhitneyError::InvalidConfidence(confidence));
    }

    let mut xs = canary.to_vec();
    xs.sort_by(numeric_order);
    let mut ys = baseline.to_vec();
    ys.sort_by(numeric_order);

    let (Some(&x_min), Some(&x_max), Some(&y_min), Some(&y_max)) =
        (xs.first(), xs.last(), ys.first(), ys.last())
    else {
        // Unreachable after `validate`, but an error beats a panic.
        return Err(MannWhitneyError::Empty(Side::Canary));
    };
    if !(x_max - y_min).is_finite() || !(x_min - y_max).is_finite() {
        return Err(MannWhitneyError::Overflow);
    }

    let n = xs.len() as f64;
    let m = ys.len() as f64;
    let nm = n * m;
    let total = n + m;
    // Both counts are at least 1, so `total * (total - 1)` is at least 2.
    let tie_scale = total * (total - 1.0);

    // The test at shift 0: average ranks of the pooled samples.
    let (rank_sum, pooled_ties) = pooled_ranks(&xs, &ys);
    let u = rank_sum - n * (n + 1.0) / 2.0;
    let sigma = (nm / 12.0 * ((total + 1.0) - pooled_ties / tie_scale)).sqrt();
    if sigma.is_nan() || sigma <= 0.0 {
        return Err(MannWhitneyError::AllTied);
    }
    let dz = u - nm / 2.0;
    let z = (dz - 0.5 * sign(dz)) / sigma;
    // 2 * P(Z > |z|) = erfc(|z| / sqrt 2), computed on the small tail for accuracy.
    let p_value = libm::erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0);

    // The interval. Between two consecutive pairwise differences no canary value shifted
    // by d ties with a baseline value, so the only ties are those within each sample, and
    // the statistic depends only on c, the number of differences below d:
    // dz(c) = nm/2 - c.
    let sigma0 = (nm / 12.0 * ((total + 1.0) - (tie_term(&xs) + tie_term(&ys)) / tie_scale)).sqrt();
    if sigma0.is_nan() || sigma0 <= 0.0 {
        // Impossible with both samples non-empty (the within-sample tie sum is always
        // below N^3 - N), kept so that no input can divide by zero.
        return Err(MannWhitneyError::AllTied);
    }
    let pairs = (xs.len() as u128 * ys.len() as u128).min(u64::MAX as u128) as u64;
    let statistic = |c: u64| {
        let dz = nm / 2.0 - c as f64;
        (dz - 0.5 * sign(dz)) / sigma0
    };
    let alpha = 1.0 - confidence;
    // z_{1 - alpha/2}: qnorm(alpha/2, lower.tail = FALSE) in R.
    let zq = upper_quantile(alpha / 2.0);

    // R's root for a quantile q: the difference at which the statistic drops below q,
    // i.e. the c-th smallest difference for the smallest c with statistic(c) < q; the
    // smallest difference if it already is below q left of every difference; the largest
    // difference if it never drops below q.
    let root_rank = |q: f64| first_rank_below(pairs, q, &statistic).map_or(pairs, |c| c.max(1));
    let mut ys_desc = ys.clone();
    ys_desc.reverse();
    let lower = kth_pairwise_difference(&xs, &ys_desc, root_rank(zq));
    let upper = kth_pairwise_difference(&xs, &ys_desc, root_rank(-zq));

    let estimate = if pairs % 2 == 1 {
        kth_pairwise_difference(&xs, &ys_desc, pairs / 2 + 1)
    } else {
        let a = kth_pairwise_difference(&xs, &ys_desc, pairs / 2);
        let b = kth_pairwise_difference(&xs, &ys_desc, pairs / 2 + 1);
        // std's midpoint is (a + b) / 2, NumPy's median of two, short of overflow.
        a.midpoint(b)
    };

    Ok(MannWhitneyResult {
        u,
        z,
        p_value,
        estimate,
        lower,
        upper,
        confidence,
    })
}

fn validate(samples: &[f64], side: Side) -> Result<(), MannWhitneyError> {
    if samples.is_empty() {
        return Err(MannWhitneyError::Empty(side));
    }
    match samples.iter().find(|v| !v.is_finite()) {
        Some(&v) => Err(MannWhitneyError::NonFinite(side, v)),
        None => Ok(()),
    }
}

/// The standard normal quantile of an upper tail: the z with `P(Z > z) = tail` (R's
/// `qnorm(tail, lower.tail = FALSE)`), for `0 < tail < 1`; ±infinity at 0 and 1, NaN
/// outside.
///
/// Starts from Abramowitz and Stegun 26.2.23 (error below 4.5e-4) and polishes with
/// Newton's method on `ln P(Z > z)`, whose convergence is quadratic: three or four steps
/// reach the accuracy of `erfc` itself (checked against R's `qnorm` to 1e-15 in the
/// tests).
pub fn upper_quantile(tail: f64) -> f64 {
    if tail.is_nan() || !(0.0..=1.0).contains(&tail) {
        return f64::NAN;
    }
    if tail == 0.0 {
        return f64::INFINITY;
    }
    if tail == 1.0 {
        return f64::NEG_INFINITY;
    }
    if tail > 0.5 {
        // Symmetry; 1 - tail is exact for tail in [0.5, 1].
        return -upper_quantile(1.0 - tail);
    }
    // Abramowitz and Stegun 26.2.23, for 0 < tail <= 0.5.
    let t = (-2.0 * tail.ln()).sqrt();
    let mut z = t
        - (2.515517 + 0.802853 * t + 0.010328 * t * t)
            / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t);
    let upper_tail = |z: f64| libm::erfc(z / std::f64::consts::SQRT_2) / 2.0;
    // 1 / sqrt(2 pi)
    let density = |z: f64| (-z * z / 2.0).exp() * 0.398_942_280_401_432_7;
    for _ in 0..8 {
        let q = upper_tail(z);
        let phi = density(z);
        if q <= 0.0 || phi <= 0.0 {
            break;
        }
        // h(z) = ln Q(z) - ln tail, h'(z) = -phi(z) / Q(z).
        let step = (q.ln() - tail.ln()) * q / phi;
        z += step;
        if step.abs() <= 1e-16 * z.abs().max(1.0) {
            break;
        }
    }
    z
}

/// The numeric order of finite values; -0.0 and 0.0 compare equal, as they must for ties.
fn numeric_order(a: &f64, b: &f64) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// R's `sign`: 0 at 0 (Rust's `signum` is 1 at +0.0).
fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The canary's rank sum in the pooled samples (average ranks for ties) and the pooled
/// tie term sum(t^3 - t). Both inputs sorted ascending.
fn pooled_ranks(xs: &[f64], ys: &[f64]) -> (f64, f64) {
    let (mut i, mut j) = (0, 0);
    let mut rank_sum = 0.0;
    let mut ties = 0.0;
    let mut next_rank = 1.0; // rank of the next value to place
    while i < xs.len() || j < ys.len() {
        // The smallest value left, and how many of each side share it.
        let v = match (xs.get(i), ys.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        let from_x = xs[i..].iter().take_while(|&&x| x == v).count();
        let from_y = ys[j..].iter().take_while(|&&y| y == v).count();
        let t = (from_x + from_y) as f64;
        // Ranks next_rank ..= next_rank + t - 1, averaged.
        let average = next_rank + (t - 1.0) / 2.0;
        rank_sum += average * from_x as f64;
        ties += t * t * t - t;
        next_rank += t;
        i += from_x;
        j += from_y;
    }
    (rank_sum, ties)
}

/// sum(t^3 - t) over the groups of equal values of one sorted sample.
fn tie_term(sorted: &[f64]) -> f64 {
    sorted
        .chunk_by(|a, b| a == b)
        .map(|g| {
            let t = g.len() as f64;
            t * t * t - t
        })
        .sum()
}

/// The smallest `c` in `0..=pairs` with `statistic(c) < q`, if any. `statistic` does not
/// increase with `c`, so this is a binary search.
fn first_rank_below(pairs: u64, q: f64, statistic: &impl Fn(u64) -> f64) -> Option<u64> {
    if statistic(pairs) >= q {
        return None;
    }
    // Invariant: statistic(hi) < q; statistic(c) >= q for every c < lo.
    let (mut lo, mut hi) = (0u64, pairs);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if statistic(mid) < q {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// The `k`-th smallest (1-based, clamped to `1..=n·m`) of the pairwise differences
/// `xs[i] - ys_desc[j]`, with `xs` ascending and `ys_desc` descending and both non-empty.
///
/// The differences form a matrix whose rows and columns are sorted, so the search keeps,
/// per row, the range of columns that may still hold the answer and halves it around a
/// pivot (the weighted median of the rows' middle candidates, which discards at least a
/// quarter of the candidates per round) until few enough remain to sort. Memory is
/// O(n + m + DIRECT_SELECTION_LIMIT) however long the series are. Floating-point
/// subtraction is monotone, so the sortedness holds exactly for the computed values.
pub(crate) fn kth_pairwise_difference(xs: &[f64], ys_desc: &[f64], k: u64) -> f64 {
    let rows = xs.len();
    let cols = ys_desc.len();
    let total = rows as u64 * cols as u64;
    if total == 0 {
        return f64::NAN;
    }
    let k = k.clamp(1, total);
    let at = |i: usize, j: usize| xs[i] - ys_desc[j];

    // Columns lo[i]..hi[i] of row i are the candidates; everything left of lo is below
    // the answer and everything right of hi above it.
    let mut lo = vec![0usize; rows];
    let mut hi = vec![cols; rows];
    let mut below = vec![0usize; rows];
    let mut not_above = vec![0usize; rows];
    let mut middles: Vec<(f64, u64)> = Vec::with_capacity(rows);

    // Each round discards a quarter of the candidates, so 200 rounds are never needed;
    // the cap only bounds the loop should that reasoning ever fail.
    for _ in 0..200 {
        let candidates: u64 = lo.iter().zip(&hi).map(|(l, h)| (h - l) as u64).sum();
        if candidates <= DIRECT_SELECTION_LIMIT {
            break;
        }
        middles.clear();
        for (i, (&l, &h)) in lo.iter().zip(&hi).enumerate() {
            if h > l {
                middles.push((at(i, l + (h - l - 1) / 2), (h - l) as u64));
            }
        }
        middles.sort_by(|a, b| numeric_order(&a.0, &b.0));
        let half = candidates.div_ceil(2);
        let mut seen = 0;
        let Some(pivot) = middles.iter().find_map(|&(v, w)| {
            seen += w;
            (seen >= half).then_some(v)
        }) else {
            break;
        };

        count_per_row(xs, ys_desc, |v| v < pivot, &mut below);
        count_per_row(xs, ys_desc, |v| v <= pivot, &mut not_above);
        let n_below: u64 = below.iter().map(|&c| c as u64).sum();
        let n_not_above: u64 = not_above.iter().map(|&c| c as u64).sum();
        if k <= n_below {
            for ((h, &l), &b) in hi.iter_mut().zip(&lo).zip(&below) {
                *h = (*h).min(b).max(l);
            }
        } else if k <= n_not_above {
            return pivot;
        } else {
            for ((l, &h), &a) in lo.iter_mut().zip(&hi).zip(&not_above) {
                *l = (*l).max(a).min(h);
            }
        }
    }

    let skipped: u64 = lo.iter().map(|&l| l as u64).sum();
    let mut candidates: Vec<f64> = (0..rows)
        .flat_map(|i| (lo[i]..hi[i]).map(move |j| (i, j)))
        .map(|(i, j)| at(i, j))
        .collect();
    if candidates.is_empty() {
        return f64::NAN;
    }
    let index = (k.saturating_sub(skipped + 1) as usize).min(candidates.len() - 1);
    let (_, kth, _) = candidates.select_nth_unstable_by(index, numeric_order);
    *kth
}

/// For each row i, how many of its differences (a prefix, rows being ascending) satisfy
/// `keep`. Rows grow with i, so the prefix only shrinks: one pass over rows and columns.
fn count_per_row(xs: &[f64], ys_desc: &[f64], keep: impl Fn(f64) -> bool, out: &mut [usize]) {
    let mut j = ys_desc.len();
    for (i, &x) in xs.iter().enumerate() {
        while j > 0 && !keep(x - ys_desc[j - 1]) {
            j -= 1;
        }
        out[i] = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so tests need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn sample(&mut self, n: usize, scale: f64, round: bool) -> Vec<f64> {
            (0..n)
                .map(|_| {
                    let v = self.next() * scale;
                    if round { v.round() } else { v }
                })
                .collect()
        }
    }

    fn brute_force_sorted(x: &[f64], y: &[f64]) -> Vec<f64> {
        let mut d: Vec<f64> = x
            .iter()
            .flat_map(|a| y.iter().map(move |b| a - b))
            .collect();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        d
    }

    fn sorted(v: &[f64]) -> Vec<f64> {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }

    #[test]
    fn kth_difference_matches_sorting_every_difference() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        // Sizes on both sides of DIRECT_SELECTION_LIMIT, with and without ties.
        for &(n, m, round) in &[
            (1, 1, false),
            (3, 7, false),
            (50, 120, true),
            (300, 40, false),
            (90, 90, true),
            (200, 1, false),
        ] {
            let x = rng.sample(n, 50.0, round);
            let y = rng.sample(m, 50.0, round);
            let all = brute_force_sorted(&x, &y);
            let xs = sorted(&x);
            let mut yd = sorted(&y);
            yd.reverse();
            let total = all.len() as u64;
            for k in [1, 2, total / 3, total / 2, total / 2 + 1, total - 1, total] {
                let k = k.clamp(1, total);
                assert_eq!(
                    kth_pairwise_difference(&xs, &yd, k),
                    all[(k - 1) as usize],
                    "n={n} m={m} k={k}"
                );
            }
        }
    }

    #[test]
    fn quantiles_match_r_qnorm() {
        // R 4.2.2: qnorm(c(0.01, 0.005, 0.025, 0.05, 5e-5, 0.25, 1e-300),
        // lower.tail = FALSE), printed with 17 digits (shortest round-trip form here).
        let table = [
            (0.01, 2.326_347_874_040_840_8),
            (0.005, 2.575_829_303_548_9),
            (0.025, 1.959_963_984_540_053_8),
            (0.05, 1.644_853_626_951_472_6),
            (5e-5, 3.890_591_886_413_094),
            (0.25, 0.674_489_750_196_081_7),
            (1e-300, 37.047_096_299_361_2),
        ];
        for (tail, z) in table {
            let q = upper_quantile(tail);
            assert!((q - z).abs() <= 1e-15 * z, "{tail}: {q} vs {z}");
        }
        assert_eq!(upper_quantile(0.75), -upper_quantile(0.25));
        assert!(upper_quantile(0.5).abs() < 1e-15);
        assert_eq!(upper_quantile(0.0), f64::INFINITY);
        assert_eq!(upper_quantile(1.0), f64::NEG_INFINITY);
        assert!(upper_quantile(-0.1).is_nan() && upper_quantile(f64::NAN).is_nan());
    }

    #[test]
    fn hand_computed_small_example() {
        // Canary 1,2,3 against baseline 4,5,6: no pair where the canary is larger.
        // sigma^2 = 9/12 * 7 = 5.25, z = (0 - 4.5 + 0.5) / sqrt(5.25) = -1.745743...,
        // p = 2 * Phi(-1.745743) = 0.0808556 (R: 2 * pnorm(-4 / sqrt(5.25))).
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], 0.98).unwrap();
        assert_eq!(r.u, 0.0);
        assert!((r.z + 4.0 / 5.25f64.sqrt()).abs() < 1e-15);
        assert!(
            (r.p_value - 0.080_855_598_37).abs() < 1e-10,
            "{}",
            r.p_value
        );
        // Differences -5 (x1), -4 (x2), -3 (x3), -2 (x2), -1 (x1): median -3.
        assert_eq!(r.estimate, -3.0);
        // Three against three cannot reach 98%: R falls back to the extreme differences.
        assert_eq!((r.lower, r.upper), (-5.0, -1.0));
    }

    #[test]
    fn swapping_the_samples_mirrors_the_result() {
        let mut rng = Rng(42);
        let x = rng.sample(40, 100.0, false);
        let y: Vec<f64> = rng
            .sample(55, 100.0, false)
            .iter()
            .map(|v| v + 20.0)
            .collect();
        let a = mann_whitney(&x, &y, 0.98).unwrap();
        let b = mann_whitney(&y, &x, 0.98).unwrap();
        assert_eq!(a.u, 40.0 * 55.0 - b.u);
        assert!((a.p_value - b.p_value).abs() <= 1e-15 * a.p_value.max(1e-300));
        assert_eq!(a.estimate, -b.estimate);
        assert_eq!((a.lower, a.upper), (-b.upper, -b.lower));
        assert!(a.lower <= a.estimate && a.estimate <= a.upper);
    }

    #[test]
    fn wider_confidence_gives_a_wider_interval() {
        let mut rng = Rng(7);
        let x = rng.sample(60, 10.0, false);
        let y = rng.sample(60, 10.0, false);
        let narrow = mann_whitney(&x, &y, 0.8).unwrap();
        let wide = mann_whitney(&x, &y, 0.99).unwrap();
        assert!(wide.lower < narrow.lower && narrow.upper < wide.upper);
    }

    #[test]
    fn no_difference_gives_p_one() {
        // u equals nm/2 exactly: no correction, z = 0, p = 1.
        let r = mann_whitney(&[1.0, 4.0], &[2.0, 3.0], 0.98).unwrap();
        assert_eq!(r.u, 2.0);
        assert_eq!(r.z, 0.0);
        assert_eq!(r.p_value, 1.0);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        use MannWhitneyError::*;
        assert_eq!(mann_whitney(&[], &[1.0], 0.98), Err(Empty(Side::Canary)));
        assert_eq!(mann_whitney(&[1.0], &[], 0.98), Err(Empty(Side::Baseline)));
        assert!(matches!(
            mann_whitney(&[1.0, f64::NAN], &[1.0], 0.98),
            Err(NonFinite(Side::Canary, _))
        ));
        assert_eq!(
            mann_whitney(&[1.0], &[f64::INFINITY], 0.98),
            Err(NonFinite(Side::Baseline, f64::INFINITY))
        );
        assert_eq!(mann_whitney(&[2.0; 4], &[2.0; 3], 0.98), Err(AllTied));
        assert_eq!(mann_whitney(&[0.0], &[-0.0], 0.98), Err(AllTied));
        for c in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            assert!(matches!(
                mann_whitney(&[1.0], &[2.0], c),
                Err(InvalidConfidence(_))
            ));
        }
        assert_eq!(mann_whitney(&[f64::MAX], &[-f64::MAX], 0.98), Err(Overflow));
    }

    #[test]
    fn constant_but_different_sides_are_judged_without_noise() {
        // Kayenta adds Gaussian noise here; the exact computation needs none: every
        // difference is 2, so the estimate and both ends of the interval are 2.
        let r = mann_whitney(&[5.0; 6], &[3.0; 6], 0.98).unwrap();
        assert_eq!(r.u, 36.0);
        assert!(r.p_value < 0.01);
        assert_eq!((r.lower, r.estimate, r.upper), (2.0, 2.0, 2.0));
    }

    #[test]
    fn single_samples_do_not_panic() {
        let r = mann_whitney(&[5.0], &[3.0], 0.98).unwrap();
        assert_eq!(r.u, 1.0);
        assert_eq!(r.p_value, 1.0);
        assert_eq!((r.lower, r.estimate, r.upper), (2.0, 2.0, 2.0));
    }
}
