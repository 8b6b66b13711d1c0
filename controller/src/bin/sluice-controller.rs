//! The sluice controller: reconciles Rollouts against any kubeconfig (in-cluster by
//! default), optionally scoped to one namespace, until SIGTERM or Ctrl-C.

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

    /// Log format.
    #[arg(long, value_enum, default_value = "text", env = "SLUICE_LOG_FORMAT")]
    log_format: LogFormat,
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
    let client = runtime::client(args.kubeconfig.as_deref()).await?;
    info!(namespace = ?args.namespace, "sluice controller starting");
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
    };
    let controllers = async {
        tokio::join!(
            runtime::run(client.clone(), settings.clone(), shutdown.clone()),
            runtime::analysis::run(client.clone(), settings.clone(), shutdown.clone()),
            runtime::templates::run(client, settings, shutdown.clone()),
        );
    };
    // In-flight reconciles are bounded (30 s), so this grace only matters when a
    // controller never started: kube-runtime holds a controller until its watch has
    // listed once, and a missing CRD keeps it there through a graceful shutdown.
    let grace = async {
        shutdown.clone().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = controllers => info!("stopped"),
        _ = grace => warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time (is a CRD missing?); exiting"),
    }
    Ok(())
}
