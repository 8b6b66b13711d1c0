//! The plugin's spec actions on the real plane: `kubectl sluice restart` (and the
//! controller's `spec.restartAt`), `set image`, `undo` and `version`, each run as the
//! `kubectl-sluice` binary a user runs.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use sluice_controller::actions::UserAction;
use sluice_e2e::rollout_env::{Env, hashes};

/// Runs `kubectl-sluice --kubeconfig ... -n <ns> <args>`.
fn plugin(ns: &str, args: &[&str]) -> Result<Output> {
    let bin = std::path::PathBuf::from(std::env::var("SLUICE_CONTROLLER_BIN")?)
        .with_file_name("kubectl-sluice");
    let out = std::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(sluice_e2e::kubeconfig_path())
        .args(["-n", ns])
        .args(args)
        .output()
        .context("running kubectl-sluice")?;
    println!(
        "kubectl-sluice {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn restart_replaces_every_pod_within_max_unavailable_and_records_restarted_at() -> Result<()>
{
    let env = Env::new("restart-pods").await?;
    env.rollout(3, json!({ "maxUnavailable": 1, "steps": [] }))
        .await?;
    env.wait_healthy_on_new_revision().await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), env.ns());
    let lp = ListParams::default().labels("app=web");
    sluice_e2e::wait_for("3 ready pods", Duration::from_secs(60), || async {
        let list = pods.list(&lp).await?;
        Ok(list.items.len() == 3 && list.items.iter().all(ready))
    })
    .await?;
    let old: BTreeSet<String> = pods
        .list(&lp)
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();

    // Every pod's readiness as the watch shows it, and the fewest ready at any moment.
    let fewest = Arc::new(Mutex::new(i32::MAX));
    let watcher_task = {
        let (pods, fewest) = (pods.clone(), fewest.clone());
        tokio::spawn(async move {
            let mut seen: BTreeMap<String, bool> = BTreeMap::new();
            // Counted only once a list is complete: during one, the map is partial.
            let mut listed = false;
            let mut stream = watcher(pods, watcher::Config::default().labels("app=web"))
                .default_backoff()
                .boxed();
            while let Some(Ok(event)) = stream.next().await {
                match event {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        seen.insert(p.name_any(), ready(&p));
                    }
                    watcher::Event::Delete(p) => {
                        seen.remove(&p.name_any());
                    }
                    watcher::Event::Init => {
                        seen.clear();
                        listed = false;
                    }
                    watcher::Event::InitDone => listed = true,
                }
                if !listed {
                    continue;
                }
                let now = seen.values().filter(|r| **r).count() as i32;
                let mut f = fewest.lock().unwrap();
                *f = (*f).min(now);
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let out = plugin(env.ns(), &["restart", "web"])?;
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("restarting"), "{stdout}");
    let r = env.rollouts().get("web").await?;
    let restart_at = r.spec.restart_at.clone().context("spec.restartAt set")?.0;

    let r = env
        .wait("status.restartedAt set", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.restarted_at.as_ref())
                .is_some()
        })
        .await?;
    let restarted_at = r.status.clone().unwrap().restarted_at.unwrap().0;
    assert!(restarted_at >= restart_at, "{restarted_at} < {restart_at}");
    watcher_task.abort();

    let now = pods.list(&lp).await?.items;
    let names: BTreeSet<String> = now.iter().map(|p| p.name_any()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names.is_disjoint(&old),
        "every pod replaced: old {old:?}, now {names:?}"
    );
    assert!(
        now.iter().all(|p| p
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| t.0 >= restart_at)),
        "every pod created after restartAt"
    );
    let fewest = *fewest.lock().unwrap();
    println!("restart: fewest ready pods at any moment: {fewest} of 3");
    assert!(
        fewest >= 2,
        "at most maxUnavailable (1) pod unavailable at any moment; fewest ready {fewest}"
    );
    // The same revision: a restart is not a rollout.
    let (current, stable) = hashes(&r);
    assert_eq!(current, stable);
    assert_eq!(env.sizes().await?.len(), 1, "no new ReplicaSet");

    // Done: a later look evicts nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later: BTreeSet<String> = pods
        .list(&lp)
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(later, names, "nothing restarted after restartedAt");

    // The dashboard's restart (the actions module's UserAction::Restart) does the same.
    env.act(UserAction::Restart).await?;
    env.wait("a second restart recorded", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.restarted_at.as_ref())
            .is_some_and(|t| t.0 > restarted_at)
    })
    .await?;
    let again: BTreeSet<String> = pods
        .list(&lp)
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(again.len(), 3);
    assert!(again.is_disjoint(&names), "replaced again: {again:?}");
    env.finish().await
}

#[tokio::test]
async fn set_image_undo_and_version_through_the_plugin() -> Result<()> {
    let env = Env::new("set-image").await?;
    env.rollout(2, json!({ "steps": [] })).await?;
    let (v1, _) = hashes(&env.wait_healthy_on_new_revision().await?);

    let out = plugin(
        env.ns(),
        &["set", "image", "web", "web=registry.k8s.io/pause:3.9"],
    )?;
    assert!(out.status.success());
    let r = env
        .wait("the new image rolled out", |r| {
            let s = r.status.clone().unwrap_or_default();
            s.stable_rs.is_some()
                && s.stable_rs == s.current_pod_hash
                && s.current_pod_hash.as_deref() != Some(v1.as_str())
        })
        .await?;
    let image = r.spec.template.spec.as_ref().unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("registry.k8s.io/pause:3.9"));
    let (v2, _) = hashes(&r);

    let out = plugin(env.ns(), &["set", "image", "web", "db=postgres:17"])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no container \"db\"") && stderr.contains("its containers: web"),
        "{stderr}"
    );

    // Undo: back to revision 1's template, which is revision 1's ReplicaSet again.
    let out = plugin(env.ns(), &["undo", "web"])?;
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rolled back to revision 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = env
        .wait("rolled back to v1", |r| {
            let s = r.status.clone().unwrap_or_default();
            s.current_pod_hash.as_deref() == Some(v1.as_str()) && s.stable_rs == s.current_pod_hash
        })
        .await?;
    assert_eq!(
        r.spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("registry.k8s.io/pause:3.10")
    );
    let sizes = env.sizes().await?;
    assert_eq!(sizes.len(), 2, "the old ReplicaSet reused: {sizes:?}");
    assert!(sizes.iter().any(|(h, _, _)| h == &v2));

    let out = plugin(env.ns(), &["undo", "web", "--to-revision", "9"])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no revision 9 (revisions: 1 (current), 2)"),
        "{stderr}"
    );
    let out = plugin(env.ns(), &["undo", "web", "--to-revision", "2"])?;
    assert!(out.status.success());
    env.wait("back at revision 2", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.current_pod_hash.as_deref())
            == Some(v2.as_str())
    })
    .await?;

    let out = plugin(env.ns(), &["version"])?;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kubectl-sluice {}", env!("CARGO_PKG_VERSION"))
    );
    env.finish().await
}
