//! `Rollout`: a Deployment replacement that shifts traffic to a new version in steps
//! (canary) or after a preview (blue-green).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::{AnalysisRunArgument, AnalysisTemplateRef};
use crate::duration::HumanDuration;
use crate::gate::{Gate, GateStatus};

fn default_replicas() -> i32 {
    1
}
fn default_revision_history_limit() -> i32 {
    10
}
fn default_progress_deadline_seconds() -> i32 {
    600
}
fn default_scale_down_delay_seconds() -> i32 {
    30
}
fn default_true() -> bool {
    true
}
fn default_max_surge() -> IntOrString {
    IntOrString::String("25%".into())
}
fn default_max_unavailable() -> IntOrString {
    IntOrString::String("25%".into())
}
fn default_nginx_annotation_prefix() -> String {
    "nginx.ingress.kubernetes.io".into()
}

/// Desired state of a Rollout: a pod template, like a Deployment's, and the strategy by
/// which a new template replaces the running one.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "Rollout",
    plural = "rollouts",
    shortname = "ro",
    category = "all",
    category = "sluice",
    namespaced,
    status = "RolloutStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.hpaReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Strategy","type":"string","jsonPath":".status.strategy","description":"Canary or BlueGreen"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","description":"Progressing, Paused, Healthy or Degraded"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.stepProgress","description":"Current canary step or blue-green stage out of the total"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.canary.weights.canary","description":"Traffic weight of the new version"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.replicas","description":"Desired replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas","description":"Ready replicas"}"#,
    printcolumn = r#"{"name":"Available","type":"integer","jsonPath":".status.availableReplicas","description":"Available replicas"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.template) || !has(self.template.metadata) || !has(self.template.metadata.labels) || !('sluice.dev/role' in self.template.metadata.labels)").message("spec.template.metadata.labels must not set sluice.dev/role: sluice sets it on baseline pods to tell them from the stable ones"))]
#[x_kube(validation = Rule::new("has(self.template) != has(self.workloadRef)").message("set exactly one of template and workloadRef: the pod template comes from one place"))]
#[x_kube(validation = Rule::new("has(self.selector) || has(self.workloadRef)").message("selector is required unless workloadRef names a Deployment to take it from"))]
pub struct RolloutSpec {
    /// Number of desired pods of the stable version once a rollout completes. Defaults to 1.
    /// Scaled by `kubectl scale` and HorizontalPodAutoscalers through the scale subresource.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0").message("replicas must not be negative"))]
    pub replicas: i32,

    /// Label query over the pods the Rollout manages. Must match the labels of `template`.
    /// Required, unless `workloadRef` is set and this is left out: then the Deployment's.
    #[serde(default, skip_serializing_if = "is_empty_selector")]
    pub selector: LabelSelector,

    /// The pod template, as in a Deployment. Changing it starts a new rollout. Exactly one
    /// of this and `workloadRef`.
    #[serde(default, skip_serializing_if = "is_empty_template")]
    pub template: PodTemplateSpec,

    /// Take the pod template (and, when `selector` is left out, the selector) from an
    /// existing Deployment instead of `template`, the migration path from a Deployment
    /// that Argo Rollouts users know. A change of the Deployment's template starts a new
    /// rollout; `scaleDown` says what becomes of the Deployment's own pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,

    /// Minimum seconds a new pod must be ready, without any container crashing, to count
    /// as available. Defaults to 0.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self >= 0").message("minReadySeconds must not be negative"))]
    pub min_ready_seconds: i32,

    /// How many old ReplicaSets to keep for rollback. Defaults to 10.
    #[serde(default = "default_revision_history_limit")]
    #[x_kube(validation = Rule::new("self >= 0").message("revisionHistoryLimit must not be negative"))]
    pub revision_history_limit: i32,

    /// Pauses the rollout where it stands: no step advances until this is false again.
    #[serde(default)]
    pub paused: bool,

    /// Seconds a rollout may make no progress before it is reported with
    /// `Progressing=False` reason `ProgressDeadlineExceeded`. Defaults to 600.
    #[serde(default = "default_progress_deadline_seconds")]
    #[x_kube(validation = Rule::new("self >= 1").message("progressDeadlineSeconds must be at least 1"))]
    pub progress_deadline_seconds: i32,

    /// Abort the rollout (traffic back to stable) when the progress deadline is exceeded,
    /// instead of only reporting it. Defaults to false.
    #[serde(default)]
    pub progress_deadline_abort: bool,

    /// Restart every pod created before this time (RFC 3339), as Argo Rollouts does: the
    /// pods of the stable revision, then of a canary in flight, are evicted one at a time,
    /// only while every other pod is available within `maxUnavailable` (at least one pod at
    /// a time; blue-green: one), and their ReplicaSet replaces them. A time in the future
    /// takes effect then. `kubectl sluice restart` sets it to now; `status.restartedAt`
    /// records when the restart finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Time>,

    /// Revisions that may be rolled back to at once, skipping the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindow>,

    /// How a new pod template replaces the current one: exactly one of `canary` and
    /// `blueGreen`.
    pub strategy: RolloutStrategy,
}

fn is_empty_selector(s: &LabelSelector) -> bool {
    *s == LabelSelector::default()
}

fn is_empty_template(t: &PodTemplateSpec) -> bool {
    *t == PodTemplateSpec::default()
}

/// The Deployment a Rollout takes its pod template from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.apiVersion == 'apps/v1' && self.kind == 'Deployment'").message("workloadRef must name an apps/v1 Deployment (apiVersion: apps/v1, kind: Deployment)"))]
pub struct WorkloadRef {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// The Deployment, in the Rollout's namespace.
    #[x_kube(validation = Rule::new("size(self) > 0").message("workloadRef.name must not be empty"))]
    pub name: String,
    /// What becomes of the Deployment's pods: `never` (the default: left as they are),
    /// `onsuccess` (scaled to zero once the Rollout is Healthy) or `progressively`
    /// (scaled down as the Rollout's pods become ready, to zero once it is Healthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<WorkloadScaleDown>,
}

/// `workloadRef.scaleDown`, with Argo Rollouts' values.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkloadScaleDown {
    #[default]
    #[serde(rename = "never")]
    Never,
    #[serde(rename = "onsuccess")]
    OnSuccess,
    #[serde(rename = "progressively")]
    Progressively,
}

/// How far back a template change may go and still be rolled back at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollbackWindow {
    /// Number of previous revisions whose template, when applied again, is rolled out at
    /// once without running the steps.
    #[x_kube(validation = Rule::new("self >= 0").message("rollbackWindow.revisions must not be negative"))]
    pub revisions: i32,
}

/// Exactly one of `canary` and `blueGreen`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.canary) != has(self.blueGreen)").message("strategy must set exactly one of canary and blueGreen"))]
#[x_kube(validation = Rule::new("!has(self.gates) || has(self.canary) || self.gates.all(g, !('weightIncrease' in g.points))").message("a weightIncrease gate needs the canary strategy: blue-green has no weights"))]
pub struct RolloutStrategy {
    /// Shift traffic to the new version in steps, with analysis between them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,

    /// Bring the new version up beside the old one behind a preview Service, then switch
    /// the active Service to it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,

    /// Webhooks the rollout waits for before it moves past a point, or tells when it
    /// completed or rolled back (see `docs/analysis.md`, "Gates").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub gates: Vec<Gate>,
}

/// Canary: the new version receives a growing share of traffic, step by step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.canaryService) || !has(self.stableService) || self.canaryService != self.stableService").message("canaryService and stableService must name different Services"),
    validation = Rule::new("!has(self.trafficRouting) || (has(self.canaryService) && has(self.stableService))").message("trafficRouting needs both canaryService and stableService"),
    validation = Rule::new("!(type(self.maxSurge) == int ? self.maxSurge == 0 : self.maxSurge == '0%') || !(type(self.maxUnavailable) == int ? self.maxUnavailable == 0 : self.maxUnavailable == '0%')").message("maxSurge and maxUnavailable must not both be zero"),
    validation = Rule::new("!self.dynamicStableScale || has(self.trafficRouting)").message("dynamicStableScale needs trafficRouting: without a router the stable size is what splits traffic"),
    validation = Rule::new("!has(self.steps) || !self.steps.exists(s, has(s.setCanaryScale)) || has(self.trafficRouting)").message("setCanaryScale needs trafficRouting: without a router the replica counts are what split traffic, so the canary's size cannot be set apart from its weight"),
    validation = Rule::new("!has(self.analysis) || !has(self.analysis.startingStep) || (self.analysis.startingStep >= 0 && self.analysis.startingStep < size(self.steps))").message("analysis.startingStep must be the index of a step"),
    validation = Rule::new("!has(self.steps) || !self.steps.exists(s, has(s.setHeaderRoute) || has(s.setMirrorRoute)) || has(self.trafficRouting)").message("setHeaderRoute and setMirrorRoute need trafficRouting: without a router there is no route to set"),
    validation = Rule::new("!has(self.steps) || self.steps.all(s, !has(s.setHeaderRoute) || (has(self.trafficRouting) && has(self.trafficRouting.managedRoutes) && self.trafficRouting.managedRoutes.exists(r, r.name == s.setHeaderRoute.name)))").message("every setHeaderRoute must name a route listed in trafficRouting.managedRoutes"),
    validation = Rule::new("!has(self.steps) || self.steps.all(s, !has(s.setMirrorRoute) || (has(self.trafficRouting) && has(self.trafficRouting.managedRoutes) && self.trafficRouting.managedRoutes.exists(r, r.name == s.setMirrorRoute.name)))").message("every setMirrorRoute must name a route listed in trafficRouting.managedRoutes")
)]
pub struct CanaryStrategy {
    /// Service whose selector sluice points at the new version's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("canaryService must be a Service name: lowercase letters, digits and -, starting with a letter"))]
    pub canary_service: Option<String>,

    /// Service whose selector sluice points at the stable version's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("stableService must be a Service name: lowercase letters, digits and -, starting with a letter"))]
    pub stable_service: Option<String>,

    /// How traffic is split. Without it the split is approximated by replica counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,

    /// The steps of the canary, run in order. Each step has exactly one action.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub steps: Vec<CanaryStep>,

    /// Analysis that runs in the background for the whole rollout, from `startingStep` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<BackgroundAnalysis>,

    /// Run a dedicated baseline for the judge: a fresh ReplicaSet of the stable template
    /// at the canary's size, created with the canary and removed when the canary ends
    /// (promotion, abort, a new revision, a rollback). Comparing the canary with pods as
    /// young as its own is Spinnaker/Kayenta's recommended practice; without it the
    /// baseline is the long-running stable pods. Its pods keep the stable pod-template
    /// hash, so whatever routes to the stable revision (`stableService`, a Service of the
    /// app's labels) routes to them too, and carry `sluice.dev/role: baseline`, which is
    /// how metric queries select them. They come on top of `maxSurge` and never count as
    /// available capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<CanaryBaseline>,

    /// Most pods above `replicas` during an update: a number or a percentage. Defaults to 25%.
    #[serde(default = "default_max_surge")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')").message("maxSurge must be a non-negative number or a percentage such as 25%"))]
    #[schemars(extend("maxLength" = 10))]
    pub max_surge: IntOrString,

    /// Most pods below `replicas` that may be unavailable during an update: a number or a
    /// percentage. Defaults to 25%.
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^[0-9]+%$')").message("maxUnavailable must be a non-negative number or a percentage such as 25%"))]
    #[schemars(extend("maxLength" = 10))]
    pub max_unavailable: IntOrString,

    /// Seconds to keep the old ReplicaSet up after traffic has moved off it. Defaults to 30.
    #[serde(default = "default_scale_down_delay_seconds")]
    #[x_kube(validation = Rule::new("self >= 0").message("scaleDownDelaySeconds must not be negative"))]
    pub scale_down_delay_seconds: i32,

    /// Seconds to keep the canary ReplicaSet up after an abort. Defaults to 30.
    #[serde(default = "default_scale_down_delay_seconds")]
    #[x_kube(validation = Rule::new("self >= 0").message("abortScaleDownDelaySeconds must not be negative"))]
    pub abort_scale_down_delay_seconds: i32,

    /// With a traffic router, scale the stable ReplicaSet down as its weight falls instead
    /// of keeping it at full size until promotion.
    #[serde(default)]
    pub dynamic_stable_scale: bool,

    /// Labels and annotations on the canary's pods while they are the canary, as Argo
    /// Rollouts' `canaryMetadata`: metrics and dashboards can select them without the
    /// hash. Updated in place (no pod is replaced); replaced by `stableMetadata` when the
    /// canary becomes stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<PodMetadata>,

    /// Labels and annotations on the stable revision's pods, as Argo Rollouts'
    /// `stableMetadata`. Updated in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<PodMetadata>,
}

/// Labels and annotations sluice puts on the pods of one role (canary, stable, active,
/// preview), in place and without changing the pod-template hash.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.labels) || self.labels.all(k, !k.startsWith('sluice.dev/'))").message("pod metadata must not set sluice.dev/ labels: sluice owns them"),
    validation = Rule::new("!has(self.labels) || self.labels.all(k, size(self.labels[k]) <= 63)").message("pod metadata label values must be at most 63 characters")
)]
pub struct PodMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub annotations: BTreeMap<String, String>,
}

impl PodMetadata {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

/// A dedicated baseline ReplicaSet (see `canary.baseline`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryBaseline {
    /// Run the baseline. Defaults to true, so `baseline: {}` turns it on; false keeps the
    /// block while turning it off.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for CanaryBaseline {
    fn default() -> Self {
        CanaryBaseline { enabled: true }
    }
}

/// Exactly one traffic router.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.nginx) ? 1 : 0) + (has(self.gatewayAPI) ? 1 : 0) + (has(self.istio) ? 1 : 0) == 1").message("trafficRouting must set exactly one of nginx, gatewayAPI and istio"))]
pub struct TrafficRouting {
    /// NGINX Ingress: sluice owns a second, canary Ingress next to the stable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxTrafficRouting>,

    /// Gateway API: sluice sets the weights of the HTTPRoute's backendRefs.
    #[serde(
        default,
        rename = "gatewayAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayApiTrafficRouting>,

    /// Istio: sluice sets the weights of the canary and stable destinations of the
    /// VirtualService's HTTP routes, and optionally points a DestinationRule's subsets at
    /// the revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTrafficRouting>,

    /// The routes `setHeaderRoute` and `setMirrorRoute` steps may create, in order of
    /// precedence (the first wins where two match the same request), as in Argo Rollouts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub managed_routes: Vec<ManagedRoute>,
}

/// NGINX Ingress canary routing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NginxTrafficRouting {
    /// Name of the user's Ingress that routes to `stableService`. It is never modified;
    /// sluice copies its rules into `<rollout>-<ingress>-canary`.
    #[x_kube(validation = Rule::new("size(self) > 0").message("nginx.stableIngress must not be empty"))]
    pub stable_ingress: String,

    /// Prefix of the canary annotations. Defaults to `nginx.ingress.kubernetes.io`.
    #[serde(default = "default_nginx_annotation_prefix")]
    pub annotation_prefix: String,

    /// Extra annotations for the canary Ingress, for example `canary-by-header`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub additional_ingress_annotations: std::collections::BTreeMap<String, String>,
}

/// Gateway API HTTPRoute routing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiTrafficRouting {
    /// Name of the HTTPRoute whose backendRefs to `canaryService` and `stableService`
    /// get the weights.
    #[x_kube(validation = Rule::new("size(self) > 0").message("gatewayAPI.httpRoute must not be empty"))]
    pub http_route: String,

    /// Namespace of the HTTPRoute. Defaults to the Rollout's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Istio routing, with Argo Rollouts' field names.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IstioTrafficRouting {
    /// The VirtualService (in the Rollout's namespace) whose HTTP routes get the weights.
    pub virtual_service: IstioVirtualService,

    /// A DestinationRule whose two subsets sluice points at the canary and stable
    /// revisions (by `sluice.dev/pod-template-hash`). With it, the VirtualService's
    /// destinations name the DestinationRule's host and the subsets; without it, they name
    /// `canaryService` and `stableService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<IstioDestinationRule>,
}

/// The VirtualService sluice weights.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IstioVirtualService {
    /// The VirtualService's name.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("istio.virtualService.name must be a DNS subdomain name"))]
    pub name: String,

    /// Names of the HTTP routes to weight; each must route to both the canary and the
    /// stable destination. Empty: every HTTP route that does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(r, size(r) > 0 && size(r) <= 253)").message("istio.virtualService.routes must be non-empty route names"))]
    pub routes: Vec<String>,
}

/// The DestinationRule whose subsets select the revisions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.canarySubsetName != self.stableSubsetName").message("istio.destinationRule.canarySubsetName and stableSubsetName must differ"))]
pub struct IstioDestinationRule {
    /// The DestinationRule's name (in the Rollout's namespace).
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("istio.destinationRule.name must be a DNS subdomain name"))]
    pub name: String,

    /// The subset sluice points at the canary revision.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("istio.destinationRule.canarySubsetName must be a DNS label"))]
    pub canary_subset_name: String,

    /// The subset sluice points at the stable revision.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("istio.destinationRule.stableSubsetName must be a DNS label"))]
    pub stable_subset_name: String,
}

/// One canary step: exactly one of `setWeight`, `pause`, `setCanaryScale`, `analysis`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.setWeight) ? 1 : 0) + (has(self.pause) ? 1 : 0) + (has(self.setCanaryScale) ? 1 : 0) + (has(self.analysis) ? 1 : 0) + (has(self.setHeaderRoute) ? 1 : 0) + (has(self.setMirrorRoute) ? 1 : 0) == 1").message("each step must set exactly one of setWeight, pause, setCanaryScale, analysis, setHeaderRoute and setMirrorRoute"))]
pub struct CanaryStep {
    /// Percentage of traffic (0 to 100) to send to the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("setWeight must be between 0 and 100"))]
    pub set_weight: Option<i32>,

    /// Wait: for `duration`, or until promoted when no duration is given (`pause: {}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseStep>,

    /// Size the canary independently of its traffic weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,

    /// Run an analysis and wait for its verdict before the next step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,

    /// Send the requests that match these headers to the canary, whatever its weight,
    /// through the managed route `name` (see `trafficRouting.managedRoutes`). Without
    /// `match` the route is removed. A route stays in place for the following steps and
    /// goes when the rollout completes or aborts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,

    /// Mirror (copy) a share of the requests that match to the canary; the responses of
    /// the copies are discarded, so users are always served by the normal split. Without
    /// `match` the route is removed. Gateway API and Istio only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<SetMirrorRoute>,
}

/// A `setHeaderRoute` step, as in Argo Rollouts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    /// The managed route to set; it must be listed in `trafficRouting.managedRoutes`.
    #[schemars(length(max = 63))]
    pub name: String,

    /// Requests matching all of these go to the canary. Empty: remove the route.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub matches: Vec<HeaderRoutingMatch>,
}

/// One header a request must carry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    /// The header's name, such as `X-Canary`.
    #[schemars(length(max = 256))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9!#$%&*+.^_`|~-]+$')").message("headerName must be an HTTP header name"))]
    pub header_name: String,

    /// How its value must match.
    pub header_value: StringMatch,
}

/// A string condition: exactly one of `exact`, `prefix` and `regex`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + (has(self.regex) ? 1 : 0) == 1").message("a string match must set exactly one of exact, prefix and regex"))]
pub struct StringMatch {
    /// The value, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub exact: Option<String>,
    /// A value starting with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub prefix: Option<String>,
    /// A value matching this regular expression (the router's dialect: RE2 for most
    /// Gateway API implementations, PCRE for ingress-nginx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub regex: Option<String>,
}

/// A `setMirrorRoute` step, as in Argo Rollouts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct SetMirrorRoute {
    /// The managed route to set; it must be listed in `trafficRouting.managedRoutes`.
    #[schemars(length(max = 63))]
    pub name: String,

    /// Requests matching any of these are mirrored. Empty: remove the route.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub matches: Vec<RouteMatch>,

    /// Percentage (0 to 100) of the matching requests to mirror. Defaults to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("setMirrorRoute.percentage must be between 0 and 100"))]
    pub percentage: Option<i32>,
}

/// A request condition of a mirror route: all that are set must hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// The HTTP method (`exact` only with Gateway API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// The request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    /// Headers, by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8))]
    pub headers: std::collections::BTreeMap<String, StringMatch>,
}

/// A route sluice may create on the router, besides the weights.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRoute {
    /// The route's name, used by `setHeaderRoute` and `setMirrorRoute` steps.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("managedRoutes[].name must be lowercase letters, digits and -, starting and ending with a letter or digit"))]
    pub name: String,
}

/// A pause step.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PauseStep {
    /// How long to pause (`30s`, `5m`, or a number of seconds). Without it the rollout
    /// waits until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
}

/// Canary size independent of the traffic weight: exactly one of the three.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.replicas) ? 1 : 0) + (has(self.weight) ? 1 : 0) + (self.matchTrafficWeight ? 1 : 0) == 1").message("setCanaryScale must set exactly one of replicas, weight and matchTrafficWeight"))]
pub struct SetCanaryScale {
    /// Run exactly this many canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("setCanaryScale.replicas must not be negative"))]
    pub replicas: Option<i32>,

    /// Run this percentage (0 to 100) of `spec.replicas` as canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("setCanaryScale.weight must be between 0 and 100"))]
    pub weight: Option<i32>,

    /// Go back to sizing the canary by its traffic weight.
    #[serde(default)]
    pub match_traffic_weight: bool,
}

/// Analysis run from one or more templates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.templates) > 0").message("analysis must name at least one template"))]
pub struct RolloutAnalysis {
    /// The AnalysisTemplates or ClusterAnalysisTemplates whose metrics are run together.
    #[schemars(length(max = 20))]
    pub templates: Vec<AnalysisTemplateRef>,

    /// Values for the templates' args; names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub args: Vec<AnalysisRunArgument>,
}

/// Analysis that runs for the whole rollout.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackgroundAnalysis {
    /// The templates and args of the analysis.
    #[serde(flatten)]
    pub analysis: RolloutAnalysis,

    /// Index of the step at which the background analysis starts. Defaults to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_step: Option<i32>,
}

/// Blue-green: the new version comes up behind `previewService`, then `activeService`
/// switches to it at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("size(self.activeService) > 0").message("blueGreen.activeService is required: it names the Service that receives production traffic"),
    validation = Rule::new("!has(self.previewService) || self.previewService != self.activeService").message("previewService and activeService must name different Services")
)]
pub struct BlueGreenStrategy {
    /// Service that receives production traffic; sluice points its selector at the
    /// active revision. Required.
    #[serde(default)]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("size(self) == 0 || self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("activeService must be a Service name: lowercase letters, digits and -, starting with a letter"))]
    pub active_service: String,

    /// Service that sluice points at the new revision before promotion, for testing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("previewService must be a Service name: lowercase letters, digits and -, starting with a letter"))]
    pub preview_service: Option<String>,

    /// Pods of the new revision while in preview (capped at `spec.replicas`). Defaults
    /// to `spec.replicas`; the new revision always goes to full size before the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("previewReplicaCount must not be negative"))]
    pub preview_replica_count: Option<i32>,

    /// Promote without a human once the new revision is ready. Defaults to true.
    #[serde(default = "default_true")]
    pub auto_promotion_enabled: bool,

    /// Seconds to wait in preview (after the pre-promotion analysis passed) before
    /// promoting automatically; a promote ends the wait early. Ignored when
    /// `autoPromotionEnabled` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("autoPromotionSeconds must not be negative"))]
    pub auto_promotion_seconds: Option<i32>,

    /// Seconds to keep the old revision up after the switch, so that a failed
    /// post-promotion analysis can switch back at once. Defaults to 30.
    #[serde(default = "default_scale_down_delay_seconds")]
    #[x_kube(validation = Rule::new("self >= 0").message("scaleDownDelaySeconds must not be negative"))]
    pub scale_down_delay_seconds: i32,

    /// Seconds to keep the new revision up after an abort. Defaults to 30.
    #[serde(default = "default_scale_down_delay_seconds")]
    #[x_kube(validation = Rule::new("self >= 0").message("abortScaleDownDelaySeconds must not be negative"))]
    pub abort_scale_down_delay_seconds: i32,

    /// Analysis that must pass before `activeService` switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,

    /// Analysis run after the switch; failing it switches `activeService` back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,

    /// Labels and annotations on the pods `activeService` selects, as Argo Rollouts'
    /// `activeMetadata`. Updated in place when the new revision becomes active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_metadata: Option<PodMetadata>,

    /// Labels and annotations on the new revision's pods while in preview, as Argo
    /// Rollouts' `previewMetadata`. Replaced by `activeMetadata` on promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_metadata: Option<PodMetadata>,
}

/// Coarse state of a Rollout.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RolloutPhase {
    /// A new revision is being rolled out.
    Progressing,
    /// Waiting for a pause to end or for a human to promote.
    Paused,
    /// The desired revision is stable and fully available.
    Healthy,
    /// Aborted, invalid, or past the progress deadline.
    Degraded,
}

/// Which strategy a Rollout uses, for display.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    /// `spec.strategy.canary`.
    Canary,
    /// `spec.strategy.blueGreen`.
    BlueGreen,
}

/// Why a rollout is paused.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PauseReason {
    /// A canary `pause` step.
    CanaryPauseStep,
    /// Blue-green waiting for promotion.
    BlueGreenPause,
    /// An analysis step was inconclusive and needs a human.
    InconclusiveAnalysis,
    /// The background analysis was inconclusive and needs a human; a promote starts a
    /// fresh background run.
    BackgroundAnalysisInconclusive,
    /// A gate (`strategy.gates`, named by `gate`) has not answered 2xx yet; a promote
    /// passes it.
    Gate,
}

/// One reason the rollout is paused, and since when.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// Why the rollout is paused.
    pub reason: PauseReason,
    /// When the pause started.
    pub start_time: Time,
    /// The gate that holds the rollout, for reason `Gate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
}

/// Observed state of a Rollout, written only by the controller (and by user actions,
/// which are status patches: abort, retry, promote, promote-full).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The `metadata.generation` this status describes, as an integer so that kstatus
    /// (Flux, Helm) can compare it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Progressing, Paused, Healthy or Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RolloutPhase>,

    /// Human-readable detail of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Canary or BlueGreen, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategyKind>,

    /// Current step out of the total, such as `3/8`, for the printer column. For
    /// blue-green, the stage: preview, pre-promotion analysis, pause, promote,
    /// post-promotion analysis (those the spec uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_progress: Option<String>,

    /// Pod-template hash of the desired revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,

    /// Pod-template hash of the stable revision.
    #[serde(default, rename = "stableRS", skip_serializing_if = "Option::is_none")]
    pub stable_rs: Option<String>,

    /// Index of the canary step (or blue-green stage) being run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i32>,

    /// Hash of `spec.strategy.canary.steps`; a change restarts the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_hash: Option<String>,

    /// Why the rollout is paused, if it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pause_conditions: Vec<PauseCondition>,

    /// True while the rollout waits at a pause the controller entered (a pause step or a
    /// blue-green preview). A promote clears `pauseConditions` but not this, which is how
    /// the controller tells "promoted" from "not paused yet".
    #[serde(default)]
    pub controller_pause: bool,

    /// When the rollout last made progress (a step advanced, pods became available);
    /// the progress deadline counts from here, and not while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressed_at: Option<Time>,

    /// Set by the abort action: traffic goes back to stable and the new revision is
    /// scaled down. Cleared by retry.
    #[serde(default)]
    pub abort: bool,

    /// When the rollout was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<Time>,

    /// Set by the promote-full action: skip the remaining steps and analysis.
    #[serde(default)]
    pub promote_full: bool,

    /// When the restart asked for by `spec.restartAt` finished: every pod was created
    /// after `spec.restartAt` and available again. A `spec.restartAt` not after it asks
    /// for nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<Time>,

    /// Total pods of all revisions.
    #[serde(default)]
    pub replicas: i32,

    /// Pods of the desired revision.
    #[serde(default)]
    pub updated_replicas: i32,

    /// Ready pods of all revisions.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Available pods of all revisions.
    #[serde(default)]
    pub available_replicas: i32,

    /// Replica count reported to the scale subresource (HPA, `kubectl scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa_replicas: Option<i32>,

    /// Label selector of the Rollout's pods, as a string, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Canary progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,

    /// Blue-green progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,

    /// The gates called for the current revision (`strategy.gates`): pending, passed or
    /// failed, per point (and step, for `weightIncrease`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateStatus>,

    /// Ready, Reconciling, Stalled, Paused, Available, Progressing and InvalidSpec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Canary progress.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Traffic weights as last set by sluice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,

    /// Name of the AnalysisRun of the current analysis step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run: Option<String>,

    /// Name of the background AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run: Option<String>,

    /// The dedicated baseline ReplicaSet of the current canary, while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineStatus>,

    /// The managed routes (`setHeaderRoute`, `setMirrorRoute`) in force at the current
    /// step, in precedence order; empty once the rollout completes or aborts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_routes: Vec<ManagedRouteStatus>,
}

/// A managed route in force.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRouteStatus {
    /// The route's name (an entry of `trafficRouting.managedRoutes`).
    pub name: String,
    /// `header` or `mirror`.
    pub kind: String,
    /// True once the router was read back and shows the route as sluice set it.
    pub verified: bool,
}

/// The dedicated baseline ReplicaSet of a canary.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BaselineStatus {
    /// Name of the ReplicaSet: `<rollout>-<stable hash>-baseline-<canary hash>`.
    pub replica_set: String,
    /// Pod-template hash of the stable revision the baseline runs (its pods carry it).
    pub pod_template_hash: String,
    /// Pods the baseline should have now (the canary's size).
    pub replicas: i32,
    /// Available baseline pods.
    pub available_replicas: i32,
}

/// Traffic split between the new and the stable version.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    /// Percentage of traffic sent to the new version.
    pub canary: i32,
    /// Percentage of traffic sent to the stable version.
    pub stable: i32,
    /// True once the router was read back and shows these weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// Blue-green progress.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    /// Pod-template hash that `activeService` selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,

    /// Pod-template hash that `previewService` selects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,

    /// Name of the pre-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis_run: Option<String>,

    /// Name of the post-promotion AnalysisRun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis_run: Option<String>,
}
