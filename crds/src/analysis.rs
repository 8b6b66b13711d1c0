//! `AnalysisTemplate`, `ClusterAnalysisTemplate` and `AnalysisRun`: the metrics that gate
//! each step of a rollout, and one evaluation of them.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{ObjectFieldSelector, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

fn default_consecutive_error_limit() -> i32 {
    4
}
fn default_pass_threshold() -> f64 {
    95.0
}
fn default_marginal_threshold() -> f64 {
    75.0
}
fn default_confidence() -> f64 {
    0.98
}
fn default_ratio() -> f64 {
    1.0
}
fn default_group() -> String {
    "default".into()
}
fn default_alpha() -> f64 {
    0.01
}
fn default_min_canary_count() -> f64 {
    100.0
}

/// A reference from a Rollout to an AnalysisTemplate or ClusterAnalysisTemplate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    /// Name of the template.
    #[x_kube(validation = Rule::new("size(self) > 0").message("templateName must not be empty"))]
    pub template_name: String,

    /// True to use a ClusterAnalysisTemplate instead of an AnalysisTemplate in the
    /// Rollout's namespace.
    #[serde(default)]
    pub cluster_scope: bool,
}

/// An argument of an analysis: declared by a template (a missing value must then be given
/// by the Rollout) or given by a Rollout. Referenced in queries as `{{args.NAME}}`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.value) && has(self.valueFrom))").message("an arg sets value or valueFrom, not both"))]
pub struct AnalysisRunArgument {
    /// Name of the argument, as used in `{{args.NAME}}`.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_.-]*$')").message("arg names start with a letter or _ and contain letters, digits, _, . and -"))]
    pub name: String,

    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,

    /// Where to read the value from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgumentValueFrom>,
}

/// A value read at run time: exactly one source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.secretKeyRef) ? 1 : 0) + (has(self.fieldRef) ? 1 : 0) + (has(self.podTemplateHashValue) ? 1 : 0) == 1").message("valueFrom must set exactly one of secretKeyRef, fieldRef and podTemplateHashValue"))]
pub struct ArgumentValueFrom {
    /// A key of a Secret in the namespace of the analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,

    /// A field of the Rollout, such as `metadata.labels['app']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,

    /// The pod-template hash of one of the Rollout's revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
}

/// Which revision's pod-template hash an argument takes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PodTemplateHashValue {
    /// The stable revision.
    Stable,
    /// The revision being rolled out.
    Latest,
    /// The revision the canary is compared with: the stable one. A dedicated baseline
    /// (`canary.baseline`) runs that revision too, with the same hash on its pods (so the
    /// stable Service routes to it); select its pods with `sluice.dev/role=baseline`.
    Baseline,
}

/// The metrics to evaluate, their arguments and which of them only report (dry run).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("size(self.metrics) > 0").message("an analysis needs at least one metric"),
    validation = Rule::new("self.metrics.all(m, self.metrics.filter(n, n.name == m.name).size() == 1)").message("metric names must be unique"),
    validation = Rule::new("!has(self.dryRun) || self.dryRun.all(d, d.metricName == '*' || self.metrics.exists(m, m.name == d.metricName))").message("every dryRun.metricName must name a metric of this analysis, or be *"),
    validation = Rule::new("!has(self.measurementRetention) || self.measurementRetention.all(r, r.metricName == '*' || self.metrics.exists(m, m.name == r.metricName))").message("every measurementRetention.metricName must name a metric of this analysis, or be *")
)]
pub struct AnalysisSpec {
    /// Arguments the metrics use as `{{args.NAME}}`; names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub args: Vec<AnalysisRunArgument>,

    /// The metrics to measure.
    #[schemars(length(max = 50))]
    pub metrics: Vec<Metric>,

    /// Metrics that are measured and reported but never fail the analysis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub dry_run: Vec<DryRun>,

    /// How many measurements to keep per metric in the AnalysisRun status (default 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub measurement_retention: Vec<MeasurementRetention>,
}

/// A metric whose results are reported but never decide the analysis.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Name of the metric, or `*` for all.
    #[schemars(length(max = 253))]
    pub metric_name: String,
}

/// How many measurements of a metric to keep.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRetention {
    /// Name of the metric, or `*` for all.
    #[schemars(length(max = 253))]
    pub metric_name: String,
    /// Measurements to keep.
    #[x_kube(validation = Rule::new("self >= 1").message("measurementRetention.limit must be at least 1"))]
    pub limit: i32,
}

/// One metric: a query, how often to run it, and what result counts as success.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.count) || self.count <= 1 || has(self.interval)").message("a metric measured more than once needs an interval"),
    validation = Rule::new("has(self.provider.judge) || has(self.provider.sequential) || has(self.provider.web) || has(self.provider.job) || has(self.successCondition) || has(self.failureCondition)").message("a prometheus metric needs a successCondition or a failureCondition"),
    validation = Rule::new("!has(self.provider.web) || has(self.successCondition) || has(self.failureCondition)").message("a web metric needs a successCondition or a failureCondition"),
    validation = Rule::new("!has(self.provider.sequential) || has(self.interval)").message("a sequential metric needs an interval: its evidence is counted in slices of one interval"),
    validation = Rule::new("!has(self.provider.sequential) || (!has(self.successCondition) && !has(self.failureCondition))").message("a sequential metric takes no successCondition or failureCondition: its verdict is the test's"),
    validation = Rule::new("!has(self.provider.job) || (!has(self.successCondition) && !has(self.failureCondition))").message("a job metric takes no successCondition or failureCondition: its verdict is the Job's (Complete or Failed)")
)]
pub struct Metric {
    /// Name of the metric, unique within the analysis.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("size(self) > 0").message("metric name must not be empty"))]
    pub name: String,

    /// Time between measurements (`1m`, `30s`). Without it the metric is measured once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,

    /// Time to wait before the first measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<HumanDuration>,

    /// Number of measurements to take. Without it, one measurement when there is no
    /// interval, and measurements until the analysis ends when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("count must be at least 1"))]
    pub count: Option<i32>,

    /// CEL over `result` that marks a measurement Successful, e.g. `result[0] >= 0.99`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,

    /// CEL over `result` that marks a measurement Failed, e.g. `result[0] > 0.05`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,

    /// Failed measurements tolerated; one more fails the metric. Defaults to 0.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub failure_limit: i32,

    /// Inconclusive measurements tolerated; one more makes the metric Inconclusive.
    /// Defaults to 0.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub inconclusive_limit: i32,

    /// Errors in a row tolerated; one more makes the metric Error. Defaults to 4.
    #[serde(default = "default_consecutive_error_limit")]
    #[schemars(range(min = 0))]
    pub consecutive_error_limit: i32,

    /// Where the measurement comes from: exactly one provider.
    pub provider: MetricProvider,
}

/// The source of a metric's measurements: exactly one.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.prometheus) ? 1 : 0) + (has(self.judge) ? 1 : 0) + (has(self.sequential) ? 1 : 0) + (has(self.web) ? 1 : 0) + (has(self.job) ? 1 : 0) == 1").message("provider must set exactly one of prometheus, judge, sequential, web and job"))]
pub struct MetricProvider {
    /// A PromQL query; `result` is its value(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,

    /// The built-in canary-versus-baseline statistical judge (Kayenta's algorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeMetric>,

    /// The built-in anytime-valid sequential test of canary against baseline on raw
    /// counts (errors of requests, or latency histogram buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialMetric>,

    /// An HTTP request whose JSON answer (or the part `jsonPath` picks) is `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,

    /// A Kubernetes Job per measurement: Successful when it completes, Failed when it
    /// fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobMetric>,
}

/// A Kubernetes Job run for each measurement, as Argo Rollouts' `job` provider: sluice
/// creates `<run>-<metric>-<n>` (n counts the metric's measurements from 1; shortened
/// with a hash to fit 63 characters) in the run's namespace, owned by the AnalysisRun.
/// The measurement is Running while the Job runs, Successful when the Job is `Complete`,
/// Failed when it is `Failed`, Error when the apiserver refuses to create it. A run that
/// ends (terminated, or decided by another metric) deletes its Jobs still running.
/// `{{args.NAME}}` is replaced in the containers' (and init containers') `command`,
/// `args` and `env[].value`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.spec.template.spec) && has(self.spec.template.spec.restartPolicy) && self.spec.template.spec.restartPolicy in ['Never', 'OnFailure']").message("job spec.template.spec.restartPolicy must be Never or OnFailure, as the Job API requires"))]
pub struct JobMetric {
    /// Labels and annotations of the Job (sluice adds its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JobMetricMetadata>,

    /// The Job's spec (`batch/v1` JobSpec), as in a Job: `kubectl explain job.spec`.
    pub spec: JobSpec,
}

/// Labels and annotations of a job metric's Jobs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct JobMetricMetadata {
    /// Labels of the Job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations of the Job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn default_web_timeout_seconds() -> i64 {
    10
}

/// An HTTP request to any endpoint that answers JSON, as Argo Rollouts' `web` provider:
/// `result` in the conditions is the value `jsonPath` picks from the answer (a number,
/// string, bool, object or array), or the whole answer without a `jsonPath`. A non-2xx
/// status, an answer that is not JSON, a path that matches nothing, a timeout or a
/// connection that fails is an Error measurement with the reason.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.body) && has(self.jsonBody))").message("web sets body or jsonBody, not both"),
    validation = Rule::new("!(has(self.body) || has(self.jsonBody)) || (has(self.method) && self.method != 'GET')").message("web body and jsonBody need method POST or PUT"),
    validation = Rule::new("!(self.insecure && has(self.caBundle))").message("web sets insecure or caBundle, not both"),
    validation = Rule::new("!self.insecure || self.url.startsWith('https://') || self.url.startsWith('{{')").message("web insecure applies only to an https:// url")
)]
pub struct WebMetric {
    /// The URL to ask, `http://` or `https://`; `{{args.NAME}}` is replaced by the
    /// argument's value (the whole URL may be one argument).
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://') || self.startsWith('{{')").message("web url must be an http:// or https:// URL, or start with an {{args.NAME}} placeholder"))]
    pub url: String,

    /// HTTP method. Defaults to GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<WebMethod>,

    /// HTTP headers; values may use `{{args.NAME}}` or come from a Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub headers: Vec<WebHeader>,

    /// A request body, sent as is (`{{args.NAME}}` replaced); POST or PUT only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,

    /// A JSON object sent as the request body with `Content-Type: application/json`;
    /// POST or PUT only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_object")]
    pub json_body: Option<serde_json::Value>,

    /// Time limit of the whole request, body included, in seconds. Defaults to 10.
    #[serde(default = "default_web_timeout_seconds")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: i64,

    /// JSONPath (RFC 9535) of the value to judge, e.g. `{$.data.ok}` or `$.data.ok` (the
    /// braces of Argo Rollouts' kubectl-style paths are accepted). Without it `result` is
    /// the whole answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub json_path: Option<String>,

    /// Skip verifying the server's TLS certificate. Only when asked: an https endpoint
    /// with a private CA should set `caBundle` instead.
    #[serde(default)]
    pub insecure: bool,

    /// PEM certificates of the CAs that sign the server's certificate, trusted in
    /// addition to the platform's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    #[x_kube(validation = Rule::new("self.contains('-----BEGIN CERTIFICATE-----')").message("web caBundle must hold PEM certificates"))]
    pub ca_bundle: Option<String>,
}

fn any_json_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // Typed, so that CEL rules can see the field (an untyped one is invisible to them).
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// An HTTP method of a web metric.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WebMethod {
    /// GET (the default).
    #[default]
    #[serde(rename = "GET")]
    Get,
    /// POST.
    #[serde(rename = "POST")]
    Post,
    /// PUT.
    #[serde(rename = "PUT")]
    Put,
}

/// An HTTP header of a web metric: a literal value or a Secret's key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("a web header sets exactly one of value and valueFrom"))]
pub struct WebHeader {
    /// Header name.
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
    /// Header value; `{{args.NAME}}` is replaced by the argument's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to read the value from, when measuring (never copied into the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<WebHeaderValueFrom>,
}

/// The source of a web header's value.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WebHeaderValueFrom {
    /// A key of a Secret in the namespace of the analysis.
    pub secret_key_ref: SecretKeySelector,
}

/// How to reach a Prometheus server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusConnection {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/]+')").message("address must be an http:// or https:// URL"))]
    pub address: String,

    /// Time limit of one query (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,

    /// Extra HTTP headers sent with every query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,

    /// Credentials sent with every query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<PrometheusAuthentication>,
}

/// An HTTP header.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// Credentials for Prometheus.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusAuthentication {
    /// A Secret key holding a bearer token, sent as `Authorization: Bearer <token>`.
    pub bearer_token: SecretKeySelector,
}

/// A Prometheus query.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// The server to ask.
    #[serde(flatten)]
    pub connection: PrometheusConnection,

    /// PromQL; `{{args.NAME}}` is replaced by the argument's value.
    #[x_kube(validation = Rule::new("size(self) > 0").message("query must not be empty"))]
    pub query: String,

    /// Run as a range query over the last `lookback`, every `step`, instead of an
    /// instant query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_query: Option<RangeQuery>,
}

/// The window of a range query, ending at the time of the measurement.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RangeQuery {
    /// How far back the window reaches.
    pub lookback: HumanDuration,
    /// Resolution of the window.
    pub step: HumanDuration,
}

/// The statistical judge: per signal, compares the canary series with the baseline series
/// (Mann-Whitney U confidence interval of the shift), then scores the share of passing
/// signals. `result` is the score (0 to 100); without conditions a score at or above
/// `thresholds.pass` is Successful, at or above `thresholds.marginal` Inconclusive, and
/// below it Failed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.thresholds.marginal <= self.thresholds.pass").message("judge thresholds.marginal must not exceed thresholds.pass"))]
pub struct JudgeMetric {
    /// The server to ask.
    #[serde(flatten)]
    pub connection: PrometheusConnection,

    /// How far back the compared series reach, ending at the time of the measurement.
    pub lookback: HumanDuration,

    /// Resolution of the compared series.
    pub step: HumanDuration,

    /// The signals to compare; names are unique (a list keyed by name, so the apiserver
    /// rejects a repeated one at no CEL cost).
    #[schemars(length(min = 1, max = 50))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub signals: Vec<JudgeSignal>,

    /// Relative weight of each signal group in the score; groups not listed weigh the same
    /// share of what is left.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_weights: BTreeMap<String, f64>,

    /// Score thresholds.
    #[serde(default)]
    pub thresholds: JudgeThresholds,

    /// Confidence level of the shift interval. Defaults to 0.98.
    #[serde(default = "default_confidence")]
    #[schemars(range(min = 0.5, max = 0.9999))]
    pub confidence: f64,
}

/// Score thresholds of the judge, in percent.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JudgeThresholds {
    /// Minimum score for Pass. Defaults to 95.
    #[serde(default = "default_pass_threshold")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub pass: f64,
    /// Minimum score for Marginal (Inconclusive). Defaults to 75.
    #[serde(default = "default_marginal_threshold")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub marginal: f64,
}

impl Default for JudgeThresholds {
    fn default() -> Self {
        JudgeThresholds {
            pass: default_pass_threshold(),
            marginal: default_marginal_threshold(),
        }
    }
}

/// One signal compared between canary and baseline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JudgeSignal {
    /// Name of the signal, shown in measurements.
    pub name: String,

    /// PromQL range query for the canary series.
    pub canary_query: String,

    /// PromQL range query for the baseline series.
    pub baseline_query: String,

    /// Which deviation is bad. Defaults to Increase (e.g. latency, error rate).
    #[serde(default)]
    pub direction: JudgeDirection,

    /// Smallest canary/baseline mean ratio that counts as High. Defaults to 1.0.
    #[serde(default = "default_ratio")]
    pub allowed_increase: f64,

    /// Largest canary/baseline mean ratio that counts as Low. Defaults to 1.0.
    #[serde(default = "default_ratio")]
    pub allowed_decrease: f64,

    /// What to do with NaN samples. Defaults to Remove.
    #[serde(default)]
    pub nan_strategy: NanStrategy,

    /// Drop outliers before comparing: samples more than 3 interquartile ranges outside
    /// the quartiles, with the fences widened to at least the 1st and 99th percentiles
    /// (Kayenta's rule), so series of 99 samples or fewer keep every sample and mostly-zero
    /// error counts do not lose the very errors being looked for.
    #[serde(default)]
    pub outlier_removal: bool,

    /// A failure of this signal fails the whole judgement (score 0).
    #[serde(default)]
    pub critical: bool,

    /// No data on either side fails the signal instead of leaving it out.
    #[serde(default)]
    pub must_have_data: bool,

    /// Group for weighting. Defaults to `default`.
    #[serde(default = "default_group")]
    pub group: String,
}

/// The anytime-valid sequential test: at every look it reads, from the run's start (after
/// `initialDelay`), the counts of canary and baseline per slice of one `interval`, and
/// tests them with a mixture likelihood ratio (an e-value) whose false-alarm rate stays
/// below `alpha` however many times it looks. `result` is the e-value; the verdict is the
/// test's: Failed as soon as the e-value reaches `1/alpha`; Successful once the confidence
/// sequence of the effect excludes a regression beyond the tolerance (metrics with a
/// `count`), or at the last look without evidence; otherwise the look is undecided.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.counts) != has(self.histogram)").message("sequential must set exactly one of counts and histogram"),
    validation = Rule::new("self.alpha > 0.0 && self.alpha <= 0.5").message("sequential alpha must be in (0, 0.5]"),
    validation = Rule::new("self.allowedIncrease >= 1.0").message("sequential allowedIncrease is a ratio of at least 1"),
    validation = Rule::new("self.allowedDecrease > 0.0 && self.allowedDecrease <= 1.0").message("sequential allowedDecrease is a ratio in (0, 1]")
)]
pub struct SequentialMetric {
    /// The server to ask.
    #[serde(flatten)]
    pub connection: PrometheusConnection,

    /// Event and total counters (errors of requests), canary and baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<SequentialCounts>,

    /// Histogram bucket counters (`_bucket` series with an `le` label), canary and
    /// baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<SequentialHistogram>,

    /// Level of the test: the probability of failing a canary that is no worse than the
    /// tolerance, over the whole run however often it looks. Defaults to 0.01.
    #[serde(default = "default_alpha")]
    pub alpha: f64,

    /// Which deviation is bad. Defaults to Increase (more errors, slower requests).
    #[serde(default)]
    pub direction: JudgeDirection,

    /// The canary/baseline rate ratio tolerated before it is a regression: of events
    /// (1.2 tolerates 20 % more errors), or for a histogram of the share of observations
    /// above each bucket boundary. Defaults to 1.0.
    #[serde(default = "default_ratio")]
    pub allowed_increase: f64,

    /// The lowest rate ratio tolerated when lower is worse. Defaults to 1.0.
    #[serde(default = "default_ratio")]
    pub allowed_decrease: f64,

    /// Fewest canary requests (counts) or observations (histogram) for a Successful
    /// verdict; with fewer the verdict at the last look is Inconclusive (too little
    /// traffic). Defaults to 100.
    #[serde(default = "default_min_canary_count")]
    #[schemars(range(min = 0.0))]
    pub min_canary_count: f64,
}

/// Counters of events (e.g. 5xx responses) and of their total (requests), per side.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SequentialCounts {
    /// The canary's counters.
    pub canary: CounterPair,
    /// The baseline's counters (stable pods, or the dedicated baseline).
    pub baseline: CounterPair,
}

/// Two counter selectors; sluice queries `sum(increase(SELECTOR[interval]))` per slice.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CounterPair {
    /// Series selector of the events counter, e.g.
    /// `http_requests_total{pod_template_hash="{{args.canary-hash}}",code=~"5.."}`.
    #[x_kube(validation = Rule::new("size(self) > 0").message("events must not be empty"))]
    pub events: String,
    /// Series selector of the total counter, e.g.
    /// `http_requests_total{pod_template_hash="{{args.canary-hash}}"}`.
    #[x_kube(validation = Rule::new("size(self) > 0").message("total must not be empty"))]
    pub total: String,
}

/// Histogram bucket selectors; sluice queries `sum by (le) (increase(SELECTOR[interval]))`
/// per slice.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SequentialHistogram {
    /// Series selector of the canary's `_bucket` series.
    #[x_kube(validation = Rule::new("size(self) > 0").message("canary must not be empty"))]
    pub canary: String,
    /// Series selector of the baseline's `_bucket` series.
    #[x_kube(validation = Rule::new("size(self) > 0").message("baseline must not be empty"))]
    pub baseline: String,
}

/// Which deviation of a signal is bad.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JudgeDirection {
    /// Higher is worse.
    #[default]
    Increase,
    /// Lower is worse.
    Decrease,
    /// Any significant change is bad.
    Either,
}

/// How NaN samples are treated.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NanStrategy {
    /// Drop NaN samples.
    #[default]
    Remove,
    /// Replace NaN samples by 0.
    Replace,
}

/// A reusable analysis in one namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    plural = "analysistemplates",
    shortname = "at",
    category = "sluice",
    namespaced,
    status = "AnalysisTemplateStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct AnalysisTemplateSpec {
    /// The metrics, args and dry-run settings.
    #[serde(flatten)]
    pub analysis: AnalysisSpec,
}

/// A reusable analysis for every namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    plural = "clusteranalysistemplates",
    shortname = "cat",
    category = "sluice",
    status = "AnalysisTemplateStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ClusterAnalysisTemplateSpec {
    /// The metrics, args and dry-run settings.
    #[serde(flatten)]
    pub analysis: AnalysisSpec,
}

/// Whether a template is usable.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `InvalidSpec` when a condition does not compile or an arg is unusable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One evaluation of an analysis, created and owned by a Rollout.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AnalysisRun",
    plural = "analysisruns",
    shortname = "ar",
    category = "sluice",
    namespaced,
    status = "AnalysisRunStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    /// The metrics with their arguments resolved.
    #[serde(flatten)]
    pub analysis: AnalysisSpec,

    /// Set to stop measuring; the run ends with the verdict reached so far.
    #[serde(default)]
    pub terminate: bool,
}

/// The verdict of an analysis, a metric, or a measurement.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnalysisPhase {
    /// Not started.
    Pending,
    /// Measuring.
    Running,
    /// Passed.
    Successful,
    /// Failed: the rollout is aborted.
    Failed,
    /// Could not be measured: the rollout is aborted.
    Error,
    /// Neither passed nor failed: the rollout pauses for a human.
    Inconclusive,
}

/// Observed state of an AnalysisRun.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Verdict of the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AnalysisPhase>,

    /// Why the run has its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Results per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_results: Vec<MetricResult>,

    /// When the first measurement started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,

    /// When the run reached its verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,

    /// Standard conditions, e.g. `InvalidSpec`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Results of one metric.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// Name of the metric.
    pub name: String,

    /// Verdict of the metric.
    pub phase: AnalysisPhase,

    /// The latest measurements, newest last (see `measurementRetention`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,

    /// Measurements taken.
    #[serde(default)]
    pub count: i32,

    /// Successful measurements.
    #[serde(default)]
    pub successful: i32,

    /// Failed measurements.
    #[serde(default)]
    pub failed: i32,

    /// Inconclusive measurements.
    #[serde(default)]
    pub inconclusive: i32,

    /// Measurements that could not be taken.
    #[serde(default)]
    pub error: i32,

    /// Errors in a row, reset by a measurement that succeeds.
    #[serde(default)]
    pub consecutive_error: i32,

    /// True when the metric is in dry-run mode and cannot decide the run.
    #[serde(default)]
    pub dry_run: bool,

    /// Why the metric has its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One measurement of a metric.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// Verdict of this measurement.
    pub phase: AnalysisPhase,

    /// The value that the conditions saw, as text (e.g. `[0.993]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,

    /// When the query was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,

    /// When the answer was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,

    /// Details: the error, or that the result was empty or NaN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
