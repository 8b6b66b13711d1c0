//! When each object's next reconcile became due, for the queue metrics
//! (`sluice_queue_depth`, `sluice_queue_wait_seconds`).
//!
//! kube-runtime's Controller keeps its work queue to itself, so this mirrors it from the
//! outside: every trigger the Controller is fed (a watch event of the object, of an
//! object it owns or refers to) and every requeue it is given is recorded here with the
//! time it became due, and a reconcile starting takes its object's entry out. Like the
//! Controller's scheduler, one entry per object, keeping the earliest time: several
//! triggers before a reconcile are one reconcile. An object that is due but not yet
//! started is waiting for a free worker (`--concurrency`) or for the rate limit: the
//! depth is how many wait, the wait how long.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;

/// The due objects of one controller, keyed as its Controller keys them.
#[derive(Debug)]
pub struct Queue<K> {
    due: Mutex<HashMap<K, Instant>>,
}

impl<K> Default for Queue<K> {
    fn default() -> Self {
        Queue {
            due: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> Queue<K> {
    /// `key` is due at `at` (a trigger: now; a requeue: its deadline), unless it already
    /// is earlier.
    pub fn due(&self, key: K, at: Instant) {
        let mut due = self.due.lock().expect("queue lock poisoned");
        due.entry(key)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }

    /// Records that `keys` were triggered now, and passes them on (for trigger mappers).
    pub fn triggered(&self, keys: Vec<K>) -> Vec<K> {
        let now = Instant::now();
        for key in &keys {
            self.due(key.clone(), now);
        }
        keys
    }

    /// The Controller's requeue of `key` after `after`, recorded.
    pub fn requeue(&self, key: &K, after: Duration) -> Action {
        self.due(key.clone(), Instant::now() + after);
        Action::requeue(after)
    }

    /// A reconcile of `key` starts at `now`: how long it was due (zero when it started
    /// before it was due, or was not known to be due: the Controller has reasons of its
    /// own, such as a trigger this mirror does not see).
    pub fn started(&self, key: &K, now: Instant) -> Duration {
        let mut due = self.due.lock().expect("queue lock poisoned");
        due.remove(key)
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
    }

    /// How many objects are due at `now` and not started, forgetting those `exists` no
    /// longer knows (deleted, or triggered but not served by this controller: the
    /// Controller drops them without a reconcile).
    pub fn depth(&self, now: Instant, exists: impl Fn(&K) -> bool) -> usize {
        let mut due = self.due.lock().expect("queue lock poisoned");
        due.retain(|key, _| exists(key));
        due.values().filter(|at| **at <= now).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn triggers_before_a_reconcile_are_one_entry_due_at_the_first() {
        let q = Queue::default();
        let t0 = Instant::now();
        q.due("a", t0 + secs(1));
        q.due("a", t0 + secs(3));
        q.due("b", t0 + secs(2));
        assert_eq!(q.depth(t0, |_| true), 0, "nothing is due yet");
        assert_eq!(q.depth(t0 + secs(2), |_| true), 2);
        assert_eq!(
            q.started(&"a", t0 + secs(5)),
            secs(4),
            "waited since the first"
        );
        assert_eq!(q.depth(t0 + secs(5), |_| true), 1, "b still waits");
    }

    #[test]
    fn an_earlier_trigger_brings_a_later_requeue_forward() {
        let q = Queue::default();
        let t0 = Instant::now();
        q.due("a", t0 + secs(30));
        q.due("a", t0 + secs(1));
        assert_eq!(q.depth(t0 + secs(1), |_| true), 1);
        assert_eq!(q.started(&"a", t0 + secs(2)), secs(1));
    }

    #[test]
    fn a_requeue_not_yet_due_is_not_counted() {
        let q = Queue::default();
        let t0 = Instant::now();
        q.due("a", t0 + secs(30));
        assert_eq!(q.depth(t0 + secs(29), |_| true), 0);
        assert_eq!(q.depth(t0 + secs(30), |_| true), 1);
    }

    #[test]
    fn a_start_without_an_entry_or_before_its_time_waited_nothing() {
        let q = Queue::default();
        let t0 = Instant::now();
        assert_eq!(q.started(&"a", t0), Duration::ZERO);
        q.due("b", t0 + secs(10));
        assert_eq!(q.started(&"b", t0), Duration::ZERO);
        assert_eq!(q.depth(t0 + secs(10), |_| true), 0, "the start took it out");
    }

    #[test]
    fn objects_the_controller_no_longer_serves_are_forgotten() {
        let q = Queue::default();
        let t0 = Instant::now();
        q.due("gone", t0);
        q.due("kept", t0);
        assert_eq!(q.depth(t0, |k| *k == "kept"), 1);
        assert_eq!(q.depth(t0, |_| true), 1, "forgotten for good");
    }
}
