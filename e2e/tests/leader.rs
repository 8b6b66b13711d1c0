//! Two controller replicas with leader election on the real plane: only the Lease holder
//! acts; a standby takes over when the leader is killed, stopped or cut off, with no step
//! repeated or skipped and never two actors at once.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::Env;
use sluice_e2e::{ControllerProcess, kubeconfig_path, wait_for};
use tokio::net::{TcpListener, TcpStream};

const LEASE: &str = "sluice-controller";

fn elected(ns: &str) -> Vec<String> {
    ["--leader-elect", "--leader-election-namespace", ns]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn start(ns: &str, kubeconfig: &Path) -> Result<ControllerProcess> {
    let args = elected(ns);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ControllerProcess::start_as(ns, kubeconfig, &args)
}

fn log(c: &ControllerProcess) -> String {
    std::fs::read_to_string(&c.log).unwrap_or_default()
}

fn leads(c: &ControllerProcess) -> bool {
    log(c).contains("became the leader")
}

/// The replica whose pid holds the Lease.
async fn holder(env: &Env) -> Result<u32> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), env.ns());
    let lease = leases.get(LEASE).await?;
    let who = lease
        .spec
        .and_then(|s| s.holder_identity)
        .context("the Lease has a holder")?;
    who.rsplit('_')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("a pid in the holder identity {who}"))
}

async fn two_replicas(
    env: &Env,
    kubeconfig: &Path,
) -> Result<(ControllerProcess, ControllerProcess)> {
    let a = start(env.ns(), kubeconfig)?;
    let b = start(env.ns(), &kubeconfig_path())?;
    wait_for("one replica leads", Duration::from_secs(30), || async {
        Ok(leads(&a) || leads(&b))
    })
    .await?;
    let pid = holder(env).await?;
    Ok(if pid == a.pid() { (a, b) } else { (b, a) })
}

/// A namespace without the Env's own (unelected) controller.
async fn quiet_env(prefix: &str) -> Result<Env> {
    let mut env = Env::new(prefix).await?;
    if let Some(c) = env.controller.take() {
        c.kill();
    }
    env.services(&["web-stable", "web-canary"]).await?;
    Ok(env)
}

async fn paused_rollout(env: &Env) -> Result<()> {
    env.rollout(
        2,
        json!({
            "canaryService": "web-canary", "stableService": "web-stable",
            "steps": [{ "setWeight": 50 }, { "pause": {} }, { "setWeight": 100 }, { "pause": {} }],
        }),
    )
    .await?;
    env.wait_healthy_on_new_revision().await?;
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    // The step's Event is written after the status that shows the pause: wait for it too,
    // or a leader stopped right after the status could not have told it (an Event lost
    // with the leader is not a step skipped, and each_step_once counts Events).
    wait_for(
        "the first StepCompleted",
        Duration::from_secs(10),
        || async { Ok(!env.steps_completed().await?.is_empty()) },
    )
    .await?;
    Ok(())
}

/// The first `steps` steps completed once each: none repeated (a StepCompleted twice)
/// or skipped.
async fn each_step_once(env: &Env, steps: usize) -> Result<()> {
    let completed = env.steps_completed().await?;
    let total: i32 = completed.iter().map(|(_, n)| n).sum();
    if completed.len() != steps || total != steps as i32 {
        bail!("expected each of {steps} steps completed once, got {completed:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_the_lease_and_no_step_repeats() -> Result<()> {
    let env = quiet_env("leader-kill").await?;
    let (leader, standby) = two_replicas(&env, &kubeconfig_path()).await?;
    paused_rollout(&env).await?;
    assert!(!leads(&standby), "one leader at a time:\n{}", log(&standby));

    let killed = Instant::now();
    leader.kill();
    wait_for("the standby leads", Duration::from_secs(25), || async {
        Ok(leads(&standby))
    })
    .await?;
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(15 + 2 + 2), "took {took:?}");

    // The new leader carries the rollout on from the pause it was at.
    env.act(UserAction::Promote).await?;
    env.wait_step(3, RolloutPhase::Paused).await?;
    env.act(UserAction::Promote).await?;
    env.wait_healthy_on_new_revision().await?;
    each_step_once(&env, 4).await?;
    println!("SIGKILL: standby led after {took:?}");
    standby.kill();
    env.finish().await
}

#[tokio::test]
async fn a_stopped_leader_hands_over_within_three_seconds() -> Result<()> {
    let env = quiet_env("leader-term").await?;
    let (leader, standby) = two_replicas(&env, &kubeconfig_path()).await?;
    paused_rollout(&env).await?;

    let stopped = Instant::now();
    let status = leader.terminate()?;
    assert!(status.success(), "a clean exit on SIGTERM: {status:?}");
    wait_for("the standby leads", Duration::from_secs(10), || async {
        Ok(leads(&standby))
    })
    .await?;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(3), "handover took {took:?}");
    env.act(UserAction::Promote).await?;
    env.wait_step(3, RolloutPhase::Paused).await?;
    each_step_once(&env, 3).await?;
    println!("SIGTERM: standby led after {took:?}");
    standby.kill();
    env.finish().await
}

/// A loopback TCP proxy to the apiserver that the test can cut (every connection, and
/// no new ones).
struct Proxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Proxy { port, task })
    }

    /// Drops every connection and the listener (the JoinSet goes with the task).
    fn cut(self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_leader_cut_off_from_the_apiserver_stops_before_the_standby_takes_over() -> Result<()> {
    let env = quiet_env("leader-cut").await?;
    // The first replica reaches the apiserver only through the proxy.
    let original = std::fs::read_to_string(kubeconfig_path())?;
    let server = original
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .context("the kubeconfig names its server")?
        .to_string();
    let proxy = Proxy::start(server.clone()).await?;
    let proxied = std::env::temp_dir().join(format!("sluice-leader-cut-{}.kubeconfig", proxy.port));
    std::fs::write(
        &proxied,
        original.replace(&server, &format!("127.0.0.1:{}", proxy.port)),
    )?;
    let a = start(env.ns(), &proxied)?;
    wait_for(
        "the proxied replica leads",
        Duration::from_secs(30),
        || async { Ok(leads(&a)) },
    )
    .await?;
    let b = start(env.ns(), &kubeconfig_path())?;
    paused_rollout(&env).await?;
    assert!(!leads(&b));

    let cut = Instant::now();
    proxy.cut();
    let mut a = a;
    wait_for("the cut-off leader stops", Duration::from_secs(20), || {
        let exited = !a.running();
        async move { Ok(exited) }
    })
    .await?;
    let stopped_after = cut.elapsed();
    wait_for("the standby leads", Duration::from_secs(30), || async {
        Ok(leads(&b))
    })
    .await?;
    let led_after = cut.elapsed();
    assert!(
        stopped_after < led_after,
        "never two actors: stopped after {stopped_after:?}, standby led after {led_after:?}"
    );
    assert!(log(&a).contains("lost the lease"), "{}", log(&a));
    assert!(
        stopped_after <= Duration::from_secs(10 + 2),
        "stopped after {stopped_after:?}"
    );
    env.act(UserAction::Promote).await?;
    env.wait_step(3, RolloutPhase::Paused).await?;
    each_step_once(&env, 3).await?;
    println!("cut: leader stopped after {stopped_after:?}, standby led after {led_after:?}");
    let _ = std::fs::remove_file(&proxied);
    b.kill();
    env.finish().await
}
