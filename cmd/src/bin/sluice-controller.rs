//! The sluice controller: reconciles Rollouts against any kubeconfig (in-cluster by
//! default), optionally scoped to one namespace, until SIGTERM or Ctrl-C; with
//! `--dashboard-addr`, also serves the dashboard.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use futures::FutureExt;
use sluice_controller::runtime::{self, Settings};
use tracing::{info, warn};

/// How long after SIGTERM the controllers may take to stop.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(35);

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
    let settings = Settings {
        namespace: args.namespace,
        instance_id: args.instance_id,
        concurrency: args.concurrency,
    };
    let dashboard = async {
        match dashboard {
            Some(d) => d.serve(client.clone(), shutdown.clone()).await,
            None => Ok(()),
        }
    };
    let controllers = async {
        let (.., dashboard) = tokio::join!(
            runtime::run(client.clone(), settings.clone(), shutdown.clone()),
            runtime::analysis::run(client.clone(), settings.clone(), shutdown.clone()),
            runtime::templates::run(client.clone(), settings, shutdown.clone()),
            dashboard,
        );
        dashboard
    };
    // In-flight reconciles are bounded (30 s), so this grace only matters when a
    // controller never started: kube-runtime holds a controller until its watch has
    // listed once, and a missing CRD keeps it there through a graceful shutdown.
    let grace = async {
        shutdown.clone().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = controllers => {
            result?;
            info!("stopped");
        }
        _ = grace => warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time (is a CRD missing?); exiting"),
    }
    Ok(())
}
