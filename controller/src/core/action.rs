//! What the planner asks the adapters to do. A small closed set; each action is idempotent
//! (server-side apply), so executing a plan twice is harmless.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use sluice_api::rollout::{PodMetadata, RolloutAnalysis};

use super::routes::RouteSetting;

/// One change to make in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the ReplicaSet `<rollout>-<hash>` from the Rollout's template, with its
    /// role's pod metadata on the template (recorded as applied).
    CreateReplicaSet {
        hash: String,
        revision: i64,
        replicas: i32,
        pod_metadata: PodMetadata,
    },
    /// Set a ReplicaSet's size, and its scale-down deadline annotation (None removes it).
    ScaleReplicaSet {
        name: String,
        replicas: i32,
        scale_down_at: Option<Timestamp>,
    },
    /// Create the dedicated baseline ReplicaSet of canary `canary_hash` from `template`,
    /// the stable ReplicaSet's pod template (revision `stable_hash`); its name is
    /// [`super::baseline::replica_set_name`].
    CreateBaselineReplicaSet {
        stable_hash: String,
        canary_hash: String,
        replicas: i32,
        template: Box<PodTemplateSpec>,
    },
    /// Delete a ReplicaSet: an old revision past `revisionHistoryLimit`, or a baseline
    /// scaled to zero.
    DeleteReplicaSet { name: String },
    /// Point a Service's selector at a revision.
    SetServiceSelector { service: String, hash: String },
    /// Set the traffic router's weights: `weight`% to the canary, the rest to stable.
    SetCanaryWeight { weight: i32 },
    /// Make the router hold exactly these managed routes (in precedence order) besides the
    /// weights: the ones sluice holds and this list leaves out are removed.
    SetManagedRoutes { routes: Vec<RouteSetting> },
    /// Start an AnalysisRun.
    CreateAnalysisRun {
        name: String,
        analysis: RolloutAnalysis,
        /// Which part of the rollout it gates, for its labels: `step-N` or `background`.
        role: String,
    },
    /// Stop an AnalysisRun (its verdict so far stands).
    TerminateAnalysisRun { name: String },
    /// Delete a finished AnalysisRun past the history limit.
    DeleteAnalysisRun { name: String },
    /// Evict a pod (the Eviction API, so PodDisruptionBudgets are honoured); its
    /// ReplicaSet replaces it. For `spec.restartAt`.
    EvictPod { name: String },
    /// Set the `spec.replicas` of the Deployment named by `workloadRef` (its scale
    /// subresource), for `workloadRef.scaleDown`.
    ScaleDeployment { name: String, replicas: i32 },
    /// Change a pod's labels and annotations in place (role metadata).
    PatchPodMetadata {
        pod: String,
        labels: MetadataChange,
        annotations: MetadataChange,
    },
    /// Change the labels and annotations of a ReplicaSet's pod template, so that pods it
    /// creates from now on have their role's metadata, and record `applied` on it.
    SetReplicaSetPodMetadata {
        name: String,
        labels: MetadataChange,
        annotations: MetadataChange,
        applied: PodMetadata,
    },
}

/// A change of labels or annotations: `Some(value)` sets a key, `None` removes it.
pub type MetadataChange = std::collections::BTreeMap<String, Option<String>>;

/// A Kubernetes Event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    /// Normal or Warning.
    pub warning: bool,
    /// CamelCase reason, e.g. `StepCompleted`.
    pub reason: String,
    /// What it concerns, e.g. `Step3` or `Revision<hash>`. Events with the same reason
    /// and action are aggregated into one series (showing the first message), so the
    /// action must tell apart occurrences that are not repeats of each other.
    pub action: String,
    pub message: String,
}
