//! `kubectl sluice`: act on Rollouts (promote, abort, ...) and see where they stand.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::Api;
use sluice_api::Rollout;
use sluice_controller::actions::{self, UserAction};
use sluice_controller::runtime;

/// Act on sluice Rollouts.
#[derive(Debug, Parser)]
#[command(name = "kubectl-sluice", version, about)]
struct Args {
    /// Kubeconfig to use (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,

    /// Namespace of the Rollout.
    #[arg(long, short = 'n', global = true, default_value = "default")]
    namespace: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Continue past the current pause, or skip the current step.
    Promote {
        rollout: String,
        /// Skip every remaining step.
        #[arg(long)]
        full: bool,
    },
    /// Send all traffic back to stable and scale the new revision down.
    Abort { rollout: String },
    /// Resume an aborted rollout at the step it was on.
    Retry { rollout: String },
    /// Hold the rollout where it is (spec.paused).
    Pause { rollout: String },
    /// Undo pause.
    Resume { rollout: String },
    /// Show phase, step, weights and conditions.
    Status { rollout: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = runtime::client(args.kubeconfig.as_deref()).await?;
    let ns = &args.namespace;
    let (name, action) = match &args.command {
        Command::Promote {
            rollout,
            full: false,
        } => (rollout, UserAction::Promote),
        Command::Promote {
            rollout,
            full: true,
        } => (rollout, UserAction::PromoteFull),
        Command::Abort { rollout } => (rollout, UserAction::Abort),
        Command::Retry { rollout } => (rollout, UserAction::Retry),
        Command::Pause { rollout } => (rollout, UserAction::Pause),
        Command::Resume { rollout } => (rollout, UserAction::Resume),
        Command::Status { rollout } => {
            let r = Api::<Rollout>::namespaced(client, ns).get(rollout).await?;
            print_status(&r);
            return Ok(());
        }
    };
    actions::apply(&client, ns, name, action)
        .await
        .with_context(|| format!("rollout {ns}/{name}"))?;
    println!("rollout {ns}/{name} {}", action.done());
    Ok(())
}

fn print_status(r: &Rollout) {
    let s = r.status.clone().unwrap_or_default();
    println!("Name:      {}", r.metadata.name.clone().unwrap_or_default());
    println!("Phase:     {:?}", s.phase);
    println!("Message:   {}", s.message.unwrap_or_default());
    println!(
        "Step:      {}",
        s.step_progress.unwrap_or_else(|| "-".into())
    );
    if let Some(w) = s.canary.and_then(|c| c.weights) {
        println!(
            "Weights:   canary {} / stable {} (verified: {:?})",
            w.canary, w.stable, w.verified
        );
    }
    println!("Stable:    {}", s.stable_rs.unwrap_or_default());
    println!("Current:   {}", s.current_pod_hash.unwrap_or_default());
    println!(
        "Replicas:  {} ready, {} available, {} updated",
        s.ready_replicas, s.available_replicas, s.updated_replicas
    );
    for c in s.conditions {
        println!(
            "  {:<12} {:<7} {:<26} {}",
            c.type_, c.status, c.reason, c.message
        );
    }
}
