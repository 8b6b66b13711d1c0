//! What `kubectl sluice get rollout` and `list rollouts` print: pure functions from the
//! objects read (and the time, for ages) to lines, so a table of cases pins them.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use sluice_api::analysis::{AnalysisPhase, AnalysisRun};
use sluice_api::labels::{
    BASELINE_ROLE, POD_ROLE_LABEL, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION,
};
use sluice_api::rollout::{Rollout, RolloutPhase, StrategyKind};

/// A Rollout and what it owns, as read from the cluster.
#[derive(Debug, Clone)]
pub struct RolloutTree {
    pub rollout: Rollout,
    /// Its ReplicaSets (`sluice.dev/rollout=NAME`), baseline included.
    pub replica_sets: Vec<ReplicaSet>,
    /// Pods matching its selector; each is shown under the ReplicaSet that owns it.
    pub pods: Vec<Pod>,
    /// Its AnalysisRuns (`sluice.dev/rollout=NAME`).
    pub runs: Vec<AnalysisRun>,
}

/// How long ago, the way kubectl prints ages: `45s`, `3m12s`, `25m`, `4h10m`, `3d5h`, `12d`.
pub fn age(since: Option<&Time>, now: Timestamp) -> String {
    let Some(since) = since else {
        return "-".into();
    };
    let secs = now.duration_since(since.0).as_secs().max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{h}h{}m", m % 60),
        s if s < 2 * 86_400 => format!("{h}h"),
        s if s < 8 * 86_400 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

fn strategy(r: &Rollout) -> StrategyKind {
    match r.status.as_ref().and_then(|s| s.strategy) {
        Some(kind) => kind,
        None if r.spec.strategy.blue_green.is_some() => StrategyKind::BlueGreen,
        None => StrategyKind::Canary,
    }
}

fn strategy_name(kind: StrategyKind) -> &'static str {
    match kind {
        StrategyKind::Canary => "Canary",
        StrategyKind::BlueGreen => "BlueGreen",
    }
}

/// The phase with the symbol Argo Rollouts' plugin uses for it.
fn phase_text(r: &Rollout) -> String {
    let status = r.status.clone().unwrap_or_default();
    let phase = match status.phase {
        Some(p) => p,
        None => return "◌ Pending".into(),
    };
    let text = match phase {
        RolloutPhase::Healthy => "✔ Healthy",
        RolloutPhase::Paused => "॥ Paused",
        RolloutPhase::Progressing => "◌ Progressing",
        RolloutPhase::Degraded if status.abort => "✖ Degraded (aborted)",
        RolloutPhase::Degraded => "✖ Degraded",
    };
    text.into()
}

/// The canary weight the current step asks for: the last `setWeight` at or before it,
/// 100 once every step is done.
fn set_weight(r: &Rollout) -> Option<i32> {
    let canary = r.spec.strategy.canary.as_ref()?;
    let index = r.status.as_ref()?.current_step_index?.max(0) as usize;
    if index >= canary.steps.len() {
        return Some(100);
    }
    Some(
        canary.steps[..=index]
            .iter()
            .rev()
            .find_map(|s| s.set_weight)
            .unwrap_or(0),
    )
}

fn hash(rs: &ReplicaSet) -> &str {
    rs.labels()
        .get(POD_TEMPLATE_HASH_LABEL)
        .map_or("", String::as_str)
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What a ReplicaSet is to the rollout now: `stable`, `canary`, `baseline`, `active`,
/// `preview` (several for one ReplicaSet, e.g. a blue-green's `stable,active`).
fn roles(r: &Rollout, rs: &ReplicaSet) -> Vec<&'static str> {
    if rs.labels().get(POD_ROLE_LABEL).map(String::as_str) == Some(BASELINE_ROLE) {
        return vec!["baseline"];
    }
    let status = r.status.clone().unwrap_or_default();
    let h = Some(hash(rs));
    let mut roles = Vec::new();
    if status.stable_rs.as_deref() == h {
        roles.push("stable");
    }
    match strategy(r) {
        StrategyKind::Canary => {
            if status.current_pod_hash.as_deref() == h && status.stable_rs.as_deref() != h {
                roles.push(if status.abort {
                    "canary (aborted)"
                } else {
                    "canary"
                });
            }
        }
        StrategyKind::BlueGreen => {
            let bg = status.blue_green.unwrap_or_default();
            if bg.active_selector.as_deref() == h {
                roles.push("active");
            }
            if bg.preview_selector.as_deref() == h {
                roles.push("preview");
            }
        }
    }
    roles
}

fn images(rs: &ReplicaSet) -> Vec<String> {
    rs.spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .map(|s| {
            s.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn pod_ready(p: &Pod) -> (usize, usize) {
    let statuses = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let total = p
        .spec
        .as_ref()
        .map_or(statuses.len(), |s| s.containers.len());
    (statuses.iter().filter(|c| c.ready).count(), total)
}

fn pod_is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_status(p: &Pod) -> String {
    if p.metadata.deletion_timestamp.is_some() {
        return "◌ Terminating".into();
    }
    let phase = p
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    match phase.as_str() {
        "Running" if pod_is_ready(p) => "✔ Running".into(),
        "Running" => "◌ Running (not ready)".into(),
        "Succeeded" => "✔ Succeeded".into(),
        "Failed" => "✖ Failed".into(),
        other => format!("◌ {other}"),
    }
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

fn analysis_phase(phase: Option<AnalysisPhase>) -> String {
    match phase {
        None => "◌ Pending".into(),
        Some(p) => {
            let symbol = match p {
                AnalysisPhase::Successful => "✔",
                AnalysisPhase::Failed | AnalysisPhase::Error => "✖",
                AnalysisPhase::Inconclusive => "⚠",
                AnalysisPhase::Pending | AnalysisPhase::Running => "◌",
            };
            format!("{symbol} {p:?}")
        }
    }
}

/// One row of the tree: its indentation and branch, then columns.
struct Row {
    prefix: String,
    name: String,
    kind: &'static str,
    status: String,
    age: String,
    info: String,
}

/// How many of the newest measurements of a metric the tree shows.
const MEASUREMENTS_SHOWN: usize = 3;

/// The whole `get rollout` view: a summary, the steps, then the tree of revisions.
pub fn render_tree(t: &RolloutTree, now: Timestamp) -> Vec<String> {
    let r = &t.rollout;
    let status = r.status.clone().unwrap_or_default();
    let kind = strategy(r);
    let mut lines = Vec::new();
    let field = |k: &str, v: &str| {
        let key = if k.is_empty() {
            String::new()
        } else {
            format!("{k}:")
        };
        format!("{key:<16}{v}")
    };
    lines.push(field("Name", &r.name_any()));
    lines.push(field("Namespace", &r.namespace().unwrap_or_default()));
    lines.push(field("Status", &phase_text(r)));
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        lines.push(field("Message", m));
    }
    lines.push(field("Strategy", strategy_name(kind)));
    let labels = sluice_dashboard::views::step_labels(r);
    let progress = sluice_dashboard::views::step_progress(r);
    lines.push(field("  Step", &progress));
    if kind == StrategyKind::Canary {
        if let Some(w) = set_weight(r) {
            lines.push(field("  SetWeight", &w.to_string()));
        }
        if let Some(w) = status.canary.as_ref().and_then(|c| c.weights.as_ref()) {
            let confirmed = match w.verified {
                Some(true) => " (verified: the router shows it)",
                Some(false) => " (not yet verified by the router)",
                None => "",
            };
            lines.push(field("  ActualWeight", &format!("{}{confirmed}", w.canary)));
        }
    }
    if !labels.is_empty() {
        lines.push("Steps:".into());
        let current = status.current_step_index.map(|i| i.max(0) as usize);
        for (i, label) in labels.iter().enumerate() {
            let mark = match current {
                Some(c) if i < c => "✔",
                Some(c) if i == c => "▶",
                _ => " ",
            };
            lines.push(format!("  {mark} {:>2}. {label}", i + 1));
        }
    }
    // The gates called for this revision, as `status.gates` records them.
    if !status.gates.is_empty() {
        lines.push("Gates:".into());
        for g in &status.gates {
            let step = g
                .step
                .map(|s| format!(" step {}", s + 1))
                .unwrap_or_default();
            let message = g
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            lines.push(format!(
                "  {:<14}{} at {}{step} for {}{message}",
                g.name,
                match g.phase {
                    sluice_api::gate::GatePhase::Pending => "Pending",
                    sluice_api::gate::GatePhase::Passed => "Passed",
                    sluice_api::gate::GatePhase::Failed => "Failed",
                },
                g.point.as_str(),
                age(
                    Some(&g.started_at),
                    g.finished_at.as_ref().map_or(now, |t| t.0)
                ),
            ));
        }
    }
    // Images of the ReplicaSets that have a role, newest revision first.
    let mut sets: Vec<&ReplicaSet> = t.replica_sets.iter().collect();
    sets.sort_by_key(|rs| std::cmp::Reverse((revision(rs), rs.name_any())));
    let mut image_lines = Vec::new();
    for rs in &sets {
        let roles = roles(r, rs);
        if roles.is_empty() {
            continue;
        }
        for image in images(rs) {
            image_lines.push(format!("{image} ({})", roles.join(", ")));
        }
    }
    for (i, line) in image_lines.iter().enumerate() {
        lines.push(field(if i == 0 { "Images" } else { "" }, line));
    }
    lines.push("Replicas:".into());
    lines.push(field("  Desired", &r.spec.replicas.to_string()));
    lines.push(field("  Current", &status.replicas.to_string()));
    lines.push(field("  Updated", &status.updated_replicas.to_string()));
    lines.push(field("  Ready", &status.ready_replicas.to_string()));
    lines.push(field("  Available", &status.available_replicas.to_string()));
    lines.push(String::new());

    let mut rows = vec![Row {
        prefix: "⟳ ".into(),
        name: r.name_any(),
        kind: "Rollout",
        status: phase_text(r),
        age: age(r.metadata.creation_timestamp.as_ref(), now),
        info: String::new(),
    }];
    // Revisions, newest first; each gets its ReplicaSets (with their pods) and its runs.
    let mut revisions: Vec<i64> = sets.iter().map(|rs| revision(rs)).collect();
    revisions.dedup();
    for (ri, rev) in revisions.iter().enumerate() {
        let last_rev = ri + 1 == revisions.len();
        let (branch, stem) = if last_rev {
            ("└──", "   ")
        } else {
            ("├──", "│  ")
        };
        rows.push(Row {
            prefix: format!("{branch}# "),
            name: format!("revision:{rev}"),
            kind: "",
            status: String::new(),
            age: String::new(),
            info: String::new(),
        });
        let in_rev: Vec<&&ReplicaSet> = sets.iter().filter(|rs| revision(rs) == *rev).collect();
        let hashes: Vec<&str> = in_rev.iter().map(|rs| hash(rs)).collect();
        let rollout_name = r.name_any();
        let mut runs: Vec<&AnalysisRun> = t
            .runs
            .iter()
            .filter(|run| {
                let n = run.name_any();
                hashes
                    .iter()
                    .any(|h| !h.is_empty() && n.starts_with(&format!("{rollout_name}-{h}-")))
            })
            .collect();
        runs.sort_by_key(|run| (run.metadata.creation_timestamp.clone(), run.name_any()));
        let children = in_rev.len() + runs.len();
        let mut child = 0;
        for rs in in_rev {
            child += 1;
            let last = child == children;
            let (b, s) = if last {
                ("└──", "   ")
            } else {
                ("├──", "│  ")
            };
            let desired = rs.spec.replicas.unwrap_or(0);
            let rs_status = rs.status.clone().unwrap_or_default();
            let ready = rs_status.ready_replicas.unwrap_or(0);
            let state = if desired == 0 && rs_status.replicas == 0 {
                "• ScaledDown"
            } else if ready == desired && rs_status.replicas == desired {
                "✔ Healthy"
            } else {
                "◌ Progressing"
            };
            let roles = roles(r, rs).join(",");
            let info: Vec<String> = [roles, format!("ready:{ready}/{desired}")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            rows.push(Row {
                prefix: format!("{stem}{b}⧉ "),
                name: rs.name_any(),
                kind: "ReplicaSet",
                status: state.into(),
                age: age(rs.metadata.creation_timestamp.as_ref(), now),
                info: info.join("  "),
            });
            let uid = rs.uid();
            let mut pods: Vec<&Pod> = t
                .pods
                .iter()
                .filter(|p| {
                    p.owner_references()
                        .iter()
                        .any(|o| Some(&o.uid) == uid.as_ref())
                })
                .collect();
            pods.sort_by_key(|p| p.name_any());
            for (pi, p) in pods.iter().enumerate() {
                let pb = if pi + 1 == pods.len() {
                    "└──"
                } else {
                    "├──"
                };
                let (ready, total) = pod_ready(p);
                let mut info = format!("ready:{ready}/{total}");
                let n = restarts(p);
                if n > 0 {
                    info.push_str(&format!(",restarts:{n}"));
                }
                rows.push(Row {
                    prefix: format!("{stem}{s}{pb}□ "),
                    name: p.name_any(),
                    kind: "Pod",
                    status: pod_status(p),
                    age: age(p.metadata.creation_timestamp.as_ref(), now),
                    info,
                });
            }
        }
        for run in runs {
            child += 1;
            let last = child == children;
            let (b, s) = if last {
                ("└──", "   ")
            } else {
                ("├──", "│  ")
            };
            let run_status = run.status.clone().unwrap_or_default();
            let counts = run_status
                .metric_results
                .iter()
                .fold((0, 0), |(ok, bad), m| {
                    (ok + m.successful, bad + m.failed + m.error)
                });
            rows.push(Row {
                prefix: format!("{stem}{b}α "),
                name: run.name_any(),
                kind: "AnalysisRun",
                status: analysis_phase(run_status.phase),
                age: age(run.metadata.creation_timestamp.as_ref(), now),
                info: format!("✔ {} ✖ {}", counts.0, counts.1),
            });
            let metrics = &run_status.metric_results;
            for (mi, m) in metrics.iter().enumerate() {
                let mb = if mi + 1 == metrics.len() {
                    "└──"
                } else {
                    "├──"
                };
                let latest: Vec<String> = m
                    .measurements
                    .iter()
                    .rev()
                    .take(MEASUREMENTS_SHOWN)
                    .map(|x| x.value.clone().unwrap_or_else(|| format!("{:?}", x.phase)))
                    .collect();
                let message = m
                    .measurements
                    .last()
                    .and_then(|x| x.message.clone())
                    .filter(|msg| !msg.is_empty())
                    .map(|msg| format!("  ({msg})"))
                    .unwrap_or_default();
                rows.push(Row {
                    prefix: format!("{stem}{s}{mb}⊞ "),
                    name: m.name.clone(),
                    kind: "Metric",
                    status: analysis_phase(Some(m.phase)),
                    age: String::new(),
                    info: format!("latest: {}{message}", latest.join(", ")),
                });
            }
        }
    }
    let width = |row: &Row| row.prefix.chars().count() + row.name.chars().count();
    let name_width = rows.iter().map(width).max().unwrap_or(0).max(4);
    let status_width = rows
        .iter()
        .map(|row| row.status.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    lines.push(
        format!(
            "{:<name_width$}  {:<11}  {:<status_width$}  {:<6}  INFO",
            "NAME", "KIND", "STATUS", "AGE"
        )
        .trim_end()
        .to_string(),
    );
    for row in &rows {
        let pad = name_width - width(row);
        lines.push(
            format!(
                "{}{}{}  {:<11}  {}{}  {:<6}  {}",
                row.prefix,
                row.name,
                " ".repeat(pad),
                row.kind,
                row.status,
                " ".repeat(status_width - row.status.chars().count()),
                row.age,
                row.info
            )
            .trim_end()
            .to_string(),
        );
    }
    lines
}

/// `list rollouts`: one line per Rollout, sorted by namespace and name; with
/// `namespaces`, a NAMESPACE column first.
pub fn render_list(rollouts: &[Rollout], namespaces: bool, now: Timestamp) -> Vec<String> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = [
        "NAME",
        "STRATEGY",
        "STATUS",
        "STEP",
        "WEIGHT",
        "DESIRED",
        "READY",
        "AVAILABLE",
        "AGE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if namespaces {
        header.insert(0, "NAMESPACE".into());
    }
    let mut sorted: Vec<&Rollout> = rollouts.iter().collect();
    sorted.sort_by_key(|r| (r.namespace(), r.name_any()));
    for r in sorted {
        let status = r.status.clone().unwrap_or_default();
        let weight = status
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .map_or_else(|| "-".into(), |w| w.canary.to_string());
        let mut row = vec![
            r.name_any(),
            strategy_name(strategy(r)).into(),
            status
                .phase
                .map_or_else(|| "Pending".into(), |p| format!("{p:?}")),
            sluice_dashboard::views::step_progress(r).replace('—', "-"),
            weight,
            r.spec.replicas.to_string(),
            status.ready_replicas.to_string(),
            status.available_replicas.to_string(),
            age(r.metadata.creation_timestamp.as_ref(), now),
        ];
        if namespaces {
            row.insert(0, r.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(rows.iter())
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect()
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
