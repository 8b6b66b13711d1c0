//! Server-rendered pages. `maud` escapes every interpolated value, so names, messages,
//! images and conditions from the cluster cannot inject markup. The parts that change
//! (`#live`) are rendered by the same functions for the page and for its live stream.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::DeserializeGuard;
use maud::{DOCTYPE, Markup, html};
use serde::{Deserialize, Serialize};
use sluice_api::analysis::{AnalysisPhase, AnalysisRun};
use sluice_api::labels::{ANALYSIS_ROLE_LABEL, POD_TEMPLATE_HASH_LABEL};
use sluice_api::rollout::{CanaryStep, Rollout, RolloutPhase, StrategyKind};
use sluice_controller::actions::{UserAction, revisions};
use sluice_controller::core::hash::pod_template_hash;

use crate::auth::{User, action_word};
use crate::cache::{Caches, event_time, revision};
use crate::chart;

/// Overview filters, from the query string.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
}

impl Filter {
    /// Empty fields (an unselected `<select>`) mean no filter.
    pub fn normalized(self) -> Self {
        let keep = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Filter {
            ns: keep(self.ns),
            phase: keep(self.phase),
            q: keep(self.q),
        }
    }

    pub fn matches(&self, namespace: &str, name: &str, phase: Option<RolloutPhase>) -> bool {
        self.ns.as_deref().is_none_or(|ns| ns == namespace)
            && self
                .phase
                .as_deref()
                .is_none_or(|p| phase.map(|ph| format!("{ph:?}")).as_deref() == Some(p))
            && self
                .q
                .as_deref()
                .is_none_or(|q| name.to_lowercase().contains(&q.to_lowercase()))
    }

    pub fn query(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }
}

/// The frame of every page.
pub struct Page<'a> {
    pub title: String,
    pub user: Option<&'a User>,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: Option<&'a str>,
    pub flash: Option<String>,
    pub auth_enabled: bool,
    pub read_only: bool,
}

pub fn layout(page: Page<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (page.title) " · sluice" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "sluice" }
                    span.live-status #live-status role="status" aria-live="polite" {}
                    @if page.read_only { span.badge.readonly title="Actions are disabled" { "read-only" } }
                    @if let Some(user) = page.user {
                        span.user { "Signed in as " strong { (user.name) } }
                        @if let (true, Some(csrf)) = (page.auth_enabled, page.csrf) {
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    div #flash .flash.ok[page.flash.is_some()] role="status" aria-live="polite" {
                        @if let Some(f) = &page.flash { (f) }
                    }
                    (body)
                }
            }
        }
    }
}

pub fn login_page(error: Option<&str>, next: &str) -> Markup {
    let page = Page {
        title: "Sign in".into(),
        user: None,
        csrf: None,
        flash: None,
        auth_enabled: true,
        read_only: false,
    };
    layout(
        page,
        html! {
            section.card.narrow {
                h1 { "Sign in" }
                p { "Paste a Kubernetes bearer token. The dashboard checks it with the API server (TokenReview) and shows and does only what your RBAC allows." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Token" }
                    textarea #token name="token" rows="5" required autocomplete="off" spellcheck="false" autofocus {}
                    button type="submit" { "Sign in" }
                }
                details {
                    summary { "Where do I get a token?" }
                    p { "For a ServiceAccount:" }
                    pre { "kubectl create token NAME -n NAMESPACE" }
                    p { "Viewing needs get and list on rollouts.sluice.dev; acting needs patch on rollouts/status (and on rollouts for pause and resume)." }
                }
            }
        },
    )
}

pub fn message_page(page: Page<'_>, heading: &str, message: &str) -> Markup {
    layout(
        page,
        html! {
            section.card.narrow {
                h1 { (heading) }
                p { (message) }
                p { a href="/" { "Back to all rollouts" } }
            }
        },
    )
}

fn age(now: Timestamp, then: Option<Timestamp>) -> String {
    let Some(then) = then else {
        return "—".into();
    };
    let s = (now.as_second() - then.as_second()).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn phase_badge(phase: Option<RolloutPhase>) -> Markup {
    let text = phase.map_or("Unknown".to_string(), |p| format!("{p:?}"));
    html! { span class=(format!("badge phase-{text}")) { (text) } }
}

fn run_badge(phase: Option<AnalysisPhase>) -> Markup {
    let text = phase.map_or("Pending".to_string(), |p| format!("{p:?}"));
    html! { span class=(format!("badge run-{text}")) { (text) } }
}

fn strategy(r: &Rollout) -> &'static str {
    match r.status.as_ref().and_then(|s| s.strategy) {
        Some(StrategyKind::BlueGreen) => "BlueGreen",
        Some(StrategyKind::Canary) => "Canary",
        None if r.spec.strategy.blue_green.is_some() => "BlueGreen",
        None => "Canary",
    }
}

/// The rollout's timeline: a canary's steps, or the blue-green stages its spec uses (the
/// planner's own list, so the index in the status points into it).
pub fn step_labels(r: &Rollout) -> Vec<String> {
    match (&r.spec.strategy.canary, &r.spec.strategy.blue_green) {
        (Some(c), _) => c.steps.iter().map(describe_step).collect(),
        (None, Some(bg)) => sluice_controller::core::bluegreen::stages(bg)
            .into_iter()
            .map(|stage| {
                let label = stage.label();
                let mut chars = label.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_uppercase().chain(chars).collect()
                })
            })
            .collect(),
        (None, None) => Vec::new(),
    }
}

/// `n/m`: the status's own when written, else from the step index.
pub fn step_progress(r: &Rollout) -> String {
    let status = r.status.clone().unwrap_or_default();
    if let Some(p) = status.step_progress {
        return p;
    }
    let total = step_labels(r).len();
    match status.current_step_index {
        Some(i) if total > 0 => format!("{}/{total}", (i as usize + 1).min(total)),
        _ => "—".into(),
    }
}

fn weight(r: &Rollout) -> Markup {
    match r
        .status
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.weights.as_ref())
    {
        Some(w) => html! {
            span.weight { (w.canary) "%" }
            @match w.verified {
                Some(true) => span.verified title="The router was read back and shows this weight" { " ✓ verified" },
                Some(false) => span.unverified title="The router does not show this weight yet" { " unverified" },
                None => {},
            }
        },
        None => html! { "—" },
    }
}

fn images(rs: &ReplicaSet) -> Vec<String> {
    rs.spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .map(|c| c.image.clone().unwrap_or_else(|| c.name.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn hash_of(rs: &ReplicaSet) -> String {
    rs.labels()
        .get(POD_TEMPLATE_HASH_LABEL)
        .cloned()
        .unwrap_or_default()
}

/// What a revision is to the rollout now.
fn role(r: &Rollout, rs: &ReplicaSet) -> &'static str {
    let status = r.status.clone().unwrap_or_default();
    let hash = hash_of(rs);
    let current = status.current_pod_hash.as_deref() == Some(hash.as_str());
    let stable = status.stable_rs.as_deref() == Some(hash.as_str());
    match (current, stable) {
        (true, true) => "stable",
        (true, false) if status.abort => "aborted",
        (true, false) => "canary",
        (false, true) => "stable",
        (false, false) => "old",
    }
}

fn rs_counts(rs: &ReplicaSet) -> (i32, i32, i32) {
    let desired = rs.spec.replicas.unwrap_or(0);
    let status = rs.status.as_ref();
    (
        desired,
        status.and_then(|s| s.ready_replicas).unwrap_or(0),
        status.and_then(|s| s.available_replicas).unwrap_or(0),
    )
}

/// One square per desired pod, filled when the pod is ready.
fn pod_dots(desired: i32, ready: i32) -> Markup {
    let shown = desired.clamp(0, 40);
    let label = format!("{ready} of {desired} pods ready");
    html! {
        svg.pods viewBox=(format!("0 0 {} 12", (shown.max(1) * 14))) width=(shown.max(1) * 14) height="12" role="img" aria-label=(label) {
            title { (label) }
            @for i in 0..shown {
                rect class=(if i < ready { "pod ready" } else { "pod" }) x=(i * 14) y="0" width="10" height="10" rx="2" {}
            }
        }
    }
}

/// The overview's live part: the table of rollouts.
pub fn overview_live(
    caches: &Caches,
    rollouts: &[Arc<DeserializeGuard<Rollout>>],
    now: Timestamp,
) -> Markup {
    html! {
        @if !caches.is_ready() && rollouts.is_empty() {
            p.note { "Loading rollouts from the cluster…" }
        } @else if rollouts.is_empty() {
            p.empty { "No rollouts match." }
        } @else {
            div.scroll {
                table.rollouts {
                    caption.visually-hidden { "Rollouts" }
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Namespace" } th scope="col" { "Strategy" }
                        th scope="col" { "Phase" } th scope="col" { "Step" } th scope="col" { "Weight" }
                        th scope="col" { "Images by revision" } th scope="col" { "Ready / desired" } th scope="col" { "Age" }
                    } }
                    tbody {
                        @for guard in rollouts {
                            @let ns = guard.namespace().unwrap_or_default();
                            @let name = guard.name_any();
                            @match &guard.0 {
                                Ok(r) => {
                                    @let status = r.status.clone().unwrap_or_default();
                                    tr data-rollout=(format!("{ns}/{name}")) {
                                        th scope="row" { a href=(format!("/rollouts/{ns}/{name}")) { (name) } }
                                        td { (ns) }
                                        td { (strategy(r)) }
                                        td { (phase_badge(status.phase)) }
                                        td.step { (step_progress(r)) }
                                        td { (weight(r)) }
                                        td {
                                            ul.plain {
                                                @for rs in caches.replica_sets_of(r).iter().filter(|rs| rs_counts(rs).0 > 0 || role(r, rs) != "old") {
                                                    li { "rev " (revision(rs)) " (" (role(r, rs)) "): " (images(rs).join(", ")) }
                                                }
                                            }
                                        }
                                        td { (status.ready_replicas) " / " (r.spec.replicas) }
                                        td { (age(now, r.metadata.creation_timestamp.as_ref().map(|t| t.0))) }
                                    }
                                }
                                Err(e) => {
                                    tr.malformed {
                                        th scope="row" { (name) }
                                        td { (ns) }
                                        td colspan="7" { "This Rollout cannot be read: " (e.to_string()) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The overview page around its live part.
pub fn overview_page(
    page: Page<'_>,
    filter: &Filter,
    namespaces: &[String],
    live: Markup,
) -> Markup {
    let stream = format!("/sse/overview?{}", filter.query());
    layout(
        page,
        html! {
            h1 { "Rollouts" }
            form.filters method="get" action="/" role="search" {
                label { "Namespace "
                    select name="ns" {
                        option value="" { "all" }
                        @for ns in namespaces {
                            option value=(ns) selected[filter.ns.as_deref() == Some(ns.as_str())] { (ns) }
                        }
                    }
                }
                label { "Phase "
                    select name="phase" {
                        option value="" { "any" }
                        @for p in ["Progressing", "Paused", "Healthy", "Degraded"] {
                            option value=(p) selected[filter.phase.as_deref() == Some(p)] { (p) }
                        }
                    }
                }
                label { "Name "
                    input type="search" name="q" value=(filter.q.clone().unwrap_or_default()) placeholder="contains…";
                }
                button type="submit" { "Filter" }
            }
            div #live data-stream=(stream) { (live) }
        },
    )
}

/// A canary step in words, as the dashboard and `kubectl sluice get rollout` show it.
pub fn describe_step(step: &CanaryStep) -> String {
    if let Some(w) = step.set_weight {
        return format!("Set weight {w}%");
    }
    if let Some(p) = &step.pause {
        return match &p.duration {
            Some(d) => format!("Pause {}", duration_text(d)),
            None => "Pause until promoted".into(),
        };
    }
    if let Some(s) = &step.set_canary_scale {
        return match (s.replicas, s.weight, s.match_traffic_weight) {
            (Some(n), _, _) => format!("Canary scale: {n} replicas"),
            (_, Some(w), _) => format!("Canary scale: {w}% of replicas"),
            _ => "Canary scale: match traffic weight".into(),
        };
    }
    if let Some(a) = &step.analysis {
        let names: Vec<&str> = a
            .templates
            .iter()
            .map(|t| t.template_name.as_str())
            .collect();
        return format!("Analysis: {}", names.join(", "));
    }
    "Step".into()
}

fn duration_text(d: &sluice_api::HumanDuration) -> String {
    match d {
        sluice_api::HumanDuration::Seconds(s) => format!("{s}s"),
        sluice_api::HumanDuration::Text(t) => t.clone(),
    }
}

/// How a past revision ended, from the Events that are still kept (the apiserver drops
/// them after an hour) and, failing those, from where it stands.
fn how_it_ended(r: &Rollout, rs: &ReplicaSet, events: &[Arc<Event>]) -> String {
    let hash = hash_of(rs);
    let status = r.status.clone().unwrap_or_default();
    if status.current_pod_hash.as_deref() == Some(hash.as_str()) {
        return match role(r, rs) {
            "stable" => "current stable revision".into(),
            "aborted" => "aborted: traffic is back on the stable revision".into(),
            _ => format!("being rolled out (step {})", step_progress(r)),
        };
    }
    let about = |e: &&Arc<Event>| e.action.as_deref().is_some_and(|a| a.contains(&hash));
    if events
        .iter()
        .filter(about)
        .any(|e| e.reason.as_deref() == Some("RolloutAborted"))
    {
        return "aborted".into();
    }
    if events
        .iter()
        .filter(about)
        .any(|e| e.reason.as_deref() == Some("RolloutCompleted"))
    {
        return "completed, then replaced by a newer revision".into();
    }
    if status.stable_rs.as_deref() == Some(hash.as_str()) {
        return "stable, being replaced".into();
    }
    "replaced by a newer revision".into()
}

/// The detail page's live part.
pub fn detail_live(caches: &Caches, r: &Rollout, now: Timestamp) -> Markup {
    let status = r.status.clone().unwrap_or_default();
    let replica_sets = caches.replica_sets_of(r);
    let runs = caches.runs_of(r);
    let events = caches.events_of(r, &runs);
    let steps = step_labels(r);
    let timeline = if r.spec.strategy.blue_green.is_some() {
        "Stages"
    } else {
        "Steps"
    };
    let finished = status.phase == Some(RolloutPhase::Healthy)
        && status.stable_rs.is_some()
        && status.stable_rs == status.current_pod_hash;
    let current = status.current_step_index.unwrap_or(0).max(0) as usize;
    let weights = status.canary.as_ref().and_then(|c| c.weights.clone());
    html! {
        section.card aria-labelledby="h-summary" {
            h2 #h-summary { "Status" }
            dl.summary {
                dt { "Phase" } dd #phase { (phase_badge(status.phase)) @if let Some(m) = &status.message { " " span.message { (m) } } }
                dt { "Strategy" } dd { (strategy(r)) }
                dt { "Step" } dd #step { (step_progress(r)) }
                dt { "Replicas" } dd { (status.ready_replicas) " ready, " (status.available_replicas) " available, " (status.updated_replicas) " updated of " (r.spec.replicas) " desired" }
                dt { "Revision" } dd { code { (status.current_pod_hash.clone().unwrap_or_else(|| "—".into())) } " (stable: " code { (status.stable_rs.clone().unwrap_or_else(|| "—".into())) } ")" }
                @if !status.pause_conditions.is_empty() {
                    dt { "Paused" } dd {
                        @for p in &status.pause_conditions { (format!("{:?}", p.reason)) @if let Some(g) = &p.gate { " " code { (g) } } " for " (age(now, Some(p.start_time.0))) " " }
                    }
                }
                @if !status.gates.is_empty() {
                    dt { "Gates" } dd #gates {
                        ul {
                            @for g in &status.gates {
                                li {
                                    code { (g.name) } " " (format!("{:?}", g.phase)) " at " (g.point.as_str())
                                    @if let Some(s) = g.step { " step " (s + 1) }
                                    @if let Some(m) = &g.message { ": " span.message { (m) } }
                                }
                            }
                        }
                    }
                }
                @if let Some(bg) = &status.blue_green {
                    dt { "Active" } dd { code { (bg.active_selector.clone().unwrap_or_else(|| "—".into())) } }
                    dt { "Preview" } dd { code { (bg.preview_selector.clone().unwrap_or_else(|| "—".into())) } }
                }
                @if r.spec.paused { dt { "Held" } dd { "spec.paused is true: resume to continue" } }
                @if status.abort { dt { "Aborted" } dd { "yes" @if let Some(t) = &status.aborted_at { ", " (age(now, Some(t.0))) " ago" } } }
            }
        }
        @if !steps.is_empty() {
            section.card aria-labelledby="h-steps" {
                h2 #h-steps { (timeline) }
                ol.steps {
                    @for (i, label) in steps.iter().enumerate() {
                        @let state = if finished || i < current { "done" } else if i == current { "current" } else { "pending" };
                        li class=(state) aria-current=[(state == "current").then_some("step")] data-step=(i) {
                            span.step-n { (i + 1) }
                            span.step-text { (label) }
                            @if state == "current" { span.step-state { " (current)" } }
                        }
                    }
                }
            }
        }
        @if let Some(w) = &weights {
            section.card aria-labelledby="h-traffic" {
                h2 #h-traffic { "Traffic" }
                @let canary_w = w.canary.clamp(0, 100);
                svg.traffic viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label=(format!("canary {}%, stable {}%", w.canary, w.stable)) {
                    rect.stable x="0" y="0" width="100" height="8" {}
                    rect.canary x="0" y="0" width=(canary_w) height="8" {}
                }
                p #weights { "Canary " strong { (w.canary) "%" } ", stable " strong { (w.stable) "%" } " — "
                    @match w.verified {
                        Some(true) => "verified at the router",
                        Some(false) => "not yet verified at the router",
                        None => "set by replica counts",
                    }
                }
            }
        }
        section.card aria-labelledby="h-rs" {
            h2 #h-rs { "ReplicaSets" }
            @if replica_sets.is_empty() { p.empty { "None yet." } } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Revision" } th scope="col" { "Hash" } th scope="col" { "Role" } th scope="col" { "Images" } th scope="col" { "Ready / desired" } th scope="col" { "Pods" } } }
                    tbody {
                        @for rs in replica_sets.iter().filter(|rs| rs_counts(rs).0 > 0 || role(r, rs) != "old") {
                            @let (desired, ready, available) = rs_counts(rs);
                            tr {
                                th scope="row" { (revision(rs)) }
                                td { code { (hash_of(rs)) } }
                                td { (role(r, rs)) }
                                td { (images(rs).join(", ")) }
                                td { (ready) " / " (desired) " (" (available) " available)" }
                                td { (pod_dots(desired, ready)) }
                            }
                        }
                    }
                } }
            }
        }
        @if !runs.is_empty() {
            section.card aria-labelledby="h-analysis" {
                h2 #h-analysis { "Analysis" }
                @for run in runs.iter().take(5) { (analysis_run(run, now)) }
            }
        }
        section.card aria-labelledby="h-conditions" {
            h2 #h-conditions { "Conditions" }
            @if status.conditions.is_empty() { p.empty { "None yet." } } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Type" } th scope="col" { "Status" } th scope="col" { "Reason" } th scope="col" { "Message" } th scope="col" { "Since" } } }
                    tbody { @for c in &status.conditions { tr {
                        th scope="row" { (c.type_) } td { (c.status) } td { (c.reason) } td { (c.message) } td { (age(now, Some(c.last_transition_time.0))) }
                    } } }
                } }
            }
        }
        section.card aria-labelledby="h-events" {
            h2 #h-events { "Recent events" }
            @if events.is_empty() { p.empty { "None kept (the API server keeps Events for an hour)." } } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Age" } th scope="col" { "Type" } th scope="col" { "Reason" } th scope="col" { "Object" } th scope="col" { "Message" } } }
                    tbody { @for e in events.iter().take(20) { tr.warning[e.type_.as_deref() == Some("Warning")] {
                        td { (age(now, event_time(e))) }
                        td { (e.type_.clone().unwrap_or_default()) }
                        td { (e.reason.clone().unwrap_or_default()) }
                        td { (e.involved_object.kind.clone().unwrap_or_default()) " " (e.involved_object.name.clone().unwrap_or_default()) }
                        td { (e.message.clone().unwrap_or_default()) }
                    } } }
                } }
            }
        }
        section.card aria-labelledby="h-history" {
            h2 #h-history { "Revisions" }
            @if replica_sets.is_empty() { p.empty { "None yet." } } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "Revision" } th scope="col" { "Hash" } th scope="col" { "Images" } th scope="col" { "Created" } th scope="col" { "How it ended" } } }
                    tbody { @for rs in &replica_sets { tr {
                        th scope="row" { (revision(rs)) }
                        td { code { (hash_of(rs)) } }
                        td { (images(rs).join(", ")) }
                        td { (age(now, rs.metadata.creation_timestamp.as_ref().map(|t| t.0))) " ago" }
                        td { (how_it_ended(r, rs, &events)) }
                    } } }
                } }
            }
        }
    }
}

fn analysis_run(run: &AnalysisRun, now: Timestamp) -> Markup {
    let status = run.status.clone().unwrap_or_default();
    let role = run.labels().get(ANALYSIS_ROLE_LABEL).cloned();
    html! {
        article.run {
            h3 { (run.name_any()) " " (run_badge(status.phase)) }
            p.meta {
                @if let Some(role) = role { "Role: " (role) ". " }
                @match &status.started_at {
                    Some(t) => { "Started " (age(now, Some(t.0))) " ago" }
                    None => { "Not started yet" }
                }
                @if let Some(done) = &status.completed_at { ", finished " (age(now, Some(done.0))) " ago" }
                "."
                @if let Some(m) = &status.message { " " (m) }
            }
            @for result in &status.metric_results {
                @let spec = run.spec.analysis.metrics.iter().find(|m| m.name == result.name);
                @let thresholds = spec.map(chart::thresholds).unwrap_or_default();
                div.metric {
                    h4 { (result.name) " " (run_badge(Some(result.phase)))
                        @if result.dry_run { " " span.badge { "dry run" } }
                    }
                    p.meta {
                        (result.successful) " successful, " (result.failed) " failed, " (result.inconclusive) " inconclusive, " (result.error) " errors"
                        @if let Some(spec) = spec {
                            @if let Some(c) = &spec.success_condition { "; success when " code { (c) } }
                            @if let Some(c) = &spec.failure_condition { "; failure when " code { (c) } }
                        }
                    }
                    @if let Some(sequential) = spec.and_then(|m| m.provider.sequential.as_ref()) {
                        (chart::evidence_chart(&result.name, &result.measurements, sequential.alpha))
                    } @else {
                        (chart::metric_chart(&result.name, &result.measurements, &thresholds))
                    }
                    details data-key=(format!("{}/{}", run.name_any(), result.name)) {
                        summary { "Measurements" }
                        div.scroll { table {
                            thead { tr { th scope="col" { "Finished" } th scope="col" { "Phase" } th scope="col" { "Value" } th scope="col" { "Message" } } }
                            tbody { @for m in result.measurements.iter().rev() { tr {
                                td { (m.finished_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default()) }
                                td { (format!("{:?}", m.phase)) }
                                td { (m.value.clone().unwrap_or_default()) }
                                td { (m.message.clone().unwrap_or_default()) }
                            } } }
                        } }
                    }
                }
            }
        }
    }
}

/// What the action buttons can do for this viewer.
pub enum ActionsState {
    /// Shown and usable, with the session's CSRF token, and the revisions the viewer may
    /// roll back to (empty when they may not change the spec, or there are none).
    Allowed { csrf: String, undo: Vec<UndoChoice> },
    /// Not shown, with the reason.
    Hidden(String),
}

/// A previous revision offered for undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoChoice {
    pub revision: i64,
    /// E.g. `revision 3 (stable): app=registry/web:v1`.
    pub label: String,
}

/// The revisions a Rollout can be rolled back to from the dashboard, newest first: every
/// revision it still has a ReplicaSet of, but its current template's. None for a
/// workloadRef Rollout, whose template is the Deployment's (undo refuses it).
pub fn undo_choices<'a>(
    r: &Rollout,
    replica_sets: impl IntoIterator<Item = &'a ReplicaSet>,
) -> Vec<UndoChoice> {
    if r.spec.workload_ref.is_some() {
        return Vec::new();
    }
    let current = pod_template_hash(&r.spec.template);
    let stable = r.status.as_ref().and_then(|s| s.stable_rs.clone());
    let mut choices: Vec<UndoChoice> = revisions(r, replica_sets)
        .into_iter()
        .filter(|rev| rev.hash != current)
        .map(|rev| {
            let images: Vec<String> = rev
                .template
                .spec
                .iter()
                .flat_map(|p| &p.containers)
                .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or("?")))
                .collect();
            let role = if stable.as_deref() == Some(rev.hash.as_str()) {
                " (stable)"
            } else {
                ""
            };
            UndoChoice {
                revision: rev.number,
                label: format!("revision {}{role}: {}", rev.number, images.join(", ")),
            }
        })
        .collect();
    choices.reverse();
    choices
}

/// Buttons for the seven actions, and the undo form. Outside the live part, so that
/// keyboard focus stays put while the page updates.
fn action_forms(ns: &str, name: &str, state: &ActionsState) -> Markup {
    let actions = [
        (
            UserAction::Promote,
            "Promote",
            "Continue past the current pause, or skip the current step",
            None,
        ),
        (
            UserAction::PromoteFull,
            "Promote fully",
            "Skip every remaining step and analysis",
            Some("Skip every remaining step and analysis?"),
        ),
        (
            UserAction::Pause,
            "Pause",
            "Hold the rollout where it is (spec.paused)",
            None,
        ),
        (UserAction::Resume, "Resume", "Undo pause", None),
        (
            UserAction::Abort,
            "Abort",
            "Send all traffic back to stable and scale the new revision down",
            Some("Abort: send all traffic back to the stable revision?"),
        ),
        (
            UserAction::Retry,
            "Retry",
            "Resume an aborted rollout at the step it was on",
            None,
        ),
        (
            UserAction::Restart,
            "Restart",
            "Replace every pod, one at a time within maxUnavailable (spec.restartAt)",
            Some("Restart: replace every pod of this rollout, one at a time?"),
        ),
    ];
    match state {
        ActionsState::Hidden(why) => html! { p.note #actions { (why) } },
        ActionsState::Allowed { csrf, undo } => html! {
            div.actions #actions role="group" aria-label="Actions" {
                @for (action, label, help, confirm) in actions {
                    form.inline method="post" action=(format!("/rollouts/{ns}/{name}/actions/{}", action_word(action))) data-action=(action_word(action)) data-confirm=[confirm] {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" title=(help) .danger[action == UserAction::Abort] { (label) }
                    }
                }
                @if !undo.is_empty() {
                    form.inline method="post" action=(format!("/rollouts/{ns}/{name}/actions/undo")) data-action="undo" data-confirm="Roll back: put the chosen revision's template back in spec.template? A GitOps tool puts Git's template back unless Git changes too." {
                        input type="hidden" name="csrf" value=(csrf);
                        label for="undo-revision" { "Roll back to " }
                        select #undo-revision name="revision" {
                            @for choice in undo {
                                option value=(choice.revision) { (choice.label) }
                            }
                        }
                        " "
                        button type="submit" title="Put this revision's template back in spec.template (kubectl sluice undo)" { "Roll back" }
                    }
                }
            }
        },
    }
}

pub fn detail_page(page: Page<'_>, r: &Rollout, actions: &ActionsState, live: Markup) -> Markup {
    let ns = r.namespace().unwrap_or_default();
    let name = r.name_any();
    layout(
        page,
        html! {
            nav aria-label="Breadcrumb" { a href="/" { "Rollouts" } " / " (ns) " / " }
            h1 { (name) }
            (action_forms(&ns, &name, actions))
            div #live data-stream=(format!("/sse/rollouts/{ns}/{name}")) { (live) }
        },
    )
}
