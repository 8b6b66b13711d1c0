//! The sluice controller: reconciles Rollouts against any kubeconfig (in-cluster by
//! default), optionally scoped to one namespace, until SIGTERM or Ctrl-C; with
//! `--dashboard-addr`, also serves the dashboard.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use futures::FutureExt;
use sluice_controller::runtime::{self, Settings};
use sluice_controller::runtime::{leader, metrics, notifier};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// How long after SIGTERM the controllers may take to stop.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(35);

/// How long after the controllers stop the queued notifications may take to go out
/// (before the Lease is released).
const NOTIFY_FLUSH_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Progressive delivery for Kubernetes: canary and blue-green Rollouts.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Kubeconfig to use; without it, the in-cluster config (or $KUBECONFIG).
    #[arg(long, env = "SLUICE_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// Reconcile only Rollouts in this namespace.
    #[arg(long, short = 'n', env = "SLUICE_NAMESPACE")]
    namespace: Option<String>,

    /// Serve only Rollouts labelled `sluice.dev/controller-instance=<ID>` (a shard);
    /// without it, only Rollouts without that label.
    #[arg(long, env = "SLUICE_INSTANCE_ID")]
    instance_id: Option<String>,

    /// Most reconciles of each kind (Rollouts, AnalysisRuns) running at once.
    #[arg(long, default_value_t = runtime::DEFAULT_CONCURRENCY, env = "SLUICE_CONCURRENCY")]
    concurrency: u16,

    /// Most API requests a second, on average (0: no limit).
    #[arg(long, default_value_t = runtime::rate_limit::DEFAULT_QPS, env = "SLUICE_QPS")]
    qps: u32,

    /// Most API requests at once after a quiet spell.
    #[arg(long, default_value_t = runtime::rate_limit::DEFAULT_BURST, env = "SLUICE_BURST")]
    burst: u32,

    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "SLUICE_LOG_FORMAT")]
    log_format: LogFormat,

    /// Serve the dashboard on this address (e.g. 0.0.0.0:8080); no dashboard without it.
    #[arg(long, env = "SLUICE_DASHBOARD_ADDR")]
    dashboard_addr: Option<SocketAddr>,

    /// Dashboard: show rollouts but refuse every action.
    #[arg(long, env = "SLUICE_DASHBOARD_READ_ONLY")]
    dashboard_read_only: bool,

    /// Dashboard: no sign-in; everyone acts as the controller. Only on a loopback address.
    #[arg(long, env = "SLUICE_DASHBOARD_NO_AUTH")]
    dashboard_no_auth: bool,

    /// Dashboard: mark the session cookie Secure (when users reach it over HTTPS).
    #[arg(long, env = "SLUICE_DASHBOARD_SECURE_COOKIE")]
    dashboard_secure_cookie: bool,

    /// Serve /metrics, /healthz and /readyz on this address (e.g. 0.0.0.0:9090).
    #[arg(long, env = "SLUICE_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,

    /// Reconcile only while holding a Lease, so that several replicas can run and one
    /// acts (the others take over when it goes).
    #[arg(long, env = "SLUICE_LEADER_ELECT")]
    leader_elect: bool,

    /// Namespace of the Lease; default $POD_NAMESPACE, else --namespace.
    #[arg(long, env = "SLUICE_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(
        long,
        default_value = "sluice-controller",
        env = "SLUICE_LEADER_ELECTION_ID"
    )]
    leader_election_id: String,

    /// How long a Lease not renewed means its holder is gone.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,

    /// Longest the leader goes without renewing before it stops acting.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    renew_deadline: Duration,

    /// Between two leader-election attempts.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    retry_period: Duration,

    /// The notifications ConfigMap (its webhooks; see docs/operations.md), as NAME or
    /// NAMESPACE/NAME. A bare name is looked for in $POD_NAMESPACE, else --namespace;
    /// empty: no notifications.
    #[arg(
        long,
        default_value = "sluice-notifications",
        env = "SLUICE_NOTIFICATIONS_CONFIGMAP"
    )]
    notifications_configmap: String,
}

/// Where the notifications ConfigMap is, if anywhere.
fn notifications_source(arg: &str, namespace: Option<&str>) -> Option<notifier::Source> {
    let (namespace, name) = match arg.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name),
        None => (
            std::env::var("POD_NAMESPACE")
                .ok()
                .or_else(|| namespace.map(str::to_string))?,
            arg,
        ),
    };
    (!name.is_empty() && !namespace.is_empty()).then(|| notifier::Source {
        namespace,
        name: name.to_string(),
    })
}

/// Who this process is in the election: the pod name (HOSTNAME in a pod) and the pid,
/// so two processes on one machine never share an identity.
fn identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sluice".into());
    format!("{host}_{}", std::process::id())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().init(),
    }
    let client = runtime::limited_client(args.kubeconfig.as_deref(), args.qps, args.burst).await?;
    // Bound before anything starts, so a bad address or unsafe options fail at once.
    let dashboard = match args.dashboard_addr {
        Some(addr) => {
            let mut options = sluice_dashboard::Options::new(addr);
            options.read_only = args.dashboard_read_only;
            options.secure_cookie = args.dashboard_secure_cookie;
            options.namespace = args.namespace.clone();
            if args.dashboard_no_auth {
                options.auth = sluice_dashboard::AuthMode::None;
            }
            Some(sluice_dashboard::Dashboard::bind(options).await?)
        }
        None => None,
    };
    info!(
        namespace = ?args.namespace,
        instance_id = ?args.instance_id,
        concurrency = args.concurrency,
        qps = args.qps,
        burst = args.burst,
        "sluice controller starting"
    );
    // One signal stops every controller; each finishes its in-flight reconciles.
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        info!("shutting down: finishing in-flight reconciles");
    }
    .boxed()
    .shared();
    // Without election this process leads at once; with it, only once it holds the Lease.
    let (leading_tx, leading) = watch::channel(!args.leader_elect);
    {
        let mut leading = leading.clone();
        tokio::spawn(async move {
            loop {
                metrics::metrics()
                    .leader
                    .set(i64::from(*leading.borrow_and_update()));
                if leading.changed().await.is_err() {
                    break;
                }
            }
        });
    }
    let election = if args.leader_elect {
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| args.namespace.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--leader-elect needs the Lease's namespace: --leader-election-namespace, \
                     $POD_NAMESPACE or --namespace"
                )
            })?;
        let timing = leader::Timing {
            lease_duration: args.lease_duration,
            renew_deadline: args.renew_deadline,
            retry_period: args.retry_period,
        };
        timing.check().map_err(anyhow::Error::msg)?;
        Some(leader::Config {
            namespace,
            name: args.leader_election_id.clone(),
            identity: identity(),
            timing,
        })
    } else {
        None
    };
    let notifier = match notifications_source(
        &args.notifications_configmap,
        args.namespace.as_deref(),
    ) {
        Some(source) => {
            info!(configmap = %format!("{}/{}", source.namespace, source.name), "notifications from ConfigMap");
            let reporter = kube::runtime::events::Reporter {
                controller: "sluice".into(),
                instance: std::env::var("HOSTNAME").ok(),
            };
            notifier::Notifier::start(client.clone(), source, reporter)?
        }
        None => {
            info!(
                "no notifications: no namespace for --notifications-configmap (set NAMESPACE/NAME)"
            );
            notifier::Notifier::disabled()
        }
    };
    let synced = Arc::new(AtomicBool::new(false));
    let settings = Settings {
        namespace: args.namespace,
        instance_id: args.instance_id,
        concurrency: args.concurrency,
        caches_synced: synced.clone(),
        notifier: notifier.clone(),
    };
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        info!(%addr, "serving /metrics, /healthz and /readyz");
        let probes = probes(leading.clone(), synced, args.leader_elect);
        tokio::spawn(async move { axum::serve(listener, probes).await });
    }
    let dashboard = async {
        match dashboard {
            Some(d) => d.serve(client.clone(), shutdown.clone()).await,
            None => Ok(()),
        }
    };
    // The Lease is released only once the controllers have stopped (in-flight reconciles
    // done), so the standby that takes it over never acts beside them.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let election = election.map(|config| {
        let client = client.clone();
        info!(identity = %config.identity, lease = %format!("{}/{}", config.namespace, config.name), "waiting to lead");
        tokio::spawn(async move {
            let stop = async {
                let _ = released.await;
            };
            if let Err(lost) = leader::run(client, config, leading_tx, stop).await {
                // Acting on without the Lease could make two leaders: stop at once. In a
                // pod, the restart comes back as a standby.
                error!(%lost, "stopping");
                std::process::exit(1);
            }
        })
    });
    let controllers = async {
        // A standby serves the dashboard (and its probes) while it waits to lead.
        let lead = async {
            let mut leading = leading.clone();
            tokio::select! {
                led = leading.wait_for(|l| *l) => {
                    if led.map(|_| ()).is_err() {
                        return;
                    }
                }
                // Stopped before ever leading.
                _ = shutdown.clone() => return,
            }
            tokio::join!(
                runtime::run(client.clone(), settings.clone(), shutdown.clone()),
                runtime::analysis::run(client.clone(), settings.clone(), shutdown.clone()),
                runtime::templates::run(client.clone(), settings.clone(), shutdown.clone()),
            );
        };
        let (_, dashboard) = tokio::join!(lead, dashboard);
        dashboard
    };
    // In-flight reconciles are bounded (30 s), so this grace only matters when a
    // controller never started: kube-runtime holds a controller until its watch has
    // listed once, and a missing CRD keeps it there through a graceful shutdown.
    let grace = async {
        shutdown.clone().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        result = controllers => result,
        _ = grace => {
            warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time (is a CRD missing?); exiting");
            Ok(())
        }
    };
    // Before the Lease goes: the next leader plans no transition this one recorded, so
    // what this one queued is told by this one or not at all.
    notifier.close(NOTIFY_FLUSH_GRACE).await;
    if let Some(election) = election {
        let _ = release.send(());
        if tokio::time::timeout(Duration::from_secs(5), election)
            .await
            .is_err()
        {
            warn!("could not release the lease in time");
        }
    }
    result?;
    info!("stopped");
    Ok(())
}

/// `/metrics`: [`metrics`]. `/healthz`: the process serves. `/readyz`: its caches have
/// synced, or it is a standby (which reconciles nothing, and must still count as ready
/// for a rolling update).
fn probes(leading: watch::Receiver<bool>, synced: Arc<AtomicBool>, elected: bool) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics::metrics().encode(),
                )
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let (leading, synced) = (*leading.borrow(), synced.load(Ordering::Relaxed));
                async move {
                    if synced || (elected && !leading) {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
                    }
                }
            }),
        )
}
