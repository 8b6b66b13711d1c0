//! What sluice wrote for each Rollout that its caches have not shown yet.
//!
//! The caches are fed by watches, so after a reconcile writes (a status, a ReplicaSet's
//! size, a run) there is a moment in which they still hold the objects as they were
//! before. Planning the Rollout again in that moment repeats decisions already taken (a
//! second scale, a second run) and sends a status write conditioned on a resourceVersion
//! that is already gone: at 200 Rollouts that was nine status writes in ten answered
//! `409 Conflict`. So each reconcile records the resourceVersions its writes produced,
//! and the next reconcile of that Rollout waits, without any API call, until every cache
//! shows them; the watch event that brings the last one triggers it. This is client-go's
//! "expectations" pattern, keyed by resourceVersion instead of by counts.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::adapters::written::{Cache, Written};

/// Longest a Rollout waits for its caches. A watch that is down (an apiserver restart)
/// or an object deleted by someone else right after our write would otherwise hold the
/// Rollout for ever; past this, it is planned from what the caches hold, as before.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// Where an object's wait for its caches stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Every write is shown (or none was recorded): plan now.
    Done,
    /// Not all shown yet: look again within this long (the watch event usually comes first).
    For(Duration),
    /// Waited [`MAX_WAIT`] and these are still not shown: the caches are behind.
    GaveUp(Vec<Written>),
}

/// Objects whose cached copy is known to be behind the stored one (a watch later than
/// [`MAX_WAIT`], or a write refused with 409 Conflict for a stale resourceVersion): the
/// next reconcile reads the object from the API instead, once, so that its write carries
/// the stored resourceVersion rather than conflicting again on every retry until the
/// watch catches up. Under load (the apiserver's watch 10-25 s behind at N=1,000, load 8)
/// that was up to five 409s in a row per Rollout.
#[derive(Debug)]
pub struct Stale<K> {
    keys: Mutex<HashSet<K>>,
}

impl<K> Default for Stale<K> {
    fn default() -> Self {
        Stale {
            keys: Mutex::new(HashSet::new()),
        }
    }
}

impl<K: Eq + Hash> Stale<K> {
    pub fn mark(&self, key: K) {
        self.keys.lock().expect("stale lock poisoned").insert(key);
    }

    /// True (once) when `key` was marked.
    pub fn take(&self, key: &K) -> bool {
        self.keys.lock().expect("stale lock poisoned").remove(key)
    }
}

/// The writes of each object's last reconcile that the caches have not all shown yet.
#[derive(Debug)]
pub struct Expectations<K> {
    pending: Mutex<HashMap<K, Pending>>,
}

#[derive(Debug)]
struct Pending {
    written: Vec<Written>,
    since: Instant,
}

impl<K> Default for Expectations<K> {
    fn default() -> Self {
        Expectations {
            pending: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash> Expectations<K> {
    /// Records what the reconcile of `key` that finished at `now` wrote (replacing what
    /// an earlier reconcile left: a reconcile only runs once that was shown, or given up).
    pub fn record(&self, key: K, written: Vec<Written>, now: Instant) {
        let mut pending = self.pending.lock().expect("expectations lock poisoned");
        // Entries of Rollouts deleted while they waited would stay for ever otherwise.
        pending.retain(|_, p| now.saturating_duration_since(p.since) < MAX_WAIT);
        if written.is_empty() {
            pending.remove(&key);
        } else {
            pending.insert(
                key,
                Pending {
                    written,
                    since: now,
                },
            );
        }
    }

    /// How much longer `key` should wait for its caches, given what each cache holds of
    /// an object (`cached(written)`: its resourceVersion, or None when not cached). None
    /// when every write is shown (or the wait is over): plan now.
    pub fn wait(
        &self,
        key: &K,
        now: Instant,
        cached: impl Fn(&Written) -> Option<Option<String>>,
    ) -> Option<Duration> {
        match self.waiting(key, now, cached) {
            Waiting::For(left) => Some(left),
            Waiting::Done | Waiting::GaveUp(_) => None,
        }
    }

    /// As [`wait`](Self::wait), telling a wait that is over because the caches showed
    /// every write from one given up on, with the writes still not shown.
    pub fn waiting(
        &self,
        key: &K,
        now: Instant,
        cached: impl Fn(&Written) -> Option<Option<String>>,
    ) -> Waiting {
        let mut pending = self.pending.lock().expect("expectations lock poisoned");
        let Some(entry) = pending.get_mut(key) else {
            return Waiting::Done;
        };
        entry
            .written
            .retain(|w| !w.shown_by(cached(w).as_ref().map(|rv| rv.as_deref())));
        let waited = now.saturating_duration_since(entry.since);
        if entry.written.is_empty() {
            pending.remove(key);
            return Waiting::Done;
        }
        if waited >= MAX_WAIT {
            let unshown = pending.remove(key).map(|p| p.written).unwrap_or_default();
            return Waiting::GaveUp(unshown);
        }
        Waiting::For(MAX_WAIT - waited)
    }

    /// Forgets `key` (its object was deleted).
    pub fn forget(&self, key: &K) {
        self.pending
            .lock()
            .expect("expectations lock poisoned")
            .remove(key);
    }

    /// True when no object has writes not shown yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many objects have writes not shown yet.
    pub fn len(&self) -> usize {
        self.pending
            .lock()
            .expect("expectations lock poisoned")
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(version: &str) -> Written {
        Written::at(Cache::ReplicaSet, "shop", "web-abc", Some(version)).unwrap()
    }

    #[test]
    fn a_rollout_waits_until_every_cache_shows_its_writes_and_no_longer_than_the_bound() {
        let expectations = Expectations::default();
        let start = Instant::now();
        let status = Written::at(Cache::Rollout, "shop", "web", Some("10")).unwrap();
        expectations.record("web", vec![status, rs("11")], start);
        assert_eq!(expectations.len(), 1);

        // The Rollout's cache shows the status, the ReplicaSet cache is still behind.
        let at = start + Duration::from_secs(1);
        let lagging = |w: &Written| match w.cache {
            Cache::Rollout => Some(Some("10".to_string())),
            _ => Some(Some("9".to_string())),
        };
        assert_eq!(
            expectations.wait(&"web", at, lagging),
            Some(MAX_WAIT - Duration::from_secs(1))
        );
        // What was shown stays shown, even if asked with an older view.
        let only_rs = |w: &Written| {
            assert_eq!(w.cache, Cache::ReplicaSet, "the status was already shown");
            Some(Some("11".to_string()))
        };
        assert_eq!(expectations.wait(&"web", at, only_rs), None);
        assert_eq!(expectations.len(), 0, "nothing left to wait for");
        // Another Rollout never waited.
        assert_eq!(expectations.wait(&"api", at, lagging), None);
    }

    #[test]
    fn a_cache_that_never_catches_up_holds_the_rollout_only_for_the_bound() {
        let expectations = Expectations::default();
        let start = Instant::now();
        expectations.record("web", vec![rs("11")], start);
        let behind = |_: &Written| Some(Some("3".to_string()));
        assert!(
            expectations
                .wait(&"web", start + MAX_WAIT - Duration::from_millis(1), behind)
                .is_some()
        );
        assert_eq!(expectations.wait(&"web", start + MAX_WAIT, behind), None);
        assert_eq!(expectations.len(), 0);
    }

    #[test]
    fn a_reconcile_that_wrote_nothing_leaves_nothing_to_wait_for() {
        let expectations = Expectations::default();
        let start = Instant::now();
        expectations.record("web", vec![rs("11")], start);
        expectations.record("web", Vec::new(), start);
        assert_eq!(expectations.wait(&"web", start, |_| None), None);
        expectations.record("web", vec![rs("12")], start);
        expectations.forget(&"web");
        assert_eq!(expectations.len(), 0);
    }

    #[test]
    fn a_wait_given_up_says_which_writes_the_caches_never_showed() {
        let expectations = Expectations::default();
        let start = Instant::now();
        let status = Written::at(Cache::Rollout, "shop", "web", Some("10")).unwrap();
        expectations.record("web", vec![status.clone(), rs("11")], start);
        let rollout_behind = |w: &Written| match w.cache {
            Cache::Rollout => Some(Some("9".to_string())),
            _ => Some(Some("11".to_string())),
        };
        assert!(matches!(
            expectations.waiting(&"web", start, rollout_behind),
            Waiting::For(_)
        ));
        assert_eq!(
            expectations.waiting(&"web", start + MAX_WAIT, rollout_behind),
            Waiting::GaveUp(vec![status]),
            "the ReplicaSet was shown; the Rollout's own write was not"
        );
        assert_eq!(
            expectations.waiting(&"web", start + MAX_WAIT, rollout_behind),
            Waiting::Done
        );
    }

    #[test]
    fn a_stale_mark_is_taken_once() {
        let stale = Stale::default();
        assert!(!stale.take(&"web"));
        stale.mark("web");
        stale.mark("web");
        assert!(stale.take(&"web"));
        assert!(!stale.take(&"web"));
    }
}
