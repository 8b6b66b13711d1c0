//! The I/O of `get rollout`: one read, or watches (reflectors, no polling) that redraw the
//! view in place on a terminal and print it again, plainly, when stdout is not one.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context as _, bail};
use crossterm::{cursor, queue, style::Print, terminal};
use futures::{FutureExt as _, Stream, StreamExt, stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::core::Selector;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use sluice_api::Rollout;
use sluice_api::analysis::AnalysisRun;
use sluice_api::labels::ROLLOUT_LABEL;

use crate::view::{RolloutTree, render_tree};

/// The pods of a Rollout: its selector, or (a `workloadRef` Rollout that takes its
/// Deployment's) the one its status reports.
fn pod_selector(r: &Rollout) -> anyhow::Result<String> {
    if r.spec.selector != Default::default() {
        let selector =
            Selector::try_from(r.spec.selector.clone()).context("the Rollout's spec.selector")?;
        return Ok(selector.to_string());
    }
    match r.status.as_ref().and_then(|s| s.selector.clone()) {
        Some(selector) if !selector.is_empty() => Ok(selector),
        _ => bail!("rollout has no selector yet (its workloadRef is not resolved)"),
    }
}

/// Reads the Rollout and what it owns once.
pub async fn fetch(client: &Client, ns: &str, name: &str) -> anyhow::Result<RolloutTree> {
    let rollout = Api::<Rollout>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("rollout {ns}/{name}"))?;
    let owned = ListParams::default().labels(&format!("{ROLLOUT_LABEL}={name}"));
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&owned)
        .await?
        .items;
    let runs = Api::<AnalysisRun>::namespaced(client.clone(), ns)
        .list(&owned)
        .await?
        .items;
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&pod_selector(&rollout)?))
        .await?
        .items;
    Ok(RolloutTree {
        rollout,
        replica_sets,
        pods,
        runs,
    })
}

/// A reflector's store and the stream that fills it (one item per change).
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (Store<K>, impl Stream<Item = ()> + Send + 'static)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let changes = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .map(|_| ());
    (reader, changes)
}

fn snapshot(
    rollouts: &Store<Rollout>,
    sets: &Store<ReplicaSet>,
    pods: &Store<Pod>,
    runs: &Store<AnalysisRun>,
) -> Option<RolloutTree> {
    let rollout = rollouts.state().first().map(|r| (**r).clone())?;
    Some(RolloutTree {
        rollout,
        replica_sets: sets.state().iter().map(|x| (**x).clone()).collect(),
        pods: pods.state().iter().map(|x| (**x).clone()).collect(),
        runs: runs.state().iter().map(|x| (**x).clone()).collect(),
    })
}

/// Where the watch draws: a terminal (redrawn in place) or anything else (printed again,
/// plainly, on each change).
enum Screen {
    Terminal { drawn: bool },
    Plain { last: Vec<String> },
}

impl Screen {
    fn draw(&mut self, out: &mut impl Write, lines: &[String]) -> std::io::Result<()> {
        match self {
            Screen::Terminal { drawn } => {
                let (cols, rows) = terminal::size().unwrap_or((u16::MAX, u16::MAX));
                if !*drawn {
                    queue!(out, cursor::Hide, terminal::Clear(terminal::ClearType::All))?;
                    *drawn = true;
                }
                queue!(out, cursor::MoveTo(0, 0))?;
                // Long lines would wrap and more lines than rows would scroll, and then
                // moving to the top no longer overwrites the previous frame.
                for line in lines.iter().take(usize::from(rows.saturating_sub(1))) {
                    let line: String = line.chars().take(usize::from(cols)).collect();
                    queue!(
                        out,
                        Print(line),
                        terminal::Clear(terminal::ClearType::UntilNewLine),
                        Print("\r\n")
                    )?;
                }
                queue!(out, terminal::Clear(terminal::ClearType::FromCursorDown))?;
            }
            Screen::Plain { last } => {
                if last.as_slice() == lines {
                    return Ok(());
                }
                if !last.is_empty() {
                    writeln!(out)?;
                }
                for line in lines {
                    writeln!(out, "{line}")?;
                }
                *last = lines.to_vec();
            }
        }
        out.flush()
    }

    fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if let Screen::Terminal { drawn: true } = self {
            queue!(out, cursor::Show)?;
            out.flush()?;
        }
        Ok(())
    }
}

/// Why a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Interrupted,
    TimedOut,
    Deleted,
}

/// Watches the Rollout and what it owns and draws the view on every change (and every
/// second on a terminal, for the ages), until Ctrl-C, `timeout`, or the Rollout is gone.
pub async fn watch(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<Ended> {
    // The pods' selector comes from the Rollout; read it once (it is immutable in spirit,
    // as a Deployment's is).
    let first = Api::<Rollout>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .with_context(|| format!("rollout {ns}/{name}"))?;
    let owned = format!("{ROLLOUT_LABEL}={name}");
    let (rollouts, c1) = reflect(
        Api::<Rollout>::namespaced(client.clone(), ns),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    );
    let (sets, c2) = reflect(
        Api::<ReplicaSet>::namespaced(client.clone(), ns),
        watcher::Config::default().labels(&owned),
    );
    let (runs, c3) = reflect(
        Api::<AnalysisRun>::namespaced(client.clone(), ns),
        watcher::Config::default().labels(&owned),
    );
    let (pods, c4) = reflect(
        Api::<Pod>::namespaced(client.clone(), ns),
        watcher::Config::default().labels(&pod_selector(&first)?),
    );
    let mut changes = stream::select_all([c1.boxed(), c2.boxed(), c3.boxed(), c4.boxed()]);
    let stdout = std::io::stdout();
    let mut screen = if stdout.is_terminal() {
        Screen::Terminal { drawn: false }
    } else {
        Screen::Plain { last: Vec::new() }
    };
    let mut out = stdout.lock();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let until_deadline = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ready = false;
    let ended = loop {
        tokio::select! {
            change = changes.next() => if change.is_none() { bail!("the watches ended") },
            _ = tick.tick(), if matches!(screen, Screen::Terminal { .. }) => {},
            _ = &mut interrupted => break Ended::Interrupted,
            () = &mut until_deadline => break Ended::TimedOut,
        }
        if !ready {
            // Draw only once every list is in: a partial tree would flash.
            ready = [
                rollouts.wait_until_ready().now_or_never(),
                sets.wait_until_ready().now_or_never(),
                runs.wait_until_ready().now_or_never(),
                pods.wait_until_ready().now_or_never(),
            ]
            .iter()
            .all(|r| matches!(r, Some(Ok(()))));
            if !ready {
                continue;
            }
        }
        match snapshot(&rollouts, &sets, &pods, &runs) {
            Some(tree) => screen.draw(&mut out, &render_tree(&tree, Timestamp::now()))?,
            None => break Ended::Deleted,
        }
    };
    screen.finish(&mut out)?;
    Ok(ended)
}
