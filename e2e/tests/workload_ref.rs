//! `workloadRef` on the real plane: a Rollout takes over a Deployment (its template and
//! selector), scales it down as `scaleDown` says while kube-controller-manager runs it,
//! follows a change of its template through the steps, and reports a Deployment that is
//! not there until it appears.

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sluice_api::labels::POD_TEMPLATE_HASH_LABEL;
use sluice_api::rollout::RolloutPhase;
use sluice_e2e::rollout_env::{Env, hashes, pod_template};

fn deployment(name: &str, replicas: i32, version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": pod_template(version),
        },
    })
}

fn rollout(deployment: &str, scale_down: &str) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 3,
            "workloadRef": {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "name": deployment, "scaleDown": scale_down,
            },
            "strategy": { "canary": { "steps": [{ "setWeight": 50 }, { "pause": { "duration": "2s" } }] } },
        },
    })
}

fn available(d: &Deployment) -> i32 {
    d.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// The `version` annotation of the template of the ReplicaSet of revision `hash`.
async fn version_of(env: &Env, hash: &str) -> Result<Option<String>> {
    let sets: Api<ReplicaSet> = Api::namespaced(env.client.clone(), env.ns());
    let lp = ListParams::default().labels(&format!("{POD_TEMPLATE_HASH_LABEL}={hash}"));
    Ok(sets.list(&lp).await?.items.first().and_then(|rs| {
        rs.spec
            .template
            .as_ref()?
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("version")
            .cloned()
    }))
}

#[tokio::test]
async fn a_rollout_takes_over_a_deployment_progressively_and_follows_its_template() -> Result<()> {
    let env = Env::new("workload-ref").await?;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), env.ns());
    env.apply(deployment("web", 3, "v1")).await?;
    sluice_e2e::wait_for(
        "the Deployment's 3 pods",
        Duration::from_secs(60),
        || async { Ok(available(&deployments.get("web").await?) == 3) },
    )
    .await?;

    // Every spec.replicas the Deployment is given from now on.
    let (sizes_tx, mut sizes) = tokio::sync::mpsc::unbounded_channel();
    let watch = {
        let deployments = deployments.clone();
        tokio::spawn(async move {
            let config = watcher::Config::default().fields("metadata.name=web");
            let mut stream = watcher(deployments, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(d)) = stream.next().await {
                let _ = sizes_tx.send(d.spec.replicas.unwrap_or(1));
            }
        })
    };

    env.apply(rollout("web", "progressively")).await?;
    let first = env.wait_healthy_on_new_revision().await?;
    let (first_hash, _) = hashes(&first);
    assert_eq!(version_of(&env, &first_hash).await?.as_deref(), Some("v1"));
    assert_eq!(
        first.status.as_ref().and_then(|s| s.selector.as_deref()),
        Some("app=web"),
        "the selector is the Deployment's"
    );
    sluice_e2e::wait_for("the Deployment at 0", Duration::from_secs(60), || async {
        Ok(deployments.get("web").await?.spec.replicas == Some(0))
    })
    .await?;
    let mut seen = Vec::new();
    while let Ok(size) = sizes.try_recv() {
        if seen.last() != Some(&size) {
            seen.push(size);
        }
    }
    println!("the Deployment's spec.replicas over the migration: {seen:?}");
    assert_eq!(seen.first(), Some(&3), "{seen:?}");
    assert_eq!(seen.last(), Some(&0), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[1] < w[0]),
        "only ever scaled down: {seen:?}"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), env.ns());
    let scaled_down = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("DeploymentScaledDown"))
        .count();
    assert_eq!(scaled_down, 1);

    // GitOps changes the Deployment's template: the Rollout rolls it out through its
    // steps; the Deployment itself runs none of it.
    let patch = json!({ "spec": { "template": pod_template("v2") } });
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let paused = env.wait_step(1, RolloutPhase::Paused).await?;
    let (canary_hash, stable_hash) = hashes(&paused);
    assert_eq!(stable_hash, first_hash);
    assert_ne!(canary_hash, first_hash);
    assert_eq!(version_of(&env, &canary_hash).await?.as_deref(), Some("v2"));
    let done = env.wait_healthy_on_new_revision().await?;
    assert_eq!(hashes(&done).1, canary_hash);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), env.ns());
    let outside = pods
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !p.labels().contains_key(POD_TEMPLATE_HASH_LABEL))
        .map(|p| p.name_any())
        .collect::<Vec<_>>();
    assert!(outside.is_empty(), "pods not of a revision: {outside:?}");
    assert_eq!(deployments.get("web").await?.spec.replicas, Some(0));
    watch.abort();
    env.finish().await
}

#[tokio::test]
async fn a_missing_deployment_is_reported_until_it_appears_and_never_is_left_alone() -> Result<()> {
    let env = Env::new("workload-ref-missing").await?;
    env.apply(rollout("later", "never")).await?;
    let reported = env
        .wait("ReferenceNotFound for the Deployment", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "InvalidSpec"
                        && c.status == "True"
                        && c.reason == "ReferenceNotFound"
                        && c.message == "not found: Deployment later"
                })
            })
        })
        .await?;
    assert!(
        hashes(&reported).0.is_empty(),
        "no revision without a template"
    );

    // The Deployment's arrival brings the Rollout back (no poll): it runs its template.
    env.apply(deployment("later", 2, "v1")).await?;
    let healthy = env.wait_healthy_on_new_revision().await?;
    assert_eq!(
        version_of(&env, &hashes(&healthy).0).await?.as_deref(),
        Some("v1")
    );
    // scaleDown: never leaves the Deployment's own pods.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), env.ns());
    assert_eq!(deployments.get("later").await?.spec.replicas, Some(2));

    // Its template lives in the Deployment: set image is refused, saying where to go.
    let refused = sluice_controller::actions::set_image(
        &env.client,
        env.ns(),
        "web",
        &[("web".into(), "app:v9".into())],
    )
    .await
    .expect_err("no template of its own to change");
    assert!(
        refused
            .to_string()
            .contains("takes its pod template from Deployment later"),
        "{refused}"
    );
    env.finish().await
}
