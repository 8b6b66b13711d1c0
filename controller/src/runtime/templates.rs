//! Template validation: AnalysisTemplates and ClusterAnalysisTemplates get an
//! `InvalidSpec` condition as soon as they are applied, when a condition does not compile
//! or a duration does not parse (what the CRD's CEL rules cannot check), instead of the
//! problem surfacing at the first run.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::Patch;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use sluice_api::analysis::{AnalysisSpec, AnalysisTemplateStatus};
use sluice_api::{AnalysisTemplate, ClusterAnalysisTemplate};
use tracing::warn;

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

async fn write<K>(
    api: Api<K>,
    name: &str,
    status: AnalysisTemplateStatus,
) -> Result<(), ReconcileError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &update_params(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .map_err(AdapterError::from)?;
    Ok(())
}

async fn reconcile_namespaced(
    t: Arc<AnalysisTemplate>,
    client: Arc<Client>,
) -> Result<Requeue, ReconcileError> {
    if let Some(status) = template_status(
        &t.spec.analysis,
        t.status.as_ref(),
        t.metadata.generation,
        Timestamp::now(),
    ) {
        let api: Api<AnalysisTemplate> =
            Api::namespaced((*client).clone(), &t.namespace().unwrap_or_default());
        write(api, &t.name_any(), status).await?;
    }
    Ok(Requeue::await_change())
}

async fn reconcile_cluster(
    t: Arc<ClusterAnalysisTemplate>,
    client: Arc<Client>,
) -> Result<Requeue, ReconcileError> {
    if let Some(status) = template_status(
        &t.spec.analysis,
        t.status.as_ref(),
        t.metadata.generation,
        Timestamp::now(),
    ) {
        write(
            Api::<ClusterAnalysisTemplate>::all((*client).clone()),
            &t.name_any(),
            status,
        )
        .await?;
    }
    Ok(Requeue::await_change())
}

fn retry<K: ResourceExt>(t: Arc<K>, error: &ReconcileError, _: Arc<Client>) -> Requeue {
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
    let ctx = Arc::new(client.clone());
    let namespaced = Controller::new(
        api::<AnalysisTemplate>(&client, settings.namespace.as_deref()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown.clone())
    .run(reconcile_namespaced, retry, ctx.clone())
    .for_each(|_| async {});
    if settings.namespace.is_some() {
        namespaced.await;
        return;
    }
    let cluster = Controller::new(
        Api::<ClusterAnalysisTemplate>::all(client),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile_cluster, retry, ctx)
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
