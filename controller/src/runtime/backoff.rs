//! Per-Rollout retry delays after a failed reconcile: exponential, capped, jittered, and
//! forgotten on the first success.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// The first retry's delay.
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// No retry waits longer than this (before jitter).
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// Each delay is spread over ±this share, so Rollouts that failed together (an apiserver
/// restart) do not retry together.
pub const JITTER: f64 = 0.2;

/// The delay before retry number `attempt` (1 for the first failure): 0.5 s doubling up
/// to 5 min, scaled by `jitter` in [0, 1) mapped onto ±[`JITTER`].
pub fn delay(attempt: u32, jitter: f64) -> Duration {
    capped(attempt, MAX_DELAY, jitter)
}

/// 0.5 s doubling up to `max`, jittered as [`delay`].
pub fn capped(attempt: u32, max: Duration, jitter: f64) -> Duration {
    // 0.5 s · 2^20 is past any cap used here, so the exponent never needs to grow further
    // (and cannot overflow).
    let exponent = attempt.clamp(1, 21) - 1;
    let base = FIRST_DELAY.saturating_mul(1 << exponent).min(max);
    base.mul_f64(1.0 - JITTER + 2.0 * JITTER * jitter.clamp(0.0, 1.0))
}

/// Longest wait between two attempts of a watch (or its re-list) that keeps failing.
pub const WATCH_MAX_DELAY: Duration = Duration::from_secs(5);

/// Retries of a failing watch: 0.5 s doubling to [`WATCH_MAX_DELAY`], jittered, reset by
/// the first event that gets through. kube-runtime's default climbs to 30 s, and an
/// apiserver restart costs two of its cycles (the outage, then a `410 Gone` on resuming
/// from the old resourceVersion before the re-list): about a minute and a half in which
/// nothing reached the caches (measured in the apiserver-restart e2e). A few requests
/// every 5 s while the apiserver is away cost it nothing.
#[derive(Debug, Default)]
pub struct WatchBackoff {
    attempt: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.attempt = self.attempt.saturating_add(1);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Some(capped(
            self.attempt,
            WATCH_MAX_DELAY,
            jitter_for(&self.attempt, nanos),
        ))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Consecutive failures per object.
#[derive(Debug)]
pub struct Failures<K> {
    counts: Mutex<HashMap<K, u32>>,
}

impl<K> Default for Failures<K> {
    fn default() -> Self {
        Failures {
            counts: Mutex::default(),
        }
    }
}

impl<K: Hash + Eq> Failures<K> {
    /// Records one more failure of `key` and returns how many in a row it has had.
    pub fn record(&self, key: K) -> u32 {
        let mut counts = self.counts.lock().expect("not poisoned");
        let n = counts.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// A success: the next failure starts from the first delay again.
    pub fn forget(&self, key: &K) {
        self.counts.lock().expect("not poisoned").remove(key);
    }

    /// Objects with failures on record (for the queue metrics and tests).
    pub fn len(&self) -> usize {
        self.counts.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A jitter fraction in [0, 1) that differs between objects and between moments, without
/// a random number generator: the sub-second clock mixed with the object's key.
pub fn jitter_for(key: &impl Hash, subsec_nanos: u32) -> f64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let h = BuildHasherDefault::<DefaultHasher>::default().hash_one((key, subsec_nanos));
    (h % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_half_a_second_and_stop_at_five_minutes() {
        let middle = 0.5; // no jitter
        let delays: Vec<f64> = (1..=14).map(|n| delay(n, middle).as_secs_f64()).collect();
        assert_eq!(
            delays,
            [
                0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0, 300.0, 300.0
            ]
        );
        assert_eq!(delay(u32::MAX, middle), MAX_DELAY, "no overflow");
        assert_eq!(
            delay(0, middle),
            FIRST_DELAY,
            "attempt 0 counts as the first"
        );
    }

    #[test]
    fn jitter_spreads_each_delay_by_a_fifth_either_way() {
        assert_eq!(delay(1, 0.0), Duration::from_millis(400));
        assert!(delay(1, 0.999_999) <= Duration::from_millis(600));
        assert!(delay(1, 0.999_999) > Duration::from_millis(599));
        assert_eq!(delay(20, 0.0), Duration::from_secs(240));
        assert_eq!(delay(20, 1.0), Duration::from_secs(360));
        assert_eq!(
            delay(3, 7.0),
            delay(3, 1.0),
            "out-of-range jitter is clamped"
        );
    }

    #[test]
    fn jitter_differs_between_objects_and_stays_in_range() {
        let a: Vec<f64> = (0..50).map(|i| jitter_for(&"ns/a", i * 7919)).collect();
        let b: Vec<f64> = (0..50).map(|i| jitter_for(&"ns/b", i * 7919)).collect();
        assert!(a.iter().chain(&b).all(|j| (0.0..1.0).contains(j)));
        assert_ne!(a, b);
        let distinct: std::collections::BTreeSet<u64> =
            a.iter().map(|j| (j * 1e6) as u64).collect();
        assert!(distinct.len() > 40, "jitter barely varies: {a:?}");
    }

    #[test]
    fn a_failing_watch_is_retried_within_five_seconds_and_resets_on_success() {
        use kube::runtime::utils::Backoff as _;
        let mut b = WatchBackoff::default();
        let delays: Vec<Duration> = (&mut b).take(12).collect();
        let secs = |d: &Duration| d.as_secs_f64();
        assert!((0.4..=0.6).contains(&secs(&delays[0])), "{delays:?}");
        assert!((0.8..=1.2).contains(&secs(&delays[1])), "{delays:?}");
        assert!(
            delays
                .iter()
                .all(|d| *d <= WATCH_MAX_DELAY.mul_f64(1.0 + JITTER)),
            "{delays:?}"
        );
        assert!(
            secs(&delays[11]) >= 4.0,
            "it does reach the cap: {delays:?}"
        );
        b.reset();
        assert!(b.next().unwrap() <= Duration::from_millis(600));
    }

    #[test]
    fn failures_count_in_a_row_and_a_success_resets_them() {
        let f = Failures::default();
        assert_eq!(f.record("a"), 1);
        assert_eq!(f.record("a"), 2);
        assert_eq!(f.record("b"), 1);
        f.forget(&"a");
        assert_eq!(f.record("a"), 1);
        assert_eq!(f.len(), 2);
    }
}
