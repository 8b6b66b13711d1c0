//! Tables and walks of the blue-green planner, driven through the same in-memory `World`
//! as the canary tests (`super::testkit`). Every walk checks, after every round, the promise that matters
//! most: `activeService` never selects a revision that is not fully available (except the
//! first revision, which has nothing to fall back to).

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use sluice_api::analysis::AnalysisPhase;
use sluice_api::rollout::{PauseReason, Rollout, RolloutPhase};

use super::bluegreen::{Stage, stages};
use super::conditions::{is_true, types};
use super::testkit::{World, after, hash_of, phase, promote, set_image, settle_checking, t0};
use super::{Action, Plan, plan};

fn bg_rollout(image: &str, replicas: i32, blue_green: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "default", "generation": 1 },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": image }] },
            },
            "strategy": { "blueGreen": blue_green },
        },
    }))
    .unwrap()
}

fn services() -> World {
    World::new().with_services(&["web-active", "web-preview"])
}

fn spec(extra: Value) -> Value {
    let mut base = json!({ "activeService": "web-active", "previewService": "web-preview" });
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}

fn active(w: &World) -> Option<String> {
    w.services["web-active"].clone()
}

fn preview(w: &World) -> Option<String> {
    w.services["web-preview"].clone()
}

fn size(w: &World, hash: &str) -> i32 {
    w.rs.iter()
        .find(|rs| rs.hash == hash)
        .map_or(0, |rs| rs.replicas)
}

fn set_run(w: &mut World, name: &str, phase: AnalysisPhase) {
    let run = w
        .runs
        .iter_mut()
        .find(|r| r.name == name)
        .expect("run exists");
    run.phase = Some(phase);
}

/// Plans and applies until nothing changes (the canary tests' `settle_checking`), with the
/// active Service invariant after every round.
fn settle(r: &mut Rollout, w: &mut World, now: Timestamp) -> Plan {
    let first = r
        .status
        .as_ref()
        .and_then(|s| s.stable_rs.clone())
        .is_none();
    let replicas = r.spec.replicas;
    // Time has passed since the caller's last look: pods created then are up now.
    w.tick();
    settle_checking(r, w, now, None, &|w| {
        if let Some(h) = active(w)
            && !first
        {
            let rs =
                w.rs.iter()
                    .find(|rs| rs.hash == h)
                    .expect("active RS exists");
            assert!(
                rs.available >= replicas && rs.replicas >= replicas,
                "activeService selects {h}, which is not fully available: {:?}",
                w.rs
            );
        }
    })
}

/// A blue-green Rollout at v1, fully rolled out.
fn at_v1(bg: Value, replicas: i32, w: &mut World) -> (Rollout, String) {
    let mut r = bg_rollout("app:v1", replicas, bg);
    settle(&mut r, w, t0());
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    let h = hash_of(&r);
    (r, h)
}

fn bg_status(r: &Rollout) -> sluice_api::rollout::BlueGreenStatus {
    r.status.as_ref().unwrap().blue_green.clone().unwrap()
}

#[test]
fn stage_lists_follow_the_spec() {
    let parse =
        |v: Value| -> sluice_api::rollout::BlueGreenStrategy { serde_json::from_value(v).unwrap() };
    let analysis = json!({ "templates": [{ "templateName": "t" }] });
    assert_eq!(
        stages(&parse(json!({ "activeService": "a" }))),
        vec![Stage::Preview, Stage::Promote]
    );
    assert_eq!(
        stages(&parse(json!({
            "activeService": "a", "autoPromotionEnabled": false,
            "prePromotionAnalysis": analysis, "postPromotionAnalysis": analysis,
        }))),
        vec![
            Stage::Preview,
            Stage::PrePromotionAnalysis,
            Stage::Pause,
            Stage::Promote,
            Stage::PostPromotionAnalysis
        ]
    );
    assert_eq!(
        stages(&parse(
            json!({ "activeService": "a", "autoPromotionSeconds": 30 })
        )),
        vec![Stage::Preview, Stage::Pause, Stage::Promote]
    );
}

#[test]
fn first_revision_goes_straight_to_active() {
    let mut w = services();
    let mut r = bg_rollout("app:v1", 3, spec(json!({})));
    let p = plan(&r, &w.observed(), t0());
    let h = hash_of(&r);
    assert_eq!(
        p.actions,
        vec![Action::CreateReplicaSet {
            hash: h.clone(),
            revision: 1,
            replicas: 3,
            pod_metadata: Default::default(),
        }]
    );
    settle(&mut r, &mut w, t0());
    assert_eq!(active(&w).as_deref(), Some(h.as_str()));
    assert_eq!(preview(&w).as_deref(), Some(h.as_str()));
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(RolloutPhase::Healthy));
    assert_eq!(s.stable_rs.as_deref(), Some(h.as_str()));
    assert!(is_true(&s.conditions, types::READY));
    assert_eq!(bg_status(&r).active_selector.as_deref(), Some(h.as_str()));
    assert!(
        s.canary.is_none(),
        "no canary status on a blue-green rollout"
    );
    // Settled: another reconcile writes nothing.
    let again = plan(&r, &w.observed(), after(5));
    assert!(again.actions.is_empty(), "{:?}", again.actions);
    assert_eq!(Some(&again.status), r.status.as_ref());
}

#[test]
fn auto_promotion_previews_then_switches_then_scales_the_old_revision_down() {
    let mut w = services();
    let (mut r, v1) = at_v1(spec(json!({ "scaleDownDelaySeconds": 30 })), 3, &mut w);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);

    // First pass: the new ReplicaSet at full size (no previewReplicaCount), nothing
    // switched while it has no available pods.
    let p = plan(&r, &w.observed(), after(1));
    assert!(p.actions.contains(&Action::CreateReplicaSet {
        hash: v2.clone(),
        revision: 2,
        replicas: 3,
        pod_metadata: Default::default(),
    }));
    assert!(
        !p.actions.iter().any(
            |a| matches!(a, Action::SetServiceSelector { service, .. } if service == "web-active")
        ),
        "{:?}",
        p.actions
    );
    w.apply(&p.actions);
    r.status = Some(p.status);
    // Created but not available: preview points at it, active does not.
    let p = plan(&r, &w.observed(), after(2));
    w.apply(&p.actions);
    r.status = Some(p.status);
    assert_eq!(preview(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(phase(&r), RolloutPhase::Progressing);

    let p = settle(&mut r, &mut w, after(3));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(preview(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v2.as_str())
    );
    // The previous revision stays up, with its deadline recorded on it.
    let old = w.rs.iter().find(|rs| rs.hash == v1).unwrap();
    assert_eq!(old.replicas, 3);
    assert_eq!(old.scale_down_at, Some(after(3 + 30)));
    assert!(p.requeue_after.is_some_and(|d| d.as_secs() <= 30));

    // Past the deadline it goes to zero.
    settle(&mut r, &mut w, after(34));
    assert_eq!(size(&w, &v1), 0);
    assert_eq!(size(&w, &v2), 3);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}

#[test]
fn manual_promotion_waits_paused_in_preview() {
    let mut w = services();
    let (mut r, v1) = at_v1(spec(json!({ "autoPromotionEnabled": false })), 2, &mut w);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(RolloutPhase::Paused));
    assert!(is_true(&s.conditions, types::PAUSED));
    assert_eq!(s.pause_conditions[0].reason, PauseReason::BlueGreenPause);
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(preview(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(size(&w, &v2), 2);
    // Hours later, still paused: no timed promotion.
    settle(&mut r, &mut w, after(7200));
    assert_eq!(phase(&r), RolloutPhase::Paused);
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));

    promote(&mut r);
    settle(&mut r, &mut w, after(7201));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert!(r.status.as_ref().unwrap().pause_conditions.is_empty());
}

#[test]
fn auto_promotion_seconds_promotes_after_the_delay_or_on_promote() {
    let mut w = services();
    let (mut r, v1) = at_v1(spec(json!({ "autoPromotionSeconds": 20 })), 2, &mut w);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    let p = settle(&mut r, &mut w, after(1));
    assert_eq!(phase(&r), RolloutPhase::Paused);
    // The pause started at the first pass that reached it; the wake-up is its end.
    let start = r.status.as_ref().unwrap().pause_conditions[0].start_time.0;
    assert_eq!(
        p.requeue_after.map(|d| d.as_secs()),
        Some(
            (start + super::common::secs(20))
                .duration_since(after(1))
                .as_secs() as u64
        )
    );
    settle(&mut r, &mut w, after(10));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    settle(&mut r, &mut w, after(30));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}

#[test]
fn preview_replica_count_sizes_the_preview_and_full_size_comes_before_the_switch() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "autoPromotionEnabled": false, "previewReplicaCount": 1 })),
        4,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    assert_eq!(phase(&r), RolloutPhase::Paused);
    assert_eq!(size(&w, &v2), 1, "preview size while paused");
    assert_eq!(size(&w, &v1), 4, "the active revision stays at full size");

    promote(&mut r);
    // First pass after the promote: scale up, no switch yet.
    let p = plan(&r, &w.observed(), after(2));
    assert!(p.actions.contains(&Action::ScaleReplicaSet {
        name: format!("web-{v2}"),
        replicas: 4,
        scale_down_at: None
    }));
    assert!(!p.actions.iter().any(
        |a| matches!(a, Action::SetServiceSelector { service, .. } if service == "web-active")
    ));
    w.apply(&p.actions);
    r.status = Some(p.status);
    // Pods that never become ready hold the switch for ever.
    w.pods_become_ready = false;
    w.tick();
    for t in 3..6 {
        let p = plan(&r, &w.observed(), after(t));
        w.apply(&p.actions);
        r.status = Some(p.status);
        assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    }
    assert_eq!(phase(&r), RolloutPhase::Progressing);
    assert!(
        r.status
            .as_ref()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("activeService switches when all are")
    );
    w.pods_become_ready = true;
    settle(&mut r, &mut w, after(10));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
}

fn analysis() -> Value {
    json!({ "templates": [{ "templateName": "success-rate" }] })
}

fn pre_run(r: &Rollout) -> Option<String> {
    bg_status(r).pre_promotion_analysis_run
}

fn post_run(r: &Rollout) -> Option<String> {
    bg_status(r).post_promotion_analysis_run
}

#[test]
fn failed_pre_promotion_analysis_never_switches_and_degrades() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "prePromotionAnalysis": analysis(), "abortScaleDownDelaySeconds": 10 })),
        2,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    let run = pre_run(&r).expect("pre-promotion run started once the preview is ready");
    assert_eq!(run, format!("web-{v2}-pre-1"));
    assert_eq!(w.runs.len(), 1);
    assert_eq!(phase(&r), RolloutPhase::Progressing);
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));

    set_run(&mut w, &run, AnalysisPhase::Failed);
    settle(&mut r, &mut w, after(2));
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    assert!(s.abort);
    assert!(
        s.message.as_deref().unwrap().contains(&run),
        "{:?}",
        s.message
    );
    assert!(is_true(&s.conditions, types::STALLED));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(preview(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(size(&w, &v2), 2, "kept up for the abort delay");
    settle(&mut r, &mut w, after(13));
    assert_eq!(size(&w, &v2), 0);
    assert_eq!(size(&w, &v1), 2);
    assert_eq!(phase(&r), RolloutPhase::Degraded);
}

#[test]
fn failed_post_promotion_analysis_switches_back_to_the_previous_revision() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({
            "postPromotionAnalysis": analysis(),
            "scaleDownDelaySeconds": 30,
            "abortScaleDownDelaySeconds": 0,
        })),
        3,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    // Switched, measuring with production traffic; the previous revision is still the
    // stable one, at full size.
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    let run = post_run(&r).expect("post-promotion run");
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v1.as_str())
    );
    assert_eq!(size(&w, &v1), 3);
    assert_eq!(phase(&r), RolloutPhase::Progressing);

    set_run(&mut w, &run, AnalysisPhase::Failed);
    let p = plan(&r, &w.observed(), after(100));
    assert!(p.actions.contains(&Action::SetServiceSelector {
        service: "web-active".into(),
        hash: v1.clone()
    }));
    // The switch back comes first; the new revision is not scaled down while active
    // still selects it, even with no abort delay.
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ScaleReplicaSet { name, replicas: 0, .. } if *name == format!("web-{v2}")))
    );
    settle(&mut r, &mut w, after(100));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(phase(&r), RolloutPhase::Degraded);
    assert_eq!(bg_status(&r).active_selector.as_deref(), Some(v1.as_str()));
    assert_eq!(size(&w, &v2), 0, "then it goes");
}

#[test]
fn successful_post_promotion_analysis_completes_and_starts_the_scale_down_delay() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "postPromotionAnalysis": analysis(), "scaleDownDelaySeconds": 30 })),
        2,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    let run = post_run(&r).unwrap();
    set_run(&mut w, &run, AnalysisPhase::Successful);
    settle(&mut r, &mut w, after(50));
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(
        w.rs.iter().find(|rs| rs.hash == v1).unwrap().scale_down_at,
        Some(after(80)),
        "the delay counts from the completion"
    );
    assert_eq!(post_run(&r), Some(run), "the finished run stays named");
}

#[test]
fn a_restarted_controller_honours_the_recorded_scale_down_deadline() {
    let mut w = services();
    let (mut r, v1) = at_v1(spec(json!({ "scaleDownDelaySeconds": 60 })), 2, &mut w);
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, after(1));
    let deadline = w.rs.iter().find(|rs| rs.hash == v1).unwrap().scale_down_at;
    assert_eq!(deadline, Some(after(61)));
    // A restart: the planner has nothing but the stored status and the cluster. Planning
    // at later times neither moves the deadline nor scales down early.
    for t in [10, 30, 60] {
        let p = plan(&r, &w.observed(), after(t));
        assert!(
            p.actions.is_empty(),
            "at {t}s, before the deadline: {:?}",
            p.actions
        );
        assert_eq!(p.requeue_after.map(|d| d.as_secs()), Some((61 - t) as u64));
    }
    let p = plan(&r, &w.observed(), after(61));
    assert_eq!(
        p.actions,
        vec![Action::ScaleReplicaSet {
            name: format!("web-{v1}"),
            replicas: 0,
            scale_down_at: None
        }]
    );
}

#[test]
fn abort_in_preview_keeps_active_then_retry_resumes() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "autoPromotionEnabled": false, "abortScaleDownDelaySeconds": 5 })),
        2,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    assert_eq!(phase(&r), RolloutPhase::Paused);

    r.status.as_mut().unwrap().abort = true;
    settle(&mut r, &mut w, after(2));
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(RolloutPhase::Degraded));
    assert_eq!(s.aborted_at.as_ref().map(|t| t.0), Some(after(2)));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(preview(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(size(&w, &v2), 2);
    settle(&mut r, &mut w, after(8));
    assert_eq!(size(&w, &v2), 0);

    // Retry (the action's patch): back to the preview, waiting for a promote again.
    let s = r.status.as_mut().unwrap();
    s.abort = false;
    s.aborted_at = None;
    settle(&mut r, &mut w, after(9));
    assert_eq!(phase(&r), RolloutPhase::Paused);
    assert_eq!(size(&w, &v2), 2);
    assert_eq!(preview(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    promote(&mut r);
    settle(&mut r, &mut w, after(10));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}

#[test]
fn promote_full_skips_the_analysis_and_the_pause() {
    let mut w = services();
    let (mut r, _) = at_v1(
        spec(json!({
            "autoPromotionEnabled": false,
            "prePromotionAnalysis": analysis(),
            "postPromotionAnalysis": analysis(),
        })),
        2,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    let run = pre_run(&r).unwrap();
    r.status.as_mut().unwrap().promote_full = true;
    let p = settle(&mut r, &mut w, after(2));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(phase(&r), RolloutPhase::Healthy, "{p:#?}");
    assert!(!r.status.as_ref().unwrap().promote_full);
    assert!(
        post_run(&r).is_none(),
        "no post-promotion run after promote-full"
    );
    assert!(
        w.runs.iter().find(|x| x.name == run).unwrap().terminating,
        "the running pre-promotion run is stopped"
    );
}

#[test]
fn promote_skips_a_running_analysis_and_stops_its_run() {
    let mut w = services();
    let (mut r, _) = at_v1(
        spec(json!({ "prePromotionAnalysis": analysis() })),
        2,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    let run = pre_run(&r).unwrap();
    // The action's patch when not paused: the next stage.
    let s = r.status.as_mut().unwrap();
    s.current_step_index = Some(s.current_step_index.unwrap() + 1);
    settle(&mut r, &mut w, after(2));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert!(w.runs.iter().find(|x| x.name == run).unwrap().terminating);
}

#[test]
fn a_promote_past_the_promote_stage_still_waits_for_full_availability() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "previewReplicaCount": 1, "postPromotionAnalysis": analysis() })),
        3,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    w.pods_become_ready = false;
    let p = plan(&r, &w.observed(), after(1));
    w.apply(&p.actions);
    r.status = Some(p.status);
    // Someone pushes the index far ahead.
    r.status.as_mut().unwrap().current_step_index = Some(5);
    for t in 2..5 {
        let p = plan(&r, &w.observed(), after(t));
        w.apply(&p.actions);
        w.tick();
        r.status = Some(p.status);
        assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    }
    assert_eq!(size(&w, &v2), 3, "it scales up to switch");
    w.pods_become_ready = true;
    settle(&mut r, &mut w, after(6));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
}

#[test]
fn a_new_template_in_preview_supersedes_it() {
    let mut w = services();
    let (mut r, v1) = at_v1(spec(json!({ "autoPromotionEnabled": false })), 2, &mut w);
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    set_image(&mut r, "app:v3");
    let v3 = hash_of(&r);
    settle(&mut r, &mut w, after(2));
    assert_eq!(size(&w, &v2), 0);
    assert_eq!(size(&w, &v3), 2);
    assert_eq!(preview(&w).as_deref(), Some(v3.as_str()));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(phase(&r), RolloutPhase::Paused);
}

#[test]
fn spec_paused_freezes_the_preview() {
    let mut w = services();
    let (mut r, _) = at_v1(spec(json!({})), 3, &mut w);
    r.spec.paused = true;
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    assert_eq!(size(&w, &v2), 0, "a paused rollout starts nothing new");
    assert_eq!(phase(&r), RolloutPhase::Paused);
    r.spec.paused = false;
    settle(&mut r, &mut w, after(2));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
}

#[test]
fn inconclusive_pre_promotion_analysis_pauses_until_promoted() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "prePromotionAnalysis": analysis() })),
        2,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    set_run(&mut w, &pre_run(&r).unwrap(), AnalysisPhase::Inconclusive);
    settle(&mut r, &mut w, after(2));
    let s = r.status.as_ref().unwrap();
    assert_eq!(s.phase, Some(RolloutPhase::Paused));
    assert_eq!(
        s.pause_conditions[0].reason,
        PauseReason::InconclusiveAnalysis
    );
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    promote(&mut r);
    settle(&mut r, &mut w, after(3));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
}

#[test]
fn a_spec_edit_after_the_switch_does_not_send_the_rollout_back_to_preview() {
    let mut w = services();
    let (mut r, _) = at_v1(
        spec(json!({ "previewReplicaCount": 1, "postPromotionAnalysis": analysis() })),
        3,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    let run = post_run(&r).unwrap();
    // GitOps flips autoPromotionEnabled: a new stage list, restarted at 0.
    let mut bg = r.spec.strategy.blue_green.clone().unwrap();
    bg.auto_promotion_enabled = false;
    r.spec.strategy.blue_green = Some(bg);
    settle(&mut r, &mut w, after(2));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(size(&w, &v2), 3, "not back to the preview size");
    assert_eq!(
        phase(&r),
        RolloutPhase::Progressing,
        "measuring again, not paused"
    );
    let fresh = post_run(&r).expect("a post-promotion run");
    set_run(&mut w, &fresh, AnalysisPhase::Successful);
    settle(&mut r, &mut w, after(3));
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert_ne!(
        fresh, run,
        "the stage list restarted, so the analysis ran afresh"
    );
}

/// Found by the property tests: a blue-green Rollout created at zero replicas got no
/// ReplicaSet, so activeService never selected it and it went Degraded at the progress
/// deadline instead of Healthy.
#[test]
fn a_rollout_created_at_zero_replicas_is_healthy() {
    let mut w = services();
    let (mut r, v1) = at_v1(spec(json!({})), 0, &mut w);
    settle(&mut r, &mut w, after(3600));
    assert_eq!(phase(&r), RolloutPhase::Healthy, "{:?}", r.status);
    assert_eq!(size(&w, &v1), 0);
    assert_eq!(w.rs.len(), 1, "the revision's ReplicaSet exists at 0");
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
}

/// Found by the property tests: `kubectl scale` of a healthy blue-green Rollout never
/// shrank the active revision, because pods activeService selects were held whatever the
/// plan; the hold is meant for a revision activeService is about to leave.
#[test]
fn scaling_a_healthy_rollout_down_resizes_the_active_revision() {
    let mut w = services();
    let (mut r, v1) = at_v1(spec(json!({})), 3, &mut w);
    r.spec.replicas = 1;
    settle(&mut r, &mut w, after(1));
    assert_eq!(size(&w, &v1), 1);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}

/// Found by the property tests: an abort during an inconclusive pre-promotion analysis
/// left `controllerPause` set; after a retry and a passing analysis the promotion pause
/// read it as "promoted" and activeService switched without anyone promoting.
#[test]
fn a_retry_after_an_abort_in_an_inconclusive_pause_still_waits_at_the_pause() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "autoPromotionEnabled": false, "prePromotionAnalysis": analysis() })),
        2,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, after(1));
    set_run(&mut w, &pre_run(&r).unwrap(), AnalysisPhase::Inconclusive);
    settle(&mut r, &mut w, after(2));
    assert_eq!(phase(&r), RolloutPhase::Paused);
    r.status.as_mut().unwrap().abort = true;
    settle(&mut r, &mut w, after(3));
    // Retry (the action's patch), and the fresh run passes.
    let s = r.status.as_mut().unwrap();
    s.abort = false;
    s.aborted_at = None;
    s.blue_green.as_mut().unwrap().pre_promotion_analysis_run = None;
    settle(&mut r, &mut w, after(4));
    set_run(&mut w, &pre_run(&r).unwrap(), AnalysisPhase::Successful);
    settle(&mut r, &mut w, after(5));
    assert_eq!(phase(&r), RolloutPhase::Paused, "waiting for a promote");
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
}

fn moves_active(p: &Plan) -> bool {
    p.actions
        .iter()
        .any(|a| matches!(a, Action::SetServiceSelector { service, .. } if service == "web-active"))
}

/// Found by the property tests: a new template during post-promotion analysis sends
/// activeService back to the stable revision (docs/bluegreen.md), but it did so at once,
/// however few of that revision's pods were available. It now waits for them, keeping
/// the revision that serves production (and its pods) meanwhile.
#[test]
fn a_new_template_in_post_promotion_analysis_returns_to_stable_once_it_is_available() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "postPromotionAnalysis": analysis(), "autoPromotionEnabled": false })),
        3,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    promote(&mut r);
    settle(&mut r, &mut w, after(2));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    // Two pods of the stable revision crash-loop.
    w.rs.iter_mut().find(|rs| rs.hash == v1).unwrap().available = 1;

    set_image(&mut r, "app:v3");
    let p = plan(&r, &w.observed(), after(3));
    assert!(!moves_active(&p), "{:?}", p.actions);
    assert!(
        !p.actions.iter().any(
            |a| matches!(a, Action::ScaleReplicaSet { name, .. } if *name == format!("web-{v2}"))
        ),
        "the pods serving production stay: {:?}",
        p.actions
    );
    assert_eq!(
        p.status
            .blue_green
            .as_ref()
            .unwrap()
            .active_selector
            .as_deref(),
        Some(v2.as_str()),
        "the status says where activeService is"
    );
    // The stable revision's pods come back: activeService returns to it, and the
    // superseded revision goes.
    settle(&mut r, &mut w, after(4));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(size(&w, &v2), 0);
    assert_eq!(phase(&r), RolloutPhase::Paused, "previewing v3");
}

/// Plans once and applies every action, as a reconcile killed before its status write
/// does: the stored status stays as it was.
fn killed_reconcile(r: &Rollout, w: &mut World, now: Timestamp) -> Plan {
    let p = plan(r, &w.observed(), now);
    w.apply(&p.actions);
    w.tick();
    p
}

/// Found by the property tests: the reconcile that completed a post-promotion analysis
/// (and scaled the previous revision to 0, with no scale-down delay) was killed before
/// its status write; a new template then sent activeService back to the stored stable
/// revision, which had no pod left. The verdict was in: the switched revision completes
/// and the new template supersedes it, as without the crash.
#[test]
fn a_completion_whose_status_write_was_lost_survives_a_new_template() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({
            "autoPromotionEnabled": false,
            "postPromotionAnalysis": analysis(),
            "scaleDownDelaySeconds": 0,
        })),
        3,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    promote(&mut r);
    settle(&mut r, &mut w, after(2));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    set_run(&mut w, &post_run(&r).unwrap(), AnalysisPhase::Successful);
    killed_reconcile(&r, &mut w, after(3));
    assert_eq!(
        size(&w, &v1),
        0,
        "the completion scaled the previous revision down"
    );

    set_image(&mut r, "app:v3");
    let v3 = hash_of(&r);
    settle(&mut r, &mut w, after(4));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(size(&w, &v1), 0, "not brought back");
    assert_eq!(preview(&w).as_deref(), Some(v3.as_str()));
    assert_eq!(phase(&r), RolloutPhase::Paused);
}

/// A template put back to the stable revision during post-promotion analysis is a
/// rollback: activeService goes straight back, even when the analysis has just passed
/// (the superseded revision is not completed first, as it is for a new template).
#[test]
fn a_rollback_during_post_promotion_analysis_goes_straight_back() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "postPromotionAnalysis": analysis(), "autoPromotionEnabled": false })),
        3,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    promote(&mut r);
    settle(&mut r, &mut w, after(2));
    set_run(&mut w, &post_run(&r).unwrap(), AnalysisPhase::Successful);
    set_image(&mut r, "app:v1");
    let p = plan(&r, &w.observed(), after(3));
    assert!(p.actions.contains(&Action::SetServiceSelector {
        service: "web-active".into(),
        hash: v1.clone()
    }));
    settle(&mut r, &mut w, after(3));
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v1.as_str())
    );
    assert_eq!(size(&w, &v2), 0);
    assert_eq!(phase(&r), RolloutPhase::Healthy);
}

/// A reconcile killed after it switched activeService and before its status write: the
/// next plan adopts the switch it sees on the Service (the new revision is fully
/// available) instead of planning from the stored "not switched" and, with the Rollout
/// paused meanwhile, switching production back.
#[test]
fn a_switch_whose_status_write_was_lost_is_adopted() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "postPromotionAnalysis": analysis(), "autoPromotionEnabled": false })),
        3,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    let v2 = hash_of(&r);
    settle(&mut r, &mut w, after(1));
    promote(&mut r);
    // Plan by plan up to the one that switches; it is killed after its first action.
    for round in 0.. {
        assert!(round < 10, "never switched");
        let p = plan(&r, &w.observed(), after(2));
        if moves_active(&p) {
            assert_eq!(
                p.actions[0],
                Action::SetServiceSelector {
                    service: "web-active".into(),
                    hash: v2.clone()
                }
            );
            w.apply(&p.actions[..1]);
            break;
        }
        w.apply(&p.actions);
        w.tick();
        r.status = Some(p.status);
    }
    assert_eq!(
        bg_status(&r).active_selector.as_deref(),
        Some(v1.as_str()),
        "the stored status missed the switch"
    );
    r.spec.paused = true;
    let p = plan(&r, &w.observed(), after(3));
    assert!(!moves_active(&p), "{:?}", p.actions);
    assert_eq!(
        p.status
            .blue_green
            .as_ref()
            .unwrap()
            .active_selector
            .as_deref(),
        Some(v2.as_str())
    );
    r.spec.paused = false;
    settle(&mut r, &mut w, after(4));
    assert_eq!(active(&w).as_deref(), Some(v2.as_str()));
    let run = post_run(&r).expect("post-promotion analysis runs on the adopted switch");
    assert_eq!(size(&w, &v1), 3, "the previous revision stays up meanwhile");
    set_run(&mut w, &run, AnalysisPhase::Successful);
    settle(&mut r, &mut w, after(5));
    assert_eq!(phase(&r), RolloutPhase::Healthy);
    assert_eq!(
        r.status.as_ref().unwrap().stable_rs.as_deref(),
        Some(v2.as_str())
    );
}

/// Found by the property tests (an abort and a retry with no reconcile between them, so
/// no plan saw the abort end the pause): a retry in an inconclusive pre-promotion pause
/// started a fresh run but kept the pause of the old one; `controllerPause` then read as
/// "promoted" at the promotion pause, and activeService switched with nobody promoting.
#[test]
fn a_retry_in_an_inconclusive_pause_measures_afresh_and_still_stops_at_the_pause() {
    let mut w = services();
    let (mut r, v1) = at_v1(
        spec(json!({ "autoPromotionEnabled": false, "prePromotionAnalysis": analysis() })),
        2,
        &mut w,
    );
    set_image(&mut r, "app:v2");
    settle(&mut r, &mut w, after(1));
    let first = pre_run(&r).unwrap();
    set_run(&mut w, &first, AnalysisPhase::Inconclusive);
    settle(&mut r, &mut w, after(2));
    assert_eq!(phase(&r), RolloutPhase::Paused);
    // Retry (the action's patch): a fresh run replaces the inconclusive one.
    let s = r.status.as_mut().unwrap();
    s.abort = false;
    s.aborted_at = None;
    s.blue_green.as_mut().unwrap().pre_promotion_analysis_run = None;
    settle(&mut r, &mut w, after(3));
    let fresh = pre_run(&r).unwrap();
    assert_ne!(fresh, first);
    assert_eq!(
        phase(&r),
        RolloutPhase::Progressing,
        "measuring, not paused"
    );
    set_run(&mut w, &fresh, AnalysisPhase::Successful);
    settle(&mut r, &mut w, after(4));
    assert_eq!(phase(&r), RolloutPhase::Paused, "waiting for a promote");
    assert_eq!(
        r.status.as_ref().unwrap().pause_conditions[0].reason,
        PauseReason::BlueGreenPause
    );
    assert_eq!(active(&w).as_deref(), Some(v1.as_str()));
}
