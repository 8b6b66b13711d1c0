//! Blue-green planning: the new revision comes up beside the active one behind
//! `previewService`, is checked (pre-promotion analysis, a pause for a human), and then
//! `activeService` switches to it at once; the previous revision stays up for a switch
//! back (post-promotion analysis, abort) until its scale-down deadline.
//!
//! The way from one revision to the next is a fixed list of [`Stage`]s built from the
//! spec; `status.currentStepIndex` is the index into it, so `promote` (skip the current
//! stage, or end a pause), `promote-full`, `abort` and `retry` are the same status patches
//! as for a canary. One invariant is enforced whatever the index says: `activeService`
//! moves to the new revision only in the Promote stage, once the new ReplicaSet is at full
//! size and fully available.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use sluice_api::analysis::AnalysisPhase;
use sluice_api::gate::GatePoint;
use sluice_api::rollout::{
    BlueGreenStatus, BlueGreenStrategy, PauseReason, Rollout, RolloutAnalysis, RolloutStatus,
    StrategyKind,
};

use super::Plan;
use super::action::{Action, PlannedEvent};
use super::common::{
    Entered, PauseState, Wake, count_replicas, enter_revision, next_revision, pause_state,
    point_services, prune_history, secs, stable_hash, stable_rs_settled, start_run, until,
};
use super::gate::{Gates, Hold, Subject};
use super::observed::{AnalysisRunState, Observed, ReplicaSetState};
use super::phase::{PhaseInput, with_phase};

/// One stage of the way from the active revision to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Stage {
    /// The new ReplicaSet comes up at `previewReplicaCount` behind `previewService`.
    Preview,
    /// `prePromotionAnalysis` runs against the preview.
    PrePromotionAnalysis,
    /// Waiting for a human (`autoPromotionEnabled: false`) or for
    /// `autoPromotionSeconds`.
    Pause,
    /// The new ReplicaSet goes to full size; once it is fully available `activeService`
    /// switches to it.
    Promote,
    /// `postPromotionAnalysis` runs with production traffic on the new revision; the
    /// previous one is kept at full size for a switch back.
    PostPromotionAnalysis,
}

impl Stage {
    /// A short name for messages and `kubectl sluice status`.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Preview => "preview",
            Stage::PrePromotionAnalysis => "pre-promotion analysis",
            Stage::Pause => "pause",
            Stage::Promote => "promote",
            Stage::PostPromotionAnalysis => "post-promotion analysis",
        }
    }
}

/// The stages a blue-green Rollout goes through, from its spec.
pub fn stages(bg: &BlueGreenStrategy) -> Vec<Stage> {
    let mut stages = vec![Stage::Preview];
    if bg.pre_promotion_analysis.is_some() {
        stages.push(Stage::PrePromotionAnalysis);
    }
    if !bg.auto_promotion_enabled || bg.auto_promotion_seconds.is_some() {
        stages.push(Stage::Pause);
    }
    stages.push(Stage::Promote);
    if bg.post_promotion_analysis.is_some() {
        stages.push(Stage::PostPromotionAnalysis);
    }
    stages
}

/// Where the rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The desired template is the active, stable one.
    Stable,
    /// Working through the stages.
    Progressing,
    /// promote-full: straight to full size and the switch, skipping analysis and pauses.
    Promoting,
    /// Aborted: active back on the stable revision, the new one going down.
    Aborted,
}

/// True when a ReplicaSet is at `size` and all of it is available; no ReplicaSet counts
/// as being at size 0.
fn at_size(rs: Option<&ReplicaSetState>, size: i32) -> bool {
    match rs {
        Some(rs) => rs.replicas == size && rs.available >= size,
        None => size == 0,
    }
}

/// What a stage decided this time.
enum Outcome {
    Done,
    Waiting,
    /// Waiting for a human (or a timed pause).
    Paused,
    Abort(String),
}

/// Plans one reconcile of a blue-green Rollout (see the module docs).
pub fn plan(
    rollout: &Rollout,
    bg: &BlueGreenStrategy,
    observed: &Observed,
    template_hash: &str,
    now: Timestamp,
) -> Plan {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let spec = &rollout.spec;
    let replicas = spec.replicas.max(0);
    let old = rollout.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.canary = None;
    let mut wake = Wake::default();
    let stages = stages(bg);
    let stages_hash = super::hash::value_hash(&stages);
    let promote_index = stages
        .iter()
        .position(|s| *s == Stage::Promote)
        .expect("every stage list has a Promote stage");

    // --- revision ------------------------------------------------------------------------
    let Entered {
        new_template,
        mut actions,
        mut events,
    } = enter_revision(
        &mut status,
        StrategyKind::BlueGreen,
        template_hash,
        &stages_hash,
        now,
    );
    let completed = new_template
        .then(|| superseded_but_complete(&old, bg, observed, template_hash, replicas))
        .flatten();

    // The revisions that stop being stable in this plan keep their pods for
    // `scaleDownDelaySeconds`.
    let mut demoted = Vec::new();
    // The first revision, or one whose stable ReplicaSet is gone, goes straight to active.
    let stable_hash = match &completed {
        Some(previous) => {
            events.push(completed_event(previous));
            demoted.extend(
                old.stable_rs
                    .clone()
                    .filter(|h| observed.replica_set(h).is_some()),
            );
            previous.clone()
        }
        None => stable_hash(&old, observed, template_hash),
    };
    status.stable_rs = Some(stable_hash.clone());
    let mut mode = if stable_hash == template_hash {
        Mode::Stable
    } else if status.abort {
        Mode::Aborted
    } else if status.promote_full {
        Mode::Promoting
    } else {
        Mode::Progressing
    };
    let current_rs = observed.replica_set(template_hash);
    let preview_size = bg
        .preview_replica_count
        .unwrap_or(replicas)
        .clamp(0, replicas);
    let bg_status = status
        .blue_green
        .get_or_insert_with(BlueGreenStatus::default);
    // Whether activeService was switched to the new revision (and not switched back): as
    // the status says, or as the Service shows while the new revision is fully available
    // (a reconcile killed between the switch and its status write; planning from the
    // stored "not switched" would switch production back).
    let active_now = observed.services.get(&bg.active_service).cloned().flatten();
    let switch_seen = active_now.as_deref() == Some(template_hash) && at_size(current_rs, replicas);
    let mut switched = mode != Mode::Aborted
        && (bg_status.active_selector.as_deref() == Some(template_hash) || switch_seen)
        && template_hash != stable_hash;

    // --- stages --------------------------------------------------------------------------
    let mut index = (status.current_step_index.unwrap_or(0).max(0) as usize).min(stages.len());
    // A promote can move the index past Promote; the switch still happens there. And once
    // switched, the stages before it are moot (a spec edit restarts the list at 0).
    if index > promote_index && !switched {
        index = promote_index;
    } else if switched && index <= promote_index {
        index = promote_index + 1;
    }
    let mut paused_at_stage = false;
    let mut abort_reason = None;
    let mut detail = None;
    let subject = Subject::of(rollout, template_hash, &stable_hash);
    let mut gates = Gates::default();
    if mode == Mode::Progressing {
        while index < stages.len() {
            if spec.paused {
                break;
            }
            let stage = stages[index];
            let outcome = match stage {
                Stage::Preview => {
                    if at_size(current_rs, preview_size) {
                        gated(
                            gates.check(
                                &subject,
                                GatePoint::PreRollout,
                                None,
                                &observed.gate_answers,
                                &mut status,
                                &mut wake,
                                now,
                            ),
                            &mut detail,
                        )
                    } else {
                        detail = Some(format!(
                            "preview: {} of {preview_size} pods of revision {template_hash} available",
                            current_rs.map_or(0, |rs| rs.available.min(preview_size)),
                        ));
                        Outcome::Waiting
                    }
                }
                Stage::PrePromotionAnalysis | Stage::PostPromotionAnalysis => {
                    let (analysis, post) = if stage == Stage::PrePromotionAnalysis {
                        (bg.pre_promotion_analysis.as_ref(), false)
                    } else {
                        (bg.post_promotion_analysis.as_ref(), true)
                    };
                    match analysis {
                        Some(analysis) => {
                            let this = AnalysisStage {
                                rollout: &name,
                                template_hash,
                                analysis,
                                post,
                                observed,
                                now,
                            };
                            analysis_stage(&this, &mut status, &mut actions, &mut wake, &mut detail)
                        }
                        None => Outcome::Done,
                    }
                }
                Stage::Pause => {
                    let duration = bg
                        .auto_promotion_enabled
                        .then_some(bg.auto_promotion_seconds)
                        .flatten()
                        .map(|s| sluice_api::HumanDuration::from_secs(s.max(0) as i64));
                    match pause_state(
                        &mut status,
                        PauseReason::BlueGreenPause,
                        duration.as_ref(),
                        now,
                        &mut wake,
                    ) {
                        PauseState::Over => Outcome::Done,
                        PauseState::Waiting => {
                            detail = Some(match &duration {
                                Some(_) => format!(
                                    "preview of revision {template_hash}: promoting automatically after {}s, or on promote",
                                    bg.auto_promotion_seconds.unwrap_or(0)
                                ),
                                None => format!(
                                    "preview of revision {template_hash}: waiting for a promote"
                                ),
                            });
                            Outcome::Paused
                        }
                    }
                }
                Stage::Promote => {
                    if at_size(current_rs, replicas) {
                        let outcome = gated(
                            gates.check(
                                &subject,
                                GatePoint::PrePromotion,
                                None,
                                &observed.gate_answers,
                                &mut status,
                                &mut wake,
                                now,
                            ),
                            &mut detail,
                        );
                        switched = matches!(outcome, Outcome::Done);
                        outcome
                    } else {
                        detail = Some(format!(
                            "promoting: {} of {replicas} pods of revision {template_hash} available; activeService switches when all are",
                            current_rs.map_or(0, |rs| rs.available.min(replicas)),
                        ));
                        Outcome::Waiting
                    }
                }
            };
            match outcome {
                Outcome::Done => {
                    events.push(PlannedEvent {
                        warning: false,
                        reason: "StageCompleted".into(),
                        action: format!("{stage:?}-{template_hash}"),
                        message: format!(
                            "completed {} ({}/{}) of revision {template_hash}",
                            stage.label(),
                            index + 1,
                            stages.len()
                        ),
                    });
                    index += 1;
                    status.progressed_at = Some(Time(now));
                }
                Outcome::Waiting => break,
                Outcome::Paused => {
                    paused_at_stage = true;
                    break;
                }
                Outcome::Abort(reason) => {
                    status.abort = true;
                    status.aborted_at = Some(Time(now));
                    abort_reason = Some(reason);
                    mode = Mode::Aborted;
                    switched = false;
                    break;
                }
            }
        }
    }
    // An abort ends the pause it interrupted (an inconclusive analysis, the promotion
    // pause): left set, `controllerPause` would read as "promoted" after a retry and skip
    // the next pause stage.
    if mode == Mode::Aborted {
        status.pause_conditions.clear();
        status.controller_pause = false;
    }
    if mode == Mode::Promoting {
        index = index.max(promote_index);
        if at_size(current_rs, replicas) {
            switched = true;
            index = stages.len();
        }
    }
    if switched && index >= stages.len() {
        // Complete: the new revision is stable; the previous one drains behind its
        // scale-down deadline.
        events.push(completed_event(template_hash));
        status.stable_rs = Some(template_hash.to_string());
        status.promote_full = false;
        status.pause_conditions.clear();
        status.controller_pause = false;
        mode = Mode::Stable;
    }
    // A run whose stage is behind us (passed, promoted past, aborted) and that has not
    // finished is dropped from the status, which makes the housekeeping stop it; finished
    // runs stay named for the record.
    let live_stage = (mode == Mode::Progressing)
        .then(|| stages.get(index).copied())
        .flatten();
    if let Some(b) = status.blue_green.as_mut() {
        for (slot, stage) in [
            (
                &mut b.pre_promotion_analysis_run,
                Stage::PrePromotionAnalysis,
            ),
            (
                &mut b.post_promotion_analysis_run,
                Stage::PostPromotionAnalysis,
            ),
        ] {
            let finished = slot
                .as_deref()
                .and_then(|n| observed.analysis_run(n))
                .is_some_and(AnalysisRunState::finished);
            if live_stage != Some(stage) && !finished {
                *slot = None;
            }
        }
    }
    if mode == Mode::Stable && stable_hash != template_hash {
        demoted.push(stable_hash.clone());
    }
    let stable_hash = status.stable_rs.clone().unwrap_or_default();
    status.current_step_index = Some(if mode == Mode::Stable {
        stages.len()
    } else {
        index
    } as i32);

    let shown = status.current_step_index.unwrap_or(0).max(0) as usize;
    status.step_progress = Some(format!(
        "{}/{}",
        (shown + 1).min(stages.len()),
        stages.len()
    ));

    // --- Services ------------------------------------------------------------------------
    let wanted_active = if switched || mode == Mode::Stable {
        template_hash.to_string()
    } else {
        stable_hash.clone()
    };
    // activeService leaves the revision it selects only for one with as many available
    // pods, up to full size: a switch back to the stable revision that nobody asked for
    // (a new template during post-promotion analysis) waits for its pods, production
    // staying where it is meanwhile. The switch to the new revision already waits for all
    // of them. An abort does not wait: it is the order to take production off the new
    // revision, and the stable one is kept at full size for it.
    let available = |hash: &str| observed.replica_set(hash).map_or(0, |rs| rs.available);
    let active_target = match &active_now {
        Some(now)
            if mode != Mode::Aborted
                && *now != wanted_active
                && observed.replica_set(now).is_some()
                && available(&wanted_active) < replicas.min(available(now)) =>
        {
            if mode == Mode::Progressing && detail.is_none() {
                detail = Some(format!(
                    "{} stays on revision {now} until revision {wanted_active} is fully available",
                    bg.active_service
                ));
            }
            now.clone()
        }
        _ => wanted_active.clone(),
    };
    let preview_target = match mode {
        Mode::Progressing | Mode::Promoting if current_rs.is_some() => template_hash.to_string(),
        _ => active_target.clone(),
    };
    if switched
        && active_target == template_hash
        && old
            .blue_green
            .as_ref()
            .and_then(|b| b.active_selector.as_deref())
            != Some(template_hash)
    {
        events.push(PlannedEvent {
            warning: false,
            reason: "ActiveServiceSwitched".into(),
            action: format!("Active-{template_hash}"),
            message: format!("{} now selects revision {template_hash}", bg.active_service),
        });
    }
    let bg_status = status
        .blue_green
        .get_or_insert_with(BlueGreenStatus::default);
    bg_status.active_selector = Some(active_target.clone());
    bg_status.preview_selector = bg.preview_service.as_ref().map(|_| preview_target.clone());
    let pairs = [
        (Some(&bg.active_service), &active_target),
        (bg.preview_service.as_ref(), &preview_target),
    ];
    point_services(observed, pairs, &mut actions);

    // A run measures the traffic the Services send it: start it after they are set.
    actions.sort_by_key(|a| matches!(a, Action::CreateAnalysisRun { .. }));

    // --- ReplicaSets ---------------------------------------------------------------------
    // Pods that activeService still selects are not scaled down while the plan wants it
    // elsewhere, whatever the plan: a switch back (or away) is written first and the
    // scale-down follows on a later pass.
    let abort_scale_down_at = status
        .aborted_at
        .as_ref()
        .map(|t| t.0 + secs(bg.abort_scale_down_delay_seconds));
    let new_target = match mode {
        Mode::Stable => replicas,
        Mode::Progressing if spec.paused => current_rs.map_or(0, |rs| rs.replicas),
        Mode::Progressing if index < promote_index => preview_size,
        Mode::Progressing | Mode::Promoting => replicas,
        Mode::Aborted => match abort_scale_down_at {
            // Kept up (with no traffic) for the delay, ready for a retry.
            Some(at) if now < at => {
                wake.at(at);
                current_rs.map_or(0, |rs| rs.replicas)
            }
            _ => 0,
        },
    };
    let next_revision = next_revision(observed);
    let mut targets: Vec<(&ReplicaSetState, i32, Option<Timestamp>)> = Vec::new();
    match current_rs {
        Some(rs) => targets.push((rs, new_target, None)),
        // The active revision's ReplicaSet exists even at zero pods, as a Deployment's does:
        // activeService selects it, and the rollout can be done at 0.
        None if new_target > 0 || mode == Mode::Stable => actions.push(Action::CreateReplicaSet {
            hash: template_hash.to_string(),
            revision: next_revision,
            replicas: new_target,
            // Set by `pod_metadata::plan`, which knows the role once the plan's status holds.
            pod_metadata: Default::default(),
        }),
        None => {}
    }
    for rs in &observed.replica_sets {
        if rs.hash == template_hash {
            continue;
        }
        if rs.hash == stable_hash {
            targets.push((rs, replicas, None));
            continue;
        }
        let deadline = match (demoted.contains(&rs.hash), rs.scale_down_at) {
            (true, _) if bg.scale_down_delay_seconds > 0 && rs.replicas > 0 => {
                Some(now + secs(bg.scale_down_delay_seconds))
            }
            (_, Some(at)) if rs.replicas > 0 && now < at => Some(at),
            _ => None,
        };
        match deadline {
            Some(at) => {
                wake.at(at);
                targets.push((rs, rs.replicas, Some(at)));
            }
            None => targets.push((rs, 0, None)),
        }
    }
    for (rs, target, deadline) in targets {
        // The revision that is and stays active is resized like any other (`kubectl scale`).
        let target = if active_now.as_deref() == Some(rs.hash.as_str()) && wanted_active != rs.hash
        {
            target.max(rs.replicas)
        } else {
            target
        };
        if rs.replicas != target || rs.scale_down_at != deadline {
            actions.push(Action::ScaleReplicaSet {
                name: rs.name.clone(),
                replicas: target,
                scale_down_at: deadline,
            });
        }
    }
    prune_history(
        observed,
        spec.revision_history_limit,
        |rs| {
            rs.hash == template_hash
                || rs.hash == stable_hash
                || active_now.as_deref() == Some(rs.hash.as_str())
        },
        &mut actions,
    );

    // --- status --------------------------------------------------------------------------
    count_replicas(&mut status, observed, current_rs);
    let all = &observed.replica_sets;
    if mode == Mode::Progressing && detail.is_none() && !spec.paused {
        detail = stages
            .get(index)
            .map(|stage| format!("{} of revision {template_hash}", stage.label()));
    }
    // As for a canary: a revision behind its scale-down deadline (passed or not) or
    // scaled to zero with pods still terminating is going away on its own.
    let draining = |rs: &ReplicaSetState| {
        demoted.contains(&rs.hash) || rs.scale_down_at.is_some() || rs.replicas == 0
    };
    let settled = mode == Mode::Stable
        && stable_rs_settled(observed, &stable_hash, replicas)
        && active_now.as_deref() == Some(stable_hash.as_str())
        && all
            .iter()
            .all(|rs| rs.hash == stable_hash || rs.current == 0 || draining(rs));

    let plan = Plan {
        actions,
        status,
        requeue_after: wake.0.map(|w| until(now, w)),
        events,
        // A blue-green's transitions all have Events (`ActiveServiceSwitched` is its
        // promotion).
        notices: Vec::new(),
        gate_calls: gates.calls,
    };
    with_phase(
        plan,
        PhaseInput {
            rollout,
            mode_aborted: mode == Mode::Aborted,
            abort_reason,
            settled,
            paused: spec.paused || paused_at_stage,
            // A blue-green stage's wait (autoPromotionSeconds) is told by StageCompleted
            // only when it ends; its pause keeps its Event.
            timed_pause: false,
            detail,
            // Blue-green keeps a full-size active revision throughout.
            min_available: replicas,
            now,
        },
    )
}

/// A stage's outcome from its gates: done once they passed, paused while one holds.
fn gated(hold: Hold, detail: &mut Option<String>) -> Outcome {
    match hold {
        Hold::Open => Outcome::Done,
        Hold::Held(why) => {
            *detail = Some(why);
            Outcome::Paused
        }
        Hold::Failed(reason) => Outcome::Abort(reason),
    }
}

fn completed_event(hash: &str) -> PlannedEvent {
    PlannedEvent {
        warning: false,
        reason: "RolloutCompleted".into(),
        action: format!("Revision-{hash}"),
        message: format!("revision {hash} is now active and stable"),
    }
}

/// The revision a new template supersedes when it has nothing left to do but become
/// stable: activeService selects it, it is fully available, and its post-promotion
/// analysis passed (or there is none, or promote-full skipped it). Its completion was
/// due (and the reconcile that did it may have been killed before its status write,
/// having already scaled the previous revision down), so it completes first and the
/// new template supersedes it instead of sending production back a revision. A template
/// back to the stable revision is a rollback, which goes straight back to it instead.
fn superseded_but_complete(
    old: &RolloutStatus,
    bg: &BlueGreenStrategy,
    observed: &Observed,
    template_hash: &str,
    replicas: i32,
) -> Option<String> {
    let previous = old.current_pod_hash.as_deref()?;
    let rs = observed.replica_set(previous)?;
    let active = observed.services.get(&bg.active_service)?.as_deref();
    let stable = old.stable_rs.as_deref();
    if old.abort
        || active != Some(previous)
        || stable == Some(previous)
        || stable == Some(template_hash)
    {
        return None;
    }
    let post_passed = old
        .blue_green
        .as_ref()
        .and_then(|b| b.post_promotion_analysis_run.as_deref())
        .and_then(|n| observed.analysis_run(n))
        .is_some_and(|r| r.phase == Some(AnalysisPhase::Successful));
    let verified = bg.post_promotion_analysis.is_none() || old.promote_full || post_passed;
    (at_size(Some(rs), replicas) && verified).then(|| previous.to_string())
}

/// A pre- or post-promotion analysis stage of one revision, as this plan sees it.
#[derive(Debug, Clone, Copy)]
struct AnalysisStage<'a> {
    rollout: &'a str,
    template_hash: &'a str,
    analysis: &'a RolloutAnalysis,
    /// Post-promotion (else pre-promotion).
    post: bool,
    observed: &'a Observed,
    now: Timestamp,
}

/// A pre- or post-promotion analysis: one run per revision (a retry starts a new one);
/// Successful passes, Failed or Error aborts, Inconclusive waits for a human.
fn analysis_stage(
    stage: &AnalysisStage,
    status: &mut RolloutStatus,
    actions: &mut Vec<Action>,
    wake: &mut Wake,
    detail: &mut Option<String>,
) -> Outcome {
    let AnalysisStage {
        rollout,
        template_hash,
        analysis,
        post,
        observed,
        now,
    } = *stage;
    let (suffix, role, what) = if post {
        ("post", "post-promotion", "post-promotion analysis")
    } else {
        ("pre", "pre-promotion", "pre-promotion analysis")
    };
    let bg_status = status
        .blue_green
        .get_or_insert_with(BlueGreenStatus::default);
    let slot = if post {
        &mut bg_status.post_promotion_analysis_run
    } else {
        &mut bg_status.pre_promotion_analysis_run
    };
    let run_name = match slot {
        Some(run) => run.clone(),
        None => {
            let base = format!("{rollout}-{template_hash}-{suffix}");
            let run = start_run(observed, &base, analysis, role.into(), actions);
            *slot = Some(run.clone());
            // A fresh run (a retry) is not paused on the old one's inconclusive verdict:
            // left set, its pause (or `controllerPause`, promoted) would carry over, and
            // read as "promoted" at the next pause stage.
            status
                .pause_conditions
                .retain(|c| c.reason != PauseReason::InconclusiveAnalysis);
            status.controller_pause = false;
            run
        }
    };
    let run = observed.analysis_run(&run_name);
    match run.and_then(|r| r.phase) {
        Some(AnalysisPhase::Successful) => Outcome::Done,
        Some(phase @ (AnalysisPhase::Failed | AnalysisPhase::Error)) => Outcome::Abort(format!(
            "{what} {run_name} ended {phase:?}{}",
            run.and_then(|r| r.message.as_ref())
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        Some(AnalysisPhase::Inconclusive) => {
            match pause_state(status, PauseReason::InconclusiveAnalysis, None, now, wake) {
                PauseState::Over => Outcome::Done,
                PauseState::Waiting => {
                    *detail = Some(format!(
                        "{what} {run_name} was inconclusive: waiting for a promote or an abort"
                    ));
                    Outcome::Paused
                }
            }
        }
        _ => {
            *detail = Some(format!(
                "{what} {run_name} of revision {template_hash} running"
            ));
            Outcome::Waiting
        }
    }
}
