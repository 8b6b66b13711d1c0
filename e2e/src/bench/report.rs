//! The figures of a run (a `Row`, also written as JSON) and how they are printed: one
//! controller alone, or two side by side with their ratio.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::audit::Tally;
use super::workload::{Controller, Step};

/// A sample summarised: count, p50, p99 (nearest rank), min, max, mean.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Durations {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl Durations {
    pub fn of(values: impl Iterator<Item = f64>) -> Durations {
        let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Durations::default();
        }
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Durations {
            count: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            min: v[0],
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseReport {
    pub name: String,
    /// Length of the phase's window (for create and update: until all Healthy, plus the
    /// settle time).
    pub seconds: f64,
    /// From the phase's start (first request sent) to the last Rollout seen Healthy.
    pub all_healthy_s: Option<f64>,
    /// Per Rollout: from its create/update request to it being seen Healthy.
    pub per_rollout_s: Option<Durations>,
    pub cpu_s: f64,
    pub requests: Tally,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub controller: Controller,
    pub label: String,
    pub n: usize,
    pub replicas: i32,
    pub steps: Vec<Step>,
    pub idle_s: u64,
    pub settle_s: u64,
    pub peak_rss_mib: f64,
    pub steady_rss_mib: f64,
    pub cpu_total_s: f64,
    /// startup, create, update, idle.
    pub phases: Vec<PhaseReport>,
    /// Update phase: per pause step, from the pause's end as the controller times it (the
    /// startTime it recorded in the pause condition + the duration) to the harness first
    /// seeing the Rollout past that step.
    pub step_latency_s: Durations,
    /// The same, from the harness first seeing the pause + the duration (watch lag on
    /// both ends, no whole-second rounding).
    pub step_latency_from_seen_s: Durations,
    /// Pause steps whose start or end the watch did not see.
    pub step_latency_missing: usize,
    /// The machine's 1-minute load average, sampled every 500 ms during the run.
    pub load1: Durations,
    /// Requests of any other audited client during the run's windows (must be 0).
    pub foreign_requests: u64,
    pub started_at: String,
    pub controller_log: String,
}

impl Row {
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == name)
    }
}

fn steps_text(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| match s {
            Step::SetWeight(w) => format!("setWeight {w}"),
            Step::Pause(d) => format!("pause {}s", d.as_secs()),
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The headline figures, in a fixed order, as (name, value, "lower is better").
fn figures(r: &Row) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut push = |name: &str, v: f64| out.push((name.to_string(), v));
    for phase in ["create", "update"] {
        let Some(p) = r.phase(phase) else { continue };
        let q = &p.requests;
        push(
            &format!("{phase}: all Healthy after (s)"),
            p.all_healthy_s.unwrap_or(0.0),
        );
        if let Some(d) = &p.per_rollout_s {
            push(&format!("{phase}: per-rollout p50 (s)"), d.p50);
            push(&format!("{phase}: per-rollout p99 (s)"), d.p99);
        }
        push(&format!("{phase}: requests"), q.total() as f64);
        push(&format!("{phase}: writes"), q.writes() as f64);
        push(
            &format!("{phase}:   of which lease writes"),
            q.lease_writes() as f64,
        );
        push(&format!("{phase}:   conflicts (409)"), q.conflicts() as f64);
        push(
            &format!("{phase}:   conflicts / writes (%)"),
            100.0 * q.conflicts() as f64 / q.writes().max(1) as f64,
        );
        push(
            &format!("{phase}: reads (get+list+watch)"),
            q.reads() as f64,
        );
        push(&format!("{phase}:   get"), q.verb("get") as f64);
        push(&format!("{phase}:   list"), q.verb("list") as f64);
        push(&format!("{phase}:   watch"), q.verb("watch") as f64);
        push(&format!("{phase}: throttled (429)"), q.throttled() as f64);
        push(
            &format!("{phase}: writes per Rollout"),
            q.writes() as f64 / r.n.max(1) as f64,
        );
        push(&format!("{phase}: CPU (s)"), p.cpu_s);
    }
    if let Some(p) = r.phase("idle") {
        push("idle: writes", p.requests.writes() as f64);
        push(
            "idle:   of which lease writes",
            p.requests.lease_writes() as f64,
        );
        push("idle: reads", p.requests.reads() as f64);
        push("idle: CPU (s)", p.cpu_s);
    }
    push("step latency p50 (s)", r.step_latency_s.p50);
    push("step latency p99 (s)", r.step_latency_s.p99);
    push("step latency max (s)", r.step_latency_s.max);
    push(
        "step latency from pause seen p50 (s)",
        r.step_latency_from_seen_s.p50,
    );
    push(
        "step latency from pause seen p99 (s)",
        r.step_latency_from_seen_s.p99,
    );
    push("peak RSS (MiB)", r.peak_rss_mib);
    push("steady RSS (MiB)", r.steady_rss_mib);
    push("CPU total (s)", r.cpu_total_s);
    out
}

fn fmt_value(v: f64) -> String {
    if (v.fract() == 0.0 && v.abs() < 1e12) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn header(r: &Row) -> String {
    format!(
        "{} Rollouts x {} replica(s), steps {}, settle {}s, idle {}s; load1 during the run: \
         min {:.2} / mean {:.2} / max {:.2} (2-core figures are only comparable at similar load)",
        r.n,
        r.replicas,
        steps_text(&r.steps),
        r.settle_s,
        r.idle_s,
        r.load1.min,
        r.load1.mean,
        r.load1.max
    )
}

/// Requests by verb, resource and code, per phase, largest first.
pub fn request_table(r: &Row, top: usize) -> String {
    let mut out = String::new();
    for p in &r.phases {
        let mut rows: Vec<_> = p.requests.by_kind.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let _ = writeln!(
            out,
            "  {} phase ({:.0}s): {} requests, {} writes, {} reads",
            p.name,
            p.seconds,
            p.requests.total(),
            p.requests.writes(),
            p.requests.reads()
        );
        for (k, n) in rows.iter().take(top) {
            let _ = writeln!(
                out,
                "    {:>8}  {:<7} {:<40} {}",
                n, k.verb, k.resource, k.code
            );
        }
        if rows.len() > top {
            let _ = writeln!(out, "    ... {} more kinds", rows.len() - top);
        }
    }
    out
}

pub fn print_row(r: &Row) {
    println!("== {} ({}) ==", r.controller.name(), r.label);
    println!("{}", header(r));
    for (name, v) in figures(r) {
        println!("  {name:<42} {:>10}", fmt_value(v));
    }
    println!(
        "  step latency samples: {} ({} pause steps not observed)",
        r.step_latency_s.count, r.step_latency_missing
    );
    println!(
        "  other audited clients during the run: {} requests",
        r.foreign_requests
    );
    println!(
        "requests of {} by verb / resource / code:",
        r.controller.name()
    );
    print!("{}", request_table(r, 20));
}

/// Two rows side by side with a/b ratios.
pub fn print_compare(a: &Row, b: &Row) {
    println!(
        "== {} vs {} ({} / {}) ==",
        a.controller.name(),
        b.controller.name(),
        a.label,
        b.label
    );
    println!("{}: {}", a.controller.name(), header(a));
    println!("{}: {}", b.controller.name(), header(b));
    println!(
        "  {:<42} {:>12} {:>12} {:>9}",
        "",
        a.controller.name(),
        b.controller.name(),
        "ratio"
    );
    let fb = figures(b);
    for (name, va) in figures(a) {
        let Some((_, vb)) = fb.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let ratio = if *vb != 0.0 {
            format!("{:.2}", va / vb)
        } else {
            "-".into()
        };
        println!(
            "  {name:<42} {:>12} {:>12} {:>9}",
            fmt_value(va),
            fmt_value(*vb),
            ratio
        );
    }
}
