//! Decision quality when the analysis looks at every interval (peeking): the sequential
//! provider against the fixed-sample judge and a static threshold, each looked at after
//! every one of 60 one-minute intervals, on seeded simulations where the truth is known.
//!
//!   cargo bench -p sluice-controller --bench peeking
//!
//! Per trial and interval, the canary and a dedicated baseline (same traffic) each serve
//! `rate × 60` requests (two cases compare with the stable pods at nine times the canary's
//! traffic instead). Errors: each request fails with its side's probability (baseline
//! 1 %). Latency: each request's latency is drawn (log-normal, median 100 ms, σ 0.5; or
//! bimodal, 90 % around 50 ms and 10 % around 500 ms) and counted into Prometheus' default
//! histogram buckets, the canary's multiplied by the case's factor. Methods, each failing
//! the canary at the first look that says so:
//! - sequential: the provider's e-value (counts, or the histogram) against 1/α = 100;
//! - judge: Kayenta's Mann-Whitney judge (confidence 0.98) on the per-interval error
//!   rates or mean latencies so far, Fail at any look from the third interval on;
//! - threshold: Flagger-style, an interval's error rate or mean latency 20 % above the
//!   baseline's nominal value.
//!
//! Printed per case and method: the share of trials failed over the whole run (for the
//! identical cases, the false-alarm rate), within 2 and 3 intervals, and the time to
//! detect (p50 / p95 over all trials, in intervals and canary requests; `-` when fewer
//! trials than that detected).

use std::collections::BTreeMap;

use sluice_api::analysis::SequentialMetric;
use sluice_api::analysis::{JudgeDirection, JudgeSignal, JudgeThresholds, NanStrategy};
use sluice_controller::core::judge::{self, SignalSamples, Verdict};
use sluice_controller::core::sequential::{self, CountSlice, HistogramEvidence, HistogramSlice};

const LOOKS: usize = 60;
/// The judge looks once it has this many samples per side: with one or two its
/// Mann-Whitney interval is degenerate and it fails about half of identical canaries.
const JUDGE_MIN_SAMPLES: usize = 3;
const INTERVAL_SECONDS: f64 = 60.0;
const ERROR_TRIALS: usize = 400;
const LATENCY_TRIALS: usize = 200;
const BASELINE_ERROR_RATE: f64 = 0.01;
/// Prometheus client libraries' default buckets.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// xorshift64*: small, seeded.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Binomial(n, p), exactly, by geometric skips between successes (O(np)).
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        let log_q = (1.0 - p).ln();
        let (mut position, mut count) = (0u64, 0u64);
        loop {
            let skip = (self.uniform().ln() / log_q).floor() as u64 + 1;
            position = position.saturating_add(skip);
            if position > n {
                return count;
            }
            count += 1;
        }
    }
}

#[derive(Clone, Copy)]
enum Shape {
    LogNormal,
    Bimodal,
}

impl Shape {
    fn draw(self, rng: &mut Rng) -> f64 {
        match self {
            Shape::LogNormal => 0.1 * (0.5 * rng.normal()).exp(),
            Shape::Bimodal => {
                let median = if rng.uniform() < 0.9 { 0.05 } else { 0.5 };
                median * (0.3 * rng.normal()).exp()
            }
        }
    }

    /// The baseline's mean latency.
    fn mean(self) -> f64 {
        match self {
            Shape::LogNormal => 0.1 * (0.125f64).exp(),
            Shape::Bimodal => (0.9 * 0.05 + 0.1 * 0.5) * (0.045f64).exp(),
        }
    }
}

#[derive(Clone, Copy)]
enum Signal {
    Errors(f64),
    Latency(Shape, f64),
}

struct Case {
    name: String,
    regression: bool,
    /// Canary requests per second.
    rate: f64,
    /// Baseline requests per second: the canary's for a dedicated baseline, more for the
    /// stable pods.
    baseline_rate: f64,
    signal: Signal,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for rate in [5.0, 50.0, 500.0] {
        for (p, label) in [
            (0.01, "identical 1%"),
            (0.011, "1.1%"),
            (0.015, "1.5%"),
            (0.02, "2%"),
        ] {
            out.push(Case {
                name: format!("errors {label} @{rate} req/s"),
                regression: p > BASELINE_ERROR_RATE,
                rate,
                baseline_rate: rate,
                signal: Signal::Errors(p),
            });
        }
    }
    // The stable pods as the baseline, at a 10 % canary weight: nine times the traffic.
    for (p, label) in [(0.01, "identical 1%"), (0.02, "2%")] {
        out.push(Case {
            name: format!("errors {label} @50 vs stable 450 req/s"),
            regression: p > BASELINE_ERROR_RATE,
            rate: 50.0,
            baseline_rate: 450.0,
            signal: Signal::Errors(p),
        });
    }
    for (shape, label) in [
        (Shape::LogNormal, "log-normal"),
        (Shape::Bimodal, "bimodal"),
    ] {
        for (factor, what) in [
            (1.0, "identical"),
            (1.1, "+10%"),
            (1.5, "+50%"),
            (2.0, "2x"),
        ] {
            out.push(Case {
                name: format!("latency {what} {label} @50 req/s"),
                regression: factor > 1.0,
                rate: 50.0,
                baseline_rate: 50.0,
                signal: Signal::Latency(shape, factor),
            });
        }
    }
    out
}

fn signal() -> JudgeSignal {
    JudgeSignal {
        name: "signal".into(),
        canary_query: String::new(),
        baseline_query: String::new(),
        direction: JudgeDirection::Increase,
        allowed_increase: 1.0,
        allowed_decrease: 1.0,
        nan_strategy: NanStrategy::Remove,
        outlier_removal: false,
        critical: false,
        must_have_data: true,
        group: "default".into(),
    }
}

fn spec(histogram: bool) -> SequentialMetric {
    let source = if histogram {
        serde_json::json!({ "histogram": { "canary": "c", "baseline": "b" } })
    } else {
        serde_json::json!({ "counts": {
            "canary": { "events": "e", "total": "t" },
            "baseline": { "events": "e", "total": "t" } } })
    };
    let mut v = serde_json::json!({ "address": "http://p" });
    v.as_object_mut()
        .unwrap()
        .extend(source.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

/// One side's interval of latencies: cumulative bucket counts (with +Inf) and the mean.
fn latencies(rng: &mut Rng, shape: Shape, factor: f64, n: u64) -> (Vec<(f64, f64)>, f64) {
    let mut counts = [0u64; BUCKETS.len()];
    let mut sum = 0.0;
    for _ in 0..n {
        let v = shape.draw(rng) * factor;
        sum += v;
        if let Some(i) = BUCKETS.iter().position(|&b| v <= b) {
            counts[i] += 1;
        }
    }
    let mut cumulative = Vec::with_capacity(BUCKETS.len() + 1);
    let mut running = 0;
    for (i, &b) in BUCKETS.iter().enumerate() {
        running += counts[i];
        cumulative.push((b, running as f64));
    }
    cumulative.push((f64::INFINITY, n as f64));
    (cumulative, sum / n as f64)
}

const METHODS: [&str; 3] = ["sequential", "judge", "threshold"];

/// When each method first failed the canary (1-based look), per trial.
fn trial(
    case: &Case,
    rng: &mut Rng,
    specs: &(SequentialMetric, SequentialMetric),
) -> [Option<usize>; 3] {
    let n = (case.rate * INTERVAL_SECONDS) as u64;
    let b = (case.baseline_rate * INTERVAL_SECONDS) as u64;
    let judge_signal = signal();
    let (weights, thresholds) = (BTreeMap::new(), JudgeThresholds::default());
    let mut counts = sequential::RateRatio::new();
    let mut histogram = HistogramEvidence::new(BUCKETS.to_vec());
    let (mut canary_values, mut baseline_values) = (Vec::new(), Vec::new());
    let mut detected = [None; 3];
    for look in 1..=LOOKS {
        let (canary_value, baseline_value, e, threshold) = match case.signal {
            Signal::Errors(p) => {
                let x = rng.binomial(n, p) as f64;
                let y = rng.binomial(b, BASELINE_ERROR_RATE) as f64;
                counts.add(&CountSlice {
                    canary_events: x,
                    canary_total: n as f64,
                    baseline_events: y,
                    baseline_total: b as f64,
                });
                let e = sequential::e_value(&specs.0, &counts);
                (x / n as f64, y / b as f64, e, 1.2 * BASELINE_ERROR_RATE)
            }
            Signal::Latency(shape, factor) => {
                let (canary, canary_mean) = latencies(rng, shape, factor, n);
                let (baseline, baseline_mean) = latencies(rng, shape, 1.0, b);
                histogram.add(&HistogramSlice { canary, baseline });
                let e = histogram.e_value(&specs.1);
                (canary_mean, baseline_mean, e, 1.2 * shape.mean())
            }
        };
        canary_values.push(canary_value);
        baseline_values.push(baseline_value);
        if detected[0].is_none() && e >= 100.0 {
            detected[0] = Some(look);
        }
        if detected[1].is_none() && look >= JUDGE_MIN_SAMPLES {
            let report = judge::judge_signals(
                &[SignalSamples {
                    signal: &judge_signal,
                    canary: &canary_values,
                    baseline: &baseline_values,
                }],
                &weights,
                &thresholds,
                0.98,
            );
            if report.verdict == Verdict::Fail {
                detected[1] = Some(look);
            }
        }
        if detected[2].is_none() && canary_value > threshold {
            detected[2] = Some(look);
        }
        if detected.iter().all(Option::is_some) {
            break;
        }
    }
    detected
}

/// The q-quantile of the detection times over all trials (undetected ones last), if
/// that many trials detected.
fn quantile(times: &[Option<usize>], q: f64) -> Option<usize> {
    let mut sorted: Vec<usize> = times.iter().map(|t| t.unwrap_or(usize::MAX)).collect();
    sorted.sort_unstable();
    let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    (sorted[index] != usize::MAX).then_some(sorted[index])
}

fn main() {
    let specs = (spec(false), spec(true));
    println!(
        "peeking: every one of {LOOKS} one-minute intervals looked at; {ERROR_TRIALS} trials per error case, {LATENCY_TRIALS} per latency case"
    );
    println!(
        "{:<36} {:>5} {:<10} {:>7} {:>6} {:>6} {:>9} {:>15}",
        "case", "truth", "method", "failed", "<=2", "<=3", "p50/p95", "p50/p95 req"
    );
    for (i, case) in cases().iter().enumerate() {
        let trials = match case.signal {
            Signal::Errors(_) => ERROR_TRIALS,
            Signal::Latency(..) => LATENCY_TRIALS,
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((i as u64 + 1) << 32));
        let outcomes: Vec<[Option<usize>; 3]> =
            (0..trials).map(|_| trial(case, &mut rng, &specs)).collect();
        let requests_per_interval = case.rate * INTERVAL_SECONDS;
        for (m, method) in METHODS.iter().enumerate() {
            let times: Vec<Option<usize>> = outcomes.iter().map(|o| o[m]).collect();
            let share = |limit: usize| {
                100.0
                    * times
                        .iter()
                        .filter(|t| t.is_some_and(|t| t <= limit))
                        .count() as f64
                    / trials as f64
            };
            let show = |t: Option<usize>| t.map_or("-".to_string(), |t| t.to_string());
            let show_requests = |t: Option<usize>| {
                t.map_or("-".to_string(), |t| {
                    format!("{}", t as f64 * requests_per_interval)
                })
            };
            let (p50, p95) = (quantile(&times, 0.5), quantile(&times, 0.95));
            println!(
                "{:<36} {:>5} {:<10} {:>6.1}% {:>5.1}% {:>5.1}% {:>9} {:>15}",
                if m == 0 { case.name.as_str() } else { "" },
                if m == 0 {
                    if case.regression { "worse" } else { "same" }
                } else {
                    ""
                },
                method,
                share(LOOKS),
                share(2),
                share(3),
                format!("{}/{}", show(p50), show(p95)),
                format!("{}/{}", show_requests(p50), show_requests(p95)),
            );
        }
    }
}
