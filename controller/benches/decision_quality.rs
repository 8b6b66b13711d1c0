//! Decision-quality benchmark: how often the statistical judge and a static threshold
//! rule flag a canary, for synthetic canary/baseline series where the truth is known.
//!
//!   cargo bench -p sluice-controller --bench decision_quality
//!
//! Each case draws canary and baseline samples (one per analysis interval) from known
//! distributions with a seeded generator, so the figures are reproducible. Printed per
//! case and sample count: the share of trials each method flags (for the identical and
//! noisy cases that is the false-alarm rate, for the others the detection rate).

use std::collections::BTreeMap;

use sluice_api::analysis::{JudgeDirection, JudgeSignal, JudgeThresholds, NanStrategy};
use sluice_controller::core::judge::{self, SignalSamples, Verdict};

const TRIALS: usize = 400;
const SAMPLE_COUNTS: &[usize] = &[5, 10, 20, 40];

/// xorshift64* with Box-Muller: small, seeded, good enough for synthetic noise.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// An error rate measured over one interval of `requests` requests.
    fn error_rate(&mut self, p: f64, requests: usize) -> f64 {
        (0..requests).filter(|_| self.uniform() < p).count() as f64 / requests as f64
    }
}

/// A synthetic signal: draws one interval's value for the canary and the baseline.
struct Case {
    name: &'static str,
    /// True when the canary really is worse.
    regression: bool,
    draw: fn(&mut Rng) -> (f64, f64),
    /// The static rule's threshold on the canary's mean (Flagger-style), set 20 % above
    /// the baseline's nominal value.
    threshold: f64,
}

fn latency(rng: &mut Rng, factor: f64, sd: f64) -> (f64, f64) {
    (
        rng.normal(0.100 * factor, sd).max(0.0),
        rng.normal(0.100, sd).max(0.0),
    )
}

fn errors(rng: &mut Rng, canary: f64) -> (f64, f64) {
    (rng.error_rate(canary, 1000), rng.error_rate(0.01, 1000))
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "latency identical",
            regression: false,
            draw: |r| latency(r, 1.0, 0.01),
            threshold: 0.12,
        },
        Case {
            name: "latency identical, noisy",
            regression: false,
            draw: |r| latency(r, 1.0, 0.04),
            threshold: 0.12,
        },
        Case {
            name: "latency +10%",
            regression: true,
            draw: |r| latency(r, 1.1, 0.01),
            threshold: 0.12,
        },
        Case {
            name: "latency +50%",
            regression: true,
            draw: |r| latency(r, 1.5, 0.01),
            threshold: 0.12,
        },
        Case {
            name: "latency 2x",
            regression: true,
            draw: |r| latency(r, 2.0, 0.01),
            threshold: 0.12,
        },
        Case {
            name: "latency +50%, noisy",
            regression: true,
            draw: |r| latency(r, 1.5, 0.04),
            threshold: 0.12,
        },
        Case {
            name: "error rate identical (1%)",
            regression: false,
            draw: |r| errors(r, 0.01),
            threshold: 0.012,
        },
        Case {
            name: "error rate +10% (1.1%)",
            regression: true,
            draw: |r| errors(r, 0.011),
            threshold: 0.012,
        },
        Case {
            name: "error rate +50% (1.5%)",
            regression: true,
            draw: |r| errors(r, 0.015),
            threshold: 0.012,
        },
        Case {
            name: "error rate 2x (2%)",
            regression: true,
            draw: |r| errors(r, 0.02),
            threshold: 0.012,
        },
    ]
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

fn main() {
    let signal = signal();
    let thresholds = JudgeThresholds::default();
    let weights = BTreeMap::new();
    println!(
        "decision quality: {TRIALS} trials per cell; share of trials flagged (judge | static threshold)"
    );
    println!(
        "{:<28} {:>5}  {}",
        "case",
        "truth",
        SAMPLE_COUNTS
            .iter()
            .map(|n| format!("n={n:<3} judge thresh"))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for (i, case) in cases().iter().enumerate() {
        let mut row = Vec::new();
        for &n in SAMPLE_COUNTS {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((i as u64 + 1) << 32) ^ n as u64);
            let (mut judge_flags, mut threshold_flags) = (0, 0);
            for _ in 0..TRIALS {
                let (canary, baseline): (Vec<f64>, Vec<f64>) =
                    (0..n).map(|_| (case.draw)(&mut rng)).unzip();
                let report = judge::judge_signals(
                    &[SignalSamples {
                        signal: &signal,
                        canary: &canary,
                        baseline: &baseline,
                    }],
                    &weights,
                    &thresholds,
                    0.98,
                );
                if report.verdict == Verdict::Fail {
                    judge_flags += 1;
                }
                let mean = canary.iter().sum::<f64>() / n as f64;
                if mean > case.threshold {
                    threshold_flags += 1;
                }
            }
            let pct = |k: usize| 100.0 * k as f64 / TRIALS as f64;
            row.push(format!(
                "{:>5.1}% {:>5.1}%",
                pct(judge_flags),
                pct(threshold_flags)
            ));
        }
        println!(
            "{:<28} {:>5}  {}",
            case.name,
            if case.regression { "worse" } else { "same" },
            row.join("    ")
        );
    }
}
