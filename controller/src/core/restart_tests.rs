//! `spec.restartAt`: tables and walks over a simulated cluster that tracks pods (evicted
//! pods terminate, their ReplicaSet makes a replacement that is available one tick later).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use sluice_api::rollout::{Rollout, RolloutPhase};

use super::restart::{Progress, allowance, progress};
use super::testkit::{World, after, hash_of, phase, set_image, settle, t0};
use super::{Action, PodState, plan};

fn rollout(replicas: i32, canary: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "default", "generation": 1 },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "app:v1" }] },
            },
            "strategy": { "canary": canary },
        },
    }))
    .unwrap()
}

/// The world with pods: every ReplicaSet's counts are derived from its pods.
struct Sim {
    r: Rollout,
    w: World,
    /// Pods created but not available yet.
    unready: BTreeSet<String>,
    /// Pods that never become available (crash-looping).
    broken: BTreeSet<String>,
    next: u32,
    evicted: Vec<String>,
}

impl Sim {
    /// A Rollout settled at its first revision, each pod created at t0.
    fn stable(replicas: i32, canary: Value) -> Sim {
        let mut r = rollout(replicas, canary);
        let mut w = World::new();
        settle(&mut r, &mut w, t0(), None);
        assert_eq!(phase(&r), RolloutPhase::Healthy);
        let mut sim = Sim {
            r,
            w,
            unready: BTreeSet::new(),
            broken: BTreeSet::new(),
            next: 0,
            evicted: Vec::new(),
        };
        sim.pods_for_replica_sets(t0(), false);
        sim
    }

    /// Creates the pods each ReplicaSet is short of, created at `now`.
    fn pods_for_replica_sets(&mut self, now: Timestamp, unready: bool) {
        for rs in self.w.rs.clone() {
            let have = self.pods_of(&rs.name).len() as i32;
            for _ in have..rs.replicas {
                self.next += 1;
                let name = format!("{}-pod{}", rs.name, self.next);
                if unready {
                    self.unready.insert(name.clone());
                }
                self.w.pods.push(PodState {
                    name,
                    replica_set: rs.name.clone(),
                    created: Some(now),
                    terminating: false,
                    ..PodState::default()
                });
            }
        }
        self.sync();
    }

    fn pods_of(&self, rs: &str) -> Vec<&PodState> {
        self.w
            .pods
            .iter()
            .filter(|p| p.replica_set == rs && !p.terminating)
            .collect()
    }

    /// ReplicaSet status from the pods: terminating pods are not counted (as the
    /// ReplicaSet controller does).
    fn sync(&mut self) {
        let pods = self.w.pods.clone();
        for rs in &mut self.w.rs {
            let live: Vec<&PodState> = pods
                .iter()
                .filter(|p| p.replica_set == rs.name && !p.terminating)
                .collect();
            rs.current = live.len() as i32;
            rs.available = live
                .iter()
                .filter(|p| !self.unready.contains(&p.name) && !self.broken.contains(&p.name))
                .count() as i32;
            rs.ready = rs.available;
        }
    }

    /// Pods short of the desired counts, with the terminating ones counted as unavailable.
    fn unavailable(&self) -> i32 {
        self.w
            .rs
            .iter()
            .map(|rs| (rs.replicas - rs.available).max(0))
            .sum()
    }

    fn plan_once(&mut self, now: Timestamp) -> super::Plan {
        self.sync();
        let p = plan(&self.r, &self.w.observed(), now);
        for a in &p.actions {
            if let Action::EvictPod { name } = a {
                self.evicted.push(name.clone());
            }
        }
        self.w.apply(&p.actions);
        self.r.status = Some(p.status.clone());
        self.trim();
        self.sync();
        p
    }

    /// Scale-downs remove the newest pods at once (not evictions: not counted as such).
    fn trim(&mut self) {
        for rs in self.w.rs.clone() {
            let mut live: Vec<PodState> = self.pods_of(&rs.name).into_iter().cloned().collect();
            live.sort_by_key(|p| std::cmp::Reverse((p.created, p.name.clone())));
            let extra = (live.len() as i32 - rs.replicas).max(0) as usize;
            let gone: BTreeSet<String> = live.into_iter().take(extra).map(|p| p.name).collect();
            self.w.pods.retain(|p| !gone.contains(&p.name));
        }
    }

    /// One tick of the cluster: terminating pods are gone, new pods become available,
    /// and the ReplicaSets replace what is missing (not available yet).
    fn kubelet(&mut self, now: Timestamp) {
        self.w.pods.retain(|p| !p.terminating);
        self.unready.clear();
        self.pods_for_replica_sets(now, true);
    }

    /// Plans and ticks until the restart is recorded, checking the budget every step.
    fn run_restart(&mut self, start: i64, max_unavailable: i32) -> Timestamp {
        for i in 0..100 {
            let now = after(start + i);
            let p = self.plan_once(now);
            assert!(
                self.unavailable() <= max_unavailable,
                "{} unavailable > {max_unavailable} at {now}: {:?} {:?}",
                self.unavailable(),
                self.w.rs,
                self.w.pods
            );
            if p.status.restarted_at.is_some() {
                return now;
            }
            self.kubelet(now);
            assert!(self.unavailable() <= max_unavailable, "after a tick");
        }
        panic!("restart never finished: {:?}", self.w.pods);
    }
}

fn restart_at(r: &mut Rollout, at: Timestamp) {
    r.spec.restart_at = Some(Time(at));
}

#[test]
fn a_restart_replaces_every_pod_one_at_a_time_and_records_when_it_finished() {
    let mut sim = Sim::stable(3, json!({ "maxUnavailable": 1, "steps": [] }));
    let old: BTreeSet<String> = sim.w.pods.iter().map(|p| p.name.clone()).collect();
    restart_at(&mut sim.r, after(100));
    let finished = sim.run_restart(100, 1);

    assert_eq!(
        sim.evicted.iter().cloned().collect::<BTreeSet<_>>(),
        old,
        "every old pod evicted, each once"
    );
    assert_eq!(sim.evicted.len(), 3);
    assert_eq!(sim.w.pods.len(), 3);
    assert!(
        sim.w.pods.iter().all(|p| p.created >= Some(after(100))),
        "{:?}",
        sim.w.pods
    );
    let status = sim.r.status.clone().unwrap();
    assert_eq!(status.restarted_at, Some(Time(finished)));
    assert!(
        finished > after(100),
        "finished after the replacements came up"
    );
    assert_eq!(phase(&sim.r), RolloutPhase::Healthy);

    // Restarted: the next plans evict nothing and keep the record.
    for s in [1, 60, 3600] {
        let p = sim.plan_once(finished + Duration::from_secs(s));
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert_eq!(p.status.restarted_at, Some(Time(finished)));
    }
}

/// The pod cache and the ReplicaSets' status are separate watches: an evicted pod can be
/// gone from the pods before its ReplicaSet's counts drop and before its replacement
/// exists. Counted from the stale status alone, nothing would be missing: the restart
/// would be recorded as finished with a pod short (seen on the real plane), or a second
/// pod evicted past maxUnavailable.
#[test]
fn a_pod_gone_before_its_replica_set_counts_it_is_still_missing() {
    let mut sim = Sim::stable(3, json!({ "maxUnavailable": 1, "steps": [] }));
    restart_at(&mut sim.r, after(100));
    // Evict and replace all but the last pod.
    for i in 0..2 {
        sim.plan_once(after(100 + 2 * i));
        sim.kubelet(after(100 + 2 * i));
        sim.unready.clear();
        sim.sync();
    }
    let p = sim.plan_once(after(110));
    let last = match p.actions.as_slice() {
        [Action::EvictPod { name }] => name.clone(),
        other => panic!("expected the last eviction: {other:?}"),
    };
    // The evicted pod is deleted; the ReplicaSet still reports 3 available and has not
    // made the replacement yet.
    sim.w.pods.retain(|p| p.name != last);
    let rs = &mut sim.w.rs[0];
    (rs.current, rs.ready, rs.available) = (3, 3, 3);
    let observed = sim.w.observed();
    assert_eq!(observed.replica_sets[0].available, 3);
    let status = sim.r.status.clone().unwrap();
    assert_eq!(
        progress(&sim.r, &observed, &status, after(111)),
        Progress::Waiting,
        "two pods for three replicas is not a finished restart"
    );
    let p = plan(&sim.r, &observed, after(111));
    assert_eq!(p.status.restarted_at, None);
}

#[test]
fn never_more_unavailable_than_max_unavailable_allows() {
    // 4 replicas, maxUnavailable 1, one pod crash-looping: evicting another would leave
    // two unavailable, so the restart waits.
    let mut sim = Sim::stable(4, json!({ "maxUnavailable": 1, "steps": [] }));
    let sick = sim.w.pods[0].name.clone();
    sim.broken.insert(sick.clone());
    restart_at(&mut sim.r, after(100));
    for i in 0..5 {
        let p = sim.plan_once(after(100 + i));
        assert!(p.actions.is_empty(), "no eviction beyond the budget: {p:?}");
        assert_eq!(p.status.restarted_at, None);
    }

    // With maxUnavailable 2 the same cluster restarts, one pod at a time, never below 2.
    sim.r.spec.strategy.canary.as_mut().unwrap().max_unavailable =
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2);
    assert_eq!(allowance(&sim.r), 2);
    let p = sim.plan_once(after(110));
    assert!(
        matches!(p.actions.as_slice(), [Action::EvictPod { .. }]),
        "{p:?}"
    );
    // A second eviction waits for the first pod to go, whatever the budget says.
    let p = sim.plan_once(after(110));
    assert!(p.actions.is_empty(), "{p:?}");
    sim.broken.clear();
    sim.run_restart(111, 2);
}

#[test]
fn max_unavailable_zero_still_restarts_one_pod_at_a_time() {
    let mut sim = Sim::stable(
        3,
        json!({ "maxSurge": 1, "maxUnavailable": 0, "steps": [] }),
    );
    assert_eq!(allowance(&sim.r), 1);
    restart_at(&mut sim.r, after(50));
    sim.run_restart(50, 1);
    assert_eq!(sim.evicted.len(), 3);
}

#[test]
fn a_restart_at_a_future_time_waits_until_then() {
    let mut sim = Sim::stable(3, json!({ "maxUnavailable": 1, "steps": [] }));
    restart_at(&mut sim.r, after(600));
    let p = sim.plan_once(after(100));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.requeue_after, Some(Duration::from_secs(500)));
    assert_eq!(p.status.restarted_at, None);
    assert_eq!(
        progress(&sim.r, &sim.w.observed(), &p.status, after(100)),
        Progress::Scheduled
    );
    // At the time, it starts.
    let p = sim.plan_once(after(600));
    assert!(
        matches!(p.actions.as_slice(), [Action::EvictPod { .. }]),
        "{:?}",
        p.actions
    );
}

#[test]
fn an_already_restarted_rollout_plans_nothing() {
    let mut sim = Sim::stable(3, json!({ "maxUnavailable": 1, "steps": [] }));
    restart_at(&mut sim.r, after(100));
    // Recorded by an earlier controller at or after the requested time: pods older than
    // restartAt (created at t0) are not restarted again.
    sim.r.status.as_mut().unwrap().restarted_at = Some(Time(after(100)));
    let p = sim.plan_once(after(200));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.status.restarted_at, Some(Time(after(100))));
    assert_eq!(p.requeue_after, None);
    // No restartAt at all: nothing either.
    let mut sim = Sim::stable(3, json!({ "maxUnavailable": 1, "steps": [] }));
    let p = sim.plan_once(after(200));
    assert!(p.actions.is_empty());
    assert_eq!(p.status.restarted_at, None);
    // A later restartAt than the record asks again.
    restart_at(&mut sim.r, after(300));
    sim.r.status.as_mut().unwrap().restarted_at = Some(Time(after(100)));
    let p = sim.plan_once(after(300));
    assert!(matches!(p.actions.as_slice(), [Action::EvictPod { .. }]));
}

#[test]
fn a_canary_in_flight_restarts_stable_pods_first_then_canary_pods() {
    let mut sim = Sim::stable(
        4,
        json!({ "maxUnavailable": 1, "maxSurge": 1, "steps": [{ "setWeight": 50 }, { "pause": {} }] }),
    );
    let stable_rs = format!("web-{}", hash_of(&sim.r));
    // v2 to its pause at 50%, pods made as the ReplicaSets ask.
    set_image(&mut sim.r, "app:v2");
    let canary_rs = format!("web-{}", hash_of(&sim.r));
    for i in 0..30 {
        sim.plan_once(after(10 + i));
        sim.kubelet(after(10 + i));
    }
    assert_eq!(phase(&sim.r), RolloutPhase::Paused, "{:?}", sim.w.rs);
    let canary_pods = sim.pods_of(&canary_rs).len();
    assert_eq!(canary_pods, 2, "{:?}", sim.w.rs);
    assert_eq!(sim.pods_of(&stable_rs).len(), 2);

    restart_at(&mut sim.r, after(100));
    sim.run_restart(100, 1);
    let replica_set_of = |name: &String| {
        if name.starts_with(&format!("{stable_rs}-")) {
            "stable"
        } else if name.starts_with(&format!("{canary_rs}-")) {
            "canary"
        } else {
            "other"
        }
    };
    let order: Vec<&str> = sim.evicted.iter().map(replica_set_of).collect();
    assert_eq!(order, ["stable", "stable", "canary", "canary"]);
    assert!(sim.w.pods.iter().all(|p| p.created >= Some(after(100))));
    assert_eq!(
        phase(&sim.r),
        RolloutPhase::Paused,
        "the restart leaves the canary where it was"
    );
}
