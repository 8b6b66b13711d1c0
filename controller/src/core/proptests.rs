//! Property-based tests of the planner: random valid specs (what admission accepts) and
//! random event sequences — pods becoming ready and unready, user actions at any moment,
//! spec edits mid-rollout, analysis verdicts, time jumps, controller restarts and crashes
//! halfway through a plan's actions — driven through the testkit's simulated cluster.
//!
//! After every event the promises users rely on are checked against values derived here
//! from the spec and the documented rules, never by calling the planner's own helpers:
//! availability within `maxUnavailable`, no traffic weight on a revision without available
//! pods, traffic back on stable before an aborted rollout scales anything down, no step
//! skipped or run twice, the same input giving the same plan (also when re-read from the
//! stored Rollout, as a restarted controller does), and a finished rollout planning no
//! action. A failing case shrinks to a short sequence; the message shows the state.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use sluice_api::analysis::AnalysisPhase;
use sluice_api::rollout::{PauseReason, Rollout, RolloutPhase, RolloutStatus};

use super::testkit::{World, hash_of, t0};
use super::{Action, Observed, Plan, plan};
use crate::actions::{UserAction, patch_for};

// --- specs -----------------------------------------------------------------------------

/// maxSurge / maxUnavailable as written in the spec.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    Pods(i32),
    Percent(i32),
}

impl Bound {
    fn json(self) -> Value {
        match self {
            Bound::Pods(n) => json!(n),
            Bound::Percent(p) => json!(format!("{p}%")),
        }
    }

    fn literally_zero(self) -> bool {
        matches!(self, Bound::Pods(0) | Bound::Percent(0))
    }

    /// Pods this bound allows for `replicas`; percentages round up for surge and down
    /// for unavailability, as a Deployment's do.
    fn pods(self, replicas: i32, round_up: bool) -> i32 {
        match self {
            Bound::Pods(n) => n,
            Bound::Percent(p) if round_up => (p * replicas + 99) / 100,
            Bound::Percent(p) => p * replicas / 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Router {
    Nginx,
    Gateway,
}

/// One canary step; exactly one action each, as admission requires.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Weight(i32),
    /// A pause, timed (seconds) or until promoted.
    Pause(Option<i64>),
    ScaleReplicas(i32),
    ScaleWeight(i32),
    ScaleMatch,
    Analysis,
}

impl Step {
    fn json(&self) -> Value {
        match self {
            Step::Weight(w) => json!({ "setWeight": w }),
            Step::Pause(None) => json!({ "pause": {} }),
            Step::Pause(Some(s)) => json!({ "pause": { "duration": format!("{s}s") } }),
            Step::ScaleReplicas(n) => json!({ "setCanaryScale": { "replicas": n } }),
            Step::ScaleWeight(w) => json!({ "setCanaryScale": { "weight": w } }),
            Step::ScaleMatch => json!({ "setCanaryScale": { "matchTrafficWeight": true } }),
            Step::Analysis => json!({ "analysis": { "templates": [{ "templateName": "t" }] } }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct CanarySpec {
    max_surge: Bound,
    max_unavailable: Bound,
    router: Option<Router>,
    /// canaryService and stableService (always with a router).
    services: bool,
    steps: Vec<Step>,
    /// Background analysis from this step on.
    background: Option<i32>,
    baseline: bool,
    dynamic_stable_scale: bool,
    scale_down_delay: i32,
    abort_scale_down_delay: i32,
}

#[derive(Debug, Clone, PartialEq)]
struct BlueGreenSpec {
    preview_service: bool,
    preview_replica_count: Option<i32>,
    auto_promotion_enabled: bool,
    auto_promotion_seconds: Option<i32>,
    scale_down_delay: i32,
    abort_scale_down_delay: i32,
    pre_analysis: bool,
    post_analysis: bool,
}

#[derive(Debug, Clone, PartialEq)]
/// The strategy a Rollout uses, with its options.
enum Kind {
    Canary(CanarySpec),
    BlueGreen(BlueGreenSpec),
}

#[derive(Debug, Clone, PartialEq)]
struct Spec {
    replicas: i32,
    progress_deadline_seconds: i32,
    progress_deadline_abort: bool,
    kind: Kind,
}

const ANALYSIS: &str = r#"{ "templates": [{ "templateName": "t" }] }"#;

fn analysis_json() -> Value {
    serde_json::from_str(ANALYSIS).expect("valid JSON")
}

fn strategy_json(kind: &Kind) -> Value {
    match kind {
        Kind::Canary(c) => {
            let mut v = json!({
                "steps": c.steps.iter().map(Step::json).collect::<Vec<_>>(),
                "maxSurge": c.max_surge.json(),
                "maxUnavailable": c.max_unavailable.json(),
                "scaleDownDelaySeconds": c.scale_down_delay,
                "abortScaleDownDelaySeconds": c.abort_scale_down_delay,
                "dynamicStableScale": c.dynamic_stable_scale,
            });
            let o = v.as_object_mut().expect("object");
            if c.services || c.router.is_some() {
                o.insert("canaryService".into(), json!("web-canary"));
                o.insert("stableService".into(), json!("web-stable"));
            }
            match c.router {
                Some(Router::Nginx) => {
                    o.insert(
                        "trafficRouting".into(),
                        json!({ "nginx": { "stableIngress": "web" } }),
                    );
                }
                Some(Router::Gateway) => {
                    o.insert(
                        "trafficRouting".into(),
                        json!({ "gatewayAPI": { "httpRoute": "web" } }),
                    );
                }
                None => {}
            }
            if let Some(start) = c.background {
                let mut bg = analysis_json();
                bg["startingStep"] = json!(start);
                o.insert("analysis".into(), bg);
            }
            if c.baseline {
                o.insert("baseline".into(), json!({}));
            }
            json!({ "canary": v })
        }
        Kind::BlueGreen(b) => {
            let mut v = json!({
                "activeService": "web-active",
                "autoPromotionEnabled": b.auto_promotion_enabled,
                "scaleDownDelaySeconds": b.scale_down_delay,
                "abortScaleDownDelaySeconds": b.abort_scale_down_delay,
            });
            let o = v.as_object_mut().expect("object");
            if b.preview_service {
                o.insert("previewService".into(), json!("web-preview"));
            }
            if let Some(n) = b.preview_replica_count {
                o.insert("previewReplicaCount".into(), json!(n));
            }
            if let Some(s) = b.auto_promotion_seconds {
                o.insert("autoPromotionSeconds".into(), json!(s));
            }
            if b.pre_analysis {
                o.insert("prePromotionAnalysis".into(), analysis_json());
            }
            if b.post_analysis {
                o.insert("postPromotionAnalysis".into(), analysis_json());
            }
            json!({ "blueGreen": v })
        }
    }
}

fn rollout(spec: &Spec) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": { "name": "web", "namespace": "default", "generation": 1 },
        "spec": {
            "replicas": spec.replicas,
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
            "progressDeadlineAbort": spec.progress_deadline_abort,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "app:v1" }] },
            },
            "strategy": strategy_json(&spec.kind),
        },
    }))
    .expect("a valid Rollout")
}

fn bound() -> impl Strategy<Value = Bound> {
    prop_oneof![
        (0..=3i32).prop_map(Bound::Pods),
        prop::sample::select(vec![0, 10, 25, 50, 100]).prop_map(Bound::Percent),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop::sample::select(vec![0, 1, 10, 20, 25, 33, 50, 75, 100]).prop_map(Step::Weight),
        1 => (0..=100i32).prop_map(Step::Weight),
        3 => prop::option::of(prop::sample::select(vec![0i64, 5, 30])).prop_map(Step::Pause),
        1 => (0..=4i32).prop_map(Step::ScaleReplicas),
        1 => (0..=100i32).prop_map(Step::ScaleWeight),
        1 => Just(Step::ScaleMatch),
        2 => Just(Step::Analysis),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 0..=6)
}

/// `steps` as admission lets them through: setCanaryScale only with a router.
fn admitted_steps(steps: Vec<Step>, router: bool) -> Vec<Step> {
    steps
        .into_iter()
        .filter(|s| {
            router
                || !matches!(
                    s,
                    Step::ScaleReplicas(_) | Step::ScaleWeight(_) | Step::ScaleMatch
                )
        })
        .collect()
}

fn delay() -> impl Strategy<Value = i32> {
    prop::sample::select(vec![0, 10, 30])
}

fn canary_spec() -> impl Strategy<Value = CanarySpec> {
    (
        (bound(), bound()),
        prop::option::of(prop_oneof![Just(Router::Nginx), Just(Router::Gateway)]),
        any::<bool>(),
        steps(),
        prop::option::weighted(0.3, 0..=3i32),
        prop::bool::weighted(0.2),
        any::<bool>(),
        (delay(), delay()),
    )
        .prop_map(
            |(
                (surge, unavailable),
                router,
                services,
                steps,
                background,
                baseline,
                dynamic,
                delays,
            )| {
                // Admission refuses both written as zero.
                let max_surge = if surge.literally_zero() && unavailable.literally_zero() {
                    Bound::Pods(1)
                } else {
                    surge
                };
                CanarySpec {
                    max_surge,
                    max_unavailable: unavailable,
                    router,
                    services,
                    steps: admitted_steps(steps, router.is_some()),
                    background,
                    baseline,
                    // Admission refuses dynamicStableScale without a router.
                    dynamic_stable_scale: dynamic && router.is_some(),
                    scale_down_delay: delays.0,
                    abort_scale_down_delay: delays.1,
                }
            },
        )
}

fn blue_green_spec() -> impl Strategy<Value = BlueGreenSpec> {
    (
        any::<bool>(),
        prop::option::of(0..=4i32),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![0, 10, 30])),
        (delay(), delay()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(preview, count, auto, secs, delays, pre, post)| BlueGreenSpec {
                preview_service: preview,
                preview_replica_count: count,
                auto_promotion_enabled: auto,
                auto_promotion_seconds: secs,
                scale_down_delay: delays.0,
                abort_scale_down_delay: delays.1,
                pre_analysis: pre,
                post_analysis: post,
            },
        )
}

fn spec(kind: impl Strategy<Value = Kind>) -> impl Strategy<Value = Spec> {
    (
        0..=6i32,
        prop::sample::select(vec![30, 600]),
        prop::bool::weighted(0.3),
        kind,
    )
        .prop_map(|(replicas, deadline, abort, kind)| Spec {
            replicas,
            progress_deadline_seconds: deadline,
            progress_deadline_abort: abort,
            kind,
        })
}

// --- events ----------------------------------------------------------------------------

/// Something that happens to a rollout.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// One reconcile: observe, plan, apply every action, write the status.
    Reconcile,
    /// A reconcile killed after applying the first `applied` actions: its status is
    /// never written.
    Crash {
        applied: usize,
    },
    /// The controller restarts: the next plan knows only the stored Rollout (read back
    /// from its JSON) and the cluster.
    Restart,
    /// Kubelet catches up: created pods exist and, unless crash-looping, are available.
    Kubelet,
    /// `pods` pods of one revision (picked by index) crash-loop until `Recover`.
    Unready {
        pick: usize,
        pods: i32,
    },
    Recover,
    /// Time passes.
    Wait(i64),
    User(UserAction),
    /// A new pod template (a new image).
    NewImage,
    /// The pod template goes back to the stable revision's.
    Rollback,
    EditSteps(Vec<Step>),
    EditBlueGreen(BlueGreenSpec),
    Scale(i32),
    /// A running AnalysisRun (picked by index) reports a verdict.
    Verdict {
        pick: usize,
        phase: AnalysisPhase,
    },
}

fn user_action() -> impl Strategy<Value = UserAction> {
    prop::sample::select(vec![
        UserAction::Abort,
        UserAction::Retry,
        UserAction::Promote,
        UserAction::PromoteFull,
        UserAction::Pause,
        UserAction::Resume,
    ])
}

fn verdict() -> impl Strategy<Value = AnalysisPhase> {
    prop_oneof![
        4 => Just(AnalysisPhase::Successful),
        1 => Just(AnalysisPhase::Failed),
        1 => Just(AnalysisPhase::Error),
        1 => Just(AnalysisPhase::Inconclusive),
    ]
}

fn event(blue_green: bool) -> impl Strategy<Value = Event> {
    let edit = if blue_green {
        blue_green_spec().prop_map(Event::EditBlueGreen).boxed()
    } else {
        steps().prop_map(Event::EditSteps).boxed()
    };
    prop_oneof![
        12 => Just(Event::Reconcile),
        8 => Just(Event::Kubelet),
        2 => (0..12usize).prop_map(|applied| Event::Crash { applied }),
        1 => Just(Event::Restart),
        2 => (0..4usize, 1..=3i32).prop_map(|(pick, pods)| Event::Unready { pick, pods }),
        2 => Just(Event::Recover),
        3 => prop::sample::select(vec![1i64, 5, 20, 40, 700]).prop_map(Event::Wait),
        3 => user_action().prop_map(Event::User),
        2 => Just(Event::NewImage),
        1 => Just(Event::Rollback),
        1 => edit,
        1 => (0..=6i32).prop_map(Event::Scale),
        4 => (0..3usize, verdict()).prop_map(|(pick, phase)| Event::Verdict { pick, phase }),
    ]
}

fn events(blue_green: bool) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(event(blue_green), 0..=60)
}

// --- the simulation --------------------------------------------------------------------

/// What the checks remember from the stored statuses, to tell a step entered afresh from
/// one re-run, and a pause that ran its time from one cut short.
#[derive(Debug, Default)]
struct Ledger {
    /// (revision, step list, aborted) of the rollout's position; a change starts over.
    epoch: Option<(Option<String>, Option<String>, bool)>,
    /// AnalysisRuns created per role (`step-N`, `pre-promotion`, ...) since the step was
    /// entered.
    runs_created: BTreeMap<String, Vec<String>>,
    /// Index, and time, of the first stored status paused at a pause step or stage.
    pause_seen: Option<(usize, Timestamp)>,
    /// Index at which a user's patch cleared a pause condition (a promote), with its
    /// reason: that promote ends the pause whenever the rollout next moves, even after
    /// `spec.paused` held it through further plans.
    promoted: Option<(usize, PauseReason)>,
}

struct Sim {
    spec: Spec,
    r: Rollout,
    w: World,
    now: Timestamp,
    /// Crash-looping pods per revision.
    unready: BTreeMap<String, i32>,
    /// The image of each revision, for rollbacks.
    images: BTreeMap<String, String>,
    next_image: u32,
    /// The status the planner last wrote, before any user patch.
    last_written: Option<RolloutStatus>,
    ledger: Ledger,
    /// Which revision and role each AnalysisRun was created for.
    run_roles: BTreeMap<String, (String, String)>,
    /// Runs a stored status has named.
    named_runs: std::collections::BTreeSet<String>,
    /// The spec has had a setCanaryScale of replicas or weight beside a stable sized by the
    /// weight, which the planner cannot always reach (see `finish`).
    scale_against_weight: bool,
    /// What happened, newest last, for failure messages.
    log: Vec<String>,
}

/// The canary setting in force at step `k`: the last setWeight's weight, the last
/// setCanaryScale (None: follow the weight).
fn setting_at(steps: &[Step], k: usize) -> (i32, Option<Step>) {
    let mut weight = 0;
    let mut scale = None;
    for s in steps.iter().take(k + 1) {
        match s {
            Step::Weight(w) => weight = *w,
            Step::ScaleMatch => scale = None,
            Step::ScaleReplicas(_) | Step::ScaleWeight(_) => scale = Some(s.clone()),
            _ => {}
        }
    }
    (weight, scale)
}

/// The whole number nearest to `weight`% of `replicas`, ties rounding up (DESIGN.md).
fn nearest(weight: i32, replicas: i32) -> i32 {
    (weight * replicas + 50) / 100
}

fn role_pause(reason: PauseReason) -> bool {
    matches!(
        reason,
        PauseReason::CanaryPauseStep | PauseReason::BlueGreenPause
    )
}

fn has_pause(s: &RolloutStatus, reason: PauseReason) -> bool {
    s.pause_conditions.iter().any(|c| c.reason == reason)
}

/// RFC 7386 JSON merge patch, as the apiserver applies a user action's patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// A blue-green rollout's stages, from its spec (the list the module docs describe).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Preview,
    Pre,
    Pause,
    Promote,
    Post,
}

fn stages_of(b: &BlueGreenSpec) -> Vec<Stage> {
    let mut s = vec![Stage::Preview];
    if b.pre_analysis {
        s.push(Stage::Pre);
    }
    if !b.auto_promotion_enabled || b.auto_promotion_seconds.is_some() {
        s.push(Stage::Pause);
    }
    s.push(Stage::Promote);
    if b.post_analysis {
        s.push(Stage::Post);
    }
    s
}

type Checked = Result<(), TestCaseError>;

macro_rules! ensure {
    ($sim:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!(
                "{}\n\n{}",
                format!($($fmt)+),
                $sim.state()
            )));
        }
    };
}

impl Sim {
    fn new(spec: Spec) -> Self {
        let r = rollout(&spec);
        let mut w =
            World::new().with_services(&["web-canary", "web-stable", "web-active", "web-preview"]);
        if matches!(&spec.kind, Kind::Canary(c) if c.router.is_some()) {
            w = w.with_router();
        }
        let mut images = BTreeMap::new();
        images.insert(hash_of(&r), "app:v1".to_string());
        let scale_against_weight = scales_against_weight(&spec.kind);
        Sim {
            spec,
            r,
            w,
            now: t0(),
            unready: BTreeMap::new(),
            images,
            next_image: 2,
            last_written: None,
            ledger: Ledger::default(),
            run_roles: BTreeMap::new(),
            named_runs: Default::default(),
            scale_against_weight,
            log: Vec::new(),
        }
    }

    fn status(&self) -> RolloutStatus {
        self.r.status.clone().unwrap_or_default()
    }

    fn state(&self) -> String {
        let s = self.status();
        let rs: Vec<String> = self
            .w
            .rs
            .iter()
            .map(|rs| {
                format!(
                    "{}(rev {}) spec {} current {} available {}{}",
                    rs.hash,
                    rs.revision,
                    rs.replicas,
                    rs.current,
                    rs.available,
                    rs.scale_down_at
                        .map(|t| format!(" scale-down at +{}s", t.duration_since(t0()).as_secs()))
                        .unwrap_or_default()
                )
            })
            .collect();
        let runs: Vec<String> = self
            .w
            .runs
            .iter()
            .map(|r| {
                format!(
                    "{} {:?}{}",
                    r.name,
                    r.phase,
                    if r.terminating { " terminating" } else { "" }
                )
            })
            .collect();
        let tail = self.log.len().saturating_sub(25);
        format!(
            "state at +{}s: template {} replicas {} paused {}\n\
             status: index {:?} stable {:?} abort {} promoteFull {} phase {:?} pauses {:?} \
             controllerPause {} canary {:?} blueGreen {:?}\n\
             replica sets: {rs:#?}\nbaselines: {:?}\nrouter {:?} services {:?}\nruns: {runs:?}\n\
             unready {:?}\nlast events:\n  {}",
            self.now.duration_since(t0()).as_secs(),
            hash_of(&self.r),
            self.r.spec.replicas,
            self.r.spec.paused,
            s.current_step_index,
            s.stable_rs,
            s.abort,
            s.promote_full,
            s.phase,
            s.pause_conditions
                .iter()
                .map(|c| c.reason)
                .collect::<Vec<_>>(),
            s.controller_pause,
            s.canary,
            s.blue_green,
            self.w.baselines,
            self.w.router,
            self.w.services,
            self.unready,
            self.log[tail..].join("\n  "),
        )
    }

    fn observe(&mut self) -> Observed {
        self.w.stable = self.r.status.as_ref().and_then(|s| s.stable_rs.clone());
        self.w.observed()
    }

    /// Pods crash-looping are neither ready nor available.
    fn cap_unready(&mut self) {
        for rs in &mut self.w.rs {
            let broken = self.unready.get(&rs.hash).copied().unwrap_or(0);
            let up = (rs.current - broken).max(0);
            rs.available = rs.available.min(up);
            rs.ready = rs.ready.min(up);
        }
    }

    fn kubelet(&mut self) {
        self.w.tick();
        self.cap_unready();
    }

    fn edit_spec(&mut self, what: String, edit: impl FnOnce(&mut Rollout)) {
        edit(&mut self.r);
        let g = self.r.metadata.generation.unwrap_or(1);
        self.r.metadata.generation = Some(g + 1);
        self.log.push(what);
    }

    fn user(&mut self, action: UserAction) -> Checked {
        let (on_status, patch) = patch_for(action, &self.r);
        let mut v = serde_json::to_value(&self.r).expect("serializes");
        let key = if on_status { "status" } else { "spec" };
        merge(&mut v[key], &patch[key]);
        let old = self.status();
        let patched: Rollout = serde_json::from_value(v).expect("a patched Rollout reads back");
        if !on_status {
            let g = self.r.metadata.generation.unwrap_or(1);
            self.r.metadata.generation = Some(g + 1);
        }
        self.r.spec = patched.spec;
        self.r.status = patched.status;
        self.log.push(format!("user {action:?}"));
        let new = self.status();
        self.note_stored(&old, &new, false);
        if action == UserAction::Retry {
            // A retry clears the step's run on purpose, aborted or not: it measures afresh.
            self.ledger.runs_created.clear();
        }
        Ok(())
    }

    fn run(&mut self, e: &Event) -> Checked {
        match e {
            Event::Reconcile => {
                self.reconcile(None)?;
            }
            Event::Crash { applied } => {
                self.reconcile(Some(*applied))?;
            }
            Event::Restart => {
                let v = serde_json::to_value(&self.r).expect("serializes");
                self.r = serde_json::from_value(v).expect("reads back");
                self.log.push("restart".into());
            }
            Event::Kubelet => {
                self.kubelet();
                self.log.push("kubelet".into());
            }
            Event::Unready { pick, pods } => {
                if !self.w.rs.is_empty() {
                    let hash = self.w.rs[pick % self.w.rs.len()].hash.clone();
                    self.log.push(format!("{pods} pods of {hash} crash-loop"));
                    self.unready.insert(hash, *pods);
                    self.cap_unready();
                }
            }
            Event::Recover => {
                self.unready.clear();
                self.log.push("pods recover".into());
            }
            Event::Wait(secs) => {
                self.now += SignedDuration::from_secs(*secs);
                self.log.push(format!("wait {secs}s"));
            }
            Event::User(action) => self.user(*action)?,
            Event::NewImage => {
                let image = format!("app:v{}", self.next_image);
                self.next_image += 1;
                self.edit_spec(format!("new image {image}"), |r| {
                    r.spec.template.spec.as_mut().expect("pod spec").containers[0].image =
                        Some(image.clone())
                });
                self.images.insert(hash_of(&self.r), image);
            }
            Event::Rollback => {
                if let Some(image) = self
                    .status()
                    .stable_rs
                    .and_then(|h| self.images.get(&h).cloned())
                {
                    self.edit_spec(format!("template back to {image}"), |r| {
                        r.spec.template.spec.as_mut().expect("pod spec").containers[0].image =
                            Some(image.clone())
                    });
                }
            }
            Event::EditSteps(steps) => {
                if let Kind::Canary(c) = &mut self.spec.kind {
                    c.steps = admitted_steps(steps.clone(), c.router.is_some());
                    self.scale_against_weight |= scales_against_weight(&self.spec.kind);
                    let strategy = strategy_json(&self.spec.kind);
                    self.edit_spec(format!("steps now {steps:?}"), |r| {
                        r.spec.strategy = serde_json::from_value(strategy).expect("valid strategy")
                    });
                }
            }
            Event::EditBlueGreen(b) => {
                if let Kind::BlueGreen(old) = &mut self.spec.kind {
                    *old = b.clone();
                    let strategy = strategy_json(&self.spec.kind);
                    self.edit_spec(format!("blue-green now {b:?}"), |r| {
                        r.spec.strategy = serde_json::from_value(strategy).expect("valid strategy")
                    });
                }
            }
            Event::Scale(n) => {
                self.spec.replicas = *n;
                self.edit_spec(format!("scale to {n}"), |r| r.spec.replicas = *n);
            }
            Event::Verdict { pick, phase } => {
                let live: Vec<usize> = (0..self.w.runs.len())
                    .filter(|&i| !self.w.runs[i].finished() && !self.w.runs[i].terminating)
                    .collect();
                if !live.is_empty() {
                    let run = &mut self.w.runs[live[pick % live.len()]];
                    run.phase = Some(*phase);
                    self.log.push(format!("run {} ends {phase:?}", run.name));
                }
            }
        }
        Ok(())
    }

    /// One reconcile; `applied` cuts it short after that many actions (a crash), and then
    /// the status is not written.
    fn reconcile(&mut self, applied: Option<usize>) -> Result<Plan, TestCaseError> {
        let observed = self.observe();
        let p = plan(&self.r, &observed, self.now);

        // The same input gives the same plan, also when read back from storage (what a
        // restarted controller or another replica plans from).
        let again = plan(&self.r, &observed, self.now);
        ensure!(
            self,
            p == again,
            "two plans of the same input differ:\n{p:#?}\n{again:#?}"
        );
        let stored: Rollout =
            serde_json::from_value(serde_json::to_value(&self.r).expect("serializes"))
                .expect("reads back");
        let reread = plan(&stored, &observed, self.now);
        ensure!(
            self,
            p == reread,
            "planning from the stored Rollout differs from planning from the one in memory:\n{p:#?}\n{reread:#?}"
        );

        let before = self.w.clone();
        let actions = match applied {
            None => &p.actions[..],
            Some(n) => &p.actions[..n.min(p.actions.len())],
        };
        self.log.push(match applied {
            None => format!("reconcile: {}", describe(&p.actions)),
            Some(_) => format!(
                "reconcile killed after {} of: {}",
                actions.len(),
                describe(&p.actions)
            ),
        });
        self.w.apply(actions);
        let h = hash_of(&self.r);
        if self.w.rs.iter().any(|rs| rs.hash == h) {
            self.w
                .templates
                .entry(h.clone())
                .or_insert_with(|| self.r.spec.template.clone());
        }
        for a in actions {
            if let Action::CreateAnalysisRun { name, role, .. } = a {
                let hash = p.status.current_pod_hash.clone().unwrap_or_default();
                self.run_roles.insert(name.clone(), (hash, role.clone()));
            }
        }

        self.check_round(&before, &observed, &p, actions, applied.is_none())?;
        self.count_runs(&before, &p, actions)?;
        if applied.is_none() {
            let old = self.status();
            self.check_progress(&observed, &old, &p)?;
            self.r.status = Some(p.status.clone());
            self.last_written = Some(p.status.clone());
            self.note_stored(&old, &p.status, true);
        }
        Ok(p)
    }

    /// Availability, traffic and abort-order promises, after the round's actions.
    fn check_round(
        &self,
        before: &World,
        observed: &Observed,
        p: &Plan,
        actions: &[Action],
        whole: bool,
    ) -> Checked {
        let replicas = self.r.spec.replicas;
        let available = |w: &World| -> i32 { w.rs.iter().map(|rs| rs.available).sum() };
        let total = |w: &World| -> i32 { w.rs.iter().map(|rs| rs.replicas).sum() };
        let stable = p.status.stable_rs.clone().unwrap_or_default();
        let shrinks: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::ScaleReplicaSet { name, replicas, .. } => before
                    .rs
                    .iter()
                    .find(|rs| &rs.name == name && *replicas < rs.replicas)
                    .map(|rs| rs.hash.as_str()),
                _ => None,
            })
            .collect();
        // Aborted from this plan on: the stored status says so (a user's abort, a progress
        // deadline, which by design takes effect from the next reconcile), or this plan
        // aborted on an analysis verdict.
        // A new template supersedes an abort (common::supersede), so the stored flag
        // counts only while the plan keeps it.
        let aborted = (self.status().abort && p.status.abort)
            || super::conditions::get(&p.status.conditions, super::conditions::types::PROGRESSING)
                .is_some_and(|c| c.reason == "RolloutAborted");
        match &self.spec.kind {
            Kind::Canary(c) => {
                // Availability never drops below replicas − maxUnavailable through the
                // planner (it may already be below: pods crash, the spec grew).
                let unavailable = c.max_unavailable.pods(replicas, false);
                let min_available = (replicas - unavailable).max(0);
                let floor = min_available.min(available(before));
                ensure!(
                    self,
                    available(&self.w) >= floor,
                    "availability {} < {floor} (replicas {replicas} − maxUnavailable {unavailable}, \
                     or what was available) after {}",
                    available(&self.w),
                    describe(actions)
                );
                if c.router.is_none() && whole {
                    let mut surge = c.max_surge.pods(replicas, true);
                    if surge == 0 && unavailable == 0 {
                        // As a Deployment, one pod of surge so that a rollout can move.
                        surge = 1;
                    }
                    let ceiling = (replicas + surge).max(total(before));
                    ensure!(
                        self,
                        total(&self.w) <= ceiling,
                        "{} pods > {ceiling} (replicas {replicas} + maxSurge {surge}) after {}",
                        total(&self.w),
                        describe(actions)
                    );
                }
                if c.router.is_some() {
                    // Traffic goes to canaryService's pods: some of them must be available.
                    let weight = self.w.router.unwrap_or(0);
                    let target = self.w.services.get("web-canary").cloned().flatten();
                    let up = target
                        .as_deref()
                        .and_then(|h| self.w.rs.iter().find(|rs| rs.hash == h))
                        .map_or(0, |rs| rs.available);
                    ensure!(
                        self,
                        weight == 0 || up > 0,
                        "router sends {weight}% to web-canary, which selects {target:?} with no \
                         available pod, after {}",
                        describe(actions)
                    );
                    // An aborted rollout scales nothing but stable down while the router,
                    // as observed, still sends the canary a share.
                    let router_before = observed.router_weight.unwrap_or(0);
                    if aborted && router_before > 0 {
                        let bad: Vec<&&str> = shrinks.iter().filter(|h| **h != stable).collect();
                        ensure!(
                            self,
                            bad.is_empty(),
                            "aborted with the router at {router_before}%, yet {bad:?} shrink: {}",
                            describe(actions)
                        );
                        if whole {
                            ensure!(
                                self,
                                self.w.router == Some(0),
                                "aborted, yet the router holds {:?} after the round: {}",
                                self.w.router,
                                describe(actions)
                            );
                        }
                    }
                }
            }
            Kind::BlueGreen(_) => {
                // Blue-green has no maxUnavailable: what serves production is the revision
                // activeService selects, kept at full size; the preview's pods are not
                // capacity. So that revision's availability never drops through the planner.
                let active_before = before.services.get("web-active").cloned().flatten();
                let up = |w: &World, h: &Option<String>| {
                    h.as_deref()
                        .and_then(|h| w.rs.iter().find(|rs| rs.hash == h))
                        .map_or(0, |rs| rs.available)
                };
                let active_now = self.w.services.get("web-active").cloned().flatten();
                let up_before = up;
                // Except for an abort's switch back to stable: an abort takes production
                // off the new revision in the reconcile that sees it (docs/bluegreen.md,
                // DESIGN.md's abort reaction), as a canary's router goes to 0 whatever the
                // stable's pods. With stable pods crash-looping the two promises exclude
                // each other, and waiting would keep a failed revision serving for as long
                // as they crash; the abort's is the one kept (checked below).
                let abort_switch_back = aborted
                    && active_now != active_before
                    && active_now.as_deref() == Some(stable.as_str());
                let floor = replicas.min(up(before, &active_before));
                ensure!(
                    self,
                    abort_switch_back || up(&self.w, &active_now) >= floor,
                    "the active revision has {} available pods < {floor} after {}",
                    up(&self.w, &active_now),
                    describe(actions)
                );
                // What activeService selects is never scaled below spec.replicas.
                if let Some(a) = &active_before
                    && let Some(rs) = self.w.rs.iter().find(|rs| &rs.hash == a)
                {
                    ensure!(
                        self,
                        !shrinks.contains(&a.as_str()) || rs.replicas >= replicas,
                        "{a}, which activeService selects, shrinks to {}: {}",
                        rs.replicas,
                        describe(actions)
                    );
                }
                // activeService moves only to a revision at least as available as the one
                // it leaves, up to full size (the switch waits for a fully available new
                // revision; the first one, or a rollout finished at zero pods, has nothing
                // behind it to lose).
                let active_after = self.w.services.get("web-active").cloned().flatten();
                if active_after != active_before
                    && let Some(h) = &active_after
                {
                    let up = before
                        .rs
                        .iter()
                        .find(|rs| &rs.hash == h)
                        .map_or(0, |rs| rs.available);
                    let left = replicas.min(up_before(before, &active_before));
                    ensure!(
                        self,
                        abort_switch_back || up >= left,
                        "activeService moved to {h} with {up} pods available, from {active_before:?} with {left}"
                    );
                }
                if aborted && whole {
                    ensure!(
                        self,
                        active_after.as_deref() == Some(stable.as_str())
                            || !self.w.rs.iter().any(|rs| rs.hash == stable),
                        "aborted, yet activeService selects {active_after:?}, not stable {stable}"
                    );
                }
            }
        }
        Ok(())
    }

    /// No two runs measure the same step of the same revision, and a step's run is
    /// created once per entry.
    fn count_runs(&mut self, before: &World, p: &Plan, actions: &[Action]) -> Checked {
        let epoch = (
            p.status.current_pod_hash.clone(),
            p.status.current_step_hash.clone(),
            p.status.abort,
        );
        if self.ledger.epoch.as_ref() != Some(&epoch) {
            self.ledger = Ledger {
                epoch: Some(epoch),
                ..Ledger::default()
            };
        }
        for a in actions {
            if let Action::CreateAnalysisRun { role, name, .. } = a
                && role != "background"
            {
                let earlier = self.ledger.runs_created.entry(role.clone()).or_default();
                // By design (common::run_for) a run created by a killed reconcile, which no
                // stored status ever named, is taken up only while it measures: one that
                // finished meanwhile is not reused (a retry's fresh run must not re-read
                // an old verdict), and one stopped because the next plan did not reach its
                // step is gone. A second run per entry is allowed exactly after such one.
                let excused = earlier.iter().all(|e| {
                    !self.named_runs.contains(e)
                        && before
                            .runs
                            .iter()
                            .any(|r| &r.name == e && (r.finished() || r.terminating))
                });
                let n = earlier.len() + 1;
                earlier.push(name.clone());
                ensure!(
                    self,
                    n == 1 || excused,
                    "{name} is run {n} created for {role} in one entry of the step"
                );
            }
        }
        let mut live: BTreeMap<&(String, String), usize> = BTreeMap::new();
        for run in &self.w.runs {
            if !run.finished()
                && !run.terminating
                && let Some(key) = self.run_roles.get(&run.name)
            {
                *live.entry(key).or_default() += 1;
            }
        }
        ensure!(
            self,
            live.values().all(|n| *n <= 1),
            "two runs measure the same thing at once: {live:?}"
        );
        Ok(())
    }

    /// Bookkeeping when the stored status changes (a written plan, a user patch).
    fn note_stored(&mut self, old: &RolloutStatus, new: &RolloutStatus, by_planner: bool) {
        let canary = new.canary.as_ref();
        let blue_green = new.blue_green.as_ref();
        for run in [
            canary.and_then(|c| c.current_step_analysis_run.clone()),
            canary.and_then(|c| c.current_background_analysis_run.clone()),
            blue_green.and_then(|b| b.pre_promotion_analysis_run.clone()),
            blue_green.and_then(|b| b.post_promotion_analysis_run.clone()),
        ]
        .into_iter()
        .flatten()
        {
            self.named_runs.insert(run);
        }
        // Only a plan moves the epoch: an abort a retry undoes before any plan saw it
        // interrupted nothing (and a promote meanwhile still ends the pause).
        let epoch = (
            new.current_pod_hash.clone(),
            new.current_step_hash.clone(),
            new.abort,
        );
        if by_planner && self.ledger.epoch.as_ref() != Some(&epoch) {
            self.ledger = Ledger {
                epoch: Some(epoch),
                ..Ledger::default()
            };
        } else if old.current_step_index != new.current_step_index {
            if let Some(left) = old.current_step_index {
                let role = self.role_of(left.max(0) as usize);
                self.ledger.runs_created.remove(&role);
            }
            self.ledger.pause_seen = None;
            self.ledger.promoted = None;
        }
        let index = new.current_step_index.unwrap_or(0).max(0) as usize;
        if !by_planner {
            for c in old.pause_conditions.iter().filter(|c| role_pause(c.reason)) {
                if !has_pause(new, c.reason) {
                    self.ledger.promoted = Some((index, c.reason));
                }
            }
        }
        if self.ledger.pause_seen.is_none()
            && new.pause_conditions.iter().any(|c| role_pause(c.reason))
        {
            self.ledger.pause_seen = Some((index, self.now));
        }
    }

    fn role_of(&self, index: usize) -> String {
        match &self.spec.kind {
            Kind::Canary(_) => format!("step-{index}"),
            Kind::BlueGreen(b) => match stages_of(b).get(index) {
                Some(Stage::Pre) => "pre-promotion".into(),
                Some(Stage::Post) => "post-promotion".into(),
                _ => format!("stage-{index}"),
            },
        }
    }

    /// A pause condition of `reason` was in the status the planner wrote and a human
    /// cleared it (promote).
    fn promoted_past(&self, old: &RolloutStatus, reason: PauseReason) -> bool {
        let index = old.current_step_index.unwrap_or(0).max(0) as usize;
        self.ledger.promoted == Some((index, reason))
            || (self
                .last_written
                .as_ref()
                .is_some_and(|w| has_pause(w, reason))
                && !has_pause(old, reason))
    }

    /// A timed pause entered at `index` ran its time, or a human ended it.
    fn pause_over(
        &self,
        old: &RolloutStatus,
        index: usize,
        duration: Option<i64>,
        reason: PauseReason,
    ) -> bool {
        if duration == Some(0) {
            return true;
        }
        let seen = self.ledger.pause_seen.filter(|(i, _)| *i == index);
        seen.is_some_and(|(_, at)| {
            duration.is_some_and(|d| self.now >= at + SignedDuration::from_secs(d))
                || self.promoted_past(old, reason)
        })
    }

    /// An analysis named in the stored status passed, or was inconclusive and a human
    /// promoted past it.
    fn analysis_over(&self, observed: &Observed, run: Option<&String>) -> bool {
        let old = self.status();
        run.and_then(|n| observed.analysis_run(n)).is_some_and(|r| {
            r.phase == Some(AnalysisPhase::Successful)
                || (r.phase == Some(AnalysisPhase::Inconclusive)
                    && self.promoted_past(&old, PauseReason::InconclusiveAnalysis))
        })
    }

    /// Steps move forward, and each step passed was done: its setting in place, its pause
    /// over, its analysis passed. Jumps are by design only through a user's patch (promote,
    /// promote-full), an abort, a new revision or step list, or completion.
    fn check_progress(&self, observed: &Observed, old: &RolloutStatus, p: &Plan) -> Checked {
        let new = &p.status;
        let restarted = new.current_pod_hash != old.current_pod_hash
            || new.current_step_hash != old.current_step_hash;
        let stable_now = new.stable_rs == new.current_pod_hash;
        if restarted || old.promote_full || new.abort {
            return Ok(());
        }
        let i0 = old.current_step_index.unwrap_or(0).max(0) as usize;
        let i1 = new.current_step_index.unwrap_or(0).max(0) as usize;
        let template = new.current_pod_hash.clone().unwrap_or_default();
        let current = observed.replica_set(&template);
        let replicas = self.r.spec.replicas;
        match &self.spec.kind {
            Kind::Canary(c) => {
                let len = c.steps.len();
                let from = i0.min(len);
                ensure!(self, i1 >= from, "step index went back from {i0} to {i1}");
                if stable_now && old.stable_rs == new.current_pod_hash {
                    return Ok(());
                }
                for k in from..i1.min(len) {
                    let step = &c.steps[k];
                    let done = match step {
                        Step::Weight(_)
                        | Step::ScaleReplicas(_)
                        | Step::ScaleWeight(_)
                        | Step::ScaleMatch => self.setting_in_place(c, k, observed),
                        Step::Pause(d) => {
                            (*d != Some(0) || self.setting_in_place(c, k, observed))
                                && self.pause_over(old, k, *d, PauseReason::CanaryPauseStep)
                        }
                        Step::Analysis => self.analysis_over(
                            observed,
                            old.canary
                                .as_ref()
                                .and_then(|c| c.current_step_analysis_run.as_ref()),
                        ),
                    };
                    ensure!(
                        self,
                        done,
                        "step {k} ({step:?}) passed before it was done ({i0} → {i1})"
                    );
                }
            }
            Kind::BlueGreen(b) => {
                let stages = stages_of(b);
                let len = stages.len();
                let promote = stages
                    .iter()
                    .position(|s| *s == Stage::Promote)
                    .expect("always");
                let switched = old
                    .blue_green
                    .as_ref()
                    .and_then(|b| b.active_selector.as_deref())
                    == Some(template.as_str())
                    && old.stable_rs.as_deref() != Some(template.as_str());
                // A promote past Promote still switches there; once switched the stages
                // before it are behind (the documented clamps).
                let mut from = i0.min(len);
                if from > promote && !switched {
                    from = promote;
                }
                if switched && from <= promote {
                    from = promote + 1;
                }
                ensure!(self, i1 >= from, "stage index went back from {i0} to {i1}");
                if stable_now && old.stable_rs == new.current_pod_hash {
                    return Ok(());
                }
                let preview = b
                    .preview_replica_count
                    .unwrap_or(replicas)
                    .clamp(0, replicas.max(0));
                let at = |size: i32| match current {
                    Some(rs) => rs.replicas == size && rs.available >= size,
                    None => size == 0,
                };
                let runs = old.blue_green.as_ref();
                for (k, &stage) in stages.iter().enumerate().take(i1.min(len)).skip(from) {
                    let done = match stage {
                        Stage::Preview => at(preview),
                        Stage::Promote => at(replicas),
                        Stage::Pre => self.analysis_over(
                            observed,
                            runs.and_then(|b| b.pre_promotion_analysis_run.as_ref()),
                        ),
                        Stage::Post => self.analysis_over(
                            observed,
                            runs.and_then(|b| b.post_promotion_analysis_run.as_ref()),
                        ),
                        Stage::Pause => {
                            let d = if b.auto_promotion_enabled {
                                b.auto_promotion_seconds.map(i64::from)
                            } else {
                                None
                            };
                            self.pause_over(old, k, d, PauseReason::BlueGreenPause)
                        }
                    };
                    ensure!(
                        self,
                        done,
                        "stage {k} ({stage:?}) passed before it was done ({i0} → {i1})"
                    );
                }
            }
        }
        Ok(())
    }

    /// The weight and canary size of step `k` hold in the observed cluster (DESIGN.md:
    /// the replica ratio is the split without a router; a router's canary has at least one
    /// pod, beside a full stable unless dynamicStableScale).
    fn setting_in_place(&self, c: &CanarySpec, k: usize, observed: &Observed) -> bool {
        let replicas = self.r.spec.replicas.max(0);
        let (weight, scale) = setting_at(&c.steps, k);
        let by_weight = nearest(weight, replicas);
        let canary = match scale {
            Some(Step::ScaleReplicas(n)) => n,
            Some(Step::ScaleWeight(w)) => nearest(w, replicas),
            _ => by_weight,
        };
        let canary = if c.router.is_some() && weight > 0 {
            canary.max(1)
        } else {
            canary
        };
        let stable = if c.router.is_some() && !c.dynamic_stable_scale {
            replicas
        } else {
            replicas - by_weight
        };
        let s = self.status();
        let template = hash_of(&self.r);
        let canary_rs = observed.replica_set(&template);
        let stable_rs = s.stable_rs.as_deref().and_then(|h| observed.replica_set(h));
        let canary_ok = canary_rs.is_some_and(|rs| rs.replicas == canary && rs.available >= canary)
            || (canary == 0 && canary_rs.is_none_or(|rs| rs.current == 0));
        let stable_ok = stable_rs.is_some_and(|rs| rs.replicas == stable && rs.available >= stable);
        let router_ok = c.router.is_none() || observed.router_weight == Some(weight);
        canary_ok && stable_ok && router_ok
    }

    /// Help the rollout to its end as a human would (pods fixed, pauses lifted, aborts
    /// retried, analyses passing, time passing), then check it plans nothing more.
    fn finish(&mut self) -> Checked {
        self.log
            .push("--- helping the rollout to its end ---".into());
        let mut quiet = 0;
        for _ in 0..400 {
            self.unready.clear();
            let s = self.status();
            if self.r.spec.paused {
                self.user(UserAction::Resume)?;
            }
            if s.abort {
                self.user(UserAction::Retry)?;
            } else if !s.pause_conditions.is_empty() {
                self.user(UserAction::Promote)?;
            }
            for run in &mut self.w.runs {
                if !run.finished() && !run.terminating {
                    run.phase = Some(AnalysisPhase::Successful);
                }
            }
            self.now += SignedDuration::from_secs(3);
            let before = self.status();
            let p = self.reconcile(None)?;
            self.kubelet();
            // Done: Healthy, nothing planned, nothing waited for (a draining revision's
            // scale-down deadline is still work).
            let idle = p.actions.is_empty()
                && p.requeue_after.is_none()
                && p.status == before
                && p.status.phase == Some(RolloutPhase::Healthy);
            quiet = if idle { quiet + 1 } else { 0 };
            if quiet >= 2 {
                break;
            }
        }
        let observed = self.observe();
        let p = plan(&self.r, &observed, self.now);
        // Where the stable is sized by the weight (dynamicStableScale) an explicit canary
        // size can contradict the budget: the stable keeps replicas − weight pods
        // whatever the canary's size. Such a step can be unreachable (setCanaryScale 0
        // after setWeight 50 with maxUnavailable 0) and waits for the progress deadline.
        // Admission refuses setCanaryScale without a router (as Argo Rollouts does); with
        // dynamicStableScale it accepts it, so only the safety promises are checked there.
        if self.scale_against_weight && p.status.phase != Some(RolloutPhase::Healthy) {
            return Ok(());
        }
        ensure!(
            self,
            p.status.phase == Some(RolloutPhase::Healthy),
            "the rollout did not finish: {:?} {:?}",
            p.status.phase,
            p.status.message
        );
        // Finished: nothing to do, now or an hour later.
        for later in [0, 3600] {
            let at = self.now + SignedDuration::from_secs(later);
            let p = plan(&self.r, &observed, at);
            ensure!(
                self,
                p.actions.is_empty() && Some(&p.status) == self.r.status.as_ref(),
                "a finished rollout plans {} (+{later}s), status changed: {}",
                describe(&p.actions),
                Some(&p.status) != self.r.status.as_ref()
            );
        }
        Ok(())
    }
}

/// An explicit setCanaryScale in a canary whose stable is sized by the weight
/// (dynamicStableScale): see `finish`.
fn scales_against_weight(kind: &Kind) -> bool {
    matches!(kind, Kind::Canary(c) if c.dynamic_stable_scale
        && c.steps.iter().any(|s| matches!(s, Step::ScaleReplicas(_) | Step::ScaleWeight(_))))
}

fn describe(actions: &[Action]) -> String {
    if actions.is_empty() {
        return "nothing".into();
    }
    actions
        .iter()
        .map(|a| match a {
            Action::CreateReplicaSet { hash, replicas, .. } => format!("create {hash}×{replicas}"),
            Action::EvictPod { name } => format!("evict {name}"),
            Action::PatchPodMetadata { pod, .. } => format!("relabel pod {pod}"),
            Action::SetReplicaSetPodMetadata { name, .. } => format!("relabel template {name}"),
            Action::ScaleDeployment { name, replicas } => format!("deployment {name}→{replicas}"),
            Action::ScaleReplicaSet {
                name,
                replicas,
                scale_down_at,
            } => format!(
                "scale {name}→{replicas}{}",
                if scale_down_at.is_some() {
                    " (deadline)"
                } else {
                    ""
                }
            ),
            Action::CreateBaselineReplicaSet { replicas, .. } => {
                format!("create baseline×{replicas}")
            }
            Action::DeleteReplicaSet { name } => format!("delete {name}"),
            Action::SetServiceSelector { service, hash } => format!("{service}→{hash}"),
            Action::SetCanaryWeight { weight } => format!("weight {weight}"),
            Action::SetManagedRoutes { routes } => format!(
                "routes [{}]",
                routes
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Action::CreateAnalysisRun { name, .. } => format!("create run {name}"),
            Action::TerminateAnalysisRun { name } => format!("stop run {name}"),
            Action::DeleteAnalysisRun { name } => format!("delete run {name}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn simulate(spec: Spec, events: Vec<Event>) -> Checked {
    let mut sim = Sim::new(spec);
    // The first revision is in place before the story starts.
    for _ in 0..3 {
        sim.reconcile(None)?;
        sim.kubelet();
    }
    for e in &events {
        sim.run(e)?;
    }
    sim.finish()
}

/// The seed `make test` runs with, so CI checks the same cases every time and is never
/// red by the luck of the draw. `PROPTEST_RNG_SEED=<n>` (and `PROPTEST_CASES`) search
/// elsewhere; a failure found that way becomes a named table test.
const CI_SEED: u64 = 20_261_201;

/// `cases` by default; `PROPTEST_CASES` runs more (or fewer) for a deeper search.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let defaults = ProptestConfig::default(); // reads PROPTEST_RNG_SEED when set
    let rng_seed = match std::env::var_os("PROPTEST_RNG_SEED") {
        Some(_) => defaults.rng_seed,
        None => proptest::test_runner::RngSeed::Fixed(CI_SEED),
    };
    ProptestConfig {
        cases,
        rng_seed,
        // No regression files: every failure found is kept as a named table test beside
        // the planner's others (canary_tests, bluegreen_tests), which says what it
        // protects; a stored seed would silently change meaning with the strategies.
        failure_persistence: None,
        ..defaults
    }
}

proptest! {
    #![proptest_config(config(1500))]

    /// Canary rollouts under random specs and events keep every promise.
    #[test]
    fn canary_rollouts_keep_their_promises(
        spec in spec(canary_spec().prop_map(Kind::Canary)),
        events in events(false),
    ) {
        simulate(spec, events)?;
    }
}

proptest! {
    #![proptest_config(config(1500))]

    /// Blue-green rollouts under random specs and events keep every promise.
    #[test]
    fn blue_green_rollouts_keep_their_promises(
        spec in spec(blue_green_spec().prop_map(Kind::BlueGreen)),
        events in events(true),
    ) {
        simulate(spec, events)?;
    }
}
