//! The controller under test as a process: started, sampled from /proc (resident memory,
//! CPU time) and the machine's load, and stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One sample of the controller process and the machine.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the benchmark's clock started.
    pub at: f64,
    pub rss_kib: u64,
    /// Peak resident set (VmHWM) so far.
    pub hwm_kib: u64,
    /// User + system CPU seconds so far.
    pub cpu_s: f64,
    /// /proc/loadavg, 1-minute average.
    pub load1: f64,
}

pub struct ControllerUnderTest {
    child: Child,
    pub log: PathBuf,
    samples: Arc<Mutex<Vec<Sample>>>,
    sampler: tokio::task::JoinHandle<()>,
}

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ): 100 on every Linux ABI
/// that matters; `getconf CLK_TCK` says so when in doubt.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn read_sample(pid: u32, ticks: f64, at: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let load1 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    Some(Sample {
        at,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        cpu_s: (utime + stime) / ticks,
        load1,
    })
}

impl ControllerUnderTest {
    /// Starts `program args...` with its output in `log`, and samples it every 500 ms.
    pub fn start(
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: PathBuf,
        clock: std::time::Instant,
    ) -> Result<Self> {
        let file = std::fs::File::create(&log)?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().cloned())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let sampler = tokio::spawn(async move {
            let ticks = clock_ticks();
            let mut every = tokio::time::interval(Duration::from_millis(500));
            loop {
                every.tick().await;
                let Some(s) = read_sample(pid, ticks, clock.elapsed().as_secs_f64()) else {
                    break;
                };
                sink.lock().unwrap().push(s);
            }
        });
        Ok(ControllerUnderTest {
            child,
            log,
            samples,
            sampler,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The latest sample, taken now.
    pub fn sample_now(&self, clock: std::time::Instant) -> Option<Sample> {
        let s = read_sample(self.pid(), clock_ticks(), clock.elapsed().as_secs_f64())?;
        self.samples.lock().unwrap().push(s);
        Some(s)
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after `grace`. (Dropped without it, the process is killed.)
    pub async fn stop(&mut self, grace: Duration) {
        self.sampler.abort();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if !self.running() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerUnderTest {
    fn drop(&mut self) {
        self.sampler.abort();
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
