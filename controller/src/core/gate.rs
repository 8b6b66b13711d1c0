//! Gates (`spec.strategy.gates`): which webhooks the rollout waits for, or tells, and
//! where each stands. The core never calls one: it records each gate's state in
//! `status.gates`, holds the rollout with a `Gate` pause condition while a holding gate
//! has not passed, and lists the calls it wants made now ([`GateCall`]); the runtime makes
//! them, retrying with backoff, and reports the answers back through
//! `Observed::gate_answers`. A held gate's timeout counts from its `startedAt` in the
//! status, so a restart or a new leader neither resets nor skips it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use sluice_api::gate::{Gate, GatePhase, GatePoint, GateStatus};
use sluice_api::rollout::{PauseCondition, PauseReason, Rollout, RolloutStatus, StrategyKind};

use super::action::PlannedEvent;
use super::common::Wake;

/// What the runtime learnt from calling a gate: its last answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateAnswer {
    /// True once it answered 2xx.
    pub passed: bool,
    /// The last answer (`HTTP 503: ...`, `cannot connect: ...`) or `HTTP 200`.
    pub message: String,
}

/// A call the plan wants made now (again and again, with backoff, until it passes):
/// one gate at one point of one revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateCall {
    /// Stable over the reconciles that want this call (see [`key`]); the runtime keeps
    /// one caller per key.
    #[serde(skip)]
    pub key: String,
    /// The body POSTed to the gate.
    #[serde(flatten)]
    pub request: GateRequest,
}

/// The JSON description of the rollout a gate receives. Its field names are a contract
/// with every gate service (see `docs/analysis.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateRequest {
    pub gate: String,
    pub point: GatePoint,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub strategy: StrategyKind,
    /// The pod-template hash of the new revision, and of the stable one.
    pub revision: String,
    pub stable_revision: String,
    /// For `weightIncrease`: the step about to start, and the weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<GateStep>,
    /// The Services a test may call: `canary` / `stable` or `active` / `preview`.
    pub services: BTreeMap<String, String>,
    /// The gate's `metadata`.
    pub metadata: BTreeMap<String, String>,
}

/// The step a `weightIncrease` gate guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateStep {
    /// Zero-based index into `steps`, and their number.
    pub index: i32,
    pub count: i32,
    /// The canary weight in force now, and the one the step sets.
    pub weight: i32,
    pub next_weight: i32,
}

/// The key of one gate at one point of one revision (and step): `status.gates` entries
/// and the runtime's callers are matched by it.
pub fn key(revision: &str, point: GatePoint, step: Option<i32>, gate: &str) -> String {
    let step = step.map_or("-".to_string(), |s| s.to_string());
    format!("{revision}/{}/{step}/{gate}", point.as_str())
}

fn status_key(s: &GateStatus) -> String {
    key(&s.revision, s.point, s.step, &s.name)
}

/// The rollout the gates are about, fixed for one plan.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub rollout: &'a Rollout,
    pub strategy: StrategyKind,
    pub revision: &'a str,
    pub stable_revision: &'a str,
    pub services: BTreeMap<String, String>,
}

impl<'a> Subject<'a> {
    /// The subject of a Rollout's plan: its new and stable revisions, and the Services
    /// its strategy names.
    pub fn of(rollout: &'a Rollout, revision: &'a str, stable_revision: &'a str) -> Self {
        let strategy = &rollout.spec.strategy;
        let mut services = BTreeMap::new();
        let (kind, named) = match (&strategy.canary, &strategy.blue_green) {
            (_, Some(bg)) => (
                StrategyKind::BlueGreen,
                [
                    ("active", Some(&bg.active_service)),
                    ("preview", bg.preview_service.as_ref()),
                ],
            ),
            (canary, None) => (
                StrategyKind::Canary,
                [
                    (
                        "canary",
                        canary.as_ref().and_then(|c| c.canary_service.as_ref()),
                    ),
                    (
                        "stable",
                        canary.as_ref().and_then(|c| c.stable_service.as_ref()),
                    ),
                ],
            ),
        };
        for (role, service) in named {
            if let Some(service) = service {
                services.insert(role.to_string(), service.clone());
            }
        }
        Subject {
            rollout,
            strategy: kind,
            revision,
            stable_revision,
            services,
        }
    }

    /// The gates of the Rollout that apply at `point`, in spec order.
    fn gates_at(&self, point: GatePoint) -> impl Iterator<Item = &'a Gate> + 'a {
        self.rollout
            .spec
            .strategy
            .gates
            .iter()
            .filter(move |g| g.points.contains(&point))
    }

    fn request(&self, gate: &Gate, point: GatePoint, step: Option<GateStep>) -> GateRequest {
        let meta = &self.rollout.metadata;
        GateRequest {
            gate: gate.name.clone(),
            point,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            strategy: self.strategy,
            revision: self.revision.to_string(),
            stable_revision: self.stable_revision.to_string(),
            step,
            services: self.services.clone(),
            metadata: gate.metadata.clone(),
        }
    }
}

/// What the holding gates at a point decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Every gate there passed (or there is none): go on.
    Open,
    /// At least one has not passed yet: stay, paused, saying why.
    Held(String),
    /// One did not pass within its timeout: abort with this reason.
    Failed(String),
}

/// Where one plan's gates stand: what it holds on, the calls it wants.
#[derive(Debug, Default)]
pub struct Gates {
    pub calls: Vec<GateCall>,
}

impl Gates {
    /// Checks the holding gates at `point` (and `step`): records each in `status.gates`,
    /// holds with a `Gate` pause condition per gate not passed, passes one whose
    /// condition a promote cleared, and fails the first past its timeout.
    #[allow(clippy::too_many_arguments)] // the point, its step, and the plan's state
    pub(super) fn check(
        &mut self,
        subject: &Subject,
        point: GatePoint,
        step: Option<GateStep>,
        answers: &BTreeMap<String, GateAnswer>,
        status: &mut RolloutStatus,
        wake: &mut Wake,
        now: Timestamp,
    ) -> Hold {
        debug_assert!(point.holds());
        let step_index = step.map(|s| s.index);
        let mut waiting = Vec::new();
        for gate in subject.gates_at(point) {
            let k = key(subject.revision, point, step_index, &gate.name);
            let has_condition = |status: &RolloutStatus| {
                status
                    .pause_conditions
                    .iter()
                    .any(|c| c.reason == PauseReason::Gate && c.gate.as_deref() == Some(&gate.name))
            };
            let at = match status.gates.iter().position(|s| status_key(s) == k) {
                Some(at) => {
                    let entry = &status.gates[at];
                    match entry.phase {
                        GatePhase::Passed => continue,
                        // Normally gone with the abort it caused; failed stays failed.
                        GatePhase::Failed => {
                            return Hold::Failed(format!(
                                "gate {} ({}{}) failed: {}",
                                gate.name,
                                point.as_str(),
                                step_label(step_index),
                                entry.message.as_deref().unwrap_or("no answer")
                            ));
                        }
                        GatePhase::Pending => {}
                    }
                    if entry.phase == GatePhase::Pending && !has_condition(status) {
                        // Held here before, and the condition is gone: a promote.
                        let entry = &mut status.gates[at];
                        entry.phase = GatePhase::Passed;
                        entry.finished_at = Some(Time(now));
                        entry.message = Some("passed by a promote".into());
                        continue;
                    }
                    at
                }
                None => {
                    status.gates.push(GateStatus {
                        name: gate.name.clone(),
                        point,
                        revision: subject.revision.to_string(),
                        step: step_index,
                        phase: GatePhase::Pending,
                        started_at: Time(now),
                        finished_at: None,
                        message: None,
                    });
                    if !has_condition(status) {
                        status.pause_conditions.push(PauseCondition {
                            reason: PauseReason::Gate,
                            start_time: Time(now),
                            gate: Some(gate.name.clone()),
                        });
                    }
                    status.gates.len() - 1
                }
            };
            match follow(&mut status.gates[at], gate, answers.get(&k), now) {
                Standing::Passed => drop_condition(status, &gate.name),
                Standing::TimedOut { last, limit } => {
                    drop_condition(status, &gate.name);
                    return Hold::Failed(format!(
                        "gate {} ({}{}) did not pass within {}: {last}",
                        gate.name,
                        point.as_str(),
                        step_label(step_index),
                        humantime::format_duration(limit)
                    ));
                }
                Standing::Waiting { last, deadline } => {
                    wake.at(deadline);
                    self.calls.push(GateCall {
                        key: k,
                        request: subject.request(gate, point, step),
                    });
                    waiting.push((gate.name.clone(), last));
                }
            }
        }
        match waiting.as_slice() {
            [] => Hold::Open,
            [(name, last)] => Hold::Held(format!(
                "held by gate {name} at {}{}: {last}",
                point.as_str(),
                step_label(step_index)
            )),
            several => Hold::Held(format!(
                "held by gates {} at {}{}: {}",
                several
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                point.as_str(),
                step_label(step_index),
                several
                    .iter()
                    .map(|(n, last)| format!("{n}: {last}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
    }

    /// After the plan's transitions: starts the telling gates (`postRollout` on
    /// RolloutCompleted, `rollback` on RolloutAborted), follows those under way (passed,
    /// failed past their timeout with a Warning Event, or called again), and keeps the
    /// records of the current revision only. A holding gate's record or pause condition
    /// that this plan did not visit (a promote-full, a spec edit, an abort) is dropped.
    pub(super) fn settle(
        &mut self,
        subject: &Subject,
        answers: &BTreeMap<String, GateAnswer>,
        status: &mut RolloutStatus,
        events: &mut Vec<PlannedEvent>,
        wake: &mut Wake,
        now: Timestamp,
    ) {
        let told = |reason: &str| events.iter().any(|e| e.reason == reason);
        let started: Vec<GatePoint> = [
            (told("RolloutCompleted"), GatePoint::PostRollout),
            (told("RolloutAborted"), GatePoint::Rollback),
        ]
        .into_iter()
        .filter_map(|(yes, point)| yes.then_some(point))
        .collect();
        let revision = subject.revision;
        let visited: Vec<String> = self.calls.iter().map(|c| c.key.clone()).collect();
        let holding_names: Vec<String> =
            self.calls.iter().map(|c| c.request.gate.clone()).collect();
        status.gates.retain(|s| {
            s.revision == revision
                && (!s.point.holds()
                    || s.phase != GatePhase::Pending
                    || visited.contains(&status_key(s)))
                && (!status.abort || !s.point.holds())
        });
        status.pause_conditions.retain(|c| {
            c.reason != PauseReason::Gate
                || c.gate.as_ref().is_some_and(|g| holding_names.contains(g))
        });
        for point in started {
            for gate in subject.gates_at(point) {
                let k = key(revision, point, None, &gate.name);
                if !status.gates.iter().any(|s| status_key(s) == k) {
                    status.gates.push(GateStatus {
                        name: gate.name.clone(),
                        point,
                        revision: revision.to_string(),
                        step: None,
                        phase: GatePhase::Pending,
                        started_at: Time(now),
                        finished_at: None,
                        message: None,
                    });
                }
            }
        }
        let gates = &subject.rollout.spec.strategy.gates;
        for entry in status.gates.iter_mut() {
            if entry.point.holds() || entry.phase != GatePhase::Pending {
                continue;
            }
            let Some(gate) = gates
                .iter()
                .find(|g| g.name == entry.name && g.points.contains(&entry.point))
            else {
                // The gate left the spec: nobody to tell any more.
                entry.phase = GatePhase::Failed;
                entry.finished_at = Some(Time(now));
                entry.message = Some("removed from spec.strategy.gates".into());
                continue;
            };
            let k = status_key(entry);
            match follow(entry, gate, answers.get(&k), now) {
                Standing::Passed => {}
                Standing::TimedOut { last, limit } => events.push(PlannedEvent {
                    warning: true,
                    reason: "GateFailed".into(),
                    action: format!("{}-{}-{}", gate.name, entry.point.as_str(), revision),
                    message: format!(
                        "gate {} ({}) was not told of revision {revision} within {}: {last}",
                        gate.name,
                        entry.point.as_str(),
                        humantime::format_duration(limit)
                    ),
                }),
                Standing::Waiting { deadline, .. } => {
                    wake.at(deadline);
                    self.calls.push(GateCall {
                        key: k,
                        request: subject.request(gate, entry.point, None),
                    });
                }
            }
        }
    }
}

/// Where a pending gate stands after its last answer, at `now`.
enum Standing {
    /// It answered 2xx.
    Passed,
    /// Its timeout passed first; `last` is its last answer.
    TimedOut {
        last: String,
        limit: std::time::Duration,
    },
    /// Still to be called, until `deadline`.
    Waiting { last: String, deadline: Timestamp },
}

/// Records in a pending gate's entry what its last answer and its timeout make of it:
/// passed, failed, or still pending with that answer.
fn follow(
    entry: &mut GateStatus,
    gate: &Gate,
    answer: Option<&GateAnswer>,
    now: Timestamp,
) -> Standing {
    if let Some(answer) = answer.filter(|a| a.passed) {
        entry.phase = GatePhase::Passed;
        entry.finished_at = Some(Time(now));
        entry.message = Some(answer.message.clone());
        return Standing::Passed;
    }
    let last = answer.map_or("no answer yet".to_string(), |a| a.message.clone());
    let limit = gate.hold_limit();
    let deadline =
        entry.started_at.0 + SignedDuration::try_from(limit).unwrap_or(SignedDuration::MAX);
    if now >= deadline {
        entry.phase = GatePhase::Failed;
        entry.finished_at = Some(Time(now));
        entry.message = Some(last.clone());
        return Standing::TimedOut { last, limit };
    }
    entry.message = answer.map(|a| a.message.clone());
    Standing::Waiting { last, deadline }
}

fn drop_condition(status: &mut RolloutStatus, gate: &str) {
    status
        .pause_conditions
        .retain(|c| c.reason != PauseReason::Gate || c.gate.as_deref() != Some(gate));
}

fn step_label(step: Option<i32>) -> String {
    step.map(|s| format!(" step {}", s + 1)).unwrap_or_default()
}
