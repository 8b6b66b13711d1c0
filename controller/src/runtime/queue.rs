//! Which object's reconcile goes next, and when each became due (for the queue metrics
//! `sluice_queue_depth`, `sluice_queue_wait_seconds`).
//!
//! kube-runtime's Controller keeps its work queue to itself, so this mirrors it from the
//! outside: every trigger the Controller is fed (a watch event of the object, of an
//! object it owns or refers to) and every requeue it is given is recorded here with the
//! time it became due, and a reconcile starting takes its object's entry out. Like the
//! Controller's scheduler, one entry per object, keeping the earliest time: several
//! triggers before a reconcile are one reconcile.
//!
//! The Controller itself runs every due object at once (unbounded concurrency); the
//! [`Gate`] holds them to `--concurrency` and decides the order, which the Controller's
//! scheduler cannot: it hands out due objects in hash order. The order is the time each
//! became due, except that a deadline the plan named (a pause ending, an analysis
//! interval, a scale-down delay) counts as due [`DEADLINE_PRIORITY`] earlier: when every
//! template changes at once, the thousands of reconciles that wave brings would otherwise
//! hold back the Rollout whose pause just ended, and its next weight, for minutes. The
//! bound keeps it fair: a watch event that has waited longer than that goes first.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use tokio::sync::oneshot;

/// How much sooner than a watch event a due deadline of the plan's is served.
pub const DEADLINE_PRIORITY: Duration = Duration::from_secs(60);

/// When one object became due: by a trigger (a watch event, a retry), and by a deadline
/// of its plan's (possibly in the future).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Due {
    trigger: Option<Instant>,
    deadline: Option<Instant>,
}

impl Due {
    /// The earliest time it is due, of either kind.
    fn earliest(&self) -> Option<Instant> {
        match (self.trigger, self.deadline) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        }
    }
}

/// The due objects of one controller, keyed as its Controller keys them.
#[derive(Debug)]
pub struct Queue<K> {
    due: Mutex<HashMap<K, Due>>,
    /// Orders are counted from here, so a deadline's priority can reach before it.
    epoch: Instant,
}

impl<K> Default for Queue<K> {
    fn default() -> Self {
        Queue {
            due: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

impl<K: Hash + Eq + Clone> Queue<K> {
    fn record(&self, key: K, at: Instant, deadline: bool) {
        let mut due = self.due.lock().expect("queue lock poisoned");
        let entry = due.entry(key).or_default();
        let slot = if deadline {
            &mut entry.deadline
        } else {
            &mut entry.trigger
        };
        *slot = Some(slot.map_or(at, |t| t.min(at)));
    }

    /// `key` was triggered at `at` (a watch event), unless it already is earlier.
    pub fn due(&self, key: K, at: Instant) {
        self.record(key, at, false);
    }

    /// Records that `keys` were triggered now, and passes them on (for trigger mappers).
    pub fn triggered(&self, keys: Vec<K>) -> Vec<K> {
        let now = Instant::now();
        for key in &keys {
            self.due(key.clone(), now);
        }
        keys
    }

    /// The Controller's requeue of `key` after `after`, recorded as an ordinary trigger
    /// (a retry after an error, a bound on a wait that a watch event normally ends).
    pub fn requeue(&self, key: &K, after: Duration) -> Action {
        self.due(key.clone(), Instant::now() + after);
        Action::requeue(after)
    }

    /// The Controller's requeue of `key` at a deadline its plan named, served ahead of
    /// watch events once due (see the module's comment).
    pub fn deadline(&self, key: &K, after: Duration) -> Action {
        self.record(key.clone(), Instant::now() + after, true);
        Action::requeue(after)
    }

    /// What decides `key`'s place in line, for a reconcile that asks for one at `now`.
    pub fn rank(&self, key: &K, now: Instant) -> Rank {
        let due = self.due.lock().expect("queue lock poisoned");
        let entry = due.get(key).copied().unwrap_or_default();
        Rank {
            trigger: entry.trigger,
            deadline: entry.deadline,
            entered: now,
        }
    }

    /// Where `key` stands in line at `now` (see [`Rank::order`]).
    pub fn order(&self, key: &K, now: Instant) -> i128 {
        self.rank(key, now).order(now, self.epoch)
    }

    /// A reconcile of `key` starts at `now`: how long it was due (zero when it started
    /// before it was due, or was not known to be due).
    pub fn started(&self, key: &K, now: Instant) -> Duration {
        let mut due = self.due.lock().expect("queue lock poisoned");
        due.remove(key)
            .and_then(|d| d.earliest())
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at))
    }

    /// How many objects are due at `now` and not started, forgetting those `exists` no
    /// longer knows (deleted, or triggered but not served by this controller: the
    /// Controller drops them without a reconcile).
    pub fn depth(&self, now: Instant, exists: impl Fn(&K) -> bool) -> usize {
        let mut due = self.due.lock().expect("queue lock poisoned");
        due.retain(|key, _| exists(key));
        due.values()
            .filter(|d| d.earliest().is_some_and(|at| at <= now))
            .count()
    }
}

/// What decides an object's place in line: when a trigger made it due, and the deadline
/// its plan named, which may fall due while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank {
    trigger: Option<Instant>,
    deadline: Option<Instant>,
    /// When it asked for a place (what orders it when nothing else is known).
    entered: Instant,
}

impl Rank {
    /// Its place at `now`, in nanoseconds from `epoch`: the lower, the sooner it runs. Its
    /// first trigger's time, or its deadline's, less [`DEADLINE_PRIORITY`] once due,
    /// whichever is earlier. Only the deadline's part changes with time, so a waiter whose
    /// pause ends while it waits (it joined on a watch event just before) moves up then.
    pub fn order(&self, now: Instant, epoch: Instant) -> i128 {
        let since = |t: Instant| t.saturating_duration_since(epoch).as_nanos() as i128;
        let base = since(self.trigger.or(self.deadline).unwrap_or(self.entered));
        match self.deadline.filter(|d| *d <= now) {
            Some(due) => base.min(since(due) - DEADLINE_PRIORITY.as_nanos() as i128),
            None => base,
        }
    }
}

/// At most `permits` reconciles at once, the waiting ones let in lowest order first
/// (ties: first come), the order taken when a place comes free, so a deadline falling due
/// meanwhile counts. tokio's Semaphore is first-come only, and no well-kept crate has a
/// priority semaphore whose priorities change with time; this is one lock, a list scanned
/// per release (a few thousand waiters at most: one per Rollout) and a oneshot per waiter.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<GateState>,
    epoch: Instant,
}

#[derive(Debug)]
struct GateState {
    free: usize,
    waiting: Vec<Waiter>,
    arrivals: u64,
    closed: bool,
}

#[derive(Debug)]
struct Waiter {
    rank: Rank,
    arrival: u64,
    admit: oneshot::Sender<Permit>,
}

/// A place in the gate; dropping it lets the next waiter in.
#[derive(Debug)]
pub struct Permit {
    gate: Option<Arc<Gate>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            Gate::release(&gate);
        }
    }
}

impl Gate {
    /// A gate of `permits` places (0: no limit).
    pub fn new(permits: u16) -> Arc<Self> {
        Arc::new(Gate {
            epoch: Instant::now(),
            state: Mutex::new(GateState {
                free: if permits == 0 {
                    usize::MAX
                } else {
                    permits.into()
                },
                waiting: Vec::new(),
                arrivals: 0,
                closed: false,
            }),
        })
    }

    /// Waits for a place, in line by `rank`; None once the gate is closed (shutting down:
    /// what waits then is not started).
    pub async fn enter(self: &Arc<Self>, rank: Rank) -> Option<Permit> {
        let admitted = {
            let mut state = self.state.lock().expect("gate lock poisoned");
            if state.closed {
                return None;
            }
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Some(Permit {
                    gate: Some(self.clone()),
                });
            }
            let (admit, admitted) = oneshot::channel();
            state.arrivals += 1;
            let arrival = state.arrivals;
            state.waiting.push(Waiter {
                rank,
                arrival,
                admit,
            });
            admitted
        };
        // A waiter dropped after being admitted drops its Permit with the channel, which
        // lets the next one in: no place is lost to a cancelled wait.
        admitted.await.ok()
    }

    /// Lets no one in any more; those waiting get None. Places in use stay in use.
    pub fn close(&self) {
        let mut state = self.state.lock().expect("gate lock poisoned");
        state.closed = true;
        state.waiting.clear();
    }

    /// How many wait for a place.
    pub fn waiting(&self) -> usize {
        self.state.lock().expect("gate lock poisoned").waiting.len()
    }

    fn release(gate: &Arc<Gate>) {
        let mut state = gate.state.lock().expect("gate lock poisoned");
        let now = Instant::now();
        while let Some(next) = state
            .waiting
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| (w.rank.order(now, gate.epoch), w.arrival))
            .map(|(i, _)| i)
        {
            let waiter = state.waiting.swap_remove(next);
            let permit = Permit {
                gate: Some(gate.clone()),
            };
            match waiter.admit.send(permit) {
                Ok(()) => return,
                // That waiter was cancelled: disarm the permit (its drop would take the
                // lock held here) and try the next.
                Err(mut unused) => unused.gate = None,
            }
        }
        state.free = state.free.saturating_add(1);
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

    #[test]
    fn a_due_deadline_goes_ahead_of_recent_triggers_but_not_of_old_ones() {
        let q = Queue::default();
        let t0 = q.epoch + secs(1_000);
        q.due("old", t0);
        q.due("recent", t0 + secs(50));
        q.record("paused", t0 + secs(70), true);
        let now = t0 + secs(90);
        let mut line = ["recent", "paused", "old"];
        line.sort_by_key(|k| q.order(k, now));
        assert_eq!(
            line,
            ["old", "paused", "recent"],
            "the deadline goes ahead of a trigger 20 s older than it, behind one 70 s older"
        );
    }

    #[test]
    fn a_deadline_not_yet_due_gives_no_priority() {
        let q = Queue::default();
        let t0 = q.epoch + secs(1_000);
        q.due("a", t0 + secs(5));
        q.record("a", t0 + secs(100), true);
        q.due("b", t0 + secs(4));
        let now = t0 + secs(10);
        assert!(q.order(&"b", now) < q.order(&"a", now));
        assert_eq!(q.started(&"a", now), secs(5), "waited since its trigger");
    }

    #[test]
    fn a_retry_is_an_ordinary_trigger() {
        let q = Queue::default();
        let before = Instant::now();
        q.requeue(&"retry", Duration::ZERO);
        q.deadline(&"pause", Duration::ZERO);
        let now = Instant::now() + secs(1);
        assert!(q.order(&"pause", now) < q.order(&"retry", now));
        assert!(q.order(&"retry", now) >= before.duration_since(q.epoch).as_nanos() as i128);
    }

    mod gate {
        use super::super::*;
        use std::sync::Mutex as StdMutex;

        /// A rank by trigger time: `order` milliseconds after the start of the test.
        fn at(start: Instant, order: u64) -> Rank {
            Rank {
                trigger: Some(start + Duration::from_millis(order)),
                deadline: None,
                entered: start,
            }
        }

        /// One task per (name, order) enters the gate while its only place is held,
        /// records its name when let in and gives the place on.
        #[tokio::test]
        async fn waiters_are_let_in_lowest_order_first_then_first_come() {
            let gate = Gate::new(1);
            let start = Instant::now();
            let first = gate.enter(at(start, 0)).await.expect("a free place");
            let admitted = Arc::new(StdMutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for (name, order) in [("c", 30), ("a", 10), ("b1", 20), ("b2", 20)] {
                let (entering, admitted) = (gate.clone(), admitted.clone());
                tasks.push(tokio::spawn(async move {
                    let permit = entering.enter(at(start, order)).await.expect("admitted");
                    admitted.lock().unwrap().push(name);
                    tokio::task::yield_now().await;
                    drop(permit);
                }));
                // Arrive in this order.
                while gate.waiting() < tasks.len() {
                    tokio::task::yield_now().await;
                }
            }
            drop(first);
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(*admitted.lock().unwrap(), ["a", "b1", "b2", "c"]);
        }

        #[tokio::test]
        async fn at_most_permits_are_in_at_once() {
            let gate = Gate::new(2);
            let a = gate.enter(at(Instant::now(), 0)).await;
            let b = gate.enter(at(Instant::now(), 0)).await;
            assert!(a.is_some() && b.is_some());
            let third = tokio::spawn({
                let gate = gate.clone();
                async move { gate.enter(at(Instant::now(), 0)).await.is_some() }
            });
            while gate.waiting() == 0 {
                tokio::task::yield_now().await;
            }
            assert!(!third.is_finished(), "two places, both taken");
            drop(a);
            assert!(third.await.unwrap());
        }

        #[tokio::test]
        async fn a_cancelled_waiter_loses_no_place() {
            let gate = Gate::new(1);
            let held = gate.enter(at(Instant::now(), 0)).await.unwrap();
            let cancelled = tokio::spawn({
                let gate = gate.clone();
                async move { gate.enter(at(Instant::now(), 0)).await.is_some() }
            });
            while gate.waiting() == 0 {
                tokio::task::yield_now().await;
            }
            cancelled.abort();
            let _ = cancelled.await;
            drop(held);
            let next =
                tokio::time::timeout(Duration::from_secs(1), gate.enter(at(Instant::now(), 0)))
                    .await;
            assert!(next.expect("the place came back").is_some());
        }

        #[tokio::test]
        async fn closing_turns_waiters_away_and_refuses_newcomers() {
            let gate = Gate::new(1);
            let held = gate.enter(at(Instant::now(), 0)).await.unwrap();
            let waiter = tokio::spawn({
                let gate = gate.clone();
                async move { gate.enter(at(Instant::now(), 0)).await.is_some() }
            });
            while gate.waiting() == 0 {
                tokio::task::yield_now().await;
            }
            gate.close();
            assert!(!waiter.await.unwrap(), "turned away");
            assert!(gate.enter(at(Instant::now(), 0)).await.is_none(), "refused");
            drop(held);
        }

        #[tokio::test]
        async fn zero_permits_means_no_limit() {
            let gate = Gate::new(0);
            let permits: Vec<_> =
                futures::future::join_all((0..100).map(|_| gate.enter(at(Instant::now(), 0))))
                    .await;
            assert!(permits.iter().all(Option::is_some));
        }
        /// A waiter that joined on a watch event just before its pause ended moves up
        /// when the pause's deadline falls due, ahead of triggers that came before it.
        #[tokio::test]
        async fn a_deadline_falling_due_while_waiting_moves_the_waiter_up() {
            let gate = Gate::new(1);
            let start = Instant::now();
            let held = gate.enter(at(start, 0)).await.unwrap();
            let admitted = Arc::new(StdMutex::new(Vec::new()));
            let paused = Rank {
                trigger: Some(start + Duration::from_millis(50)),
                deadline: Some(start + Duration::from_millis(100)),
                entered: start,
            };
            let mut tasks = Vec::new();
            for (name, rank) in [("older", at(start, 10)), ("paused", paused)] {
                let (entering, admitted) = (gate.clone(), admitted.clone());
                tasks.push(tokio::spawn(async move {
                    let permit = entering.enter(rank).await.expect("admitted");
                    admitted.lock().unwrap().push(name);
                    tokio::task::yield_now().await;
                    drop(permit);
                }));
                while gate.waiting() < tasks.len() {
                    tokio::task::yield_now().await;
                }
            }
            assert!(paused.order(start, gate.epoch) > at(start, 10).order(start, gate.epoch));
            tokio::time::sleep(Duration::from_millis(150)).await;
            drop(held);
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(*admitted.lock().unwrap(), ["paused", "older"]);
        }
    }
}
