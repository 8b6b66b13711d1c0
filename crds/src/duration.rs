//! Durations as people write them in manifests: `30s`, `1m30s`, `2h`, or a bare number of
//! seconds (`30` or `"30"`), as Argo Rollouts accepts.

use std::{fmt, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The units the CEL rule accepts. Kept to what `humantime` parses, so that whatever the
/// apiserver admits, the controller can read.
const UNIT: &str = "(ns|nsec|us|usec|ms|msec|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|week|weeks)";

/// The CEL rule attached to every duration field; a duration is an int (seconds) or a string.
pub fn cel_rule() -> String {
    format!("type(self) == int ? self >= 0 : self.matches('^ *([0-9]+|([0-9]+ ?{UNIT} ?)+) *$')")
}

/// Whether the apiserver admits `text` as a duration string: the same language as the
/// regular expression of [`cel_rule`] (digits alone, or digits and a unit repeated, with
/// optional single spaces), for tools that check a manifest before applying it.
pub fn admits_text(text: &str) -> bool {
    let units: Vec<&str> = UNIT
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split('|')
        .collect();
    let body = text.trim_matches(' ');
    if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    // One or more `[0-9]+ ?UNIT ?`, trying every unit that matches (as the regex would).
    fn rest(s: &str, units: &[&str]) -> bool {
        if s.is_empty() {
            return true;
        }
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        let s = &s[digits..];
        let s = s.strip_prefix(' ').unwrap_or(s);
        units.iter().any(|u| {
            s.strip_prefix(u)
                .is_some_and(|after| rest(after.strip_prefix(' ').unwrap_or(after), units))
        })
    }
    !body.is_empty() && rest(body, &units)
}

/// The message shown when [`cel_rule`] rejects a value.
pub const CEL_MESSAGE: &str =
    "must be a duration such as 30s, 5m, 1h30m, or a whole number of seconds";

/// A duration written as a whole number of seconds or a humantime string (`30s`, `1m30s`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HumanDuration {
    /// A whole number of seconds.
    Seconds(i64),
    /// A humantime string such as `30s` or `1h30m`, or a number of seconds as a string.
    Text(String),
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration must not be negative, got {0}")]
    Negative(i64),
    #[error("invalid duration {text:?}: {reason}")]
    Invalid { text: String, reason: String },
}

impl HumanDuration {
    /// A duration of `secs` seconds.
    pub fn from_secs(secs: i64) -> Self {
        HumanDuration::Seconds(secs)
    }

    /// Parses into a [`Duration`]; a bare number means seconds.
    pub fn to_duration(&self) -> Result<Duration, DurationError> {
        match self {
            HumanDuration::Seconds(s) if *s < 0 => Err(DurationError::Negative(*s)),
            HumanDuration::Seconds(s) => Ok(Duration::from_secs(*s as u64)),
            HumanDuration::Text(text) => {
                let trimmed = text.trim();
                if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
                    return trimmed
                        .parse::<u64>()
                        .map(Duration::from_secs)
                        .map_err(|e| DurationError::Invalid {
                            text: text.clone(),
                            reason: e.to_string(),
                        });
                }
                humantime::parse_duration(trimmed).map_err(|e| DurationError::Invalid {
                    text: text.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration::Text(humantime::format_duration(d).to_string().replace(' ', ""))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HumanDuration::Seconds(s) => write!(f, "{s}s"),
            HumanDuration::Text(t) => f.write_str(t),
        }
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HumanDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            // Bounds the cost the apiserver estimates for the regex rule.
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": cel_rule(),
                "message": CEL_MESSAGE,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> HumanDuration {
        HumanDuration::Text(s.to_string())
    }

    #[test]
    fn parses_seconds_and_humantime() {
        let cases = [
            (HumanDuration::Seconds(30), 30_000),
            (text("30"), 30_000),
            (text("30s"), 30_000),
            (text("1m30s"), 90_000),
            (text("1m 30s"), 90_000),
            (text("2h"), 7_200_000),
            (text("500ms"), 500),
            (text("1d"), 86_400_000),
            (text(" 5m "), 300_000),
        ];
        for (input, millis) in cases {
            assert_eq!(
                input.to_duration().unwrap(),
                Duration::from_millis(millis),
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_garbage_and_negatives() {
        assert_eq!(
            HumanDuration::Seconds(-1).to_duration(),
            Err(DurationError::Negative(-1))
        );
        for bad in ["", "abc", "5 parsecs", "1.5.3s", "-5s"] {
            assert!(text(bad).to_duration().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn deserializes_int_or_string() {
        let v: HumanDuration = serde_json::from_str("45").unwrap();
        assert_eq!(v, HumanDuration::Seconds(45));
        let v: HumanDuration = serde_json::from_str("\"45s\"").unwrap();
        assert_eq!(v, text("45s"));
    }

    /// Every unit the admission rule lets through must be readable by the controller,
    /// otherwise a manifest could be admitted and then fail at run time.
    #[test]
    fn every_unit_admitted_by_cel_parses() {
        let units = UNIT.trim_start_matches('(').trim_end_matches(')');
        for unit in units.split('|') {
            for sample in [
                format!("3{unit}"),
                format!("3 {unit}"),
                format!("1h3{unit}"),
            ] {
                assert!(
                    text(&sample).to_duration().is_ok(),
                    "{sample:?} is admitted by the CRD but humantime rejects it"
                );
            }
        }
    }

    #[test]
    fn admits_text_is_the_cel_rules_language() {
        for ok in [
            "30", " 30 ", "30s", "1m30s", "1m 30s", "1h30m", "2 hours", "5m",
        ] {
            assert!(admits_text(ok), "{ok:?}");
        }
        for bad in ["", "1.5h", "-5s", "5 parsecs", "s", "1m30", "30s 1", "1µs"] {
            assert!(!admits_text(bad), "{bad:?}");
        }
    }

    #[test]
    fn cel_rule_escapes_for_a_cel_string_literal() {
        let rule = cel_rule();
        assert!(rule.starts_with("type(self) == int ? self >= 0 : "));
        assert!(
            !rule.contains('"'),
            "rule must not contain a double quote: {rule}"
        );
    }
}
