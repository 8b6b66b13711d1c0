//! Canary planning: from the spec, the observed ReplicaSets / Services / router / runs and
//! `now`, decide the step the rollout is at, the size of each ReplicaSet, the traffic
//! weight, and what changes that takes.
//!
//! The work is split into small pure stages with explicit inputs, in this order: the
//! revision (`common::enter_revision`: which template is new, which is stable),
//! [`walk_steps`] over the [`Revisions`] in play (how far the steps have got), [`targets`]
//! (sizes and weight for that position), [`scale_actions`] with their [`Scaling`]
//! (bounded moves towards them), then the status; the phase and conditions are
//! `core::phase`'s, shared with blue-green.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use sluice_api::analysis::AnalysisPhase;
use sluice_api::gate::{GatePhase, GatePoint};
use sluice_api::rollout::{
    BackgroundAnalysis, CanaryStatus, CanaryStep, CanaryStrategy, ManagedRouteStatus,
    PauseCondition, PauseReason, Rollout, RolloutStatus, StrategyKind, TrafficWeights,
};

use super::Plan;
use super::action::{Action, PlannedEvent};
use super::baseline;
use super::common::{
    Entered, PauseState, Wake, count_replicas, enter_revision, next_revision, pause_state,
    point_services, prune_history, secs, stable_hash, stable_rs_settled, start_run, until,
};
use super::gate::{GateStep, Gates, Hold, Subject};
use super::notice::{Notice, Trigger};
use super::observed::{BaselineState, Observed, ReplicaSetState};
use super::phase::{PhaseInput, with_phase};
use super::replicas::{Budget, Sizing, replicas_for_weight, step_towards};
use super::routes::{self, RouteSetting};

/// The traffic weight and canary size in force at a position in the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepSetting {
    /// Canary traffic weight set by the last `setWeight` at or before the position.
    pub weight: i32,
    /// Canary size set by the last `setCanaryScale` (None: follow the weight).
    pub canary_scale: Option<CanaryScale>,
    /// True when a managed route (`setHeaderRoute`, `setMirrorRoute`) is in force: it
    /// sends requests to the canary whatever the weight, so the canary needs a pod.
    pub routed: bool,
}

/// A `setCanaryScale` in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryScale {
    Replicas(i32),
    Weight(i32),
}

/// The setting in force while working on step `index` (steps before it, and the step
/// itself when it is a `setWeight` or `setCanaryScale`).
pub fn setting_at(steps: &[CanaryStep], index: usize) -> StepSetting {
    let mut setting = StepSetting::default();
    let mut routes: Vec<&str> = Vec::new();
    for step in steps.iter().take(index + 1) {
        let route = [
            step.set_header_route
                .as_ref()
                .map(|h| (h.name.as_str(), h.matches.is_empty())),
            step.set_mirror_route
                .as_ref()
                .map(|m| (m.name.as_str(), m.matches.is_empty())),
        ];
        for (name, removed) in route.into_iter().flatten() {
            routes.retain(|r| *r != name);
            if !removed {
                routes.push(name);
            }
        }
        if let Some(w) = step.set_weight {
            setting.weight = w;
        }
        if let Some(scale) = &step.set_canary_scale {
            setting.canary_scale = if scale.match_traffic_weight {
                None
            } else if let Some(r) = scale.replicas {
                Some(CanaryScale::Replicas(r))
            } else {
                scale.weight.map(CanaryScale::Weight)
            };
        }
    }
    setting.routed = !routes.is_empty();
    setting
}

/// The setting in force before step `index` is entered: what a gate holding the rollout
/// there keeps (nothing of the canary before the first step).
pub fn setting_before(steps: &[CanaryStep], index: usize) -> StepSetting {
    match index.checked_sub(1) {
        Some(previous) => setting_at(steps, previous),
        None => StepSetting::default(),
    }
}

/// Desired sizes and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub canary: i32,
    pub stable: i32,
    /// Canary traffic weight to send to the router (with a router) or to report.
    pub weight: i32,
}

/// Sizes and weight for a setting. With a router the stable ReplicaSet stays at full size
/// (unless `dynamicStableScale`) and the canary runs beside it; without one, the replica
/// ratio is the traffic split.
pub fn targets(
    replicas: i32,
    setting: StepSetting,
    has_router: bool,
    dynamic_stable: bool,
) -> Targets {
    let by_weight = replicas_for_weight(setting.weight, replicas);
    let canary = match setting.canary_scale {
        Some(CanaryScale::Replicas(r)) => r.max(0),
        Some(CanaryScale::Weight(w)) => replicas_for_weight(w, replicas),
        None => by_weight,
    };
    // A router sends `weight`% (and what a managed route matches) to the canary; it needs at
    // least one pod to take it, however the canary is sized (a setCanaryScale of 0 beside a
    // weight would send it to none).
    let canary = if has_router && (setting.weight > 0 || setting.routed) {
        canary.max(1)
    } else {
        canary
    };
    let stable = if has_router && !dynamic_stable {
        replicas
    } else {
        (replicas - by_weight).max(0)
    };
    Targets {
        canary,
        stable,
        weight: setting.weight,
    }
}

/// Where the rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The desired template is the stable one: everything at stable, nothing in flight.
    Stable,
    /// Working through the steps; the index is into `steps`.
    Canary,
    /// All steps done (or promote-full): bring the canary to full size and make it stable.
    Promoting,
    /// Aborted: traffic at stable, canary going down.
    Aborted,
}

/// What walking the steps found.
#[derive(Debug)]
struct Walk {
    index: usize,
    /// True when stopped at a pause (step, inconclusive analysis) waiting for time or a human.
    paused_at_step: bool,
    /// Set when a step's analysis failed: abort with this message.
    abort_reason: Option<String>,
    /// Set while a gate holds the rollout before the step at `index`: why. The setting in
    /// force is the one before that step.
    gate_hold: Option<String>,
}

/// Plans one reconcile of a canary Rollout.
pub fn plan(
    rollout: &Rollout,
    canary: &CanaryStrategy,
    observed: &Observed,
    template_hash: &str,
    steps_hash: &str,
    now: Timestamp,
) -> Plan {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let spec = &rollout.spec;
    let replicas = spec.replicas.max(0);
    let old = rollout.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut wake = Wake::default();
    let has_router = canary.traffic_routing.is_some();
    let steps = &canary.steps;

    // --- revision: which template is new, which is stable -------------------------------
    let Entered {
        mut actions,
        mut events,
        new_template,
    } = enter_revision(
        &mut status,
        StrategyKind::Canary,
        template_hash,
        steps_hash,
        now,
    );

    // The first revision, or a stable revision whose ReplicaSet is gone, has nothing to
    // compare with: it becomes stable directly.
    let stable_hash = stable_hash(&old, observed, template_hash);
    status.stable_rs = Some(stable_hash.clone());

    let mut mode = if stable_hash == template_hash {
        Mode::Stable
    } else if status.abort {
        Mode::Aborted
    } else if status.promote_full {
        Mode::Promoting
    } else {
        Mode::Canary
    };

    let current_rs = observed.replica_set(template_hash);
    let stable_rs = observed.replica_set(&stable_hash);
    let subject = Subject::of(rollout, template_hash, &stable_hash);
    let mut gates = Gates::default();
    let mut gate_hold = None;

    // --- steps ---------------------------------------------------------------------------
    let mut index = (status.current_step_index.unwrap_or(0).max(0) as usize).min(steps.len());
    let entered_at = index;
    let mut paused_at_step = false;
    let mut abort_reason = None;
    let background_paused = held_by_background(&status);
    let baseline_input = |mode: Mode, canary_target: i32| baseline::Input {
        rollout: &name,
        stable_hash: &stable_hash,
        canary_hash: template_hash,
        enabled: canary.baseline.as_ref().is_some_and(|b| b.enabled),
        in_progress: mode == Mode::Canary,
        frozen: spec.paused,
        canary_target,
    };
    if mode == Mode::Canary {
        let revisions = Revisions {
            rollout: &name,
            template_hash,
            steps,
            managed: routes::managed(canary),
            observed,
            current_rs,
            stable_rs,
            baseline: baseline::wanted(&baseline_input(mode, 0), observed),
            replicas,
            has_router,
            dynamic_stable: canary.dynamic_stable_scale,
            frozen: spec.paused || background_paused,
            subject: &subject,
            now,
        };
        let walk = walk_steps(
            &revisions,
            index,
            &mut gates,
            &mut status,
            &mut actions,
            &mut wake,
        );
        if walk.index != index {
            events.push(PlannedEvent {
                warning: false,
                reason: "StepCompleted".into(),
                action: format!("Step{}", walk.index),
                message: format!("completed step {}/{}", walk.index, steps.len()),
            });
        }
        index = walk.index;
        paused_at_step = walk.paused_at_step;
        gate_hold = walk.gate_hold;
        let mut walk_abort = walk.abort_reason;
        if walk_abort.is_none()
            && index < steps.len()
            && let Some(bg) = &canary.analysis
        {
            match background_analysis(&revisions, bg, index, &mut status, &mut actions) {
                Background::Continue => {}
                Background::Paused => paused_at_step = true,
                Background::Abort(reason) => walk_abort = Some(reason),
            }
        }
        // The last gates before full weight (and a stepless Rollout's preRollout).
        if walk_abort.is_none() && gate_hold.is_none() && index >= steps.len() {
            let points = [
                steps.is_empty().then_some(GatePoint::PreRollout),
                Some(GatePoint::PrePromotion),
            ];
            for point in points.into_iter().flatten() {
                let answers = &observed.gate_answers;
                match gates.check(&subject, point, None, answers, &mut status, &mut wake, now) {
                    Hold::Open => continue,
                    Hold::Held(why) => gate_hold = Some(why),
                    Hold::Failed(reason) => walk_abort = Some(reason),
                }
                break;
            }
        }
        if let Some(reason) = walk_abort {
            status.abort = true;
            status.aborted_at = Some(Time(now));
            abort_reason = Some(reason);
            mode = Mode::Aborted;
        } else if index >= steps.len() && gate_hold.is_none() {
            mode = Mode::Promoting;
        }
    }
    // An abort ends the pause it interrupted: after a retry the step is entered afresh,
    // once its traffic is back, and a timed pause counts from then.
    if mode == Mode::Aborted {
        status.pause_conditions.clear();
        status.controller_pause = false;
    }
    if mode == Mode::Stable || mode == Mode::Promoting {
        index = steps.len();
    }
    // Promotion starts in the reconcile that passes the last step or first sees a
    // promote-full (from then on the index stays at the end). No Event tells it: the
    // last StepCompleted and RolloutCompleted frame it.
    let mut notices = Vec::new();
    // A gate held it at the end of the steps until now.
    let held_at_end = entered_at >= steps.len()
        && old.gates.iter().any(|g| {
            g.revision == template_hash && g.point.holds() && g.phase == GatePhase::Pending
        });
    if mode == Mode::Promoting
        && (entered_at < steps.len() || held_at_end || (new_template && steps.is_empty()))
    {
        let how = if status.promote_full && entered_at < steps.len() {
            format!(
                "promoted in full with {entered_at} of {} steps done",
                steps.len()
            )
        } else {
            format!("completed all {} steps", steps.len())
        };
        notices.push(Notice::of(
            Trigger::Promoted,
            format!("{how}: revision {template_hash} goes to full weight"),
        ));
    }
    // The background analysis covers the canary only: promotion or abort ends it.
    if mode != Mode::Canary
        && let Some(run) = status
            .canary
            .as_mut()
            .and_then(|c| c.current_background_analysis_run.take())
    {
        actions.push(Action::TerminateAnalysisRun { name: run });
    }
    // So do they end a step's run still measuring (a finished one stays named: it says
    // why the rollout aborted). A retry then measures afresh.
    if mode != Mode::Canary
        && let Some(c) = status.canary.as_mut()
        && let Some(run) = c.current_step_analysis_run.as_deref()
        && observed.analysis_run(run).is_none_or(|r| !r.finished())
    {
        let name = c.current_step_analysis_run.take().expect("checked");
        actions.push(Action::TerminateAnalysisRun { name });
    }
    status.current_step_index = Some(index as i32);

    // --- targets -------------------------------------------------------------------------
    let full = Targets {
        canary: replicas,
        stable: if has_router { replicas } else { 0 },
        weight: 100,
    };
    let t = match mode {
        Mode::Stable => Targets {
            canary: replicas,
            stable: replicas,
            weight: 0,
        },
        // `spec.paused` freezes the rollout as it stands, as a paused Deployment does; so
        // does an inconclusive background analysis: no traffic moves on while a human
        // looks at it.
        Mode::Canary if spec.paused || held_by_background(&status) => Targets {
            canary: current_rs.map_or(0, |rs| rs.replicas),
            stable: stable_rs.map_or(0, |rs| rs.replicas),
            weight: observed
                .router_weight
                .or_else(|| old.canary.as_ref()?.weights.as_ref().map(|w| w.canary))
                .unwrap_or(0),
        },
        Mode::Canary => targets(
            replicas,
            if gate_hold.is_some() {
                setting_before(steps, index)
            } else {
                setting_at(steps, index)
            },
            has_router,
            canary.dynamic_stable_scale,
        ),
        Mode::Promoting => full,
        Mode::Aborted => Targets {
            canary: 0,
            stable: replicas,
            weight: 0,
        },
    };

    // Promotion completes once the canary is fully available: it becomes stable, and the
    // previous stable ReplicaSet stays up for scaleDownDelaySeconds (traffic may still be
    // draining from it through the router or the Service's endpoints).
    let mut demoted: Option<String> = None;
    if mode == Mode::Promoting
        && current_rs.is_some_and(|rs| rs.replicas == replicas && rs.available >= replicas)
    {
        demoted = Some(stable_hash.clone());
        status.stable_rs = Some(template_hash.to_string());
        status.promote_full = false;
        status.pause_conditions.clear();
        status.controller_pause = false;
        mode = Mode::Stable;
        events.push(PlannedEvent {
            warning: false,
            reason: "RolloutCompleted".into(),
            action: format!("Revision-{template_hash}"),
            message: format!("revision {template_hash} is now stable"),
        });
    }
    let stable_hash = status.stable_rs.clone().unwrap_or_default();

    // --- traffic -------------------------------------------------------------------------
    // The router only gets weight for pods that are available, and gets it back at once
    // when the canary shrinks or the rollout aborts.
    let desired_weight = match mode {
        Mode::Stable | Mode::Aborted => 0,
        Mode::Canary | Mode::Promoting => {
            let canary_available = current_rs.map_or(0, |rs| rs.available);
            if canary_available == 0 || t.canary == 0 {
                // No pod to take a share (none yet, all crash-looping, a canary sized to
                // zero): one sent there would fail.
                0
            } else if canary_available >= t.canary {
                t.weight
            } else {
                t.weight.min(observed.router_weight.unwrap_or(0))
            }
        }
    };
    if has_router && observed.router_weight != Some(desired_weight) {
        actions.push(Action::SetCanaryWeight {
            weight: desired_weight,
        });
        // The router held what the status says was verified, and now holds something
        // else: another writer (a GitOps sync, a hand edit) changed it. Said once, as the
        // status turns unverified; the weight is put back by the action above.
        let was_verified = old
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .is_some_and(|w| w.verified == Some(true) && w.canary == desired_weight);
        if was_verified {
            let held = observed
                .router_weight
                .map_or("canary routes sluice did not set".to_string(), |w| {
                    format!("canary weight {w}")
                });
            events.push(PlannedEvent {
                warning: true,
                reason: "TrafficDrift".into(),
                action: "RestoreWeight".into(),
                message: format!(
                    "the router held {held} instead of {desired_weight}: another writer \
                     changed it; sluice sets it back"
                ),
            });
        }
    }

    // Managed routes: those in force at the step while the canary runs and has a pod to
    // take what they send; none once it completes or aborts.
    let desired_routes: Vec<RouteSetting> = match mode {
        Mode::Canary if current_rs.is_some_and(|rs| rs.available > 0) => {
            match (gate_hold.is_some(), index.checked_sub(1)) {
                (false, _) => routes::routes_at(steps, routes::managed(canary), index),
                (true, Some(previous)) => {
                    routes::routes_at(steps, routes::managed(canary), previous)
                }
                (true, None) => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    let desired_prints = routes::fingerprints(&desired_routes);
    let routes_action = (has_router && observed.router_routes != desired_prints).then(|| {
        drifted_routes(&old, &desired_prints, observed, &mut events);
        Action::SetManagedRoutes {
            routes: desired_routes.clone(),
        }
    });
    // Routes are removed before canaryService points elsewhere, and added after it points
    // at the canary, like the weight.
    let (routes_before, routes_after) = match routes_action {
        Some(a) if desired_routes.is_empty() => (Some(a), None),
        a => (None, a),
    };
    actions.extend(routes_before);

    // Services: stable at the stable revision, canary at the new one (or at stable when
    // nothing is in flight).
    let canary_service_hash = if mode == Mode::Stable || current_rs.is_none() {
        stable_hash.clone()
    } else {
        template_hash.to_string()
    };
    let pairs = [
        (canary.stable_service.as_ref(), &stable_hash),
        (canary.canary_service.as_ref(), &canary_service_hash),
    ];
    // A raised weight goes out after canaryService points at the canary, a lowered one
    // before it points elsewhere: killed between the two writes, the router still sends
    // its share only to pods that can take it.
    let raise = actions
        .iter()
        .position(|a| matches!(a, Action::SetCanaryWeight { weight } if Some(*weight) > observed.router_weight));
    let raise = raise.map(|i| actions.remove(i));
    point_services(observed, pairs, &mut actions);
    actions.extend(raise);
    actions.extend(routes_after);

    // --- ReplicaSets ---------------------------------------------------------------------
    let delay_applies = has_router || canary.stable_service.is_some();
    let scaling = Scaling {
        observed,
        template_hash,
        stable_hash: &stable_hash,
        mode,
        targets: t,
        replicas,
        budget: Budget::new(replicas, &canary.max_surge, &canary.max_unavailable),
        has_router,
        demoted: demoted.as_deref(),
        scale_down_delay: delay_applies.then_some(canary.scale_down_delay_seconds),
        abort_scale_down_at: status
            .aborted_at
            .as_ref()
            .map(|t| t.0 + secs(canary.abort_scale_down_delay_seconds)),
        revision_history_limit: spec.revision_history_limit,
        now,
    };
    scale_actions(&scaling, &mut actions, &mut wake);
    // The baseline follows the canary's size while the steps run and goes with the canary.
    let baseline = baseline::plan(&baseline_input(mode, t.canary), observed);
    actions.extend(baseline.actions);

    // --- status --------------------------------------------------------------------------
    count_replicas(&mut status, observed, current_rs);
    let all = &observed.replica_sets;
    status.step_progress =
        (!steps.is_empty()).then(|| format!("{}/{}", (index + 1).min(steps.len()), steps.len()));
    let verified = if has_router {
        observed.router_weight == Some(desired_weight)
    } else {
        current_rs.is_some_and(|rs| rs.available >= t.canary.min(rs.replicas))
    };
    let reported_weight = if has_router { desired_weight } else { t.weight };
    let canary_status = status.canary.get_or_insert_with(CanaryStatus::default);
    canary_status.weights = Some(TrafficWeights {
        canary: if mode == Mode::Stable {
            0
        } else {
            reported_weight
        },
        stable: 100
            - if mode == Mode::Stable {
                0
            } else {
                reported_weight
            },
        verified: Some(verified),
    });
    canary_status.baseline = baseline.status;
    canary_status.managed_routes = desired_routes
        .iter()
        .map(|r| ManagedRouteStatus {
            name: r.name.clone(),
            kind: r.kind_name().into(),
            verified: observed.router_routes.get(&r.name) == Some(&r.fingerprint()),
        })
        .collect();

    // A revision draining behind its scale-down deadline does not keep the rollout from
    // being done: it serves no new traffic and goes away on its own. Nor does one past its
    // deadline, or scaled to zero, whose pods are still terminating: counting it would
    // flip a done rollout to Progressing and back (an Event and two status writes, and a
    // flap in kstatus and Argo CD).
    let draining = |rs: &ReplicaSetState| {
        demoted.as_deref() == Some(rs.hash.as_str())
            || rs.scale_down_at.is_some()
            || rs.replicas == 0
    };
    let settled = mode == Mode::Stable
        && stable_rs_settled(observed, &stable_hash, replicas)
        && all
            .iter()
            .all(|rs| rs.hash == stable_hash || rs.current == 0 || draining(rs))
        // A baseline left over is work still to do: done means it is gone.
        && observed.baselines.is_empty();
    let paused = spec.paused || paused_at_step || gate_hold.is_some();
    let timed_pause = paused_at_step
        && !spec.paused
        && status
            .pause_conditions
            .iter()
            .all(|c| c.reason == PauseReason::CanaryPauseStep)
        && steps
            .get(index)
            .and_then(|s| s.pause.as_ref())
            .is_some_and(|p| p.duration.is_some());

    let plan = Plan {
        actions,
        status,
        requeue_after: wake.0.map(|w| until(now, w)),
        events,
        notices,
        gate_calls: gates.calls,
    };
    with_phase(
        plan,
        PhaseInput {
            rollout,
            mode_aborted: mode == Mode::Aborted,
            abort_reason,
            settled,
            paused,
            timed_pause,
            detail: gate_hold,
            min_available: Budget::new(replicas, &canary.max_surge, &canary.max_unavailable)
                .min_available,
            now,
        },
    )
}

/// The two revisions in play (the canary's and the stable one), the steps between them
/// and what the cluster holds of them: what walking the steps and the background analysis
/// read, fixed for one plan.
#[derive(Debug, Clone, Copy)]
struct Revisions<'a> {
    rollout: &'a str,
    /// The canary's (the template's) pod-template hash.
    template_hash: &'a str,
    steps: &'a [CanaryStep],
    /// `trafficRouting.managedRoutes`: the routes route steps may set, in precedence order.
    managed: &'a [sluice_api::rollout::ManagedRoute],
    observed: &'a Observed,
    current_rs: Option<&'a ReplicaSetState>,
    stable_rs: Option<&'a ReplicaSetState>,
    /// The baseline the steps measure against, when one is wanted (see `baseline::wanted`).
    baseline: Option<Option<&'a BaselineState>>,
    replicas: i32,
    has_router: bool,
    dynamic_stable: bool,
    /// Held where it stands: `spec.paused`, or an inconclusive background analysis.
    frozen: bool,
    /// The rollout as its gates describe it.
    subject: &'a Subject<'a>,
    now: Timestamp,
}

/// Walks the steps from `start` as far as the cluster allows: each step is done once its
/// setting is in place, its pause over or its analysis passed.
fn walk_steps(
    revisions: &Revisions,
    start: usize,
    gates: &mut Gates,
    status: &mut RolloutStatus,
    actions: &mut Vec<Action>,
    wake: &mut Wake,
) -> Walk {
    let Revisions {
        rollout,
        template_hash,
        steps,
        managed,
        observed,
        current_rs,
        stable_rs,
        baseline,
        replicas,
        has_router,
        dynamic_stable,
        frozen,
        subject,
        now,
    } = *revisions;
    let mut index = start;
    while index < steps.len() {
        let step = &steps[index];
        // `spec.paused` holds the rollout at the step it is on; the step's pods and weight
        // stay as they are.
        if frozen {
            return Walk {
                index,
                paused_at_step: false,
                abort_reason: None,
                gate_hold: None,
            };
        }
        // Gates hold before the step: its setting is not applied until they pass.
        let before = setting_before(steps, index);
        let raise = step
            .set_weight
            .filter(|w| *w > before.weight)
            .map(|next_weight| GateStep {
                index: index as i32,
                count: steps.len() as i32,
                weight: before.weight,
                next_weight,
            });
        let points = [
            (index == 0).then_some((GatePoint::PreRollout, None)),
            raise.map(|r| (GatePoint::WeightIncrease, Some(r))),
        ];
        for (point, at) in points.into_iter().flatten() {
            match gates.check(
                subject,
                point,
                at,
                &observed.gate_answers,
                status,
                wake,
                now,
            ) {
                Hold::Open => {}
                Hold::Held(why) => {
                    return Walk {
                        index,
                        paused_at_step: false,
                        abort_reason: None,
                        gate_hold: Some(why),
                    };
                }
                Hold::Failed(reason) => {
                    return Walk {
                        index,
                        paused_at_step: false,
                        abort_reason: Some(reason),
                        gate_hold: None,
                    };
                }
            }
        }
        // A step is reached only once the setting in force there (weight, canary size)
        // is in place: a pause or an analysis entered earlier would report a step whose
        // traffic is not there yet (after a retry, a promote, a restart).
        let setting_in_place = || {
            let t = targets(
                replicas,
                setting_at(steps, index),
                has_router,
                dynamic_stable,
            );
            let canary_ready = current_rs
                .is_some_and(|rs| rs.replicas == t.canary && rs.available >= t.canary)
                || (t.canary == 0 && current_rs.is_none_or(|rs| rs.current == 0));
            let stable_ready =
                stable_rs.is_some_and(|rs| rs.replicas == t.stable && rs.available >= t.stable);
            let traffic_ready = !has_router
                || (observed.router_weight == Some(t.weight)
                    && observed.router_routes
                        == routes::fingerprints(&routes::routes_at(steps, managed, index)));
            // The baseline must be up beside the canary before the steps that measure it.
            let baseline_ready = baseline::ready(baseline, t.canary);
            canary_ready && stable_ready && traffic_ready && baseline_ready
        };
        let not_yet = Walk {
            index,
            paused_at_step: false,
            abort_reason: None,
            gate_hold: None,
        };
        let done = if step.set_weight.is_some()
            || step.set_canary_scale.is_some()
            || routes::is_route_step(step)
        {
            setting_in_place()
        } else if let Some(pause) = &step.pause {
            // Only entering the pause waits for the setting: once paused, a canary pod
            // restarting does not turn the pause back into progress.
            if !status.controller_pause && !setting_in_place() {
                return not_yet;
            }
            match pause_state(
                status,
                PauseReason::CanaryPauseStep,
                pause.duration.as_ref(),
                now,
                wake,
            ) {
                PauseState::Waiting => {
                    return Walk {
                        index,
                        paused_at_step: true,
                        abort_reason: None,
                        gate_hold: None,
                    };
                }
                PauseState::Over => true,
            }
        } else if let Some(analysis) = &step.analysis {
            // A run starts once its step's traffic is in place; a started run's verdict
            // is always read, so a failing canary aborts even while its pods restart.
            let started = status
                .canary
                .as_ref()
                .is_some_and(|c| c.current_step_analysis_run.is_some());
            if !started && !setting_in_place() {
                return not_yet;
            }
            let run_name = {
                let canary_status = status.canary.get_or_insert_with(CanaryStatus::default);
                match &canary_status.current_step_analysis_run {
                    Some(run) => run.clone(),
                    None => {
                        let run = start_run(
                            observed,
                            &format!("{rollout}-{template_hash}-{index}"),
                            analysis,
                            format!("step-{index}"),
                            actions,
                        );
                        canary_status.current_step_analysis_run = Some(run.clone());
                        // A fresh run (a retry in an inconclusive pause) is not paused on
                        // the old one's verdict: left set, `controllerPause` would read as
                        // "promoted" at the next pause step and skip it.
                        status
                            .pause_conditions
                            .retain(|c| c.reason != PauseReason::InconclusiveAnalysis);
                        status.controller_pause = false;
                        run
                    }
                }
            };
            let verdict = observed
                .analysis_run(&run_name)
                .and_then(|r| r.phase.map(|p| (p, r.message.clone())));
            match verdict {
                Some((AnalysisPhase::Successful, _)) => {
                    if let Some(c) = status.canary.as_mut() {
                        c.current_step_analysis_run = None;
                    }
                    true
                }
                Some((phase @ (AnalysisPhase::Failed | AnalysisPhase::Error), message)) => {
                    return Walk {
                        index,
                        paused_at_step: false,
                        gate_hold: None,
                        abort_reason: Some(format!(
                            "analysis {run_name} of step {} ended {phase:?}{}",
                            index + 1,
                            message.map(|m| format!(": {m}")).unwrap_or_default()
                        )),
                    };
                }
                Some((AnalysisPhase::Inconclusive, _)) => {
                    match pause_state(status, PauseReason::InconclusiveAnalysis, None, now, wake) {
                        PauseState::Waiting => {
                            return Walk {
                                index,
                                paused_at_step: true,
                                abort_reason: None,
                                gate_hold: None,
                            };
                        }
                        PauseState::Over => {
                            if let Some(c) = status.canary.as_mut() {
                                c.current_step_analysis_run = None;
                            }
                            true
                        }
                    }
                }
                _ => false,
            }
        } else {
            // Admission guarantees one action per step; an empty one is skipped.
            true
        };
        if !done {
            break;
        }
        index += 1;
        status.progressed_at = Some(Time(now));
    }
    Walk {
        index,
        paused_at_step: false,
        abort_reason: None,
        gate_hold: None,
    }
}

/// True while an inconclusive background analysis holds the rollout for a human.
fn held_by_background(status: &RolloutStatus) -> bool {
    status
        .pause_conditions
        .iter()
        .any(|c| c.reason == PauseReason::BackgroundAnalysisInconclusive)
}

/// What the background analysis says about the rollout.
enum Background {
    Continue,
    Paused,
    Abort(String),
}

/// Background analysis: one run from `startingStep` on, for the rest of the canary. Its
/// verdict acts like a step's: Failed or Error aborts; Inconclusive pauses for a human
/// (`BackgroundAnalysisInconclusive`), and a promote starts a fresh run.
fn background_analysis(
    revisions: &Revisions,
    bg: &BackgroundAnalysis,
    index: usize,
    status: &mut RolloutStatus,
    actions: &mut Vec<Action>,
) -> Background {
    let Revisions {
        rollout,
        template_hash,
        observed,
        now,
        ..
    } = *revisions;
    if (index as i32) < bg.starting_step.unwrap_or(0) {
        return Background::Continue;
    }
    if status
        .pause_conditions
        .iter()
        .any(|c| c.reason == PauseReason::BackgroundAnalysisInconclusive)
    {
        return Background::Paused;
    }
    let canary_status = status.canary.get_or_insert_with(CanaryStatus::default);
    let run_name = match &canary_status.current_background_analysis_run {
        Some(run) => run.clone(),
        None => {
            let run = start_run(
                observed,
                &format!("{rollout}-{template_hash}-background"),
                &bg.analysis,
                "background".into(),
                actions,
            );
            canary_status.current_background_analysis_run = Some(run.clone());
            run
        }
    };
    let Some(run) = observed.analysis_run(&run_name) else {
        return Background::Continue;
    };
    match run.phase {
        Some(phase @ (AnalysisPhase::Failed | AnalysisPhase::Error)) => Background::Abort(format!(
            "background analysis {run_name} ended {phase:?}{}",
            run.message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        Some(AnalysisPhase::Inconclusive) => {
            canary_status.current_background_analysis_run = None;
            status.pause_conditions.push(PauseCondition {
                reason: PauseReason::BackgroundAnalysisInconclusive,
                start_time: Time(now),
                gate: None,
            });
            Background::Paused
        }
        _ => Background::Continue,
    }
}

/// Where the rollout stands and what its ReplicaSets are to become: what sizing every
/// ReplicaSet of the rollout reads, fixed for one plan.
#[derive(Debug, Clone, Copy)]
struct Scaling<'a> {
    observed: &'a Observed,
    /// The template's revision.
    template_hash: &'a str,
    /// The stable revision after this plan (the template's once promotion completes).
    stable_hash: &'a str,
    mode: Mode,
    targets: Targets,
    replicas: i32,
    budget: Budget,
    has_router: bool,
    /// The revision this plan's promotion demoted: it keeps serving for the delay.
    demoted: Option<&'a str>,
    /// `scaleDownDelaySeconds`, when something can still send traffic to old pods.
    scale_down_delay: Option<i32>,
    /// When an aborted canary goes down (`abortScaleDownDelaySeconds` after the abort).
    abort_scale_down_at: Option<Timestamp>,
    revision_history_limit: i32,
    now: Timestamp,
}

/// Bounded moves of every ReplicaSet towards its target (surge and unavailability
/// budgets, scale-down delays, traffic off a ReplicaSet before it shrinks), and the
/// pruning of old revisions.
fn scale_actions(scaling: &Scaling, actions: &mut Vec<Action>, wake: &mut Wake) {
    let Scaling {
        observed,
        template_hash,
        stable_hash,
        mode,
        targets: t,
        replicas,
        budget,
        has_router,
        demoted,
        scale_down_delay,
        abort_scale_down_at,
        revision_history_limit,
        now,
    } = *scaling;
    let current = observed.replica_set(template_hash);
    let next_revision = next_revision(observed);

    // Traffic returns to stable before anything is scaled down: while the router still
    // sends the canary a share or holds a managed route, no non-stable ReplicaSet shrinks.
    let hold_non_stable = has_router
        && matches!(mode, Mode::Stable | Mode::Aborted)
        && (observed.router_weight.is_some_and(|w| w > 0) || !observed.router_routes.is_empty());

    // Target of every ReplicaSet, and the order in which scale-ups are served.
    let mut plan: Vec<(Option<&ReplicaSetState>, i32, Option<Timestamp>)> = Vec::new();
    let canary_target = match mode {
        Mode::Stable => replicas,
        Mode::Aborted if hold_non_stable => current.map_or(0, |rs| rs.replicas),
        Mode::Aborted => match abort_scale_down_at {
            // With a router the aborted canary stays up (no traffic) for the delay, ready
            // for a retry; without one its pods are the traffic split and go at once.
            Some(at) if has_router && now < at => {
                wake.at(at);
                current.map_or(0, |rs| rs.replicas)
            }
            _ => 0,
        },
        _ => t.canary,
    };
    let stable_target = if mode == Mode::Stable {
        replicas
    } else {
        t.stable
    };
    let canary_first = mode != Mode::Aborted;
    if template_hash != stable_hash {
        if canary_first {
            plan.push((current, canary_target, None));
            plan.push((observed.replica_set(stable_hash), stable_target, None));
        } else {
            plan.push((observed.replica_set(stable_hash), stable_target, None));
            plan.push((current, canary_target, None));
        }
    } else {
        plan.push((current, stable_target, None));
    }
    for rs in &observed.replica_sets {
        if rs.hash == template_hash || rs.hash == stable_hash {
            continue;
        }
        // The ReplicaSet demoted by this promotion keeps serving for the delay; so does one
        // demoted earlier whose deadline (an annotation, so it survives restarts) is ahead.
        let deadline = match (
            demoted == Some(rs.hash.as_str()),
            scale_down_delay,
            rs.scale_down_at,
        ) {
            (true, Some(delay), _) if delay > 0 && rs.replicas > 0 => Some(now + secs(delay)),
            (_, _, Some(at)) if rs.replicas > 0 && now < at => Some(at),
            _ => None,
        };
        match deadline {
            Some(at) => {
                wake.at(at);
                plan.push((Some(rs), rs.replicas, Some(at)));
            }
            None if hold_non_stable => plan.push((Some(rs), rs.replicas, rs.scale_down_at)),
            None => plan.push((Some(rs), 0, None)),
        }
    }

    // With a router the canary runs beside a full-size stable by design, so the surge
    // budget counts on top of it.
    let budget = if has_router {
        Budget {
            max_total: budget.max_total + canary_target.max(0),
            ..budget
        }
    } else {
        budget
    };
    let sizing: Vec<Sizing> = plan
        .iter()
        .map(|(rs, target, _)| Sizing {
            current: rs.map_or(0, |rs| rs.replicas),
            available: rs.map_or(0, |rs| rs.available),
            target: *target,
        })
        .collect();
    let next = step_towards(budget, &sizing);
    for ((rs, _, deadline), replicas) in plan.iter().zip(next) {
        match rs {
            Some(rs) if rs.replicas != replicas || rs.scale_down_at != *deadline => {
                actions.push(Action::ScaleReplicaSet {
                    name: rs.name.clone(),
                    replicas,
                    scale_down_at: *deadline,
                });
            }
            Some(_) => {}
            // A revision that is or becomes stable gets its ReplicaSet even at zero pods, as
            // a Deployment's does: Services select it, and promotion completes on it.
            None if replicas > 0 || matches!(mode, Mode::Stable | Mode::Promoting) => {
                actions.push(Action::CreateReplicaSet {
                    hash: template_hash.to_string(),
                    revision: next_revision,
                    replicas,
                    // Set by `pod_metadata::plan`, which knows the role once the plan's
                    // status holds.
                    pod_metadata: Default::default(),
                })
            }
            None => {}
        }
    }

    // Old revisions beyond revisionHistoryLimit, once scaled to zero, are deleted.
    prune_history(
        observed,
        revision_history_limit,
        |rs| rs.hash == template_hash || rs.hash == stable_hash,
        actions,
    );
}

/// A managed route the status says was verified, still wanted as it was, that the router
/// no longer holds so: another writer changed it. Said once, as the status turns
/// unverified; the action that comes with it puts the route back.
fn drifted_routes(
    old: &RolloutStatus,
    desired: &std::collections::BTreeMap<String, String>,
    observed: &Observed,
    events: &mut Vec<PlannedEvent>,
) {
    let verified = old.canary.iter().flat_map(|c| c.managed_routes.iter());
    for route in verified.filter(|r| r.verified) {
        let Some(want) = desired.get(&route.name) else {
            continue;
        };
        if observed.router_routes.get(&route.name) != Some(want) {
            events.push(PlannedEvent {
                warning: true,
                reason: "TrafficDrift".into(),
                action: format!("RestoreRoute-{}", route.name),
                message: format!(
                    "the router no longer held managed route {} as sluice set it: another \
                     writer changed it; sluice sets it back",
                    route.name
                ),
            });
        }
    }
}
