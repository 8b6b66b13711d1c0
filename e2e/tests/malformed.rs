//! Objects the apiserver stores but sluice cannot read are isolated: a Rollout, an
//! AnalysisTemplate and an AnalysisRun with a field of the wrong type each get
//! `InvalidSpec` and one Event, and then no further writes for a minute, while twenty
//! healthy Rollouts beside them in the same namespace roll out a new version.
//!
//! Such objects are made the way they arise in a real cluster: written while the CRD's
//! schema was looser (here: replaced by a permissive one for a moment), then the real
//! schema is restored; the apiserver keeps stored objects as they were. That replacement
//! is cluster-wide, which is why this test is a test binary of its own (the tests of one
//! binary run in parallel; binaries run one after the other), and why the CRDs are
//! restored whatever the test's outcome.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionSpec,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use sluice_api::Rollout;
use sluice_api::rollout::RolloutPhase;
use sluice_e2e::rollout_env::{Env, pod_template};
use sluice_e2e::{ControllerProcess, TestNamespace, apply, client, install_crds, wait_for};

/// Healthy Rollouts beside the malformed objects.
const NEIGHBOURS: usize = 20;
/// How long the malformed objects must see no write.
const QUIET: Duration = Duration::from_secs(60);

const CRDS: [&str; 3] = [
    "rollouts.sluice.dev",
    "analysistemplates.sluice.dev",
    "analysisruns.sluice.dev",
];

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sluice.dev", "v1alpha1", kind),
        plural,
    )
}

/// One object the apiserver stores and sluice cannot read.
struct Bad {
    res: ApiResource,
    doc: Value,
    /// The field the message must name.
    field: &'static str,
    /// False when the apiserver refuses any status write for it (a CEL rule of the real
    /// schema cannot be evaluated over the stored value): then the Event alone says it.
    status: bool,
}

impl Bad {
    fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap()
    }
}

/// The bad objects: a Rollout, a template and a run with a field of the wrong type, and a
/// template whose wrong field has a CEL rule.
fn bad_objects() -> Vec<Bad> {
    let metric = |extra: Value| {
        let mut m = json!({ "name": "m", "successCondition": "result[0] > 0",
            "provider": { "prometheus": { "address": "http://127.0.0.1:1", "query": "up" } } });
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        m
    };
    let bad = |res, doc, field, status| Bad {
        res,
        doc,
        field,
        status,
    };
    vec![
        bad(
            resource("Rollout", "rollouts"),
            json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                "metadata": { "name": "bad" },
                "spec": {
                    // Not `replicas`: the scale subresource makes the apiserver check that
                    // one whatever the schema says.
                    // Nor a field with a CEL rule: the apiserver would refuse its status
                    // (the bad-cel template is that case).
                    "replicas": 1,
                    "paused": "sometimes",
                    "selector": { "matchLabels": { "app": "bad" } },
                    "template": pod_template("v1"),
                    "strategy": { "canary": { "steps": [{ "setWeight": 50 }] } },
                },
            }),
            "spec.paused",
            true,
        ),
        bad(
            resource("AnalysisTemplate", "analysistemplates"),
            json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": { "name": "bad" },
                "spec": { "metrics": [metric(json!({ "inconclusiveLimit": "none" }))] },
            }),
            "spec.metrics[0].inconclusiveLimit",
            true,
        ),
        bad(
            resource("AnalysisTemplate", "analysistemplates"),
            json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": { "name": "bad-cel" },
                "spec": { "metrics": [metric(json!({ "count": "many", "interval": "1m" }))] },
            }),
            "spec.metrics[0].count",
            false,
        ),
        bad(
            // Labelled as a Rollout's run, so it is in the Rollout controller's cache too.
            resource("AnalysisRun", "analysisruns"),
            json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
                "metadata": { "name": "bad", "labels": { "sluice.dev/rollout": "gone" } },
                "spec": { "metrics": [metric(json!({ "failureLimit": "none" }))] },
            }),
            "spec.metrics[0].failureLimit",
            true,
        ),
    ]
}

/// Replaces the schema of sluice's CRDs by one that admits any spec and status, and
/// returns the CRDs' specs as they were. A replace (PUT), not an apply: what comes back
/// must be exactly the old schema, whoever owned which field of it.
async fn loosen_crds(client: &Client) -> Result<Vec<(String, CustomResourceDefinitionSpec)>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut originals = Vec::new();
    for name in CRDS {
        let mut crd = api.get(name).await?;
        originals.push((name.to_string(), crd.spec.clone()));
        for version in &mut crd.spec.versions {
            version.schema = Some(serde_json::from_value(json!({ "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                    "status": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                },
            } }))?);
        }
        api.replace(name, &PostParams::default(), &crd)
            .await
            .with_context(|| format!("loosening {name}"))?;
    }
    Ok(originals)
}

/// Puts the CRDs' specs back as they were.
async fn restore_crds(
    client: &Client,
    originals: &[(String, CustomResourceDefinitionSpec)],
) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (name, spec) in originals {
        let mut crd = api.get(name).await?;
        crd.spec = spec.clone();
        api.replace(name, &PostParams::default(), &crd)
            .await
            .with_context(|| format!("restoring {name}"))?;
    }
    Ok(())
}

/// Creates the bad objects under a permissive schema; the real CRDs are back afterwards,
/// whether that worked or not (even on a panic).
async fn create_bad_objects(client: &Client, ns: &str) -> Result<()> {
    let originals = loosen_crds(client).await?;
    let work = async {
        for Bad { res, doc, .. } in bad_objects() {
            let kind = res.kind.clone();
            // The apiserver may take a moment to serve the new schema.
            wait_for(
                &format!("the loosened {kind} schema to admit the bad {kind}"),
                Duration::from_secs(30),
                || {
                    let doc = doc.clone();
                    async move {
                        match apply(client, ns, doc).await {
                            Ok(()) => Ok(true),
                            Err(e) if format!("{e:#}").contains("Invalid") => {
                                eprintln!("not admitted yet: {e:#}");
                                Ok(false)
                            }
                            Err(e) => Err(e),
                        }
                    }
                },
            )
            .await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let outcome = AssertUnwindSafe(work).catch_unwind().await;
    restore_crds(client, &originals).await?;
    // And the same as every test installs them, established again.
    install_crds(client).await?;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn dynamic(client: &Client, ns: &str, res: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, res)
}

/// The condition of a type in a stored object, as JSON.
fn condition(object: &DynamicObject, type_: &str) -> Option<Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// Events about one object: (reason, note, times recorded).
async fn events_about(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<Vec<(String, String, i32)>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
                e.series.map_or(1, |s| s.count),
            )
        })
        .collect())
}

async fn neighbour(env: &Env, i: usize, version: &str) -> Result<()> {
    let app = format!("n{i}");
    let mut template = pod_template(version);
    template["metadata"]["labels"] = json!({ "app": app });
    env.apply(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": app },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": app } },
            "template": template,
            "strategy": { "canary": { "steps": [{ "setWeight": 50 }, { "pause": { "duration": 1 } }] } },
        },
    }))
    .await
}

/// Names of the neighbours that are not Healthy on a revision of `version` yet (listed
/// as plain JSON: the bad Rollout would fail a typed list, as it did sluice's).
async fn not_healthy(env: &Env, version: &str) -> Result<Vec<String>> {
    let api = dynamic(&env.client, env.ns(), &resource("Rollout", "rollouts"));
    let mut behind = Vec::new();
    for object in api.list(&ListParams::default()).await?.items {
        let name = object.name_any();
        if name == "bad" {
            continue;
        }
        let r: Rollout = serde_json::from_value(serde_json::to_value(&object)?)?;
        if !healthy_on(&r, version) {
            behind.push(name);
        }
    }
    Ok(behind)
}

fn healthy_on(r: &Rollout, version: &str) -> bool {
    let s = r.status.clone().unwrap_or_default();
    let annotations = r
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone());
    annotations
        .and_then(|a| a.get("version").cloned())
        .as_deref()
        == Some(version)
        && s.phase == Some(RolloutPhase::Healthy)
        && s.stable_rs.is_some()
        && s.stable_rs == s.current_pod_hash
        && r.metadata.generation == s.observed_generation
}

/// Counts resourceVersion changes of one object from `since` on, until dropped.
fn count_writes(
    api: Api<DynamicObject>,
    name: &str,
    since: String,
) -> tokio::task::JoinHandle<Vec<String>> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut last = since;
        let mut stream = watcher(api, config).applied_objects().boxed();
        let deadline = tokio::time::Instant::now() + QUIET;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                next = stream.next() => match next {
                    Some(Ok(obj)) => {
                        let rv = obj.resource_version().unwrap_or_default();
                        if rv != last {
                            seen.push(rv.clone());
                            last = rv;
                        }
                    }
                    Some(Err(_)) => {}
                    None => break,
                },
            }
        }
        seen
    })
}

#[tokio::test]
async fn malformed_objects_are_reported_once_and_do_not_stall_their_neighbours() -> Result<()> {
    let started = Instant::now();
    let client = client().await?;
    install_crds(&client).await?;
    let ns = TestNamespace::create(&client, "malformed").await?;
    let ns_name = ns.name.clone();
    create_bad_objects(&client, &ns_name).await?;
    let env = Env {
        client: client.clone(),
        ns,
        controller: None,
    };
    for i in 0..NEIGHBOURS {
        neighbour(&env, i, "v1").await?;
    }
    let mut env = env;
    env.controller = Some(ControllerProcess::start(&ns_name)?);
    let log = || {
        env.controller
            .as_ref()
            .map(|c| c.log_tail())
            .unwrap_or_default()
    };

    // Each bad object is reported: InvalidSpec=True, reason Malformed, naming its field;
    // or, where the apiserver refuses its status, a Warning Event naming it.
    for bad in bad_objects() {
        let api = dynamic(&client, &ns_name, &bad.res);
        let (kind, name) = (bad.res.kind.clone(), bad.name().to_string());
        let expected = format!("the {kind} cannot be read: {}: invalid type", bad.field);
        let reported = wait_for(
            &format!("{kind} {name} to be reported"),
            Duration::from_secs(60),
            || async {
                if !bad.status {
                    let events = events_about(&client, &ns_name, &kind, &name).await?;
                    return Ok(events.iter().any(|(_, note, _)| note.contains(&expected)));
                }
                let object = api.get(&name).await?;
                Ok(condition(&object, "InvalidSpec").is_some_and(|c| {
                    c["status"] == "True"
                        && c["reason"] == "Malformed"
                        && c["message"].as_str().is_some_and(|m| m.contains(&expected))
                }))
            },
        )
        .await;
        if let Err(e) = reported {
            let object = api.get(&name).await.map(|o| o.data["status"].clone());
            bail!("{e:#}\nstatus: {object:?}\ncontroller log:\n{}", log());
        }
    }
    let bad_rollout = dynamic(&client, &ns_name, &resource("Rollout", "rollouts"))
        .get("bad")
        .await?;
    assert_eq!(bad_rollout.data["status"]["phase"], "Degraded");
    assert_eq!(
        condition(&bad_rollout, "Stalled").unwrap()["status"],
        "True"
    );
    let bad_run = dynamic(&client, &ns_name, &resource("AnalysisRun", "analysisruns"))
        .get("bad")
        .await?;
    assert_eq!(
        bad_run.data["status"]["phase"], "Error",
        "a run that cannot be read can never pass"
    );

    // The neighbours came up in spite of the bad objects in the same caches.
    let up = wait_for(
        "the neighbours Healthy on v1",
        Duration::from_secs(120),
        || async { Ok(not_healthy(&env, "v1").await?.is_empty()) },
    )
    .await;
    if let Err(e) = up {
        bail!(
            "{e:#}\nbehind: {:?}\ncontroller log:\n{}",
            not_healthy(&env, "v1").await?,
            log()
        );
    }

    // The quiet minute: count every write to the bad objects while the neighbours roll
    // out v2.
    let mut counters = BTreeMap::new();
    for bad in bad_objects() {
        let api = dynamic(&client, &ns_name, &bad.res);
        let rv = api
            .get(bad.name())
            .await?
            .resource_version()
            .unwrap_or_default();
        let key = format!("{} {}", bad.res.kind, bad.name());
        counters.insert(key, count_writes(api, bad.name(), rv));
    }
    let quiet_started = Instant::now();
    for i in 0..NEIGHBOURS {
        neighbour(&env, i, "v2").await?;
    }
    let progressed = wait_for("the neighbours Healthy on v2", QUIET, || async {
        Ok(not_healthy(&env, "v2").await?.is_empty())
    })
    .await;
    let rolled_out_in = quiet_started.elapsed();
    if let Err(e) = progressed {
        bail!(
            "{e:#}\nbehind: {:?}\ncontroller log:\n{}",
            not_healthy(&env, "v2").await?,
            log()
        );
    }
    let mut writes = BTreeMap::new();
    for (kind, counter) in counters {
        writes.insert(kind, counter.await?);
    }
    let mut events = BTreeMap::new();
    for bad in bad_objects() {
        let key = format!("{} {}", bad.res.kind, bad.name());
        events.insert(
            key,
            events_about(&client, &ns_name, &bad.res.kind, bad.name()).await?,
        );
    }
    eprintln!(
        "malformed: {NEIGHBOURS} neighbours Healthy on v2 {rolled_out_in:?} into the quiet minute; \
         writes to the bad objects in {QUIET:?}: {writes:?}; events: {events:?}; test took {:?}",
        started.elapsed()
    );
    assert!(
        writes.values().all(Vec::is_empty),
        "the bad objects were written again (new resourceVersions): {writes:?}\ncontroller log:\n{}",
        log()
    );
    for (kind, events) in &events {
        assert_eq!(events.len(), 1, "{kind}: one Event: {events:?}");
        let (reason, note, count) = &events[0];
        assert_eq!(
            (reason.as_str(), *count),
            ("Malformed", 1),
            "{kind}: {events:?}"
        );
        assert!(note.contains("cannot be read"), "{kind}: {note}");
    }
    env.finish().await
}
