//! The simulated cluster the core tests share: `World` applies the planner's actions the
//! way the adapters do (new pods become available one tick later, router weights apply at
//! once), so a test can drive a rollout through its steps and check invariants at every
//! intermediate state; `settle` / `settle_checking` drive it. Nothing here decides what
//! the planner should do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use sluice_api::analysis::AnalysisPhase;
use sluice_api::rollout::{PauseReason, Rollout, RolloutPhase};

use super::hash::pod_template_hash;
use super::{
    Action, AnalysisRunState, BaselineState, Observed, Plan, PodState, ReplicaSetState,
    WorkloadState, plan,
};

pub(super) fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

pub(super) fn after(secs: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(secs)
}

pub(super) fn hash_of(r: &Rollout) -> String {
    pod_template_hash(&r.spec.template)
}

/// A pod template's role labels and annotations.
pub(super) type TemplateMetadata = (BTreeMap<String, String>, BTreeMap<String, String>);

/// The cluster as the planner's actions leave it.
#[derive(Debug, Clone, Default)]
pub(super) struct World {
    pub(super) rs: Vec<ReplicaSetState>,
    pub(super) services: BTreeMap<String, Option<String>>,
    pub(super) router: Option<i32>,
    /// The managed routes the router holds: name → fingerprint, as the adapters report.
    pub(super) routes: BTreeMap<String, String>,
    pub(super) runs: Vec<AnalysisRunState>,
    /// When false, new pods never become available (a broken image).
    pub(super) pods_become_ready: bool,
    pub(super) baselines: Vec<BaselineState>,
    /// When false, baseline pods never become available.
    pub(super) baselines_become_ready: bool,
    /// The pod template of each revision, as its ReplicaSet holds it.
    pub(super) templates: BTreeMap<String, PodTemplateSpec>,
    /// `status.stableRS` as last planned: whose template the runtime passes on.
    pub(super) stable: Option<String>,
    /// The reasons of every Event planned by [`settle`], in order.
    pub(super) events: Vec<String>,
    /// Every notice planned by [`settle`], in order.
    pub(super) notices: Vec<super::notice::Notice>,
    /// Pods, for the restart tests only (the others count pods in the ReplicaSets).
    pub(super) pods: Vec<PodState>,
    /// The Deployment of `workloadRef`, for its tests only.
    pub(super) workload: Option<WorkloadState>,
    /// When true, [`World::tick`] keeps `pods` in step with each ReplicaSet's size, new
    /// pods taking its template's labels and annotations (the role metadata tests).
    pub(super) model_pods: bool,
    /// The role labels and annotations on each ReplicaSet's pod template, by name.
    pub(super) rs_pod_metadata: BTreeMap<String, TemplateMetadata>,
    /// What the runtime would report of the gates it called, by `gate::key`.
    pub(super) gate_answers: BTreeMap<String, super::gate::GateAnswer>,
}

impl World {
    pub(super) fn new() -> Self {
        World {
            pods_become_ready: true,
            baselines_become_ready: true,
            ..World::default()
        }
    }

    pub(super) fn with_services(mut self, names: &[&str]) -> Self {
        for n in names {
            self.services.insert(n.to_string(), None);
        }
        self
    }

    pub(super) fn with_router(mut self) -> Self {
        self.router = Some(0);
        self
    }

    pub(super) fn observed(&self) -> Observed {
        Observed {
            replica_sets: self.rs.clone(),
            services: self.services.clone(),
            router_weight: self.router,
            router_routes: self.routes.clone(),
            analysis_runs: self.runs.clone(),
            missing: Vec::new(),
            unusable: Vec::new(),
            baselines: self.baselines.clone(),
            stable_template: self
                .stable
                .as_ref()
                .and_then(|h| self.templates.get(h))
                .cloned(),
            pods: self.pods.clone(),
            workload: self.workload.clone(),
            gate_answers: self.gate_answers.clone(),
        }
    }

    /// Pods created by the last actions become available (one tick of kubelet/kwok).
    pub(super) fn tick(&mut self) {
        if self.model_pods {
            self.tick_pods();
        }
        for rs in &mut self.rs {
            rs.current = rs.replicas;
            if self.pods_become_ready || rs.revision == 1 {
                rs.ready = rs.replicas;
                rs.available = rs.replicas;
            } else {
                rs.ready = rs.ready.min(rs.replicas);
                rs.available = rs.available.min(rs.replicas);
            }
        }
        for b in &mut self.baselines {
            b.current = b.replicas;
            if self.baselines_become_ready {
                b.available = b.replicas;
            }
            b.available = b.available.min(b.replicas);
        }
    }

    /// The ReplicaSet controller: pods up to each ReplicaSet's size, from its template.
    fn tick_pods(&mut self) {
        for rs in &self.rs {
            let live: Vec<usize> = (0..self.pods.len())
                .filter(|&i| self.pods[i].replica_set == rs.name && !self.pods[i].terminating)
                .collect();
            let have = live.len() as i32;
            if have > rs.replicas {
                let extra: Vec<String> = live[rs.replicas as usize..]
                    .iter()
                    .map(|&i| self.pods[i].name.clone())
                    .collect();
                self.pods.retain(|p| !extra.contains(&p.name));
                continue;
            }
            let (labels, annotations) = self
                .rs_pod_metadata
                .get(&rs.name)
                .cloned()
                .unwrap_or_default();
            let template = self
                .templates
                .get(&rs.hash)
                .and_then(|t| t.metadata.clone());
            for n in have..rs.replicas {
                let mut pod_labels = template
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                pod_labels.extend(labels.clone());
                let mut pod_annotations = template
                    .as_ref()
                    .and_then(|m| m.annotations.clone())
                    .unwrap_or_default();
                pod_annotations.extend(annotations.clone());
                self.pods.push(PodState {
                    name: format!("{}-{n}-{}", rs.name, self.pods.len()),
                    replica_set: rs.name.clone(),
                    created: None,
                    terminating: false,
                    labels: pod_labels,
                    annotations: pod_annotations,
                });
            }
        }
    }

    pub(super) fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::CreateReplicaSet {
                    hash,
                    revision,
                    replicas,
                    pod_metadata,
                } => {
                    assert!(self.rs.iter().all(|rs| &rs.hash != hash), "created twice");
                    let name = format!("web-{hash}");
                    self.rs_pod_metadata.insert(
                        name.clone(),
                        (
                            pod_metadata.labels.clone(),
                            pod_metadata.annotations.clone(),
                        ),
                    );
                    self.rs.push(ReplicaSetState {
                        name,
                        hash: hash.clone(),
                        revision: *revision,
                        replicas: *replicas,
                        current: 0,
                        ready: 0,
                        available: 0,
                        scale_down_at: None,
                        pod_metadata: (!pod_metadata.is_empty()).then(|| pod_metadata.clone()),
                    });
                }
                Action::PatchPodMetadata {
                    pod,
                    labels,
                    annotations,
                } => {
                    let pod = self
                        .pods
                        .iter_mut()
                        .find(|p| &p.name == pod)
                        .expect("relabelled pod exists");
                    assert!(!pod.terminating, "relabelled a terminating pod");
                    change(&mut pod.labels, labels);
                    change(&mut pod.annotations, annotations);
                }
                Action::SetReplicaSetPodMetadata {
                    name,
                    labels,
                    annotations,
                    applied,
                } => {
                    let rs = self
                        .rs
                        .iter_mut()
                        .find(|rs| &rs.name == name)
                        .expect("relabelled RS exists");
                    // As the adapter: an empty record removes the annotation.
                    rs.pod_metadata = (!applied.is_empty()).then(|| applied.clone());
                    let meta = self.rs_pod_metadata.entry(name.clone()).or_default();
                    change(&mut meta.0, labels);
                    change(&mut meta.1, annotations);
                }
                Action::CreateBaselineReplicaSet {
                    stable_hash,
                    canary_hash,
                    replicas,
                    template,
                } => {
                    let name = super::baseline::replica_set_name("web", stable_hash, canary_hash);
                    assert!(
                        self.baselines.iter().all(|b| b.name != name),
                        "baseline created twice"
                    );
                    assert_eq!(
                        Some(template.as_ref()),
                        self.templates.get(stable_hash),
                        "a baseline runs the stable ReplicaSet's template"
                    );
                    self.baselines.push(BaselineState {
                        name,
                        stable_hash: stable_hash.clone(),
                        canary_hash: canary_hash.clone(),
                        replicas: *replicas,
                        current: 0,
                        available: 0,
                    });
                }
                Action::ScaleReplicaSet { name, replicas, .. }
                    if self.baselines.iter().any(|b| &b.name == name) =>
                {
                    let b = self
                        .baselines
                        .iter_mut()
                        .find(|b| &b.name == name)
                        .expect("checked");
                    b.replicas = *replicas;
                    b.current = b.current.min(*replicas);
                    b.available = b.available.min(*replicas);
                }
                Action::ScaleReplicaSet {
                    name,
                    replicas,
                    scale_down_at,
                } => {
                    let rs = self
                        .rs
                        .iter_mut()
                        .find(|rs| &rs.name == name)
                        .expect("scaled RS exists");
                    rs.replicas = *replicas;
                    rs.scale_down_at = *scale_down_at;
                    // Scale-downs remove pods at once, unavailable ones first.
                    rs.current = rs.current.min(*replicas);
                    rs.available = rs.available.min(*replicas);
                    rs.ready = rs.ready.min(*replicas);
                }
                Action::DeleteReplicaSet { name } => {
                    self.rs.retain(|rs| &rs.name != name);
                    self.baselines.retain(|b| &b.name != name);
                }
                Action::SetServiceSelector { service, hash } => {
                    self.services.insert(service.clone(), Some(hash.clone()));
                }
                Action::SetCanaryWeight { weight } => self.router = Some(*weight),
                Action::SetManagedRoutes { routes } => {
                    self.routes = super::routes::fingerprints(routes);
                }
                Action::CreateAnalysisRun { name, .. } => self.runs.push(AnalysisRunState {
                    name: name.clone(),
                    phase: Some(AnalysisPhase::Running),
                    message: None,
                    created: None,
                    terminating: false,
                }),
                Action::EvictPod { name } => {
                    let pod = self
                        .pods
                        .iter_mut()
                        .find(|p| &p.name == name)
                        .expect("evicted pod exists");
                    assert!(!pod.terminating, "evicted twice: {name}");
                    pod.terminating = true;
                }
                Action::TerminateAnalysisRun { name } => {
                    if let Some(run) = self.runs.iter_mut().find(|r| &r.name == name) {
                        run.terminating = true;
                    }
                }
                Action::DeleteAnalysisRun { name } => self.runs.retain(|r| &r.name != name),
                Action::ScaleDeployment { name, replicas } => {
                    let deployment = self.workload.as_mut().expect("the Deployment exists");
                    assert_eq!(&deployment.name, name);
                    deployment.replicas = *replicas;
                }
            }
        }
    }

    /// The labels of the live pods of revision `hash`, by pod name.
    pub(super) fn pod_labels(&self, hash: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        self.pods
            .iter()
            .filter(|p| p.replica_set == format!("web-{hash}") && !p.terminating)
            .map(|p| (p.name.clone(), p.labels.clone()))
            .collect()
    }

    pub(super) fn sizes(&self, r: &Rollout, stable_hash: &str) -> (i32, i32) {
        let h = hash_of(r);
        let size = |hash: &str| {
            self.rs
                .iter()
                .find(|rs| rs.hash == hash)
                .map_or(0, |rs| rs.replicas)
        };
        (size(&h), size(stable_hash))
    }
}

/// Plans and applies until nothing changes any more (or `max` rounds), checking the
/// surge/availability budget after every round. Returns the last plan.
pub(super) fn settle(
    r: &mut Rollout,
    w: &mut World,
    now: Timestamp,
    budget: Option<(i32, i32)>,
) -> Plan {
    settle_checking(r, w, now, budget, &|_| {})
}

/// [`settle`], also checking `invariant` after every round.
pub(super) fn settle_checking(
    r: &mut Rollout,
    w: &mut World,
    now: Timestamp,
    budget: Option<(i32, i32)>,
    invariant: &dyn Fn(&World),
) -> Plan {
    let mut last = None;
    for _ in 0..50 {
        w.stable = r.status.as_ref().and_then(|s| s.stable_rs.clone());
        let p = plan(r, &w.observed(), now);
        w.apply(&p.actions);
        w.events.extend(p.events.iter().map(|e| e.reason.clone()));
        w.notices.extend(p.notices.iter().cloned());
        // The ReplicaSet of the current template holds that template.
        let h = hash_of(r);
        if w.rs.iter().any(|rs| rs.hash == h) {
            w.templates
                .entry(h)
                .or_insert_with(|| r.spec.template.clone());
        }
        invariant(w);
        if let Some((max_total, min_available)) = budget {
            let total: i32 = w.rs.iter().map(|rs| rs.replicas).sum();
            let available: i32 = w.rs.iter().map(|rs| rs.available).sum();
            assert!(
                total <= max_total,
                "surge broken: {total} pods > {max_total}: {:?}",
                w.rs
            );
            assert!(
                available >= min_available,
                "availability broken: {available} < {min_available}: {:?}",
                w.rs
            );
        }
        paused_only_with_the_step_in_place(r, &p, w);
        w.tick();
        let unchanged = p.actions.is_empty() && r.status.as_ref() == Some(&p.status);
        r.status = Some(p.status.clone());
        last = Some(p);
        if unchanged {
            return last.unwrap();
        }
    }
    panic!("the plan did not settle in 50 rounds: {last:#?}");
}

/// A canary the controller reports paused at a step (a pause step, or an analysis step
/// whose verdict was inconclusive) has that step's weight in place: the status reports it
/// and the router (after this round's actions) holds it. Holds that freeze the rollout
/// wherever it stands (`spec.paused`, an inconclusive background analysis) are not step
/// pauses. With a router, a canary none of whose pods is available holds no weight while
/// it pauses: its share is back on stable until a pod is up again.
fn paused_only_with_the_step_in_place(r: &Rollout, p: &Plan, w: &World) {
    let Some(canary) = &r.spec.strategy.canary else {
        return;
    };
    let s = &p.status;
    let in_flight = s.stable_rs != s.current_pod_hash;
    let at_step = s.pause_conditions.iter().any(|c| {
        matches!(
            c.reason,
            PauseReason::CanaryPauseStep | PauseReason::InconclusiveAnalysis
        )
    });
    if r.spec.paused || !in_flight || s.phase != Some(RolloutPhase::Paused) || !at_step {
        return;
    }
    let index = s.current_step_index.unwrap_or(0).max(0) as usize;
    let canary_down =
        w.rs.iter()
            .find(|rs| Some(&rs.hash) == s.current_pod_hash.as_ref())
            .is_none_or(|rs| rs.available == 0);
    let wanted = if canary.traffic_routing.is_some() && canary_down {
        0
    } else {
        super::canary::setting_at(&canary.steps, index).weight
    };
    let reported = s.canary.as_ref().and_then(|c| c.weights.as_ref());
    assert_eq!(
        reported.map(|w| w.canary),
        Some(wanted),
        "paused at step {index} reporting another weight than the step's: {s:#?}"
    );
    if canary.traffic_routing.is_some() {
        assert_eq!(
            w.router,
            Some(wanted),
            "paused at step {index} while the router holds another weight"
        );
    }
}

pub(super) fn phase(r: &Rollout) -> RolloutPhase {
    r.status.as_ref().and_then(|s| s.phase).expect("phase set")
}

pub(super) fn step_index(r: &Rollout) -> i32 {
    r.status
        .as_ref()
        .and_then(|s| s.current_step_index)
        .unwrap()
}

pub(super) fn set_image(r: &mut Rollout, image: &str) {
    r.spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
}

pub(super) fn promote(r: &mut Rollout) {
    r.status.as_mut().unwrap().pause_conditions.clear();
}

/// Applies a metadata change to a map, as a merge patch does.
fn change(map: &mut BTreeMap<String, String>, change: &super::action::MetadataChange) {
    for (k, v) in change {
        match v {
            Some(v) => map.insert(k.clone(), v.clone()),
            None => map.remove(k),
        };
    }
}
