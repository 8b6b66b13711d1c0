#!/usr/bin/env python3
"""Generate the test vectors of the statistical judge (`judge_vectors.json`).

The Rust judge (controller/src/core/judge) is checked against two independent
references, neither of which shares code with it:

* SciPy: `scipy.stats.mannwhitneyu(x, y, alternative='two-sided',
  method='asymptotic', use_continuity=True)` gives the U statistic of the canary
  sample `x` and the two-sided p-value (normal approximation with tie and
  continuity correction). NumPy gives the Hodges-Lehmann estimate, the median of
  all pairwise differences x_i - y_j.
* R: `wilcox.test(x, y, exact=FALSE, correct=TRUE, conf.int=TRUE,
  conf.level=c, tol.root=1e-12)` gives the confidence interval of the location
  shift. This is the code path the judge mirrors (the asymptotic interval of
  `wilcox.test.default`); `tol.root` is tightened from its default 1e-4 so that
  the root R finds is the exact one to ~1e-12, not to 1e-4. R's W and p-value
  are recorded too and must agree with SciPy's.

The same asymptotic interval is also computed here in Python (the `r_style_ci`
function below re-implements R's algorithm with scipy.optimize.brentq over the
shift, using the continuity- and tie-corrected normal statistic), and the script
refuses to write the file unless R and this re-implementation agree. If R is not
installed the Python interval is used and the header says so.

Samples go to R as C99 hex floats and come back the same way, so no decimal
rounding happens between the references; the JSON keeps full precision (Python
writes the shortest repr that round-trips).

Outlier vectors: the judge's optional outlier removal follows Kayenta's
IQRDetector(factor=3, reduceSensitivity=true): quartiles and the 1st/99th
percentiles by Apache Commons Math's legacy estimator, which is Hyndman-Fan
type 6 (`numpy.percentile(method='weibull')`); fences are
min(P1, Q1 - 3 IQR) and max(P99, Q3 + 3 IQR); samples strictly outside are dropped.

Run from anywhere: `python3 controller/tests/data/gen_judge_vectors.py`.
Needs numpy, scipy, and (preferably) Rscript on PATH (Debian: r-base-core).
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import scipy
from scipy import optimize, stats

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "judge_vectors.json")
DEFAULT_CONFIDENCE = 0.98


# --------------------------------------------------------------------------------------
# Cases: every sample comes from a seeded generator, so the file is reproducible.
# --------------------------------------------------------------------------------------
def cases():
    out = []

    def add(name, x, y, confidence=DEFAULT_CONFIDENCE, note=""):
        x = [float(v) for v in np.asarray(x, dtype=float)]
        y = [float(v) for v in np.asarray(y, dtype=float)]
        out.append(dict(name=name, note=note, confidence=confidence, canary=x, baseline=y))

    def rng(seed):
        return np.random.default_rng(seed)

    # Identical distributions.
    r = rng(1)
    add("identical_normal_n50", r.normal(100, 10, 50), r.normal(100, 10, 50))
    r = rng(2)
    add("identical_normal_n30", r.normal(250, 40, 30), r.normal(250, 40, 30))
    r = rng(3)
    add("identical_exponential_n40", r.exponential(20, 40), r.exponential(20, 40))

    # Shifts of the canary.
    r = rng(10)
    add("shift_plus10pct_n50", r.normal(110, 10, 50), r.normal(100, 10, 50))
    r = rng(11)
    add("shift_plus50pct_n50", r.normal(150, 10, 50), r.normal(100, 10, 50))
    r = rng(12)
    add("shift_2x_n50", r.normal(200, 10, 50), r.normal(100, 10, 50))
    r = rng(13)
    add("shift_minus10pct_n50", r.normal(90, 10, 50), r.normal(100, 10, 50))
    r = rng(14)
    add("shift_minus50pct_n40", r.normal(50, 10, 40), r.normal(100, 10, 40))
    r = rng(15)
    add("shift_2x_n10_separated", r.normal(200, 5, 10), r.normal(100, 5, 10),
        note="complete separation")

    # Heavy ties.
    r = rng(20)
    add("ties_rounded_integers_n60", np.round(r.normal(10, 2, 60)), np.round(r.normal(10, 2, 60)))
    r = rng(21)
    add("ties_rounded_1dp_shift", np.round(r.normal(5.5, 0.4, 50), 1), np.round(r.normal(5.0, 0.4, 50), 1))
    r = rng(22)
    add("ties_poisson_counts", r.poisson(3, 40), r.poisson(2, 40), note="error counts")
    r = rng(23)
    add("ties_mostly_zero", r.poisson(0.3, 45), r.poisson(0.1, 45))
    r = rng(24)
    add("ties_canary_constant", np.full(10, 100.0), r.normal(100, 3, 12),
        note="all canary samples equal")

    # Small samples.
    r = rng(30)
    add("small_n3_vs_3", r.normal(100, 10, 3), r.normal(100, 10, 3))
    r = rng(31)
    add("small_n4_vs_5", r.normal(100, 10, 4), r.normal(100, 10, 5))
    r = rng(32)
    add("small_n5_vs_3_shift", r.normal(130, 10, 5), r.normal(100, 10, 3))
    r = rng(33)
    add("small_n3_vs_4_2x", r.normal(200, 10, 3), r.normal(100, 10, 4),
        note="interval falls back to the extreme differences")
    r = rng(34)
    add("small_n1_vs_10", r.normal(100, 10, 1), r.normal(100, 10, 10))

    # Unequal sizes.
    r = rng(40)
    add("unequal_20_vs_80", r.normal(100, 10, 20), r.normal(100, 10, 80))
    r = rng(41)
    add("unequal_100_vs_15_shift", r.normal(115, 10, 100), r.normal(100, 10, 15))

    # Large samples.
    r = rng(50)
    add("large_n200_identical", r.normal(100, 10, 200), r.normal(100, 10, 200))
    r = rng(51)
    add("large_n200_plus10pct", r.normal(110, 10, 200), r.normal(100, 10, 200))
    r = rng(52)
    add("large_200_vs_150_plus50pct", r.normal(150, 20, 200), r.normal(100, 20, 150))

    # Negative and mixed-sign values.
    r = rng(60)
    add("negative_identical", r.normal(-50, 5, 40), r.normal(-50, 5, 40))
    r = rng(61)
    add("negative_shift_up", r.normal(-45, 5, 40), r.normal(-50, 5, 40))
    r = rng(62)
    add("mixed_sign_shift", r.normal(0.5, 1, 60), r.normal(0, 1, 60))

    # Realistic shapes and scales.
    r = rng(70)
    add("lognormal_latency_plus20pct", r.lognormal(np.log(120), 0.5, 80), r.lognormal(np.log(100), 0.5, 80))
    r = rng(71)
    add("bytes_scale_1e6_plus10pct", r.normal(1.1e6, 1e5, 50), r.normal(1.0e6, 1e5, 50))
    r = rng(72)
    add("ratio_scale_1e3_shift", r.normal(2e-3, 5e-4, 50), r.normal(1e-3, 5e-4, 50))

    # Other confidence levels.
    r = rng(80)
    x, y = r.normal(104, 10, 40), r.normal(100, 10, 40)
    add("confidence_095", x, y, confidence=0.95)
    add("confidence_090", x, y, confidence=0.90)
    add("confidence_09999", x, y, confidence=0.9999)
    return out


# --------------------------------------------------------------------------------------
# Python re-implementation of R's asymptotic interval (wilcox.test.default, two-sample,
# exact=FALSE, correct=TRUE, conf.int=TRUE, alternative="two.sided").
# --------------------------------------------------------------------------------------
def corrected_statistic(x, y, d):
    """R's W(d): the tie- and continuity-corrected z statistic of the shift d."""
    nx, ny = len(x), len(y)
    dr = stats.rankdata(np.concatenate([x - d, y]))  # average ranks, like R's rank()
    _, counts = np.unique(dr, return_counts=True)  # R: NTIES.CI <- table(dr)
    dz = dr[:nx].sum() - nx * (nx + 1) / 2 - nx * ny / 2
    correction = np.sign(dz) * 0.5  # two-sided continuity correction
    sigma = np.sqrt((nx * ny / 12) * ((nx + ny + 1) - (counts**3 - counts).sum() / ((nx + ny) * (nx + ny - 1))))
    return (dz - correction) / sigma


def r_style_ci(x, y, conf_level):
    x = np.asarray(x)
    y = np.asarray(y)
    alpha = 1 - conf_level
    mumin = x.min() - y.max()
    mumax = x.max() - y.min()
    w_min = corrected_statistic(x, y, mumin)
    w_max = corrected_statistic(x, y, mumax)

    def root(zq):
        # R: in extreme cases the interval falls back to the end points.
        f_lower = w_min - zq
        if f_lower <= 0:
            return mumin
        f_upper = w_max - zq
        if f_upper >= 0:
            return mumax
        return optimize.brentq(lambda d: corrected_statistic(x, y, d) - zq, mumin, mumax,
                               xtol=1e-13, rtol=4 * np.finfo(float).eps, maxiter=1000)

    lower = root(stats.norm.ppf(alpha / 2, loc=0, scale=1) * -1)  # qnorm(alpha/2, lower.tail=FALSE)
    upper = root(stats.norm.ppf(alpha / 2))
    return float(lower), float(upper)


# --------------------------------------------------------------------------------------
# R itself.
# --------------------------------------------------------------------------------------
R_SCRIPT = r"""
lines <- readLines(commandArgs(trailingOnly = TRUE)[1])
for (line in lines) {
  f <- strsplit(line, "\t", fixed = TRUE)[[1]]
  x <- as.numeric(strsplit(f[3], ",", fixed = TRUE)[[1]])
  y <- as.numeric(strsplit(f[4], ",", fixed = TRUE)[[1]])
  t <- wilcox.test(x, y, alternative = "two.sided", exact = FALSE, correct = TRUE,
                   conf.int = TRUE, conf.level = as.numeric(f[2]), tol.root = 1e-12)
  cat(f[1], sprintf("%a", c(t$statistic, t$p.value, t$estimate, t$conf.int[1], t$conf.int[2])), "\n", sep = "\t")
}
"""


def run_r(all_cases):
    if shutil.which("Rscript") is None:
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "cases.tsv")
        script = os.path.join(tmp, "wilcox.R")
        with open(data, "w") as f:
            for c in all_cases:
                f.write("\t".join([c["name"], repr(c["confidence"]),
                                   ",".join(v.hex() for v in c["canary"]),
                                   ",".join(v.hex() for v in c["baseline"])]) + "\n")
        with open(script, "w") as f:
            f.write(R_SCRIPT)
        out = subprocess.run(["Rscript", "--vanilla", script, data], check=True,
                             capture_output=True, text=True).stdout
        version = subprocess.run(["Rscript", "--vanilla", "-e", "cat(R.version.string)"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    results = {}
    for line in out.splitlines():
        f = [v for v in line.split("\t") if v.strip()]
        results[f[0]] = [float.fromhex(v.strip()) for v in f[1:6]]
    return results, version


def close(a, b, rel, abs_):
    return abs(a - b) <= abs_ + rel * max(abs(a), abs(b))


# --------------------------------------------------------------------------------------
# Outlier removal (Kayenta's IQRDetector, factor 3, reduced sensitivity).
# --------------------------------------------------------------------------------------
def outlier_cases():
    out = []

    def add(name, samples):
        s = np.asarray(samples, dtype=float)
        p01, q1, q3, p99 = np.percentile(s, [1, 25, 75, 99], method="weibull")
        iqr = q3 - q1
        lower = min(p01, q1 - 3 * iqr)
        upper = max(p99, q3 + 3 * iqr)
        kept = [float(v) for v in s if lower <= v <= upper]
        out.append(dict(name=name, samples=[float(v) for v in s], lower_fence=float(lower),
                        upper_fence=float(upper), kept=kept))

    r = np.random.default_rng(90)
    spikes = r.normal(100, 5, 200)
    spikes[[7, 50, 120]] = [400.0, -250.0, 900.0]
    add("spikes_n200", spikes)
    r = np.random.default_rng(91)
    small = r.normal(10, 1, 30)
    small[3] = 60.0
    add("one_spike_n30", small)
    r = np.random.default_rng(92)
    add("heavy_tail_lognormal_n150", r.lognormal(3, 1.2, 150))
    add("no_outliers_n5", [1.0, 2.0, 3.0, 4.0, 5.0])
    add("constant_with_spike", [5.0] * 20 + [50.0])
    return out


def main():
    all_cases = cases()
    r_results, r_version = run_r(all_cases)
    vectors = []
    for c in all_cases:
        x = np.asarray(c["canary"])
        y = np.asarray(c["baseline"])
        res = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
        diffs = np.subtract.outer(x, y).ravel()
        hl = float(np.median(diffs))
        s = np.sort(diffs)
        k = len(s)
        middle = [float(s[(k - 1) // 2]), float(s[k // 2])]
        py_ci = r_style_ci(x, y, c["confidence"])
        entry = dict(c)
        entry.update(
            u=float(res.statistic),
            p_value=float(res.pvalue),
            estimate=hl,
            middle_differences=middle,
            python_conf_int=list(py_ci),
        )
        if r_results is not None:
            w, p, r_est, lo, hi = r_results[c["name"]]
            # The two references must agree before anything is written.
            assert w == entry["u"], (c["name"], "W", w, entry["u"])
            assert close(p, entry["p_value"], 1e-12, 0.0), (c["name"], "p", p, entry["p_value"])
            assert close(lo, py_ci[0], 1e-9, 1e-11), (c["name"], "lower", lo, py_ci[0])
            assert close(hi, py_ci[1], 1e-9, 1e-11), (c["name"], "upper", hi, py_ci[1])
            entry.update(conf_int=[lo, hi], r_u=w, r_p_value=p, r_estimate=r_est)
        else:
            entry.update(conf_int=list(py_ci))
        vectors.append(entry)

    header = dict(
        generator="controller/tests/data/gen_judge_vectors.py",
        python=platform.python_version(),
        numpy=np.__version__,
        scipy=scipy.__version__,
        r=r_version or "not installed: conf_int from the Python re-implementation of R's algorithm",
        conf_int_source="R wilcox.test(exact=FALSE, correct=TRUE, conf.int=TRUE, tol.root=1e-12)"
        if r_version else "python r_style_ci (brentq)",
        u_and_p_source="scipy.stats.mannwhitneyu(alternative='two-sided', method='asymptotic', use_continuity=True)",
        estimate_source="numpy.median of all pairwise differences canary_i - baseline_j (Hodges-Lehmann)",
        outlier_source="numpy.percentile(method='weibull') quartiles and 1st/99th percentiles, factor 3",
    )
    doc = dict(header=header, cases=vectors, outlier_cases=outlier_cases())
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"wrote {len(vectors)} cases and {len(doc['outlier_cases'])} outlier cases to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
