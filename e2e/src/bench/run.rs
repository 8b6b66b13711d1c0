//! One benchmark run of one controller: start it on its own client certificate, create N
//! Rollouts, wait until all are Healthy, update every template at once, wait again, stay
//! idle, stop it, and read its requests back from the audit log.
//!
//! The harness drives everything through the admin kubeconfig (never audited) and learns
//! what happens from one watch on Rollouts, so it never polls the apiserver on the
//! controller's behalf. Times are the harness's receive times of watch events.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::audit::{self, PhaseWindow, Who};
use super::process::ControllerUnderTest;
use super::report::{Durations, PhaseReport, Row};
use super::workload::{Controller, Seen, Step, rollout};

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub controller: Controller,
    /// The controller binary.
    pub bin: PathBuf,
    /// Extra arguments after the ones the harness passes (`--kubeconfig`, ports).
    pub controller_args: Vec<String>,
    /// Kubeconfig with the controller's own client certificate (`plane.sh client-kubeconfig`).
    pub controller_kubeconfig: PathBuf,
    /// The CN of that certificate: whose requests the audit log tallies.
    pub user: String,
    pub audit_log: PathBuf,
    /// Folder of CRD YAML files to install before the run.
    pub crds: PathBuf,
    pub n: usize,
    pub replicas: i32,
    pub steps: Vec<Step>,
    /// Seconds of rest after the update's settle, writes counted (the "idle" target).
    pub idle: u64,
    /// Seconds after all are Healthy before the next phase starts, so that trailing work
    /// (scale-downs, last status writes) is counted in the phase that caused it.
    pub settle: u64,
    /// Seconds of controller start-up before the first Rollout is created.
    pub warmup: u64,
    /// Limit for each wait-until-all-Healthy.
    pub timeout: Duration,
    /// Parallel requests of the harness when it creates or updates Rollouts.
    pub concurrency: usize,
    pub log_dir: PathBuf,
    /// Keep the namespace and its objects after the run.
    pub keep: bool,
    /// Free-form note recorded in the row (e.g. the git commit measured).
    pub label: String,
}

/// What the harness has seen of one Rollout, for the generation it waits on.
#[derive(Debug, Clone, Default)]
struct Track {
    /// The phase's first generation: the one created, or the one after the update.
    generation: i64,
    /// The highest generation seen so far.
    last_generation: i64,
    /// When the harness sent the create or the update.
    since: Option<Instant>,
    healthy_at: Option<Instant>,
    /// First time seen at step i with a pause condition.
    paused_at: Vec<Option<Instant>>,
    /// The pause condition's startTime at step i, as the controller recorded it.
    pause_start: Vec<Option<Timestamp>>,
    /// First time seen past step i.
    past: Vec<Option<Instant>>,
}

type Tracks = Arc<Mutex<HashMap<String, Track>>>;

fn observe(tracks: &Tracks, steps: usize, obj: &DynamicObject, now: Instant) {
    let Ok(value) = serde_json::to_value(obj) else {
        return;
    };
    let seen = Seen::of(&value);
    let mut tracks = tracks.lock().unwrap();
    let Some(t) = tracks.get_mut(&obj.name_any()) else {
        return;
    };
    t.last_generation = t.last_generation.max(seen.generation);
    if t.since.is_none() || !seen.is_current(t.generation) {
        return;
    }
    let healthy = seen.healthy(t.generation);
    // Healthy on the new revision means every step is done, whatever the index shows.
    let index = if healthy {
        steps as i64
    } else {
        seen.step_index.unwrap_or(0)
    };
    for i in 0..steps {
        if (i as i64) < index {
            t.past[i].get_or_insert(now);
        }
    }
    if seen.paused && (0..steps as i64).contains(&index) {
        t.paused_at[index as usize].get_or_insert(now);
        if let Some(start) = seen.pause_start {
            t.pause_start[index as usize].get_or_insert(start);
        }
    }
    if healthy {
        t.healthy_at.get_or_insert(now);
    }
}

fn percent_done(tracks: &Tracks) -> (usize, usize) {
    let t = tracks.lock().unwrap();
    (
        t.values().filter(|t| t.healthy_at.is_some()).count(),
        t.len(),
    )
}

async fn wait_all_healthy(
    what: &str,
    tracks: &Tracks,
    controller: &mut ControllerUnderTest,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let (done, n) = percent_done(tracks);
        if done == n {
            eprintln!(
                "bench: {what}: all {n} Healthy after {:.1}s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if !controller.running() {
            bail!(
                "{what}: the controller exited ({done}/{n} Healthy); its log ends:\n{}",
                controller.log_tail(30)
            );
        }
        if start.elapsed() > timeout {
            bail!("{what}: only {done}/{n} Healthy after {timeout:?}");
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "bench: {what}: {done}/{n} Healthy ({:.0}s)",
                start.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "sluice.dev/bench": "true" } },
    }))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the namespace and waits until it is gone, with everything in it.
pub async fn delete_namespace(client: &Client, name: &str, timeout: Duration) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let start = Instant::now();
    while api.get_opt(name).await?.is_some() {
        if start.elapsed() > timeout {
            bail!("namespace {name} still there after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Server-side applies every CRD in a folder (as admin) and waits until they are served.
async fn install_crds(client: &Client, dir: &std::path::Path) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let Ok(crd) = serde_yaml::from_str::<CustomResourceDefinition>(&text) else {
            continue; // kustomization.yaml and the like
        };
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        api.patch(
            &name,
            &PatchParams::apply(crate::FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying {}", file.display()))?;
        crate::wait_crd_established(client, &name).await?;
    }
    Ok(())
}

/// Sends one request per Rollout, `concurrency` at a time; records when each was sent.
async fn for_each_rollout<F, Fut>(names: &[String], concurrency: usize, f: F) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    stream::iter(names.iter().cloned().map(f))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// One run in a fresh namespace, deleted afterwards with everything in it (unless
/// `keep`), also when the run fails; the controller is stopped before.
pub async fn run(admin: Client, opts: Options) -> Result<Row> {
    install_crds(&admin, &opts.crds).await?;
    let stamp = Timestamp::now().as_second();
    let ns = format!("bench-{}-{stamp}", opts.controller.name());
    ensure_namespace(&admin, &ns).await?;
    let result = measure(&admin, &opts, &ns, stamp).await;
    if !opts.keep {
        eprintln!("bench: deleting namespace {ns}");
        if let Err(e) = delete_namespace(&admin, &ns, Duration::from_secs(900)).await {
            eprintln!("bench: {e:#}");
        }
    }
    result
}

async fn measure(admin: &Client, opts: &Options, ns: &str, stamp: i64) -> Result<Row> {
    let admin = admin.clone();
    let clock = Instant::now();
    let wall = |at: Instant| -> Timestamp {
        let ago = at.elapsed();
        Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap_or_default()
    };
    let resource = opts.controller.rollout_resource();
    let rollouts: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, &resource);

    // The harness's watch: admin identity, so it is never counted.
    let tracks: Tracks = Arc::default();
    let n_steps = opts.steps.len();
    let watch = {
        let tracks = tracks.clone();
        let api = rollouts.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .touched_objects()
                .boxed();
            while let Some(ev) = events.next().await {
                if let Ok(obj) = ev {
                    observe(&tracks, n_steps, &obj, Instant::now());
                }
            }
        })
    };

    // The controller: its own certificate; everything else at its defaults.
    let mut args = vec![
        "--kubeconfig".to_string(),
        opts.controller_kubeconfig.display().to_string(),
    ];
    let mut env = Vec::new();
    if opts.controller == Controller::ArgoRollouts {
        // Out of cluster it takes its namespace (leader-election Lease, notification
        // ConfigMap) from POD_NAMESPACE; the default ports 8090/8080 may be taken on a
        // shared machine, so ask for free ones.
        ensure_namespace(&admin, "argo-rollouts").await?;
        env.push(("POD_NAMESPACE".into(), "argo-rollouts".into()));
        args.extend(["--metricsPort".into(), free_port()?.to_string()]);
        args.extend(["--healthzPort".into(), free_port()?.to_string()]);
    }
    args.extend(opts.controller_args.iter().cloned());
    std::fs::create_dir_all(&opts.log_dir)?;
    let log = opts
        .log_dir
        .join(format!("bench-{}-{stamp}.log", opts.controller.name()));
    let mut follower = audit::WatchFollower::new(&opts.audit_log, &opts.user, "rollouts")?;
    let t_start = Instant::now();
    eprintln!(
        "bench: starting {} {} (log {})",
        opts.controller.name(),
        args.join(" "),
        log.display()
    );
    let mut controller = ControllerUnderTest::start(&opts.bin, &args, &env, log.clone(), clock)?;
    // Started: it watches Rollouts (after leader election, for Argo Rollouts); then
    // `warmup` more seconds for its first lists to settle.
    while !follower.seen()? {
        if !controller.running() {
            bail!(
                "the controller exited during start-up:\n{}",
                controller.log_tail(30)
            );
        }
        if t_start.elapsed() > Duration::from_secs(180) {
            bail!("the controller opened no watch on Rollouts within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "bench: the controller watches Rollouts after {:.1}s",
        t_start.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(opts.warmup)).await;
    if !controller.running() {
        bail!(
            "the controller exited during start-up:\n{}",
            controller.log_tail(30)
        );
    }

    // Create phase.
    let names: Vec<String> = (0..opts.n).map(|i| format!("r-{i:05}")).collect();
    {
        let mut t = tracks.lock().unwrap();
        for name in &names {
            t.insert(
                name.clone(),
                Track {
                    generation: 1,
                    paused_at: vec![None; n_steps],
                    pause_start: vec![None; n_steps],
                    past: vec![None; n_steps],
                    ..Track::default()
                },
            );
        }
    }
    let cpu_at_start = controller.sample_now(clock).map(|s| s.cpu_s).unwrap_or(0.0);
    let t_create = Instant::now();
    eprintln!("bench: creating {} Rollouts in {ns}", opts.n);
    for_each_rollout(&names, opts.concurrency, |name| {
        let api = rollouts.clone();
        let tracks = tracks.clone();
        let manifest = rollout(opts.controller, &name, opts.replicas, &opts.steps);
        async move {
            let obj: DynamicObject = serde_json::from_value(manifest)?;
            tracks.lock().unwrap().get_mut(&name).unwrap().since = Some(Instant::now());
            api.create(&PostParams::default(), &obj)
                .await
                .with_context(|| format!("creating {name}"))?;
            Ok(())
        }
    })
    .await?;
    wait_all_healthy("create", &tracks, &mut controller, opts.timeout).await?;
    let create_tracks = tracks.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_secs(opts.settle)).await;
    let cpu_after_create = controller.sample_now(clock).map(|s| s.cpu_s).unwrap_or(0.0);

    // Update phase: every template at once.
    {
        let mut t = tracks.lock().unwrap();
        for track in t.values_mut() {
            // The update makes the next generation after the last one seen.
            *track = Track {
                generation: track.last_generation + 1,
                last_generation: track.last_generation,
                paused_at: vec![None; n_steps],
                pause_start: vec![None; n_steps],
                past: vec![None; n_steps],
                ..Track::default()
            };
        }
    }
    let t_update = Instant::now();
    eprintln!("bench: updating every template");
    for_each_rollout(&names, opts.concurrency, |name| {
        let api = rollouts.clone();
        let tracks = tracks.clone();
        async move {
            let patch =
                json!({ "spec": { "template": super::workload::pod_template(&name, "v2") } });
            tracks.lock().unwrap().get_mut(&name).unwrap().since = Some(Instant::now());
            let obj = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("updating {name}"))?;
            let g = obj.metadata.generation.unwrap_or(0);
            let mut t = tracks.lock().unwrap();
            let track = t.get_mut(&name).unwrap();
            if g < track.generation {
                bail!(
                    "{name}: generation {g} after the update, expected {}",
                    track.generation
                );
            }
            Ok(())
        }
    })
    .await?;
    wait_all_healthy("update", &tracks, &mut controller, opts.timeout).await?;
    let update_tracks = tracks.lock().unwrap().clone();
    tokio::time::sleep(Duration::from_secs(opts.settle)).await;
    let steady = controller.sample_now(clock);
    let cpu_after_update = steady.map(|s| s.cpu_s).unwrap_or(0.0);

    // Idle phase: nothing changes; every request now is the controller's own idea.
    let t_idle = Instant::now();
    if opts.idle > 0 {
        eprintln!("bench: idle for {}s", opts.idle);
        tokio::time::sleep(Duration::from_secs(opts.idle)).await;
    }
    let last = controller.sample_now(clock);
    let t_end = Instant::now();
    let samples = controller.samples();
    controller.stop(Duration::from_secs(40)).await;
    watch.abort();

    let windows = vec![
        PhaseWindow {
            name: "startup".into(),
            start: wall(t_start),
            end: wall(t_create),
        },
        PhaseWindow {
            name: "create".into(),
            start: wall(t_create),
            end: wall(t_update),
        },
        PhaseWindow {
            name: "update".into(),
            start: wall(t_update),
            end: wall(t_idle),
        },
        PhaseWindow {
            name: "idle".into(),
            start: wall(t_idle),
            end: wall(t_end),
        },
    ];
    let tallies = audit::tally(&opts.audit_log, Who::Is(&opts.user), &windows)?;
    let foreign = audit::tally(&opts.audit_log, Who::IsNot(&opts.user), &windows)?
        .iter()
        .map(|t| t.total())
        .sum();
    if tallies.iter().all(|t| t.total() == 0) {
        bail!(
            "no request of {} in {}: is the plane up with SLUICE_AUDIT=1 and the controller on \
             that certificate?",
            opts.user,
            opts.audit_log.display()
        );
    }

    let per_rollout = |tracks: &HashMap<String, Track>| {
        Durations::of(
            tracks
                .values()
                .filter_map(|t| Some(t.healthy_at?.duration_since(t.since?).as_secs_f64())),
        )
    };
    let all_healthy = |tracks: &HashMap<String, Track>, from: Instant| {
        tracks
            .values()
            .filter_map(|t| t.healthy_at)
            .max()
            .map(|t| t.duration_since(from).as_secs_f64())
            .unwrap_or(0.0)
    };
    // Step latency, per pause step of the update: from the pause's end as the controller
    // itself times it (its recorded startTime + duration) to the harness first seeing
    // the Rollout past the step. Also from the pause first seen (harness clock only).
    let mut latencies = Vec::new();
    let mut latencies_seen = Vec::new();
    let mut missing = 0;
    for t in update_tracks.values() {
        for (i, step) in opts.steps.iter().enumerate() {
            let Step::Pause(d) = step else { continue };
            let Some(next) = t.past[i] else {
                missing += 1;
                continue;
            };
            match t.pause_start[i] {
                Some(start) => {
                    latencies.push(wall(next).duration_since(start).as_secs_f64() - d.as_secs_f64())
                }
                None => missing += 1,
            }
            if let Some(p) = t.paused_at[i] {
                latencies_seen.push(next.duration_since(p).as_secs_f64() - d.as_secs_f64());
            }
        }
    }
    let phase =
        |i: usize, tracks: Option<&HashMap<String, Track>>, from: Instant, cpu: f64| PhaseReport {
            name: windows[i].name.clone(),
            seconds: windows[i]
                .end
                .duration_since(windows[i].start)
                .as_secs_f64(),
            all_healthy_s: tracks.map(|t| all_healthy(t, from)),
            per_rollout_s: tracks.map(per_rollout),
            cpu_s: cpu,
            requests: tallies[i].clone(),
        };
    let loads: Vec<f64> = samples.iter().map(|s| s.load1).collect();
    let row = Row {
        controller: opts.controller,
        label: opts.label.clone(),
        n: opts.n,
        replicas: opts.replicas,
        steps: opts.steps.clone(),
        idle_s: opts.idle,
        settle_s: opts.settle,
        peak_rss_mib: samples.iter().map(|s| s.hwm_kib).max().unwrap_or(0) as f64 / 1024.0,
        steady_rss_mib: if opts.idle > 0 {
            let idle: Vec<f64> = samples
                .iter()
                .filter(|s| s.at >= t_idle.duration_since(clock).as_secs_f64())
                .map(|s| s.rss_kib as f64 / 1024.0)
                .collect();
            idle.iter().sum::<f64>() / idle.len().max(1) as f64
        } else {
            steady.map(|s| s.rss_kib).unwrap_or(0) as f64 / 1024.0
        },
        cpu_total_s: last.map(|s| s.cpu_s).unwrap_or(cpu_after_update),
        phases: vec![
            phase(0, None, t_start, cpu_at_start),
            phase(
                1,
                Some(&create_tracks),
                t_create,
                cpu_after_create - cpu_at_start,
            ),
            phase(
                2,
                Some(&update_tracks),
                t_update,
                cpu_after_update - cpu_after_create,
            ),
            phase(
                3,
                None,
                t_idle,
                last.map(|s| s.cpu_s).unwrap_or(0.0) - cpu_after_update,
            ),
        ],
        step_latency_s: Durations::of(latencies.into_iter()),
        step_latency_from_seen_s: Durations::of(latencies_seen.into_iter()),
        step_latency_missing: missing,
        load1: Durations::of(loads.into_iter()),
        foreign_requests: foreign,
        started_at: wall(t_start).to_string(),
        controller_log: log.display().to_string(),
    };
    Ok(row)
}

/// A TCP port free right now on loopback.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
