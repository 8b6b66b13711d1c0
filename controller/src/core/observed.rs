//! What the runtime read from its caches for one Rollout: the input of the planner.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use sluice_api::analysis::AnalysisPhase;
use sluice_api::rollout::PodMetadata;

/// Everything the planner knows about the cluster for one Rollout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The ReplicaSets the Rollout owns.
    pub replica_sets: Vec<ReplicaSetState>,
    /// Services the Rollout references that exist, with the pod-template hash their
    /// selector currently pins (None when the selector has no hash yet).
    pub services: BTreeMap<String, Option<String>>,
    /// The canary weight the traffic router reports now (None without a router, or when
    /// the router has not been set up yet).
    pub router_weight: Option<i32>,
    /// The managed routes (`setHeaderRoute`, `setMirrorRoute`) the router holds now, by
    /// name, with the fingerprint sluice recorded when it wrote each
    /// (`routes::RouteSetting::fingerprint`). A route another writer changed reads as
    /// absent or with another fingerprint.
    pub router_routes: BTreeMap<String, String>,
    /// The AnalysisRuns the Rollout owns.
    pub analysis_runs: Vec<AnalysisRunState>,
    /// References that do not resolve (Service, Ingress, HTTPRoute not found).
    pub missing: Vec<String>,
    /// References that resolve to something sluice cannot use (a Service of type
    /// ExternalName, a template that does not deserialize, an analysis whose args the
    /// templates leave without a value), each saying which field or object.
    pub unusable: Vec<String>,
    /// The dedicated baseline ReplicaSets the Rollout owns (normally none or one). They
    /// are not revisions, so they are not in `replica_sets`.
    pub baselines: Vec<BaselineState>,
    /// The pod template of the ReplicaSet of `status.stableRS`: what a baseline runs.
    pub stable_template: Option<PodTemplateSpec>,
    /// The pods of the Rollout's revisions (from a metadata-only cache), for
    /// `spec.restartAt`.
    pub pods: Vec<PodState>,
    /// The Deployment `workloadRef` names, when it exists (its template is already in the
    /// Rollout the planner is given: the runtime resolves it).
    pub workload: Option<WorkloadState>,
    /// The last answer of each gate the runtime called for this Rollout, by
    /// `gate::key` (kept in memory only: `status.gates` is the record).
    pub gate_answers: BTreeMap<String, super::gate::GateAnswer>,
}

/// The Deployment a Rollout takes its template from, as `workloadRef.scaleDown` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadState {
    pub name: String,
    /// `spec.replicas` (1 when unset, as the Deployment controller takes it).
    pub replicas: i32,
}

/// One pod of a revision, as `spec.restartAt` and role metadata need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    /// The ReplicaSet that controls it.
    pub replica_set: String,
    /// `metadata.creationTimestamp` (None is taken as older than any restart).
    pub created: Option<Timestamp>,
    /// True once `metadata.deletionTimestamp` is set: on its way out.
    pub terminating: bool,
    /// Its labels and annotations, for role metadata (`canaryMetadata`, ...); left empty
    /// for a Rollout that sets none, to keep the copy small.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// One dedicated baseline ReplicaSet of the Rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineState {
    pub name: String,
    /// The stable revision it runs (the hash label of its pods).
    pub stable_hash: String,
    /// The canary revision it was made for: a baseline serves one canary only.
    pub canary_hash: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`: pods that exist.
    pub current: i32,
    /// `status.availableReplicas`.
    pub available: i32,
}

/// One ReplicaSet of the Rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSetState {
    pub name: String,
    /// The value of its `sluice.dev/pod-template-hash` label.
    pub hash: String,
    /// Its `sluice.dev/revision` annotation.
    pub revision: i64,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`: pods that exist.
    pub current: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// `sluice.dev/scale-down-deadline`: when it may be scaled to zero.
    pub scale_down_at: Option<Timestamp>,
    /// `sluice.dev/pod-metadata`: the role metadata sluice last put on its template (None
    /// when it never did, or the annotation does not parse).
    pub pod_metadata: Option<PodMetadata>,
}

/// One AnalysisRun of the Rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisRunState {
    pub name: String,
    /// None while the run has not reported yet.
    pub phase: Option<AnalysisPhase>,
    pub message: Option<String>,
    /// `metadata.creationTimestamp`, to keep the newest when pruning.
    pub created: Option<Timestamp>,
    /// True once `spec.terminate` is set.
    pub terminating: bool,
}

impl AnalysisRunState {
    /// True once the run has a verdict (it measures no more).
    pub fn finished(&self) -> bool {
        matches!(
            self.phase,
            Some(
                AnalysisPhase::Successful
                    | AnalysisPhase::Failed
                    | AnalysisPhase::Error
                    | AnalysisPhase::Inconclusive
            )
        )
    }
}

impl Observed {
    /// The ReplicaSet of a revision.
    pub fn replica_set(&self, hash: &str) -> Option<&ReplicaSetState> {
        self.replica_sets.iter().find(|rs| rs.hash == hash)
    }

    /// An AnalysisRun by name.
    pub fn analysis_run(&self, name: &str) -> Option<&AnalysisRunState> {
        self.analysis_runs.iter().find(|r| r.name == name)
    }
}
