//! The scale benchmark's driver: `run` measures one controller and writes its figures as
//! JSON; `show` prints such a file; `compare` prints two side by side with their ratios.
//! `e2e/bench/bench.sh` (`make bench-scale`, `make bench-compare`) sets it all up.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice_e2e::bench::report::{self, Row};
use sluice_e2e::bench::run::{self, Options};
use sluice_e2e::bench::workload::{Controller, parse_steps};

#[derive(Parser)]
#[command(about = "Scale benchmark of a Rollout controller on the local plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure one controller (the admin kubeconfig is SLUICE_E2E_KUBECONFIG).
    Run(Box<RunArgs>),
    /// Print the figures of a run.
    Show { file: PathBuf },
    /// Print two runs side by side, with first/second ratios.
    Compare { first: PathBuf, second: PathBuf },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    controller: Controller,
    /// The controller binary.
    #[arg(long)]
    bin: PathBuf,
    /// Kubeconfig on the controller's own client certificate.
    #[arg(long)]
    controller_kubeconfig: PathBuf,
    /// The certificate's CN, whose requests are counted.
    #[arg(long)]
    user: String,
    #[arg(long, env = "SLUICE_AUDIT_LOG")]
    audit_log: PathBuf,
    /// Folder of the controller's CRD YAML.
    #[arg(long)]
    crds: PathBuf,
    #[arg(long, default_value_t = 200)]
    n: usize,
    #[arg(long, default_value_t = 1)]
    replicas: i32,
    #[arg(long, default_value = "setWeight=20,pause=5s,setWeight=50,pause=5s")]
    steps: String,
    #[arg(long, default_value_t = 0)]
    idle: u64,
    #[arg(long, default_value_t = 40)]
    settle: u64,
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds allowed for each wait until all are Healthy.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value = "e2e/artifacts")]
    log_dir: PathBuf,
    #[arg(long)]
    keep: bool,
    #[arg(long, default_value = "")]
    label: String,
    /// Write the figures here as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Extra controller arguments (after `--`).
    #[arg(last = true)]
    controller_args: Vec<String>,
}

fn read_row(path: &PathBuf) -> Result<Row> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Show { file } => report::print_row(&read_row(&file)?),
        Command::Compare { first, second } => {
            report::print_compare(&read_row(&first)?, &read_row(&second)?)
        }
        Command::Run(a) => {
            let a = *a;
            let opts = Options {
                controller: a.controller,
                bin: a.bin,
                controller_args: a.controller_args,
                controller_kubeconfig: a.controller_kubeconfig,
                user: a.user,
                audit_log: a.audit_log,
                crds: a.crds,
                n: a.n,
                replicas: a.replicas,
                steps: parse_steps(&a.steps)?,
                idle: a.idle,
                settle: a.settle,
                warmup: a.warmup,
                timeout: Duration::from_secs(a.timeout),
                concurrency: a.concurrency,
                log_dir: a.log_dir,
                keep: a.keep,
                label: a.label,
            };
            let row = run::run(sluice_e2e::client().await?, opts).await?;
            if let Some(out) = &a.out {
                std::fs::write(out, serde_json::to_string_pretty(&row)?)?;
                eprintln!("bench: figures written to {}", out.display());
            }
            report::print_row(&row);
        }
    }
    Ok(())
}
