#!/usr/bin/env python3
"""Generate the test vectors of the sequential provider (`sequential_vectors.json`).

Run with Debian's python3-scipy (`/usr/bin/python3 gen_sequential_vectors.py`); the
versions that wrote the committed file are in its header (NumPy 1.24.2, SciPy 1.10.1).

The Rust code (controller/src/core/sequential) is checked against this independent
implementation of the same formulas; nothing is shared but the formulas:

* Counts in slices k: canary x_k events of n_k, baseline y_k of b_k. Conditioned on
  m_k = x_k + y_k, x_k ~ Binomial(m_k, theta_k), logit theta_k = u + c_k with
  u = ln r (the rate ratio) and c_k = ln(n_k / b_k) (Lindon, Sanden, Shirikian,
  KDD 2022: condition on the total count). Log-likelihood
  l(u) = sum_k x_k (u + c_k) - m_k ln(1 + e^(u + c_k)).
* One-sided e-value against r <= r0:
  E+ = int_{u0}^inf e^(l(u) - l(u0)) 2 phi((u - u0)/tau)/tau du, u0 = ln r0, tau = 0.5;
  against r >= r0 the mirror image. Both taken with scipy.integrate.quad (adaptive
  Gauss-Kronrod), where Rust uses composite Simpson: different quadratures, same integral.
* Confidence sequence: {u : l(u) > ln M + ln alpha}, M = int e^l(u) phi(u/tau)/tau du,
  bounds by scipy.optimize.brentq.
* The maximum-likelihood ratio: brentq on the score.
* Histograms: for each finite bucket boundary, observations above it are events among all
  observations; the e-value is the mean over boundaries of the one-sided e-values.

Each e-value is also checked here to be a martingale where that can be computed exactly:
for one slice, sum_x Binomial(x; m, theta0) E(x) = 1 at the null's boundary.
"""

import json
import math
import sys

import numpy as np
import scipy
from scipy import integrate, optimize, stats

TAU = 0.5


def loglik(u, slices):
    total = 0.0
    for x, n, y, b in slices:
        n, b = max(n, 0.0), max(b, 0.0)
        x, y = min(max(x, 0.0), n), min(max(y, 0.0), b)
        if n <= 0 or b <= 0 or x + y <= 0:
            continue
        z = u + math.log(n / b)
        total += x * z - (x + y) * np.logaddexp(0.0, z)
    return total


def informative(slices):
    return any(
        n > 0 and b > 0 and min(max(x, 0), n) + min(max(y, 0), b) > 0
        for x, n, y, b in slices
    )


def ln_integral(slices, mean, weight, lo, hi):
    """ln int_lo^hi e^(l(u)) weight N(u; mean, tau^2) du, by quad around the mode."""

    def g(u):
        return loglik(u, slices) + math.log(weight) + stats.norm.logpdf(u, mean, TAU)

    a = lo if math.isfinite(lo) else mean - 60.0
    b = hi if math.isfinite(hi) else mean + 60.0
    res = optimize.minimize_scalar(lambda u: -g(u), bounds=(a, b), method="bounded",
                                   options={"xatol": 1e-10})
    mode = res.x
    # Compare the ends too: the bounded search may stop short of a boundary mode.
    for end in (a, b):
        if g(end) > g(mode):
            mode = end
    peak = g(mode)

    def edge(direction, bound):
        if g(bound) > peak - 50.0:
            return bound
        return optimize.brentq(lambda u: g(u) - (peak - 50.0), *sorted((mode, bound)),
                               xtol=1e-14)

    left, right = edge(-1, a), edge(1, b)
    val, _ = integrate.quad(lambda u: math.exp(g(u) - peak), left, right,
                            points=[mode] if left < mode < right else None,
                            epsabs=0.0, epsrel=1e-13, limit=500)
    return peak + math.log(val)


def ln_e_greater(slices, r0):
    if not informative(slices):
        return 0.0
    u0 = math.log(r0)
    return ln_integral(slices, u0, 2.0, u0, math.inf) - loglik(u0, slices)


def ln_e_less(slices, r0):
    if not informative(slices):
        return 0.0
    u0 = math.log(r0)
    return ln_integral(slices, u0, 2.0, -math.inf, u0) - loglik(u0, slices)


def score(u, slices):
    s = 0.0
    for x, n, y, b in slices:
        if n <= 0 or b <= 0 or x + y <= 0:
            continue
        z = u + math.log(n / b)
        s += x - (x + y) / (1.0 + math.exp(-z))
    return s


def estimate(slices):
    x = sum(s[0] for s in slices)
    m = sum(s[0] + s[2] for s in slices)
    if x <= 0:
        return 0.0
    if x >= m:
        return math.inf
    return math.exp(optimize.brentq(score, -30.0, 30.0, args=(slices,), xtol=1e-14))


def confidence_sequence(slices, alpha):
    if not informative(slices):
        return 0.0, math.inf
    level = ln_integral(slices, 0.0, 1.0, -math.inf, math.inf) + math.log(alpha)
    x = sum(s[0] for s in slices)
    m = sum(s[0] + s[2] for s in slices)
    mode = -30.0 if x <= 0 else 30.0 if x >= m else math.log(estimate(slices))

    def f(u):
        return loglik(u, slices) - level

    lower = 0.0 if f(-30.0) >= 0 else math.exp(optimize.brentq(f, -30.0, mode, xtol=1e-14))
    upper = math.inf if f(30.0) >= 0 else math.exp(optimize.brentq(f, mode, 30.0, xtol=1e-14))
    return lower, upper


def exceedances(slices):
    """Per finite boundary, the count slices (above, total, above, total)."""
    bounds = sorted({le for s in slices for side in s for le, _ in side if math.isfinite(le)})

    def below(side, le):
        # Cumulative counts made non-decreasing by le, as Prometheus buckets are.
        best, run = 0.0, 0.0
        for b, c in sorted(side):
            run = max(run, max(c, 0.0))
            if b <= le:
                best = run
        return best

    def total(side):
        return max([max(c, 0.0) for _, c in side], default=0.0)

    out = []
    for le in bounds:
        out.append([(total(c) - below(c, le), total(c), total(b) - below(b, le), total(b))
                    for c, b in slices])
    return bounds, out


def histogram_e(slices):
    bounds, per = exceedances(slices)
    if not bounds:
        return 1.0
    return sum(math.exp(ln_e_greater(s, 1.0)) for s in per) / len(bounds)


def martingale_check():
    """sum_x Binomial(x; m, theta0) E(x) = 1 for one slice at the null's boundary."""
    m, n, b, r0 = 40, 3000.0, 1000.0, 1.3
    theta0 = r0 * n / (r0 * n + b)
    total = 0.0
    for x in range(m + 1):
        e = math.exp(ln_e_greater([(float(x), n, float(m - x), b)], r0))
        total += stats.binom.pmf(x, m, theta0) * e
    assert abs(total - 1.0) < 1e-8, total
    return total


def count_case(name, slices, r0=1.0, alpha=0.01):
    return {
        "name": name,
        "slices": [list(s) for s in slices],
        "r0": r0,
        "alpha": alpha,
        "ln_e_greater": ln_e_greater(slices, r0),
        "ln_e_less": ln_e_less(slices, 1.0 / r0),
        "estimate": estimate(slices) if informative(slices) else None,
        "confidence_sequence": [x if math.isfinite(x) else None
                                for x in confidence_sequence(slices, alpha)],
    }


def main(out):
    rng = np.random.default_rng(20261201)
    cases = []
    cases.append(count_case("doubled, even split", [(60.0, 3000.0, 30.0, 3000.0)] * 2))
    cases.append(count_case("identical, even split", [(31.0, 3000.0, 29.0, 3000.0)] * 3))
    cases.append(count_case("canary at 10 % of traffic", [(4.0, 300.0, 27.0, 2700.0),
                                                         (7.0, 310.0, 25.0, 2690.0)]))
    cases.append(count_case("changing split", [(3.0, 300.0, 27.0, 2700.0),
                                              (16.0, 1500.0, 14.0, 1500.0),
                                              (40.0, 2700.0, 2.0, 300.0)]))
    cases.append(count_case("with a tolerance", [(45.0, 3000.0, 30.0, 3000.0)] * 4, r0=1.2))
    cases.append(count_case("no canary errors", [(0.0, 3000.0, 30.0, 3000.0)]))
    cases.append(count_case("fractional counts from increase()",
                            [(12.4, 1493.7, 6.1, 1502.2), (9.9, 1510.3, 7.2, 1488.8)]))
    # Seeded random cases: 1 % baseline, canary 1-2.5 %, 5-500 req/s, 1-20 slices.
    for i in range(8):
        rate = float(rng.choice([5, 50, 500]))
        p_c = 0.01 * float(rng.choice([1.0, 1.1, 1.5, 2.0, 2.5]))
        k = int(rng.integers(1, 21))
        slices = []
        for _ in range(k):
            n = float(rng.poisson(rate * 60))
            b = float(rng.poisson(rate * 60))
            slices.append((float(rng.binomial(int(n), p_c)), n,
                           float(rng.binomial(int(b), 0.01)), b))
        cases.append(count_case(f"random {i}: {rate:g} req/s, canary {p_c:.3%}, {k} slices",
                                slices, r0=float(rng.choice([1.0, 1.1])),
                                alpha=float(rng.choice([0.01, 0.05]))))

    bounds = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
    hist_cases = []
    for name, factor, n in [("identical", 1.0, 3000), ("+10 %", 1.1, 3000),
                            ("+50 %", 1.5, 300), ("2x, few", 2.0, 30)]:
        slices = []
        for _ in range(3):
            def side(f):
                draws = rng.lognormal(math.log(0.1 * f), 0.5, size=n)
                cum = [(le, float((draws <= le).sum())) for le in bounds]
                return cum + [(math.inf, float(n))]
            slices.append((side(factor), side(1.0)))
        hist_cases.append({
            "name": name,
            "slices": [{"canary": [[le if math.isfinite(le) else None, c] for le, c in cs],
                        "baseline": [[le if math.isfinite(le) else None, c] for le, c in bs]}
                       for cs, bs in slices],
            "e_value": histogram_e(slices),
        })

    doc = {
        "header": {
            "generator": "controller/tests/data/gen_sequential_vectors.py",
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "prior_scale": TAU,
            "martingale_check": martingale_check(),
        },
        "count_cases": cases,
        "histogram_cases": hist_cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sequential_vectors.json")
