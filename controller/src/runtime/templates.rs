//! Template validation: AnalysisTemplates and ClusterAnalysisTemplates get an
//! `InvalidSpec` condition as soon as they are applied, when a condition does not compile
//! or a duration does not parse (what the CRD's CEL rules cannot check), instead of the
//! problem surfacing at the first run. A template that does not even deserialize gets
//! `InvalidSpec` (reason `Malformed`) the same way, and the other templates go on.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::Patch;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use sluice_api::analysis::{AnalysisSpec, AnalysisTemplateStatus};
use sluice_api::{AnalysisTemplate, ClusterAnalysisTemplate};
use tracing::warn;

use super::malformed::{self, Shape};
use super::{ReconcileError, Settings, api};
use crate::adapters::{AdapterError, update_params};
use crate::core::analysis::validate_spec;
use crate::core::conditions::{self, types};

/// The status a template should have; None when the stored one is already right.
pub fn template_status(
    spec: &AnalysisSpec,
    old: Option<&AnalysisTemplateStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<AnalysisTemplateStatus> {
    let mut status = old.cloned().unwrap_or_default();
    status.observed_generation = generation;
    match validate_spec(spec) {
        Ok(()) => conditions::set(
            &mut status.conditions,
            types::INVALID_SPEC,
            false,
            "Valid",
            "",
            generation,
            now,
        ),
        Err(e) => conditions::set(
            &mut status.conditions,
            types::INVALID_SPEC,
            true,
            "InvalidAnalysis",
            &e.to_string(),
            generation,
            now,
        ),
    }
    (Some(&status) != old).then_some(status)
}

/// What the two template kinds share for validation.
trait Template:
    Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug
{
    fn analysis(&self) -> &AnalysisSpec;
    fn validation_status(&self) -> Option<&AnalysisTemplateStatus>;
    /// The API to patch this template's status through.
    fn api_for(&self, client: Client) -> Api<Self>;
}

impl Template for AnalysisTemplate {
    fn analysis(&self) -> &AnalysisSpec {
        &self.spec.analysis
    }
    fn validation_status(&self) -> Option<&AnalysisTemplateStatus> {
        self.status.as_ref()
    }
    fn api_for(&self, client: Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
}

impl Template for ClusterAnalysisTemplate {
    fn analysis(&self) -> &AnalysisSpec {
        &self.spec.analysis
    }
    fn validation_status(&self) -> Option<&AnalysisTemplateStatus> {
        self.status.as_ref()
    }
    fn api_for(&self, client: Client) -> Api<Self> {
        Api::all(client)
    }
}

/// Shared state of the template reconcilers.
struct Context {
    client: Client,
    recorder: Recorder,
}

/// Longest a template reconcile may take (one status patch, or a read and a patch).
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(30);

async fn reconcile<K: Template>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    tokio::time::timeout(RECONCILE_TIMEOUT, reconcile_inner(guard, ctx))
        .await
        .unwrap_or(Err(ReconcileError::Timeout(RECONCILE_TIMEOUT)))
}

async fn reconcile_inner<K: Template>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Requeue, ReconcileError> {
    let Ok(t) = &guard.0 else {
        malformed::report(&ctx.client, &ctx.recorder, &guard, Shape::Template).await?;
        return Ok(Requeue::await_change());
    };
    let status = template_status(
        t.analysis(),
        t.validation_status(),
        t.meta().generation,
        Timestamp::now(),
    );
    if let Some(status) = status {
        t.api_for(ctx.client.clone())
            .patch_status(
                &t.name_any(),
                &update_params(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
            .map_err(AdapterError::from)?;
    }
    Ok(Requeue::await_change())
}

fn retry<K: Resource>(
    t: Arc<DeserializeGuard<K>>,
    error: &ReconcileError,
    _: Arc<Context>,
) -> Requeue {
    warn!(template = %t.name_any(), category = error.category(), %error, "template validation failed");
    Requeue::requeue(Duration::from_secs(5))
}

/// Runs both template controllers until `shutdown` resolves. ClusterAnalysisTemplates are
/// watched only when the controller serves every namespace.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: malformed::recorder(&client),
    });
    let namespaced = Controller::new(
        api::<DeserializeGuard<AnalysisTemplate>>(&client, settings.namespace.as_deref()),
        watcher::Config::default(),
    )
    // One watch each, so the Controller's backoff is that watch's own (see `watches`).
    .trigger_backoff(super::backoff::WatchBackoff::default())
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile::<AnalysisTemplate>, retry, ctx.clone())
    .for_each(|_| async {});
    if settings.namespace.is_some() {
        namespaced.await;
        return;
    }
    let cluster = Controller::new(
        Api::<DeserializeGuard<ClusterAnalysisTemplate>>::all(client),
        watcher::Config::default(),
    )
    .trigger_backoff(super::backoff::WatchBackoff::default())
    .graceful_shutdown_on(shutdown)
    .run(reconcile::<ClusterAnalysisTemplate>, retry, ctx)
    .for_each(|_| async {});
    tokio::join!(namespaced, cluster);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(condition: &str) -> AnalysisSpec {
        serde_json::from_value(json!({ "metrics": [{
            "name": "m", "successCondition": condition,
            "provider": { "prometheus": { "address": "http://p", "query": "up" } },
        }] }))
        .unwrap()
    }

    #[test]
    fn invalid_conditions_are_reported_once_and_fixed_ones_cleared() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let bad = template_status(&spec("result[0] >= "), None, Some(1), now).expect("new status");
        let c = conditions::get(&bad.conditions, types::INVALID_SPEC).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "InvalidAnalysis")
        );
        assert!(c.message.contains("successCondition"), "{}", c.message);
        assert_eq!(
            template_status(&spec("result[0] >= "), Some(&bad), Some(1), now),
            None,
            "no rewrite"
        );
        let good =
            template_status(&spec("result[0] >= 1"), Some(&bad), Some(2), now).expect("changed");
        assert!(!conditions::is_true(&good.conditions, types::INVALID_SPEC));
        assert_eq!(good.observed_generation, Some(2));
    }
}
