//! The anytime-valid test of the ratio of two Poisson rates with exposures, on counts
//! taken in slices: the evidence engine of the sequential provider.
//!
//! Model. In slice `k` the canary has `x_k` events out of `n_k` (its exposure: requests,
//! or observations), the baseline `y_k` of `b_k`. Events are Poisson with rates
//! `r·λ_k·n_k` and `λ_k·b_k`: `λ_k` (the baseline's event rate) may change from slice to
//! slice as it likes, and so may the traffic split. Given `m_k = x_k + y_k`,
//! `x_k ~ Binomial(m_k, θ_k)` with `logit θ_k = u + c_k`, `u = ln r`, `c_k = ln(n_k/b_k)`:
//! the nuisance `λ_k` is gone (Lindon, Sanden, Shirikian, KDD 2022, §3: condition on the
//! total count). The log-likelihood of `u`, up to a constant, is
//! `ℓ(u) = Σ_k x_k (u + c_k) − m_k ln(1 + e^(u + c_k))`, concave.
//!
//! Evidence. For a null `u = u0`, the mixture likelihood ratio
//! `E(u0) = ∫ e^(ℓ(u) − ℓ(u0)) π(u) du` is a nonnegative martingale under `u0` for any
//! fixed prior `π`, so by Ville's inequality `P(sup_t E_t ≥ 1/α) ≤ α`: the test may look
//! after every slice. Against the one-sided null `r ≤ r0` the prior is a half-normal on
//! `u > ln r0`, which makes `E` a supermartingale for every `r ≤ r0` (each factor is
//! increasing in `θ`); `r ≥ r0` mirrors it. The confidence sequence of `r` inverts the
//! two-sided mixture (a normal prior at `u = 0`): `{u0 : ℓ(u0) > ln M − ln(1/α)}` with
//! `M = ∫ e^ℓ π`, an interval because `ℓ` is concave.
//!
//! Binomial events (errors among requests) make the conditional law of `x_k`
//! hypergeometric rather than binomial; for `r0 = 1` that only makes the test
//! conservative (sampling without replacement is smaller in convex order, Hoeffding
//! 1963 §6), for `r0 ≠ 1` it is the Poisson approximation, close when events are rare.
//!
//! Numerics: the integrals are of log-concave functions, taken by composite Simpson over
//! the region where the integrand is within `e^-40` of its mode; slices with the same
//! split are merged (exactly: `ℓ` depends on them only through their sums).

/// Standard deviation of the mixture's normal prior on `ln r`. 0.5 puts most of the
/// prior's weight on ratios between 0.37 and 2.7, the regressions worth stopping for; its
/// exact value moves power a little, never validity. Checked in `make bench`.
pub const PRIOR_SCALE: f64 = 0.5;

/// Ratios beyond `e^±LIMIT` are not searched for (a ratio of 10^13).
const LIMIT: f64 = 30.0;

/// Simpson intervals per integral.
const INTERVALS: usize = 600;

/// How far below its mode the integrand is neglected (`e^-40` of the peak).
const NEGLIGIBLE: f64 = 40.0;

/// Counts of one slice: canary and baseline events and exposures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CountSlice {
    pub canary_events: f64,
    pub canary_total: f64,
    pub baseline_events: f64,
    pub baseline_total: f64,
}

/// Which rate-ratio alternative the e-value looks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Alternative {
    /// `r > r0`, against the null `r ≤ r0`.
    Greater(f64),
    /// `r < r0`, against the null `r ≥ r0`.
    Less(f64),
}

/// The sufficient statistics of the slices seen so far, grouped by split.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateRatio {
    /// `(c, Σx, Σm)` per distinct `c = ln(n/b)`.
    groups: Vec<(f64, f64, f64)>,
    canary_events: f64,
    canary_total: f64,
    baseline_events: f64,
    baseline_total: f64,
}

impl RateRatio {
    /// No evidence yet (every e-value is 1).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one slice. Negative counts (a counter extrapolated below zero) count as zero,
    /// events above their exposure as the exposure; a slice with no exposure on one side
    /// carries no information on the ratio and only adds to the totals.
    pub fn add(&mut self, s: &CountSlice) {
        let clean = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        let (n, b) = (clean(s.canary_total), clean(s.baseline_total));
        let (x, y) = (
            clean(s.canary_events).min(n),
            clean(s.baseline_events).min(b),
        );
        self.canary_events += x;
        self.canary_total += n;
        self.baseline_events += y;
        self.baseline_total += b;
        if n <= 0.0 || b <= 0.0 || x + y <= 0.0 {
            return;
        }
        let c = (n / b).ln();
        match self
            .groups
            .iter_mut()
            .find(|g| g.0.to_bits() == c.to_bits())
        {
            Some(g) => {
                g.1 += x;
                g.2 += x + y;
            }
            None => self.groups.push((c, x, x + y)),
        }
    }

    /// Total canary events and exposure, baseline events and exposure.
    pub fn totals(&self) -> CountSlice {
        CountSlice {
            canary_events: self.canary_events,
            canary_total: self.canary_total,
            baseline_events: self.baseline_events,
            baseline_total: self.baseline_total,
        }
    }

    /// The pooled ratio of rates, `(x/n)/(y/b)` over all slices (NaN without data).
    pub fn naive_ratio(&self) -> f64 {
        (self.canary_events / self.canary_total) / (self.baseline_events / self.baseline_total)
    }

    /// `ℓ(u)` and its first two derivatives.
    fn loglik(&self, u: f64) -> (f64, f64, f64) {
        let (mut l, mut d1, mut d2) = (0.0, 0.0, 0.0);
        for &(c, x, m) in &self.groups {
            let z = u + c;
            let p = sigmoid(z);
            l += x * z - m * softplus(z);
            d1 += x - m * p;
            d2 -= m * p * (1.0 - p);
        }
        (l, d1, d2)
    }

    /// The natural log of the one-sided mixture e-value against the null of `alt`.
    pub fn ln_e_value(&self, alt: Alternative) -> f64 {
        if self.groups.is_empty() {
            return 0.0;
        }
        let (u0, lo, hi) = match alt {
            Alternative::Greater(r0) => (r0.ln(), r0.ln(), f64::INFINITY),
            Alternative::Less(r0) => (r0.ln(), f64::NEG_INFINITY, r0.ln()),
        };
        // Half-normal at u0: twice the normal density on its side.
        let prior = Prior {
            mean: u0,
            ln_weight: std::f64::consts::LN_2,
        };
        self.ln_integral(prior, lo, hi) - self.loglik(u0).0
    }

    /// The two-sided mixture's `ln M` (normal prior at `u = 0`).
    fn ln_marginal(&self) -> f64 {
        let prior = Prior {
            mean: 0.0,
            ln_weight: 0.0,
        };
        self.ln_integral(prior, f64::NEG_INFINITY, f64::INFINITY)
    }

    /// The maximum-likelihood ratio: 0 or infinite when one side has no events.
    pub fn estimate(&self) -> f64 {
        if self.groups.is_empty() {
            return f64::NAN;
        }
        let x: f64 = self.groups.iter().map(|g| g.1).sum();
        let m: f64 = self.groups.iter().map(|g| g.2).sum();
        if x <= 0.0 {
            return 0.0;
        }
        if x >= m {
            return f64::INFINITY;
        }
        decreasing_root(|u| self.loglik(u).1, -LIMIT, LIMIT).exp()
    }

    /// The confidence sequence of the ratio at level `alpha`: `(lower, upper)`, with 0 or
    /// infinity for an open side. Covers the true ratio at every slice at once with
    /// probability at least `1 - alpha`.
    pub fn confidence_sequence(&self, alpha: f64) -> (f64, f64) {
        if self.groups.is_empty() {
            return (0.0, f64::INFINITY);
        }
        let level = self.ln_marginal() + alpha.ln();
        let mode = decreasing_root(|u| self.loglik(u).1, -LIMIT, LIMIT);
        let above = |u: f64| self.loglik(u).0 - level;
        let lower = if above(-LIMIT) >= 0.0 {
            0.0
        } else {
            increasing_root(above, -LIMIT, mode).exp()
        };
        let upper = if above(LIMIT) >= 0.0 {
            f64::INFINITY
        } else {
            decreasing_root(above, mode, LIMIT).exp()
        };
        (lower, upper)
    }

    /// `ln ∫_lo^hi e^(ℓ(u)) π(u) du` for the normal prior `prior` (scale [`PRIOR_SCALE`]).
    fn ln_integral(&self, prior: Prior, lo: f64, hi: f64) -> f64 {
        let tau2 = PRIOR_SCALE * PRIOR_SCALE;
        let f = |u: f64| {
            let (l, d1, d2) = self.loglik(u);
            let z = u - prior.mean;
            (
                l + prior.ln_weight
                    - 0.5 * z * z / tau2
                    - (PRIOR_SCALE * (2.0 * std::f64::consts::PI).sqrt()).ln(),
                d1 - z / tau2,
                d2 - 1.0 / tau2,
            )
        };
        // f' is strictly decreasing; |ℓ'| <= Σm bounds where it can vanish.
        let total: f64 = self.groups.iter().map(|g| g.2).sum();
        let reach = tau2 * total + 1.0;
        let (a, b) = (
            lo.max(prior.mean - reach - 1.0),
            hi.min(prior.mean + reach + 1.0),
        );
        let mode = if f(a).1 <= 0.0 {
            a
        } else if f(b).1 >= 0.0 {
            b
        } else {
            decreasing_root(|u| f(u).1, a, b)
        };
        let (peak, slope, curvature) = f(mode);
        let scale = (1.0 / (-curvature).sqrt()).min(1.0 / slope.abs().max(1e-300));
        let edge = |direction: f64, bound: f64| {
            let mut step = scale;
            loop {
                let u = mode + direction * step;
                if (direction < 0.0 && u <= bound) || (direction > 0.0 && u >= bound) {
                    return bound;
                }
                if f(u).0 < peak - NEGLIGIBLE || step > 4.0 * LIMIT {
                    // Tighten to within an eighth of the step: the doubling overshoots.
                    let (mut inside, mut outside) = (step / 2.0, step);
                    for _ in 0..3 {
                        let mid = 0.5 * (inside + outside);
                        if f(mode + direction * mid).0 < peak - NEGLIGIBLE {
                            outside = mid;
                        } else {
                            inside = mid;
                        }
                    }
                    return mode + direction * outside;
                }
                step *= 2.0;
            }
        };
        let (left, right) = (edge(-1.0, lo), edge(1.0, hi));
        let h = (right - left) / INTERVALS as f64;
        let mut sum = 0.0;
        for i in 0..=INTERVALS {
            let weight = if i == 0 || i == INTERVALS {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            sum += weight * (f(left + h * i as f64).0 - peak).exp();
        }
        peak + (sum * h / 3.0).ln()
    }
}

#[derive(Clone, Copy)]
struct Prior {
    mean: f64,
    /// ln of the factor making the prior a density on the integration range.
    ln_weight: f64,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// The root of a decreasing function on `[lo, hi]` by bisection (the end where it has
/// the right sign when there is none).
fn decreasing_root(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn increasing_root(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    decreasing_root(|u| -f(u), lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(x: f64, n: f64, y: f64, b: f64) -> CountSlice {
        CountSlice {
            canary_events: x,
            canary_total: n,
            baseline_events: y,
            baseline_total: b,
        }
    }

    #[test]
    fn no_data_is_no_evidence() {
        let r = RateRatio::new();
        assert_eq!(r.ln_e_value(Alternative::Greater(1.0)), 0.0);
        assert_eq!(r.confidence_sequence(0.01), (0.0, f64::INFINITY));
        // Exposure without events says nothing about the ratio either.
        let mut r = RateRatio::new();
        r.add(&slice(0.0, 3000.0, 0.0, 3000.0));
        assert!(r.ln_e_value(Alternative::Greater(1.0)).abs() < 1e-9);
    }

    #[test]
    fn the_prior_integrates_to_one() {
        // With data that does not depend on u (all events on one side is not that), a
        // check of the integrator itself: e^ℓ constant means ∫π = 1.
        let mut r = RateRatio::new();
        r.groups.push((0.0, 0.0, 0.0));
        for (lo, hi) in [(f64::NEG_INFINITY, f64::INFINITY), (0.0, f64::INFINITY)] {
            let prior = Prior {
                mean: 0.0,
                ln_weight: if lo == 0.0 {
                    std::f64::consts::LN_2
                } else {
                    0.0
                },
            };
            assert!(r.ln_integral(prior, lo, hi).abs() < 1e-9);
        }
    }

    #[test]
    fn a_doubled_rate_is_evidence_and_an_equal_one_is_not() {
        let mut worse = RateRatio::new();
        let mut same = RateRatio::new();
        for _ in 0..5 {
            worse.add(&slice(60.0, 3000.0, 30.0, 3000.0));
            same.add(&slice(30.0, 3000.0, 30.0, 3000.0));
        }
        assert!(worse.ln_e_value(Alternative::Greater(1.0)) > 100f64.ln());
        assert!(same.ln_e_value(Alternative::Greater(1.0)) < 0.0);
        // With a 2.5x tolerance the doubled rate is within it.
        assert!(worse.ln_e_value(Alternative::Greater(2.5)) < 0.0);
        let (lo, hi) = worse.confidence_sequence(0.01);
        assert!(lo > 1.2 && lo < 2.0 && hi > 2.0 && hi < 3.5, "{lo} {hi}");
        assert!((worse.estimate() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_e_value_has_expectation_one_at_the_null() {
        // One slice of 40 events, the canary with 3/4 of the exposure, null r0 = 1.3:
        // Σ_x Binomial(x; 40, θ0) E(x) = 1, what makes it a martingale (and Ville apply).
        let (m, n, b, r0) = (40u32, 3000.0, 1000.0, 1.3f64);
        let theta = r0 * n / (r0 * n + b);
        let mut ln_choose = 0.0;
        let mut total = 0.0;
        for x in 0..=m {
            if x > 0 {
                ln_choose += f64::from(m - x + 1).ln() - f64::from(x).ln();
            }
            let pmf =
                (ln_choose + f64::from(x) * theta.ln() + f64::from(m - x) * (1.0 - theta).ln())
                    .exp();
            let mut r = RateRatio::new();
            r.add(&slice(f64::from(x), n, f64::from(m - x), b));
            total += pmf * r.ln_e_value(Alternative::Greater(r0)).exp();
        }
        assert!((total - 1.0).abs() < 1e-8, "{total}");
    }

    #[test]
    fn the_split_of_each_slice_is_respected() {
        // The canary has 10 % of the traffic and the same error rate: equal rates, even
        // though it has a ninth of the baseline's events.
        let mut r = RateRatio::new();
        r.add(&slice(30.0, 3000.0, 270.0, 27000.0));
        assert!((r.estimate() - 1.0).abs() < 1e-9);
        // The same counts with a changing split are not pooled into one slice.
        r.add(&slice(30.0, 3000.0, 30.0, 3000.0));
        assert_eq!(r.groups.len(), 2);
        assert!((r.estimate() - 1.0).abs() < 1e-9);
    }
}
