//! Every `sluice.dev/...` label and annotation key sluice reads or writes: the contract
//! with users' queries (`kubectl get -l`, PromQL relabellings), dashboards and the next
//! version of sluice. Change a key or its values only deliberately: a test below pins each
//! one, and `docs/api.md` documents them from [`CONTRACT`].

/// Label on every ReplicaSet and pod of a revision and in their selector, and in the
/// selectors of the Services sluice points at a revision; the value is the revision's
/// pod-template hash (`core::hash`). Baseline pods carry the stable revision's.
pub const POD_TEMPLATE_HASH_LABEL: &str = "sluice.dev/pod-template-hash";

/// Label naming the Rollout on every object sluice creates (ReplicaSets, AnalysisRuns,
/// canary Ingresses); the caches of the controller and the dashboard select on it.
pub const ROLLOUT_LABEL: &str = "sluice.dev/rollout";

/// Label that marks the pods (and the ReplicaSet) of a dedicated baseline, value
/// [`BASELINE_ROLE`]. Baseline pods keep the stable revision's pod-template hash, so that
/// the stable Service sends them traffic; this label is what tells them apart in metrics.
/// Reserved: a Rollout's template may not set it (a CEL rule on `spec`).
pub const POD_ROLE_LABEL: &str = "sluice.dev/role";
/// The value of [`POD_ROLE_LABEL`] on baseline pods.
pub const BASELINE_ROLE: &str = "baseline";

/// Label of an AnalysisRun saying which part of a rollout it gates: `step-N`,
/// `background`, `pre-promotion` or `post-promotion`.
pub const ANALYSIS_ROLE_LABEL: &str = "sluice.dev/analysis-role";

/// Label of a Rollout that names the controller instance (shard) serving it; copied to
/// the AnalysisRuns it creates. Rollouts without it are served by the controller started
/// without `--instance-id`.
pub const CONTROLLER_INSTANCE_LABEL: &str = "sluice.dev/controller-instance";

/// Label of the Jobs of `job` metrics: the uid of the AnalysisRun that owns the Job.
/// sluice's Job watch selects on it; a uid always fits a label value, a run's name may not.
pub const ANALYSIS_RUN_UID_LABEL: &str = "sluice.dev/analysis-run-uid";

/// Annotation of the Jobs of `job` metrics: the name of the AnalysisRun that owns the Job.
pub const ANALYSIS_RUN_ANNOTATION: &str = "sluice.dev/analysis-run";

/// Annotation of the Jobs of `job` metrics: the name of the metric the Job measures.
pub const METRIC_ANNOTATION: &str = "sluice.dev/metric";

/// Annotation with the revision number of a ReplicaSet (1 for the first template).
pub const REVISION_ANNOTATION: &str = "sluice.dev/revision";

/// Annotation with the time (RFC 3339) after which a demoted ReplicaSet may be scaled to
/// zero. An annotation rather than controller memory, so a restarted controller honours
/// it.
pub const SCALE_DOWN_DEADLINE_ANNOTATION: &str = "sluice.dev/scale-down-deadline";

/// Annotation of a baseline ReplicaSet: the canary revision (pod-template hash) it was
/// made for.
pub const BASELINE_FOR_ANNOTATION: &str = "sluice.dev/baseline-for";

/// Annotation of the canary Ingress sluice owns (NGINX router): the managed header route
/// it carries, as `<route name>=<fingerprint of the step's setting>`, so the route can be
/// verified after a restart and told apart from a changed one.
pub const MANAGED_ROUTES_ANNOTATION: &str = "sluice.dev/managed-routes";

/// Annotation of a revision's ReplicaSet: the role metadata (`canaryMetadata`,
/// `stableMetadata`, `previewMetadata`, `activeMetadata`) sluice last put on its pod
/// template and pods, as JSON `{"labels":{...},"annotations":{...}}`, so that keys a role
/// no longer wants are taken off again.
pub const POD_METADATA_ANNOTATION: &str = "sluice.dev/pod-metadata";

/// Annotation of a Rollout: the notification webhooks (names from the notifications
/// ConfigMap, comma-separated) that receive its transitions.
pub const NOTIFY_ANNOTATION: &str = "sluice.dev/notify";

/// Annotation of a Rollout: only these triggers (comma-separated, e.g.
/// `aborted,completed`) reach its webhooks; without it, whatever each webhook takes.
pub const NOTIFY_ON_ANNOTATION: &str = "sluice.dev/notify-on";

/// Whether a key is a label or an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Label,
    Annotation,
}

/// One key of the contract, as `docs/api.md` documents it.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub key: &'static str,
    pub kind: KeyKind,
    /// The objects that carry it.
    pub on: &'static str,
    /// Who sets it.
    pub set_by: &'static str,
    /// Its values and what a query can do with it.
    pub value: &'static str,
}

/// Every key, in the order `docs/api.md` lists them.
pub const CONTRACT: &[Key] = &[
    Key {
        key: POD_TEMPLATE_HASH_LABEL,
        kind: KeyKind::Label,
        on: "ReplicaSets, their pods and selectors; the selectors of the Services a Rollout names",
        set_by: "sluice",
        value: "the revision's pod-template hash (`status.currentPodHash`, `status.stableRS`); \
                select one revision's pods with it, or relabel it into metrics to compare revisions",
    },
    Key {
        key: ROLLOUT_LABEL,
        kind: KeyKind::Label,
        on: "ReplicaSets (baseline included), AnalysisRuns, canary Ingresses; copied from a run to its Jobs",
        set_by: "sluice",
        value: "the Rollout's name; `kubectl get rs,analysisruns -l sluice.dev/rollout=NAME`",
    },
    Key {
        key: POD_ROLE_LABEL,
        kind: KeyKind::Label,
        on: "the baseline ReplicaSet and its pods",
        set_by: "sluice (reserved: a Rollout's template may not set it)",
        value: "`baseline`; baseline pods share the stable hash, so select or exclude them with \
                `sluice.dev/role=baseline` / `!sluice.dev/role`",
    },
    Key {
        key: ANALYSIS_ROLE_LABEL,
        kind: KeyKind::Label,
        on: "AnalysisRuns",
        set_by: "sluice",
        value: "what the run gates: `step-N` (a canary step, N from 0), `background`, \
                `pre-promotion`, `post-promotion`",
    },
    Key {
        key: CONTROLLER_INSTANCE_LABEL,
        kind: KeyKind::Label,
        on: "Rollouts; copied to their AnalysisRuns and from those to their Jobs",
        set_by: "the user (a Rollout's); sluice (its runs)",
        value: "the `--instance-id` of the controller (shard) that serves the Rollout; \
                without it, the controller started without `--instance-id`",
    },
    Key {
        key: ANALYSIS_RUN_UID_LABEL,
        kind: KeyKind::Label,
        on: "the Jobs of `job` metrics",
        set_by: "sluice",
        value: "the owning AnalysisRun's uid; `kubectl get jobs -l sluice.dev/analysis-run-uid` \
                lists every Job sluice made for a measurement",
    },
    Key {
        key: ANALYSIS_RUN_ANNOTATION,
        kind: KeyKind::Annotation,
        on: "the Jobs of `job` metrics",
        set_by: "sluice",
        value: "the name of the AnalysisRun the Job measures for",
    },
    Key {
        key: METRIC_ANNOTATION,
        kind: KeyKind::Annotation,
        on: "the Jobs of `job` metrics",
        set_by: "sluice",
        value: "the name of the metric the Job measures",
    },
    Key {
        key: REVISION_ANNOTATION,
        kind: KeyKind::Annotation,
        on: "ReplicaSets",
        set_by: "sluice",
        value: "the revision number, 1 for a Rollout's first template, one more for each new one",
    },
    Key {
        key: SCALE_DOWN_DEADLINE_ANNOTATION,
        kind: KeyKind::Annotation,
        on: "the ReplicaSet of a revision a promotion demoted",
        set_by: "sluice",
        value: "an RFC 3339 time (`scaleDownDelaySeconds` after the promotion): the ReplicaSet \
                keeps its pods until then, then goes to zero",
    },
    Key {
        key: BASELINE_FOR_ANNOTATION,
        kind: KeyKind::Annotation,
        on: "the baseline ReplicaSet",
        set_by: "sluice",
        value: "the canary revision's pod-template hash the baseline was made for",
    },
    Key {
        key: POD_METADATA_ANNOTATION,
        kind: KeyKind::Annotation,
        on: "the ReplicaSets of the stable and the new revision, when the strategy sets role metadata",
        set_by: "sluice",
        value: "JSON `{\"labels\":{...},\"annotations\":{...}}`: the role metadata last applied to \
                the ReplicaSet's template and pods",
    },
    Key {
        key: MANAGED_ROUTES_ANNOTATION,
        kind: KeyKind::Annotation,
        on: "canary Ingresses (NGINX router) while a `setHeaderRoute` is in force",
        set_by: "sluice",
        value: "`<route>=<fingerprint>`: the managed route the Ingress's canary-by-header \
                annotations implement",
    },
    Key {
        key: NOTIFY_ANNOTATION,
        kind: KeyKind::Annotation,
        on: "Rollouts",
        set_by: "the user",
        value: "webhook names from the notifications ConfigMap, comma-separated: they receive \
                the Rollout's transitions (see docs/operations.md, Notifications)",
    },
    Key {
        key: NOTIFY_ON_ANNOTATION,
        kind: KeyKind::Annotation,
        on: "Rollouts",
        set_by: "the user",
        value: "triggers, comma-separated (`updated`, `step-completed`, `paused`, `promoted`, \
                `analysis-failed`, `aborted`, `progress-deadline-exceeded`, `completed`): only \
                these are sent; without it, each webhook's own `triggers`",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys are a contract with users' queries and with ReplicaSets and runs written
    /// by the previous version: a changed value must be deliberate.
    #[test]
    fn keys_are_pinned() {
        let keys: Vec<&str> = CONTRACT.iter().map(|k| k.key).collect();
        assert_eq!(
            keys,
            [
                "sluice.dev/pod-template-hash",
                "sluice.dev/rollout",
                "sluice.dev/role",
                "sluice.dev/analysis-role",
                "sluice.dev/controller-instance",
                "sluice.dev/analysis-run-uid",
                "sluice.dev/analysis-run",
                "sluice.dev/metric",
                "sluice.dev/revision",
                "sluice.dev/scale-down-deadline",
                "sluice.dev/baseline-for",
                "sluice.dev/pod-metadata",
                "sluice.dev/managed-routes",
                "sluice.dev/notify",
                "sluice.dev/notify-on",
            ]
        );
        assert_eq!(BASELINE_ROLE, "baseline");
    }

    /// The CEL rule that reserves the role label names it literally (an attribute cannot
    /// take a constant); it must name this one.
    #[test]
    fn the_reserved_role_rule_names_the_role_label() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_string(&crate::Rollout::crd()).expect("CRD serializes");
        assert!(
            crd.contains(&format!(
                "!('{POD_ROLE_LABEL}' in self.template.metadata.labels)"
            )),
            "the reserved-label rule of spec no longer names {POD_ROLE_LABEL}"
        );
    }
}
