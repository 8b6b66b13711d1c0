//! The built-in statistical judge: Kayenta's published canary-versus-baseline algorithm
//! (`NetflixACAJudge` with its Mann-Whitney classifier), as pure functions.
//!
//! Per signal, the canary series is compared with the baseline series
//! ([`classify::classify`]): NaN handling, optional outlier removal, then the
//! Mann-Whitney confidence interval of the shift canary - baseline
//! ([`mann_whitney::mann_whitney`]) decides High, Low or Pass; an empty side is Nodata.
//! The signals' outcomes are then scored by group and judged against the thresholds
//! ([`score::score`]). The caller fetches the series; nothing here does I/O, reads a
//! clock or allocates more than O(samples) memory.
//!
//! Each module's documentation lists where it departs from Kayenta, and why.

pub mod classify;
pub mod mann_whitney;
pub mod score;

use std::collections::BTreeMap;

use sluice_api::analysis::{JudgeMetric, JudgeSignal, JudgeThresholds};

pub use classify::{Classification, Comparison, Outcome, SampleSummary, SignalResult};
pub use mann_whitney::{DEFAULT_CONFIDENCE, MannWhitneyError, MannWhitneyResult};
pub use score::{GroupScore, JudgeReport, Verdict};

/// One signal's configuration with the samples fetched for it.
#[derive(Clone, Copy, Debug)]
pub struct SignalSamples<'a> {
    /// The signal's configuration.
    pub signal: &'a JudgeSignal,
    /// The canary series' values, in any order.
    pub canary: &'a [f64],
    /// The baseline series' values, in any order.
    pub baseline: &'a [f64],
}

/// Judges the samples of a `provider.judge` metric with its group weights, thresholds
/// and confidence level. `samples` normally holds one entry per `metric.signals` entry.
pub fn judge(metric: &JudgeMetric, samples: &[SignalSamples<'_>]) -> JudgeReport {
    judge_signals(
        samples,
        &metric.group_weights,
        &metric.thresholds,
        metric.confidence,
    )
}

/// [`judge`] with the metric's settings given one by one.
pub fn judge_signals(
    samples: &[SignalSamples<'_>],
    group_weights: &BTreeMap<String, f64>,
    thresholds: &JudgeThresholds,
    confidence: f64,
) -> JudgeReport {
    let signals = samples
        .iter()
        .map(|s| classify::classify(s.signal, s.canary, s.baseline, confidence))
        .collect();
    score::score(signals, group_weights, thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::analysis::{JudgeDirection, NanStrategy};

    fn signal(name: &str, group: &str, critical: bool) -> JudgeSignal {
        JudgeSignal {
            name: name.into(),
            canary_query: String::new(),
            baseline_query: String::new(),
            direction: JudgeDirection::Increase,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
            nan_strategy: NanStrategy::Remove,
            outlier_removal: false,
            critical,
            must_have_data: false,
            group: group.into(),
        }
    }

    #[test]
    fn end_to_end() {
        let base: Vec<f64> = (0..40).map(|i| 100.0 + f64::from(i % 10)).collect();
        let worse: Vec<f64> = base.iter().map(|v| v * 2.0).collect();
        let better: Vec<f64> = base.iter().map(|v| v / 2.0).collect();
        let latency = signal("latency", "latency", false);
        let errors = signal("errors", "errors", false);
        let cpu = signal("cpu", "errors", false);
        let samples = [
            SignalSamples {
                signal: &latency,
                canary: &worse,
                baseline: &base,
            },
            SignalSamples {
                signal: &errors,
                canary: &better,
                baseline: &base,
            },
            SignalSamples {
                signal: &cpu,
                canary: &base,
                baseline: &base,
            },
        ];
        let r = judge_signals(
            &samples,
            &BTreeMap::new(),
            &JudgeThresholds::default(),
            DEFAULT_CONFIDENCE,
        );
        // latency High (fails); errors Low (passes: direction Increase); cpu identical.
        // Groups: latency 0, errors 100, equal weights: 50.
        let classes: Vec<_> = r.signals.iter().map(|s| s.classification).collect();
        assert_eq!(
            classes,
            [
                Classification::High,
                Classification::Low,
                Classification::Pass
            ]
        );
        assert_eq!((r.score, r.verdict), (50.0, Verdict::Fail));
        assert!(r.summary().contains("latency High"), "{}", r.summary());

        // The same with latency critical: forced 0.
        let critical_latency = signal("latency", "latency", true);
        let mut samples = samples;
        samples[0].signal = &critical_latency;
        let r = judge_signals(
            &samples,
            &BTreeMap::new(),
            &JudgeThresholds::default(),
            DEFAULT_CONFIDENCE,
        );
        assert_eq!((r.score, r.verdict), (0.0, Verdict::Fail));
    }
}
