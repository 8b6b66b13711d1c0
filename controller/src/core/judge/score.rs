//! The judgement's score and verdict from the signals' classifications (Kayenta's
//! `WeightedSumScorer` and `ThresholdScoreClassifier`).
//!
//! * Each group scores the share of its counted signals that pass, 0 to 100. Counted are
//!   the outcomes Pass and Fail; Excluded (no data, not required) is left out.
//! * Groups listed in `groupWeights` weigh what is listed; the groups not listed share
//!   equally what is left of 100 (nothing if the listed weights reach 100).
//! * The score is the weighted mean of the group scores, rounded to two decimals (as
//!   Kayenta rounds; it also keeps 66.67 × 3 groups from missing 100 by float noise).
//! * Any failing critical signal makes the score 0. So does no data for half or more of
//!   the signals (Kayenta's `NODATA_THRESHOLD`).
//! * Pass when the score is at least `thresholds.pass`, Marginal when at least
//!   `thresholds.marginal`, Fail otherwise.
//!
//! Where this differs from Kayenta, and why:
//! * Kayenta adds `score × weight / 100` over groups, so a group whose signals all lack
//!   data counts as a full 100 (a silent pass), and the weight of a listed group with no
//!   signals is lost (the score can never reach 100). We take the weighted mean over the
//!   groups that have counted signals instead: with weights summing to 100 and every
//!   group counted it is the same number. Negative or non-finite weights count as 0;
//!   if every counted group weighs 0, they weigh the same.
//! * Kayenta leaves a signal whose comparison errored out of the score; we count it as
//!   failing (an error is never a silent pass).
//! * Kayenta classifies the forced score of 0 against the thresholds, so a marginal
//!   threshold of 0 would make a critical failure Marginal; a forced 0 is always Fail here.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;
use sluice_api::analysis::JudgeThresholds;

use super::classify::{Classification, Outcome, SignalResult, num};

/// The share of signals without data, in percent, at which the judgement fails (Kayenta's
/// `NODATA_THRESHOLD`): a comparison that saw half its signals blind proves nothing.
pub const NODATA_FAIL_PERCENT: f64 = 50.0;

/// The judgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// The score reached the pass threshold.
    Pass,
    /// The score reached the marginal threshold only: a human should look.
    Marginal,
    /// The score is below the marginal threshold, or was forced to 0.
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The score of one signal group.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupScore {
    /// The group's name.
    pub name: String,
    /// The weight listed in `groupWeights`, if any.
    pub configured_weight: Option<f64>,
    /// The share of the total score this group was given, in percent (0 when it has no
    /// counted signals).
    pub weight: f64,
    /// Signals that pass.
    pub passed: usize,
    /// Signals that fail.
    pub failed: usize,
    /// Signals left out (no data, not required).
    pub excluded: usize,
    /// `passed / (passed + failed) × 100`; None when no signal counted.
    pub score: Option<f64>,
}

/// The whole judgement: what an AnalysisRun measurement reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeReport {
    /// The score, 0 to 100, rounded to two decimals.
    pub score: f64,
    /// The verdict of the score against the thresholds.
    pub verdict: Verdict,
    /// Why the score was forced to 0 (critical failure, too little data), if it was.
    pub forced_reason: Option<String>,
    /// The pass threshold used.
    pub pass_threshold: f64,
    /// The marginal threshold used.
    pub marginal_threshold: f64,
    /// Per-group scores, by group name.
    pub groups: Vec<GroupScore>,
    /// Per-signal results, in the order given.
    pub signals: Vec<SignalResult>,
}

impl JudgeReport {
    /// A short human summary for the measurement message: verdict, score, thresholds,
    /// passing count, and the failing and left-out signals with their reasons.
    pub fn summary(&self) -> String {
        let counted = self
            .signals
            .iter()
            .filter(|s| s.outcome != Outcome::Excluded)
            .count();
        let passed = self
            .signals
            .iter()
            .filter(|s| s.outcome == Outcome::Pass)
            .count();
        let mut out = format!(
            "{}: score {} (pass >= {}, marginal >= {})",
            self.verdict,
            num(self.score),
            num(self.pass_threshold),
            num(self.marginal_threshold)
        );
        if let Some(reason) = &self.forced_reason {
            let _ = write!(out, ", forced to 0: {reason}");
        }
        let _ = write!(out, "; {passed} of {counted} signals pass");
        if self.groups.len() > 1 {
            let groups: Vec<String> = self
                .groups
                .iter()
                .map(|g| match g.score {
                    Some(s) => format!("{} {}", g.name, num(s)),
                    None => format!("{} no data", g.name),
                })
                .collect();
            let _ = write!(out, " (groups: {})", groups.join(", "));
        }
        for s in self.signals.iter().filter(|s| s.outcome == Outcome::Fail) {
            let critical = if s.critical { " (critical)" } else { "" };
            let _ = write!(
                out,
                "; {}{critical} {}: {}",
                s.name, s.classification, s.reason
            );
        }
        let excluded: Vec<&str> = self
            .signals
            .iter()
            .filter(|s| s.outcome == Outcome::Excluded)
            .map(|s| s.name.as_str())
            .collect();
        if !excluded.is_empty() {
            let _ = write!(out, "; left out, no data: {}", excluded.join(", "));
        }
        out
    }
}

/// The verdict of a score against the thresholds (Kayenta's `ThresholdScoreClassifier`).
/// A NaN score or threshold never passes.
pub fn verdict(score: f64, thresholds: &JudgeThresholds) -> Verdict {
    if score >= thresholds.pass {
        Verdict::Pass
    } else if score >= thresholds.marginal {
        Verdict::Marginal
    } else {
        Verdict::Fail
    }
}

/// Scores classified signals (see the module documentation for the rules).
pub fn score(
    signals: Vec<SignalResult>,
    group_weights: &BTreeMap<String, f64>,
    thresholds: &JudgeThresholds,
) -> JudgeReport {
    let mut groups: BTreeMap<&str, GroupScore> = BTreeMap::new();
    for s in &signals {
        let g = groups
            .entry(s.group.as_str())
            .or_insert_with(|| GroupScore {
                name: s.group.clone(),
                configured_weight: group_weights.get(&s.group).copied(),
                weight: 0.0,
                passed: 0,
                failed: 0,
                excluded: 0,
                score: None,
            });
        match s.outcome {
            Outcome::Pass => g.passed += 1,
            Outcome::Fail => g.failed += 1,
            Outcome::Excluded => g.excluded += 1,
        }
    }
    for g in groups.values_mut() {
        let counted = g.passed + g.failed;
        if counted > 0 {
            g.score = Some(g.passed as f64 / counted as f64 * 100.0);
        }
    }

    // Weights: listed ones as given, the rest of 100 shared by the unlisted groups.
    let usable = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let listed: f64 = group_weights.values().map(|&w| usable(w)).sum();
    let unlisted = groups
        .values()
        .filter(|g| g.configured_weight.is_none())
        .count();
    let share = if unlisted > 0 {
        (100.0 - listed).max(0.0) / unlisted as f64
    } else {
        0.0
    };
    let raw = |g: &GroupScore| g.configured_weight.map_or(share, usable);
    let scored: Vec<&str> = groups
        .iter()
        .filter(|(_, g)| g.score.is_some())
        .map(|(name, _)| *name)
        .collect();
    let total: f64 = scored
        .iter()
        .map(|name| groups.get(name).map_or(0.0, raw))
        .sum();
    let mut weighted = 0.0;
    for name in &scored {
        if let Some(g) = groups.get_mut(name) {
            g.weight = if total > 0.0 {
                raw(g) / total * 100.0
            } else {
                100.0 / scored.len() as f64
            };
            weighted += g.weight / 100.0 * g.score.unwrap_or(0.0);
        }
    }
    let computed = ((weighted * 100.0).round() / 100.0).clamp(0.0, 100.0);

    // Reasons to force the score to 0, Kayenta's first.
    let critical: Vec<String> = signals
        .iter()
        .filter(|s| s.critical && s.outcome == Outcome::Fail)
        .map(|s| format!("{} ({})", s.name, s.classification))
        .collect();
    let nodata = signals
        .iter()
        .filter(|s| s.classification == Classification::Nodata)
        .count();
    let forced_reason = if signals.is_empty() {
        Some("no signals to judge".to_string())
    } else if !critical.is_empty() {
        Some(format!("critical signal failed: {}", critical.join(", ")))
    } else if nodata as f64 * 100.0 / signals.len() as f64 >= NODATA_FAIL_PERCENT {
        Some(format!(
            "{nodata} of {} signals have no data",
            signals.len()
        ))
    } else if scored.is_empty() {
        // Unreachable past the no-data rule (only no-data signals are left out); kept so
        // that an empty weighted mean can never read as a score.
        Some("no signal could be scored".to_string())
    } else {
        None
    };

    let (score, verdict) = match &forced_reason {
        Some(_) => (0.0, Verdict::Fail),
        None => (computed, verdict(computed, thresholds)),
    };
    JudgeReport {
        score,
        verdict,
        forced_reason,
        pass_threshold: thresholds.pass,
        marginal_threshold: thresholds.marginal,
        groups: groups.into_values().collect(),
        signals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::judge::classify::SampleSummary;
    use sluice_api::analysis::JudgeDirection;

    fn summary() -> SampleSummary {
        SampleSummary {
            received: 10,
            nan: 0,
            outliers: 0,
            used: 10,
            mean: Some(1.0),
        }
    }

    /// A signal result with the given group and outcome; the classification follows the
    /// outcome (Fail is High, Excluded is Nodata).
    fn sig(name: &str, group: &str, outcome: Outcome) -> SignalResult {
        SignalResult {
            name: name.into(),
            group: group.into(),
            direction: JudgeDirection::Increase,
            critical: false,
            must_have_data: false,
            classification: match outcome {
                Outcome::Pass => Classification::Pass,
                Outcome::Fail => Classification::High,
                Outcome::Excluded => Classification::Nodata,
            },
            outcome,
            reason: "because".into(),
            canary: summary(),
            baseline: summary(),
            comparison: None,
        }
    }

    fn critical(mut s: SignalResult) -> SignalResult {
        s.critical = true;
        s
    }

    fn weights(list: &[(&str, f64)]) -> BTreeMap<String, f64> {
        list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn run(signals: Vec<SignalResult>, w: &[(&str, f64)]) -> JudgeReport {
        score(signals, &weights(w), &JudgeThresholds::default())
    }

    use Outcome::{Excluded, Fail, Pass};

    #[test]
    fn share_of_passing_signals() {
        let r = run(
            vec![sig("a", "default", Pass), sig("b", "default", Pass)],
            &[],
        );
        assert_eq!((r.score, r.verdict), (100.0, Verdict::Pass));
        let r = run(
            vec![
                sig("a", "default", Pass),
                sig("b", "default", Fail),
                sig("c", "default", Pass),
            ],
            &[],
        );
        assert_eq!((r.score, r.verdict), (66.67, Verdict::Fail));
        assert_eq!(r.groups.len(), 1);
        assert_eq!((r.groups[0].passed, r.groups[0].failed), (2, 1));
    }

    #[test]
    fn unlisted_groups_weigh_the_same() {
        // Group a: 1 of 2 pass (50); group b: 1 of 1 (100). Equal weights: 75, which is not
        // the 2-of-3 share of signals: groups weigh, not signals.
        let r = run(
            vec![
                sig("1", "a", Pass),
                sig("2", "a", Fail),
                sig("3", "b", Pass),
            ],
            &[],
        );
        assert_eq!((r.score, r.verdict), (75.0, Verdict::Marginal));
        assert_eq!(r.groups[0].weight, 50.0);
    }

    #[test]
    fn listed_weights_and_the_rest() {
        // a listed at 70 (score 50), b unlisted gets the remaining 30 (score 100):
        // 0.7 * 50 + 0.3 * 100 = 65.
        let r = run(
            vec![
                sig("1", "a", Pass),
                sig("2", "a", Fail),
                sig("3", "b", Pass),
            ],
            &[("a", 70.0)],
        );
        assert_eq!(r.score, 65.0);
        let a = &r.groups[0];
        assert_eq!((a.configured_weight, a.weight), (Some(70.0), 70.0));
        // a listed at 50 (score 100); b and c unlisted share 50: b 0, c 100.
        // 50 + 0 + 25 = 75.
        let r = run(
            vec![
                sig("1", "a", Pass),
                sig("2", "b", Fail),
                sig("3", "c", Pass),
            ],
            &[("a", 50.0)],
        );
        assert_eq!(r.score, 75.0);
        assert_eq!(
            r.groups.iter().map(|g| g.weight).collect::<Vec<_>>(),
            [50.0, 25.0, 25.0]
        );
    }

    #[test]
    fn weights_are_relative() {
        // 1 : 3, a passes, b fails: 25.
        let r = run(
            vec![sig("1", "a", Pass), sig("2", "b", Fail)],
            &[("a", 1.0), ("b", 3.0)],
        );
        assert_eq!(r.score, 25.0);
        // A listed group without signals does not take weight away (Kayenta would cap
        // the score at 60 here).
        let r = run(vec![sig("1", "a", Pass)], &[("a", 60.0), ("gone", 40.0)]);
        assert_eq!(r.score, 100.0);
        // Unusable weights count as 0; all-zero weights fall back to equal weights.
        let r = run(
            vec![sig("1", "a", Pass), sig("2", "b", Fail)],
            &[("a", f64::NAN), ("b", -5.0)],
        );
        assert_eq!(r.score, 50.0);
        // Listed weights of 100 leave nothing for unlisted groups.
        let r = run(
            vec![sig("1", "a", Pass), sig("2", "b", Fail)],
            &[("a", 100.0)],
        );
        assert_eq!(r.score, 100.0);
    }

    #[test]
    fn thirds_round_to_a_clean_100() {
        let r = run(
            vec![
                sig("1", "a", Pass),
                sig("2", "b", Pass),
                sig("3", "c", Pass),
            ],
            &[],
        );
        assert_eq!((r.score, r.verdict), (100.0, Verdict::Pass));
    }

    #[test]
    fn critical_failure_scores_zero() {
        let signals = vec![
            sig("1", "a", Pass),
            sig("2", "a", Pass),
            sig("3", "a", Pass),
            critical(sig("4", "b", Fail)),
        ];
        let r = run(signals, &[("a", 99.0)]);
        assert_eq!((r.score, r.verdict), (0.0, Verdict::Fail));
        assert!(r.forced_reason.unwrap().contains("4 (High)"));
        // A critical signal that passes changes nothing.
        let r = run(
            vec![sig("1", "a", Pass), critical(sig("2", "a", Pass))],
            &[],
        );
        assert_eq!((r.score, r.verdict), (100.0, Verdict::Pass));
        // A forced 0 fails even with thresholds of 0.
        let t = JudgeThresholds {
            pass: 0.0,
            marginal: 0.0,
        };
        let r = score(vec![critical(sig("1", "a", Fail))], &BTreeMap::new(), &t);
        assert_eq!(r.verdict, Verdict::Fail);
    }

    #[test]
    fn no_data() {
        // Left out: 3 of 4 signals scored, all pass.
        let r = run(
            vec![
                sig("1", "a", Pass),
                sig("2", "a", Pass),
                sig("3", "a", Pass),
                sig("4", "a", Excluded),
            ],
            &[],
        );
        assert_eq!((r.score, r.verdict), (100.0, Verdict::Pass));
        assert_eq!(r.groups[0].excluded, 1);
        // Required data (a Nodata that fails) counts against the score.
        let mut required = sig("2", "a", Fail);
        required.classification = Classification::Nodata;
        required.must_have_data = true;
        let r = run(
            vec![
                sig("1", "a", Pass),
                required,
                sig("3", "a", Pass),
                sig("4", "a", Pass),
                sig("5", "a", Pass),
            ],
            &[],
        );
        assert_eq!(r.score, 80.0);
        // Half the signals without data: forced 0.
        let r = run(vec![sig("1", "a", Pass), sig("2", "a", Excluded)], &[]);
        assert_eq!((r.score, r.verdict), (0.0, Verdict::Fail));
        assert!(
            r.forced_reason
                .unwrap()
                .contains("1 of 2 signals have no data")
        );
        // A group with no data at all does not count as 100.
        let r = run(
            vec![
                sig("1", "a", Pass),
                sig("2", "a", Fail),
                sig("3", "b", Excluded),
            ],
            &[("a", 50.0), ("b", 50.0)],
        );
        assert_eq!(r.score, 50.0);
        assert_eq!(r.groups[1].score, None);
        assert_eq!(r.groups[1].weight, 0.0);
    }

    #[test]
    fn errors_count_as_failures() {
        let mut e = sig("2", "a", Fail);
        e.classification = Classification::Error;
        let r = run(vec![sig("1", "a", Pass), e], &[]);
        assert_eq!(r.score, 50.0);
    }

    #[test]
    fn nothing_to_judge() {
        let r = run(vec![], &[]);
        assert_eq!((r.score, r.verdict), (0.0, Verdict::Fail));
        assert!(r.forced_reason.is_some());
    }

    #[test]
    fn thresholds_to_verdict() {
        let t = JudgeThresholds::default(); // pass 95, marginal 75
        let table = [
            (100.0, Verdict::Pass),
            (95.0, Verdict::Pass),
            (94.99, Verdict::Marginal),
            (75.0, Verdict::Marginal),
            (74.99, Verdict::Fail),
            (0.0, Verdict::Fail),
            (f64::NAN, Verdict::Fail),
        ];
        for (s, v) in table {
            assert_eq!(verdict(s, &t), v, "{s}");
        }
        let custom = JudgeThresholds {
            pass: 80.0,
            marginal: 60.0,
        };
        let r = score(
            vec![
                sig("1", "a", Pass),
                sig("2", "a", Pass),
                sig("3", "a", Fail),
            ],
            &BTreeMap::new(),
            &custom,
        );
        assert_eq!((r.score, r.verdict), (66.67, Verdict::Marginal));
    }

    #[test]
    fn summary_names_the_failures() {
        let r = run(
            vec![
                sig("latency", "a", Fail),
                sig("errors", "b", Pass),
                sig("cpu", "b", Excluded),
            ],
            &[],
        );
        let text = r.summary();
        assert!(
            text.starts_with("Fail: score 50 (pass >= 95, marginal >= 75)"),
            "{text}"
        );
        assert!(text.contains("1 of 2 signals pass"), "{text}");
        assert!(text.contains("latency High: because"), "{text}");
        assert!(text.contains("left out, no data: cpu"), "{text}");
        assert!(text.contains("groups: a 0, b 100"), "{text}");
    }
}
