//! The plugin's read commands on the real plane, run as the `kubectl-sluice` binary a user
//! runs: `get rollout` (once, piped, and `--watch` in a pseudo-terminal whose screen is
//! read back with a VT100 parser), `list rollouts`, and kubectl's own plugin completion
//! through `kubectl_complete-sluice`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::api::DeleteParams;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use serde_json::json;
use sluice_api::rollout::RolloutPhase;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::Env;

fn plugin_bin() -> Result<PathBuf> {
    Ok(PathBuf::from(std::env::var("SLUICE_CONTROLLER_BIN")?).with_file_name("kubectl-sluice"))
}

/// Runs `kubectl-sluice --kubeconfig ... -n <ns> <args>` with its output piped.
fn plugin(ns: &str, args: &[&str]) -> Result<Output> {
    let out = std::process::Command::new(plugin_bin()?)
        .arg("--kubeconfig")
        .arg(sluice_e2e::kubeconfig_path())
        .args(["-n", ns])
        .args(args)
        .output()
        .context("running kubectl-sluice")?;
    println!(
        "kubectl-sluice {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

const STEPS: &str = r#"[{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]"#;

/// A Rollout of 4 replicas paused at its second step (25%) on revision 2.
async fn paused_at_second_step(prefix: &str) -> Result<Env> {
    let env = Env::new(prefix).await?;
    let steps: serde_json::Value = serde_json::from_str(STEPS)?;
    env.rollout(4, json!({ "steps": steps })).await?;
    env.wait_healthy_on_new_revision().await?;
    env.set_version("v2").await?;
    env.wait_step(1, RolloutPhase::Paused).await?;
    Ok(env)
}

/// The plugin in a pseudo-terminal, its screen kept by a VT100 parser.
struct Terminal {
    screen: Arc<Mutex<vt100::Parser>>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    input: Box<dyn Write + Send>,
    // Kept open: dropping the master hangs the terminal up.
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Terminal {
    fn start(ns: &str, args: &[&str]) -> Result<Self> {
        let (rows, cols) = (60, 200);
        let pair = native_pty_system().openpty(PtySize {
            rows,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        })?;
        let mut cmd = CommandBuilder::new(plugin_bin()?);
        cmd.arg("--kubeconfig");
        cmd.arg(sluice_e2e::kubeconfig_path());
        cmd.args(["-n", ns]);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        let child = pair.slave.spawn_command(cmd)?;
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader()?;
        let input = pair.master.take_writer()?;
        let screen = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let feed = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                feed.lock().unwrap().process(&buf[..n]);
            }
        });
        Ok(Terminal {
            screen,
            child,
            input,
            _master: pair.master,
        })
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen satisfies `pred`; the screen on failure.
    async fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.contents();
            if pred(&now) {
                return Ok(now);
            }
            if Instant::now() > deadline {
                bail!("screen never showed {what}:\n{now}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The step line of the steps list that carries the marker.
fn marked_step(screen: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| l.starts_with("  ▶ "))
        .map(|l| l.trim_end().to_string())
}

fn actual_weight(screen: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| l.starts_with("  ActualWeight:"))
        .map(|l| l.trim_end().to_string())
}

/// The weight line once the controller read the split back (with no router, from the
/// replica counts).
fn verified(weight: i32) -> String {
    format!("  ActualWeight: {weight} (verified: the router shows it)")
}

#[tokio::test]
async fn watch_redraws_in_place_in_a_terminal_as_the_rollout_progresses() -> Result<()> {
    let env = paused_at_second_step("cli-watch").await?;
    let mut term = Terminal::start(env.ns(), &["get", "rollout", "web", "--watch"])?;

    let first = term
        .wait("step 2 marked at 25%", |s| {
            marked_step(s).as_deref() == Some("  ▶  2. Pause until promoted")
                && actual_weight(s).as_deref() == Some(&verified(25))
        })
        .await?;
    assert!(first.contains("Status:         ॥ Paused"), "{first}");
    assert!(first.contains("  Step:         2/4"), "{first}");
    assert!(first.contains("# revision:2"), "{first}");
    assert!(first.contains("# revision:1"), "{first}");

    env.act(UserAction::Promote).await?;
    let later = term
        .wait("step 4 marked at 75%", |s| {
            marked_step(s).as_deref() == Some("  ▶  4. Pause until promoted")
                && actual_weight(s).as_deref() == Some(&verified(75))
        })
        .await?;
    // In place: one frame on the screen, the old marker and weight gone, not scrolled by.
    assert_eq!(later.matches("Name:").count(), 1, "{later}");
    assert!(!later.contains("  ▶  2."), "{later}");
    assert!(later.contains("  ✔  3. Set weight 75%"), "{later}");
    assert!(later.contains("  Step:         4/4"), "{later}");
    assert!(term.screen.lock().unwrap().screen().hide_cursor());

    // Ctrl-C: a clean exit, with the cursor shown again.
    term.input.write_all(b"\x03")?;
    term.input.flush()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = term.child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            term.child.kill()?;
            bail!(
                "kubectl-sluice did not exit on Ctrl-C:\n{}",
                term.contents()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!term.screen.lock().unwrap().screen().hide_cursor());
    Ok(())
}

#[tokio::test]
async fn get_rollout_piped_is_plain_text_with_the_whole_tree() -> Result<()> {
    let env = paused_at_second_step("cli-get").await?;
    let out = plugin(env.ns(), &["get", "rollout", "web"])?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    assert!(
        !text.contains('\x1b'),
        "escape codes in piped output:\n{text}"
    );
    let (canary, stable) = sluice_e2e::rollout_env::hashes(&env.rollouts().get("web").await?);
    for want in [
        format!("Namespace:      {}", env.ns()),
        "  SetWeight:    25".to_string(),
        verified(25),
        "  ▶  2. Pause until promoted".to_string(),
        "Images:         registry.k8s.io/pause:3.10 (canary)".to_string(),
        "                registry.k8s.io/pause:3.10 (stable)".to_string(),
        "  Desired:      4".to_string(),
        "├──# revision:2".to_string(),
        "└──# revision:1".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "no line {want:?} in\n{text}"
        );
    }
    let row = |name: &str| {
        text.lines()
            .find(|l| l.contains(&format!("⧉ web-{name} ")))
            .map(str::to_string)
    };
    let canary_row = row(&canary).context("the canary ReplicaSet's row")?;
    assert!(canary_row.ends_with("canary  ready:1/1"), "{canary_row}");
    let stable_row = row(&stable).context("the stable ReplicaSet's row")?;
    assert!(stable_row.ends_with("stable  ready:3/3"), "{stable_row}");
    let pods = text
        .lines()
        .filter(|l| l.contains(" Pod ") && l.contains("✔ Running") && l.ends_with("ready:1/1"))
        .count();
    assert_eq!(pods, 4, "{text}");
    Ok(())
}

#[tokio::test]
async fn watch_piped_prints_plain_frames_and_stops_at_the_timeout_or_deletion() -> Result<()> {
    let env = paused_at_second_step("cli-watch-pipe").await?;
    let start = Instant::now();
    let out = plugin(
        env.ns(),
        &["get", "rollout", "web", "--watch", "--timeout", "3s"],
    )?;
    let took = start.elapsed();
    assert!(out.status.success());
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let text = String::from_utf8(out.stdout)?;
    assert!(
        !text.contains('\x1b'),
        "escape codes in piped output:\n{text}"
    );
    // Nothing changed in those 3 s: one frame, not one a second.
    assert_eq!(text.matches("Name:").count(), 1, "{text}");

    // Deleting the Rollout ends the watch.
    let child = std::process::Command::new(plugin_bin()?)
        .arg("--kubeconfig")
        .arg(sluice_e2e::kubeconfig_path())
        .args(["-n", env.ns(), "get", "rollout", "web", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.rollouts()
        .delete("web", &DeleteParams::default())
        .await?;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output());
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .context("the watch did not end when the Rollout was deleted")???;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("was deleted"), "{stderr}");
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("▶  2. Pause until promoted"), "{text}");
    Ok(())
}

#[tokio::test]
async fn list_rollouts_in_a_namespace_and_in_all() -> Result<()> {
    let env = paused_at_second_step("cli-list").await?;
    let out = plugin(env.ns(), &["list", "rollouts"])?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "NAME  STRATEGY  STATUS  STEP  WEIGHT  DESIRED  READY  AVAILABLE  AGE"
    );
    assert_eq!(lines.len(), 2, "{text}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        cells[..8],
        ["web", "Canary", "Paused", "2/4", "25", "4", "4", "4"],
        "{text}"
    );

    let out = plugin(env.ns(), &["list", "rollouts", "-A"])?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    assert!(text.starts_with("NAMESPACE "), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("{} ", env.ns())))
        .context("no row for the test's namespace")?;
    assert_eq!(row.split_whitespace().nth(1), Some("web"), "{row}");

    // Without -n, the kubeconfig context's namespace, as kubectl does.
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(sluice_e2e::kubeconfig_path())?)?;
    for context in config["contexts"]
        .as_sequence_mut()
        .context("kubeconfig contexts")?
    {
        context["context"]["namespace"] = env.ns().into();
    }
    let kubeconfig = std::env::temp_dir().join(format!("{}-kubeconfig", env.ns()));
    std::fs::write(&kubeconfig, serde_yaml::to_string(&config)?)?;
    let out = std::process::Command::new(plugin_bin()?)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["list", "rollouts"])
        .output()?;
    std::fs::remove_file(&kubeconfig)?;
    let text = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.starts_with("web ")),
        "not the context's namespace: {text}"
    );

    let empty = plugin("default-empty-ns-for-cli", &["list", "rollouts"])?;
    assert!(empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("No Rollouts found"));
    Ok(())
}

/// `kubectl sluice <TAB>` goes through kubectl (1.26+), which runs
/// `kubectl_complete-sluice` from PATH: the real kubectl, the shipped script.
#[test]
fn kubectl_completes_the_plugin_through_kubectl_complete_sluice() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("sluice-cli-completion-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(plugin_bin()?, dir.join("kubectl-sluice"))?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cmd/kubectl_complete-sluice");
    std::fs::copy(&script, dir.join("kubectl_complete-sluice"))?;
    let path = format!("{}:{}", dir.display(), std::env::var("PATH")?);
    let complete = |words: &[&str]| -> Result<String> {
        let out = std::process::Command::new("kubectl")
            .arg("__complete")
            .arg("sluice")
            .args(words)
            .env("PATH", &path)
            .env("KUBECONFIG", sluice_e2e::kubeconfig_path())
            .output()?;
        assert!(out.status.success(), "{out:?}");
        Ok(String::from_utf8(out.stdout)?)
    };
    let top = complete(&["pro"])?;
    assert!(top.lines().any(|l| l.starts_with("promote")), "{top}");
    let get = complete(&["get", "r"])?;
    assert!(get.lines().any(|l| l.starts_with("rollout")), "{get}");
    let watch = complete(&["get", "rollout", "web", "--wa"])?;
    assert!(watch.lines().any(|l| l.starts_with("--watch")), "{watch}");
    assert!(
        watch.lines().any(|l| l == ":4"),
        "no NoFileComp directive: {watch}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
