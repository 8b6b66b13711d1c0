//! Gates: webhooks that must answer 2xx before a rollout moves past a point (its start,
//! a weight increase, the promotion), or that are told when it completed or rolled back.
//! Flagger's `confirm-*` / `pre-rollout` / `post-rollout` / `rollback` webhooks, as part of
//! the strategy. The semantics are in `docs/analysis.md`, "Gates".

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::SecretKeySelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::WebHeader;
use crate::duration::HumanDuration;

/// A webhook the rollout waits for, or tells, at the points it names.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.url) != has(self.urlFrom)").message("a gate sets exactly one of url and urlFrom"),
    validation = Rule::new("!(self.insecure && has(self.caBundle))").message("a gate sets insecure or caBundle, not both"),
    validation = Rule::new("!self.insecure || !has(self.url) || self.url.startsWith('https://')").message("gate insecure applies only to an https:// url")
)]
pub struct Gate {
    /// The gate's name, unique in the Rollout: it names the pause condition that holds
    /// the rollout, and the gate's entries in `status.gates`.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("gate name must be a DNS label: lower-case letters, digits and '-'"))]
    pub name: String,

    /// Where the gate applies: `preRollout`, `weightIncrease` (canary only),
    /// `prePromotion` hold the rollout until the webhook answers 2xx; `postRollout` and
    /// `rollback` are told after the fact and hold nothing.
    // Not `on`, as Flagger might name it: YAML 1.1 parsers (kubectl's, Helm's) read a
    // bare `on` key as `true`, which broke the CRD's `required` list under Helm.
    #[schemars(length(min = 1, max = 5))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub points: Vec<GatePoint>,

    /// The URL the JSON description of the rollout is POSTed to, `http://` or `https://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("gate url must be an http:// or https:// URL"))]
    pub url: Option<String>,

    /// The URL, from a key of a Secret in the Rollout's namespace (for URLs that carry a
    /// credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<GateUrlFrom>,

    /// HTTP headers sent with every call; values literal or from a Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub headers: Vec<WebHeader>,

    /// How long the gate may hold the rollout (or keep being retried, for `postRollout`
    /// and `rollback`) before it fails; a held gate that fails aborts the rollout.
    /// Defaults to 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,

    /// Time limit of one call, in seconds. Defaults to 10.
    #[serde(default = "default_request_timeout_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub request_timeout_seconds: i64,

    /// Free-form values sent in the body's `metadata` (what a load tester needs: the
    /// command to run, the target).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub metadata: BTreeMap<String, String>,

    /// Skip verifying the server's TLS certificate; only when asked.
    #[serde(default)]
    pub insecure: bool,

    /// PEM certificates of the CAs that sign the server's certificate, trusted in
    /// addition to the platform's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    #[x_kube(validation = Rule::new("self.contains('-----BEGIN CERTIFICATE-----')").message("gate caBundle must hold PEM certificates"))]
    pub ca_bundle: Option<String>,
}

fn default_request_timeout_seconds() -> i64 {
    10
}

/// How long a gate holds when its spec says nothing.
pub const DEFAULT_GATE_TIMEOUT_SECS: u64 = 3600;

impl Gate {
    /// `timeout`, or the default; an unreadable one (admission refuses them) is the default.
    pub fn hold_limit(&self) -> std::time::Duration {
        self.timeout
            .as_ref()
            .and_then(|t| t.to_duration().ok())
            .unwrap_or(std::time::Duration::from_secs(DEFAULT_GATE_TIMEOUT_SECS))
    }
}

/// Where a gate's URL comes from.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GateUrlFrom {
    /// A key of a Secret in the Rollout's namespace.
    pub secret_key_ref: SecretKeySelector,
}

/// A point of the rollout a gate applies at. The names are a contract (manifests, the
/// request body, `status.gates`).
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "camelCase")]
pub enum GatePoint {
    /// A new revision was seen; nothing of it takes traffic yet. Canary: before the first
    /// step (the canary has no pods). Blue-green: before the preview stage completes (the
    /// preview pods come up behind `previewService` only).
    PreRollout,
    /// Canary: before each step that raises the canary weight above the one in force.
    WeightIncrease,
    /// Before the new revision gets all traffic: canary, after the last step; blue-green,
    /// before `activeService` switches.
    PrePromotion,
    /// Told once the new revision is stable; holds nothing.
    PostRollout,
    /// Told once the rollout aborted (traffic is back on stable); holds nothing.
    Rollback,
}

impl GatePoint {
    /// The name as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            GatePoint::PreRollout => "preRollout",
            GatePoint::WeightIncrease => "weightIncrease",
            GatePoint::PrePromotion => "prePromotion",
            GatePoint::PostRollout => "postRollout",
            GatePoint::Rollback => "rollback",
        }
    }

    /// True for the points that hold the rollout until the gate passes.
    pub fn holds(self) -> bool {
        matches!(
            self,
            GatePoint::PreRollout | GatePoint::WeightIncrease | GatePoint::PrePromotion
        )
    }
}

/// Where one gate stands at one point of one revision.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    /// The gate's name.
    pub name: String,
    pub point: GatePoint,
    /// The pod-template hash of the revision it was called for.
    pub revision: String,
    /// For `weightIncrease`: the index of the step it guards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    pub phase: GatePhase,
    /// When the gate was first called for this point; its timeout counts from here.
    pub started_at: Time,
    /// When it passed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// The last answer, or why it passed (a promote) or failed (its timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a gate stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatePhase {
    /// Called, no 2xx yet.
    Pending,
    /// Answered 2xx (or a promote passed it).
    Passed,
    /// Did not answer 2xx within its timeout.
    Failed,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    /// Words YAML 1.1 (kubectl's and Helm's parsers) reads as booleans when unquoted.
    const YAML11_BOOLEANS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];

    fn property_names(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    out.extend(props.keys().cloned());
                }
                map.values().for_each(|v| property_names(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| property_names(v, out)),
            _ => {}
        }
    }

    #[test]
    fn no_field_of_any_crd_is_a_word_yaml_1_1_reads_as_a_boolean() {
        for crd in [
            serde_json::to_value(crate::Rollout::crd()).unwrap(),
            serde_json::to_value(crate::AnalysisTemplate::crd()).unwrap(),
            serde_json::to_value(crate::ClusterAnalysisTemplate::crd()).unwrap(),
            serde_json::to_value(crate::AnalysisRun::crd()).unwrap(),
        ] {
            let mut names = Vec::new();
            property_names(&crd, &mut names);
            assert!(names.len() > 50, "{names:?}");
            let bad: Vec<_> = names
                .iter()
                .filter(|n| YAML11_BOOLEANS.contains(&n.as_str()))
                .collect();
            assert!(bad.is_empty(), "{}: {bad:?}", crd["metadata"]["name"]);
        }
    }
}
