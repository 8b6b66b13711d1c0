//! `kubectl sluice`: act on Rollouts (promote, abort, ...) and see where they stand.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use sluice_api::Rollout;
use sluice_api::analysis::{AnalysisPhase, AnalysisRunArgument};
use sluice_controller::actions::{self, UserAction};
use sluice_controller::adapters::{self, prometheus::PrometheusClient};
use sluice_controller::runtime::{self, analysis::Measurer, replay};

/// Act on sluice Rollouts.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-sluice",
    bin_name = "kubectl sluice",
    version,
    about = "See and act on sluice Rollouts: get, list, promote, abort, retry, pause, resume, restart, set image, undo; check manifests offline (lint); convert Argo Rollouts manifests; replay analyses; run the dashboard locally",
    after_help = "Examples:
  kubectl sluice list rollouts -A
  kubectl sluice get rollout web --watch
  kubectl sluice promote web
  kubectl sluice set image web web=registry.example/app:v2
  kubectl sluice lint rollout.yaml
  kubectl sluice convert argo-manifests/ > sluice.yaml
  kubectl sluice completion bash > /etc/bash_completion.d/kubectl-sluice"
)]
struct Args {
    /// Kubeconfig to use (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    context: Option<String>,

    /// Namespace of the Rollout (default: the kubeconfig context's, else `default`).
    #[arg(long, short = 'n', global = true)]
    namespace: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a Rollout as a tree: steps, weights, revisions, ReplicaSets, pods, analyses.
    #[command(subcommand)]
    Get(GetCommand),
    /// List Rollouts with their phase, step and weight.
    #[command(subcommand)]
    List(ListCommand),
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
    /// Replace every pod of the rollout, one at a time (spec.restartAt).
    ///
    /// Sets spec.restartAt to now (or --at). The controller evicts the pods created before
    /// it one at a time within maxUnavailable (PodDisruptionBudgets are honoured) and
    /// records status.restartedAt when done; no steps run, no new revision.
    Restart {
        /// The Rollout's name.
        rollout: String,
        /// Restart at this RFC 3339 time, or after this long (30m, 2h), instead of now.
        #[arg(long, value_name = "TIME|DURATION")]
        at: Option<String>,
    },
    /// Change the pod template (a new revision, rolled out by the strategy's steps).
    #[command(subcommand)]
    Set(SetCommand),
    /// Roll back to a previous revision's pod template, like `kubectl rollout undo`.
    ///
    /// The template comes from that revision's ReplicaSet, which is scaled up again. It
    /// changes spec.template: a GitOps tool syncing the rollout puts Git's template back
    /// unless Git changes too.
    Undo {
        /// The Rollout's name.
        rollout: String,
        /// The revision to go back to (the sluice.dev/revision of its ReplicaSet); by
        /// default the one before the current template's.
        #[arg(long, value_name = "N")]
        to_revision: Option<i64>,
    },
    /// Convert Argo Rollouts manifests to sluice's.
    ///
    /// Reads Rollouts, AnalysisTemplates and ClusterAnalysisTemplates (argoproj.io/v1alpha1)
    /// from YAML files, directories (recursively) or - (standard input) and writes the
    /// sluice equivalents as one YAML stream; other objects (Services, Ingresses,
    /// HTTPRoutes, ...) pass through unchanged. Each field without an equivalent is a
    /// warning on stderr naming the object and field; an object that cannot be converted
    /// safely (an unsupported traffic router or metric provider, an experiment step, a
    /// condition that does not translate to CEL) is not written. Exit 0 when all was
    /// converted, 1 when something was not, 2 when an input could not be read.
    #[command(after_help = "Examples:
  kubectl sluice convert rollout.yaml > sluice.yaml
  kubectl sluice convert k8s/ -o converted/      # one file per input file
  kubectl get rollouts.argoproj.io,analysistemplates.argoproj.io -o yaml | kubectl sluice convert -")]
    Convert {
        /// Files, directories, or - for standard input.
        #[arg(required = true, value_hint = clap::ValueHint::AnyPath)]
        inputs: Vec<PathBuf>,
        /// Write here instead of stdout: a file (the whole stream), or an existing
        /// directory (one file per input, by the same relative name).
        #[arg(long, short = 'o', value_name = "FILE|DIR", value_hint = clap::ValueHint::AnyPath)]
        output: Option<PathBuf>,
    },
    /// Check manifests offline, as the apiserver and the controller would.
    ///
    /// Each Rollout, AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun is checked
    /// against its CRD's schema (types, required fields, enums, bounds, unknown fields) and
    /// CEL rules, with the messages the apiserver gives, and, when it would be admitted,
    /// against the controller's own checks (the messages of the InvalidSpec condition).
    /// Other kinds are skipped. No cluster is needed. One line per problem
    /// (FILE:DOCUMENT KIND/NAME: FIELD: MESSAGE), then a summary. Exit 0 when every
    /// document is clean, 1 when one has a problem, 2 when an input cannot be read or parsed.
    #[command(after_help = "Examples:
  kubectl sluice lint rollout.yaml
  kubectl sluice lint -f deploy/ -f extra.yaml
  helm template charts/app | kubectl sluice lint -
  kubectl sluice lint manifests/ -o json")]
    Lint {
        /// Files (YAML streams or JSON), directories (searched recursively for *.yaml,
        /// *.yml and *.json) or - for stdin.
        #[arg(value_name = "FILE", value_hint = clap::ValueHint::AnyPath)]
        files: Vec<PathBuf>,
        /// A file, directory or - (stdin), as with kubectl apply -f; repeatable.
        #[arg(long = "filename", short = 'f', value_name = "FILE", value_hint = clap::ValueHint::AnyPath)]
        filenames: Vec<PathBuf>,
        /// Output format: text (a line per problem and a summary) or json.
        #[arg(long, short = 'o', value_enum, default_value_t = LintOutput::Text)]
        output: LintOutput,
    },
    /// Print the plugin's version.
    Version,
    /// Print a shell completion script.
    ///
    /// bash: `source <(kubectl sluice completion bash)`, or save it in
    /// /etc/bash_completion.d/. zsh: save it as `_kubectl-sluice` on $fpath. fish: save it in
    /// ~/.config/fish/completions/kubectl-sluice.fish. These complete `kubectl-sluice`
    /// (and `kubectl sluice` in bash); for `kubectl sluice <TAB>` through kubectl's own
    /// completion (kubectl 1.26 or later), put `kubectl_complete-sluice` on PATH beside
    /// the plugin.
    #[command(after_help = "Examples:
  source <(kubectl sluice completion bash)
  kubectl sluice completion zsh > \"${fpath[1]}/_kubectl-sluice\"
  kubectl sluice completion fish > ~/.config/fish/completions/kubectl-sluice.fish")]
    Completion {
        /// The shell to write the script for.
        shell: clap_complete::Shell,
    },
    /// Completions for the words typed so far, in the format kubectl's plugin completion
    /// (kubectl 1.26 or later) reads from `kubectl_complete-sluice`: one candidate a line
    /// (TAB, description), then `:4` (no file names).
    #[command(name = "__complete", hide = true)]
    Complete {
        /// The words after `kubectl sluice`; the last is the one being typed (may be empty).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Serve the dashboard locally, against this kubeconfig, for every namespace.
    ///
    /// Users sign in with a bearer token unless --no-auth; the dashboard acts with this
    /// kubeconfig's credentials.
    Dashboard {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3100")]
        addr: SocketAddr,
        /// Show rollouts but refuse every action.
        #[arg(long)]
        read_only: bool,
        /// No sign-in: whoever reaches the address acts with this kubeconfig. Only on a
        /// loopback address.
        #[arg(long)]
        no_auth: bool,
    },
    /// Replay an analysis over a past window, and give its verdict.
    ///
    /// Prints every measurement the controller would have taken, and the verdict. Exit 0
    /// Successful, 1 Failed or Error, 3 otherwise.
    Analyze {
        /// The AnalysisTemplate (with --cluster, the ClusterAnalysisTemplate) to replay.
        template: String,
        /// Use a ClusterAnalysisTemplate.
        #[arg(long)]
        cluster: bool,
        /// An arg as name=value; repeatable.
        #[arg(long = "arg", value_parser = parse_arg)]
        args: Vec<(String, String)>,
        /// Start of the window: an RFC 3339 time, or how long ago (30m, 2h).
        #[arg(long)]
        from: String,
        /// End of the window: an RFC 3339 time, how long ago, or now.
        #[arg(long, default_value = "now")]
        to: String,
        /// Prometheus base URL to use instead of the template's (e.g. a port-forward).
        #[arg(long)]
        prometheus: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LintOutput {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum GetCommand {
    /// Show a Rollout as a tree, once or (--watch) live.
    ///
    /// The summary gives the phase and its message, the strategy, the current step (with
    /// the steps list, the current one marked ▶), the weight the step asks for and the one
    /// set (and whether the router shows it), images and replica counts. The tree below
    /// lists revisions, newest first, with their ReplicaSets (stable, canary, baseline,
    /// active, preview), pods, and AnalysisRuns with the latest measurements per metric.
    #[command(
        alias = "ro",
        after_help = "Examples:
  kubectl sluice get rollout web
  kubectl sluice get rollout web -n shop --watch
  kubectl sluice get rollout web --watch --timeout 10m | tee rollout.log"
    )]
    Rollout {
        /// The Rollout's name.
        rollout: String,
        /// Keep the view up to date until Ctrl-C, --timeout, or the Rollout is deleted:
        /// redrawn in place on a terminal, printed again on each change otherwise.
        #[arg(long, short = 'w')]
        watch: bool,
        /// With --watch, stop after this long (30s, 10m).
        #[arg(long, requires = "watch", value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
}

#[derive(Debug, Subcommand)]
enum ListCommand {
    /// List the Rollouts of a namespace (-n) or of all (-A).
    #[command(
        alias = "ro",
        after_help = "Examples:
  kubectl sluice list rollouts
  kubectl sluice list rollouts -n shop
  kubectl sluice list rollouts -A"
    )]
    Rollouts {
        /// Every namespace (adds a NAMESPACE column).
        #[arg(long, short = 'A')]
        all_namespaces: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SetCommand {
    /// Set container images: `kubectl sluice set image web web=registry/app:v2`.
    ///
    /// The names are those of spec.template's containers (or init containers); a name
    /// it does not have is refused.
    Image {
        /// The Rollout's name.
        rollout: String,
        /// CONTAINER=IMAGE, one or more.
        #[arg(required = true, value_name = "CONTAINER=IMAGE", value_parser = parse_image)]
        images: Vec<(String, String)>,
    },
}

/// Candidates for the last of `words`, in cobra's `__complete` format.
fn complete(words: &[String]) -> anyhow::Result<String> {
    let mut cmd = <Args as clap::CommandFactory>::command();
    let mut args: Vec<std::ffi::OsString> = vec!["kubectl-sluice".into()];
    args.extend(words.iter().map(Into::into));
    if words.is_empty() {
        args.push("".into());
    }
    let index = args.len() - 1;
    let candidates = clap_complete::engine::complete(&mut cmd, args, index, None)?;
    let mut out = String::new();
    for c in candidates {
        out.push_str(&c.get_value().to_string_lossy());
        if let Some(help) = c.get_help() {
            let help = help.to_string();
            let first = help.lines().next().unwrap_or_default();
            out.push('\t');
            out.push_str(first);
        }
        out.push('\n');
    }
    // lint and convert take file and directory names: ShellCompDirectiveDefault lets the
    // shell complete them; elsewhere ShellCompDirectiveNoFileComp, nothing else takes one.
    let typing = words.last().map(String::as_str).unwrap_or_default();
    let after = words.len().checked_sub(2).and_then(|i| words.get(i));
    let file_arg = match words.first().map(String::as_str) {
        Some("lint") => true,
        Some("convert") => {
            words.len() > 1
                && !typing.starts_with('-')
                && after
                    .is_none_or(|w| !w.starts_with('-') || w == "-o" || w == "--output" || w == "-")
        }
        _ => false,
    };
    out.push_str(if file_arg { ":0\n" } else { ":4\n" });
    Ok(out)
}

fn parse_image(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((c, i)) if !c.is_empty() && !i.is_empty() => Ok((c.to_string(), i.to_string())),
        _ => Err(format!("expected CONTAINER=IMAGE, got {s:?}")),
    }
}

/// `--at`: an RFC 3339 time, or a duration from now.
fn parse_at(s: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let later = humantime::parse_duration(s)
        .with_context(|| format!("{s:?} is neither an RFC 3339 time nor a duration"))?;
    Ok(Timestamp::now() + k8s_openapi::jiff::SignedDuration::try_from(later)?)
}

fn parse_arg(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

fn parse_time(s: &str) -> anyhow::Result<Timestamp> {
    if s == "now" {
        return Ok(Timestamp::now());
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let ago = humantime::parse_duration(s)
        .with_context(|| format!("{s:?} is neither an RFC 3339 time, a duration, nor now"))?;
    Ok(Timestamp::now() - k8s_openapi::jiff::SignedDuration::try_from(ago)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.command {
        Command::Version => {
            println!("kubectl-sluice {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::Completion { shell } => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "kubectl-sluice", &mut script);
            std::io::stdout().write_all(&script)?;
            return Ok(());
        }
        Command::Complete { words } => {
            print!("{}", complete(words)?);
            return Ok(());
        }
        Command::Lint {
            files,
            filenames,
            output,
        } => std::process::exit(lint(files, filenames, *output)?),
        Command::Convert { inputs, output } => {
            let mut stdin = || std::io::read_to_string(std::io::stdin());
            let code = sluice::convert::files::run(
                inputs,
                output.as_deref(),
                &mut stdin,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
            std::process::exit(code);
        }
        _ => {}
    }
    let client =
        runtime::client_in_context(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let ns = &ns;
    let (name, action) = match &args.command {
        Command::Version
        | Command::Completion { .. }
        | Command::Complete { .. }
        | Command::Lint { .. }
        | Command::Convert { .. } => {
            unreachable!("handled before connecting")
        }
        Command::Get(GetCommand::Rollout {
            rollout,
            watch,
            timeout,
        }) => {
            if *watch {
                let ended = sluice::get::watch(&client, ns, rollout, *timeout).await?;
                if ended == sluice::get::Ended::Deleted {
                    eprintln!("rollout {ns}/{rollout} was deleted");
                }
            } else {
                let tree = sluice::get::fetch(&client, ns, rollout).await?;
                for line in sluice::view::render_tree(&tree, Timestamp::now()) {
                    println!("{line}");
                }
            }
            return Ok(());
        }
        Command::List(ListCommand::Rollouts { all_namespaces }) => {
            let api: Api<Rollout> = if *all_namespaces {
                Api::all(client)
            } else {
                Api::namespaced(client, ns)
            };
            let list = api.list(&Default::default()).await?.items;
            if list.is_empty() {
                match all_namespaces {
                    true => eprintln!("No Rollouts found."),
                    false => eprintln!("No Rollouts found in namespace {ns}."),
                }
                return Ok(());
            }
            for line in sluice::view::render_list(&list, *all_namespaces, Timestamp::now()) {
                println!("{line}");
            }
            return Ok(());
        }
        Command::Restart { rollout, at } => {
            let at = match at {
                Some(at) => parse_at(at)?,
                None => Timestamp::now(),
            };
            let r = actions::restart(&client, ns, rollout, at)
                .await
                .with_context(|| format!("rollout {ns}/{rollout}"))?;
            let at = r
                .spec
                .restart_at
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            println!("rollout {ns}/{rollout} restarting: pods created before {at} are replaced");
            return Ok(());
        }
        Command::Set(SetCommand::Image { rollout, images }) => {
            actions::set_image(&client, ns, rollout, images)
                .await
                .with_context(|| format!("rollout {ns}/{rollout}"))?;
            let set: Vec<String> = images.iter().map(|(c, i)| format!("{c}={i}")).collect();
            println!("rollout {ns}/{rollout} image updated: {}", set.join(" "));
            return Ok(());
        }
        Command::Undo {
            rollout,
            to_revision,
        } => {
            let (revision, _) = actions::undo(&client, ns, rollout, *to_revision)
                .await
                .with_context(|| format!("rollout {ns}/{rollout}"))?;
            println!(
                "rollout {ns}/{rollout} rolled back to revision {} ({})",
                revision.number, revision.hash
            );
            return Ok(());
        }
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
        Command::Analyze {
            template,
            cluster,
            args: pairs,
            from,
            to,
            prometheus,
        } => {
            let code = analyze(
                client,
                ns,
                template,
                *cluster,
                pairs,
                from,
                to,
                prometheus.as_deref(),
            )
            .await?;
            std::process::exit(code);
        }
        Command::Dashboard {
            addr,
            read_only,
            no_auth,
        } => return dashboard(client, *addr, *read_only, *no_auth).await,
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

/// `lint`: checks every input and prints the report; the exit code.
fn lint(files: &[PathBuf], filenames: &[PathBuf], output: LintOutput) -> anyhow::Result<i32> {
    use sluice::lint;
    let args: Vec<PathBuf> = files.iter().chain(filenames).cloned().collect();
    if args.is_empty() {
        eprintln!(
            "error: lint needs a FILE, a directory or - (stdin); see kubectl sluice lint --help"
        );
        return Ok(2);
    }
    let paths = match lint::expand(&args) {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let reports: Vec<lint::FileReport> = paths.iter().map(|p| lint::lint_path(p)).collect();
    let mut stdout = std::io::stdout().lock();
    match output {
        LintOutput::Text => {
            for line in lint::render(&reports) {
                writeln!(stdout, "{line}")?;
            }
        }
        LintOutput::Json => {
            serde_json::to_writer_pretty(&mut stdout, &reports)?;
            writeln!(stdout)?;
        }
    }
    Ok(lint::exit_code(&reports))
}

async fn dashboard(
    client: kube::Client,
    addr: SocketAddr,
    read_only: bool,
    no_auth: bool,
) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut options = sluice_dashboard::Options::new(addr);
    options.read_only = read_only;
    if no_auth {
        options.auth = sluice_dashboard::AuthMode::None;
    }
    let dashboard = sluice_dashboard::Dashboard::bind(options).await?;
    println!("sluice dashboard: http://{}/", dashboard.local_addr()?);
    if !no_auth {
        println!("sign in with a token, e.g.: kubectl create token NAME -n NAMESPACE");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    dashboard.serve(client, shutdown).await
}

#[allow(clippy::too_many_arguments)]
async fn analyze(
    client: kube::Client,
    ns: &str,
    template: &str,
    cluster: bool,
    pairs: &[(String, String)],
    from: &str,
    to: &str,
    prometheus: Option<&str>,
) -> anyhow::Result<i32> {
    let (from, to) = (parse_time(from)?, parse_time(to)?);
    let mut spec = adapters::analysis::fetch_template(&client, ns, template, cluster)
        .await?
        .with_context(|| format!("template {template} not found"))?;
    if let Some(url) = prometheus {
        for m in &mut spec.metrics {
            if let Some(p) = m.provider.prometheus.as_mut() {
                p.connection.address = url.to_string();
            }
            if let Some(j) = m.provider.judge.as_mut() {
                j.connection.address = url.to_string();
            }
            if let Some(s) = m.provider.sequential.as_mut() {
                s.connection.address = url.to_string();
            }
        }
    }
    let args: Vec<AnalysisRunArgument> = pairs
        .iter()
        .map(|(name, value)| AnalysisRunArgument {
            name: name.clone(),
            value: Some(value.clone()),
            value_from: None,
        })
        .collect();
    let spec = adapters::analysis::merge(&[spec], &args, "", "")?;
    let measurer = Measurer {
        client: client.clone(),
        prometheus: PrometheusClient::new()?,
        web: sluice_controller::adapters::web::WebClient::new()?,
    };
    println!("replaying {template} from {from} to {to}");
    for metric in &spec.metrics {
        if let Some(why) = replay::not_replayable(metric) {
            println!("not replayed: metric {}: {why}", metric.name);
        }
    }
    let replay = replay::replay(&measurer, ns, &spec, &spec.args, from, to)
        .await
        .map_err(anyhow::Error::msg)?;
    for r in &replay.measurements {
        let m = &r.measurement;
        println!(
            "{}  {:<24} {:<13} {:<12} {}",
            m.started_at
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            r.metric,
            format!("{:?}", m.phase),
            m.value.clone().unwrap_or_default(),
            m.message.clone().unwrap_or_default()
        );
    }
    println!("verdict: {:?}: {}", replay.phase, replay.message);
    Ok(match replay.phase {
        AnalysisPhase::Successful => 0,
        AnalysisPhase::Failed | AnalysisPhase::Error => 1,
        _ => 3,
    })
}

fn print_status(r: &Rollout) {
    let s = r.status.clone().unwrap_or_default();
    println!("Name:      {}", r.metadata.name.clone().unwrap_or_default());
    println!(
        "Phase:     {}",
        s.phase.map_or_else(|| "-".into(), |p| format!("{p:?}"))
    );
    println!("Message:   {}", s.message.unwrap_or_default());
    let stage = r.spec.strategy.blue_green.as_ref().and_then(|bg| {
        let stages = sluice_controller::core::bluegreen::stages(bg);
        let index = s.current_step_index.unwrap_or(0).max(0) as usize;
        stages
            .get(index)
            .map(|stage| format!(" ({})", stage.label()))
    });
    println!(
        "Step:      {}{}",
        s.step_progress.clone().unwrap_or_else(|| "-".into()),
        stage.unwrap_or_default()
    );
    if let Some(bg) = &s.blue_green {
        println!(
            "Active:    {}   Preview: {}",
            bg.active_selector.as_deref().unwrap_or("-"),
            bg.preview_selector.as_deref().unwrap_or("-")
        );
        for (what, run) in [
            ("pre-promotion", &bg.pre_promotion_analysis_run),
            ("post-promotion", &bg.post_promotion_analysis_run),
        ] {
            if let Some(run) = run {
                println!("Analysis:  {what} {run}");
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    /// kubectl's plugin completion reads cobra's format: candidates, then the directive.
    #[test]
    fn complete_prints_candidates_then_the_no_file_directive() {
        let out = complete(&words(&["get", "r"])).unwrap();
        assert_eq!(
            out,
            "rollout\tShow a Rollout as a tree, once or (--watch) live\n:4\n"
        );
        let out = complete(&words(&["list", "rollouts", "--all"])).unwrap();
        assert_eq!(
            out,
            "--all-namespaces\tEvery namespace (adds a NAMESPACE column)\n:4\n"
        );
        let top = complete(&[]).unwrap();
        for command in ["get", "list", "promote", "completion", "convert"] {
            assert!(
                top.lines().any(|l| l.starts_with(&format!("{command}\t"))),
                "{command} in {top}"
            );
        }
        assert!(
            !top.contains("__complete"),
            "the hidden command is offered: {top}"
        );
        assert!(top.ends_with(":4\n"));
        assert!(top.contains("lint\tCheck manifests offline"), "{top}");
        // lint's arguments are files: the shell completes them (ShellCompDirectiveDefault).
        let out = complete(&words(&["lint", "exa"])).unwrap();
        assert!(out.ends_with(":0\n"), "{out}");
        let out = complete(&words(&["lint", "--out"])).unwrap();
        assert!(out.starts_with("--output\t"), "{out}");
        // convert's inputs and -o are file names: the shell completes them.
        for typed in [
            &["convert", ""][..],
            &["convert", "argo/", "ru"],
            &["convert", "a.yaml", "-o", ""],
        ] {
            let out = complete(&words(typed)).unwrap();
            assert!(out.ends_with("\n:0\n") || out == ":0\n", "{typed:?}: {out}");
        }
        let out = complete(&words(&["convert", "a.yaml", "--"])).unwrap();
        assert!(out.contains("--output\t") && out.ends_with(":4\n"), "{out}");
    }

    #[test]
    fn every_shell_gets_a_script_for_kubectl_sluice() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut cmd = <Args as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "kubectl-sluice", &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("kubectl-sluice"), "{shell}");
            assert!(script.contains("rollouts"), "{shell}: no `list rollouts`");
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        <Args as clap::CommandFactory>::command().debug_assert();
    }
}
