//! Stable hashes of pod templates and step lists.
//!
//! The pod-template hash names a revision: it goes into the ReplicaSet name
//! (`<rollout>-<hash>`), its `sluice.dev/pod-template-hash` label and the Service
//! selectors. It must not change across controller versions for an unchanged template,
//! so it is computed over canonical JSON (object keys sorted, as serde_json's default map
//! keeps them) with FNV-1a, and encoded like Kubernetes' `rand.SafeEncodeString` so that it
//! never spells words and is a valid label value.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::Serialize;
use sluice_api::labels::POD_TEMPLATE_HASH_LABEL;

/// Kubernetes' alphabet for generated names: no vowels, no look-alike characters.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

fn encode(mut n: u64, len: usize) -> String {
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn hash_json(value: &impl Serialize) -> String {
    // serde_json::Value sorts object keys, which makes the encoding canonical.
    let canonical = serde_json::to_value(value).expect("Kubernetes types serialize to JSON");
    let bytes = serde_json::to_vec(&canonical).expect("a JSON value serializes");
    encode(fnv1a64(&bytes), 10)
}

/// The hash of a pod template, ignoring the hash label sluice itself adds.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    hash_json(&template)
}

/// The hash of anything serializable, e.g. the canary steps: a change restarts the steps.
pub fn value_hash(value: &impl Serialize) -> String {
    hash_json(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str, extra_label: Option<(&str, &str)>) -> PodTemplateSpec {
        let mut labels = serde_json::Map::new();
        labels.insert("app".into(), json!("web"));
        if let Some((k, v)) = extra_label {
            labels.insert(k.into(), json!(v));
        }
        serde_json::from_value(json!({
            "metadata": { "labels": labels },
            "spec": { "containers": [{ "name": "web", "image": image }] },
        }))
        .unwrap()
    }

    #[test]
    fn same_template_same_hash_and_label_safe() {
        let a = pod_template_hash(&template("nginx:1", None));
        assert_eq!(a, pod_template_hash(&template("nginx:1", None)));
        assert_eq!(a.len(), 10);
        assert!(a.bytes().all(|b| ALPHABET.contains(&b)), "{a}");
    }

    #[test]
    fn image_change_changes_hash() {
        assert_ne!(
            pod_template_hash(&template("nginx:1", None)),
            pod_template_hash(&template("nginx:2", None))
        );
    }

    #[test]
    fn the_hash_label_itself_is_ignored() {
        assert_eq!(
            pod_template_hash(&template("nginx:1", None)),
            pod_template_hash(&template("nginx:1", Some((POD_TEMPLATE_HASH_LABEL, "xyz"))))
        );
    }

    /// Pinned so that a change of algorithm, which would make every running rollout look
    /// like a new revision after an upgrade, cannot slip in unnoticed.
    #[test]
    fn fnv_matches_the_published_test_vector() {
        // FNV-1a 64 of "a" from the reference test suite (isthe.com/chongo/tech/comp/fnv).
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    }

    /// A realistic template: what a user's Deployment-like spec holds, with every kind of
    /// value the encoding must keep stable (quantities, int-or-string ports, nested
    /// lists, maps whose key order in the input differs from the sorted one).
    fn realistic_template() -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {
                "labels": { "app": "shop", "tier": "web", POD_TEMPLATE_HASH_LABEL: "ignored" },
                "annotations": { "prometheus.io/scrape": "true", "prometheus.io/port": "9090" },
            },
            "spec": {
                "serviceAccountName": "shop",
                "terminationGracePeriodSeconds": 30,
                "securityContext": { "runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000 },
                "containers": [{
                    "name": "shop",
                    "image": "registry.example.com/shop:1.4.2",
                    "args": ["--listen=:8080", "--log-format=json"],
                    "ports": [
                        { "name": "http", "containerPort": 8080, "protocol": "TCP" },
                        { "name": "metrics", "containerPort": 9090 },
                    ],
                    "env": [
                        { "name": "LOG_LEVEL", "value": "info" },
                        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                        { "name": "DB_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "shop-db", "key": "password" } } },
                    ],
                    "resources": {
                        "requests": { "cpu": "250m", "memory": "256Mi" },
                        "limits": { "memory": "512Mi" },
                    },
                    "readinessProbe": {
                        "httpGet": { "path": "/healthz", "port": "http" },
                        "periodSeconds": 5,
                        "failureThreshold": 3,
                    },
                    "livenessProbe": { "tcpSocket": { "port": 8080 }, "initialDelaySeconds": 10 },
                    "volumeMounts": [{ "name": "config", "mountPath": "/etc/shop", "readOnly": true }],
                }],
                "volumes": [{ "name": "config", "configMap": { "name": "shop-config" } }],
                "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule" }],
            },
        }))
        .unwrap()
    }

    /// The pod-template hash names every revision in the cluster (ReplicaSet names, the
    /// label, Service selectors, `status.currentPodHash`). If this literal changes, an
    /// upgrade would see every running Rollout's template as a new revision and restart
    /// it: change the encoding only with a migration (docs/architecture.md, "What an
    /// upgrade may and may not change").
    #[test]
    fn golden_pod_template_hash() {
        assert_eq!(pod_template_hash(&realistic_template()), "c2nrf4t2nv");
        // The minimal template of the other tests, and the canonical JSON it is hashed
        // over: keys sorted, no whitespace, the hash label gone.
        let minimal = template("nginx:1", Some((POD_TEMPLATE_HASH_LABEL, "xyz")));
        let mut stripped = minimal.clone();
        stripped
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .remove(POD_TEMPLATE_HASH_LABEL);
        assert_eq!(
            serde_json::to_string(&serde_json::to_value(&stripped).unwrap()).unwrap(),
            r#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":"nginx:1","name":"web"}]}}"#
        );
        // Reproduced outside Rust: FNV-1a 64 of exactly those bytes, written as 10 digits of
        // the alphabet, least significant first.
        assert_eq!(pod_template_hash(&minimal), "2bslv7gwmm");
    }

    /// `status.currentStepHash` of a canary: a changed hash restarts the steps of every
    /// in-flight canary at step 0 after an upgrade. Pinned over the steps as a user writes
    /// them (deserialized, so serde defaults and field names count), with the canonical
    /// JSON shown so that a failure says what changed.
    #[test]
    fn golden_canary_steps_hash() {
        let steps: Vec<sluice_api::rollout::CanaryStep> = serde_json::from_value(json!([
            { "setWeight": 10 },
            { "pause": { "duration": "1m" } },
            { "setCanaryScale": { "replicas": 2 } },
            { "analysis": {
                "templates": [{ "templateName": "success-rate" }],
                "args": [{ "name": "service", "value": "shop" }],
            } },
            { "setWeight": 50 },
            { "pause": { "duration": 30 } },
            { "setCanaryScale": { "matchTrafficWeight": true } },
            { "pause": {} },
        ]))
        .unwrap();
        let canonical = serde_json::to_string(&serde_json::to_value(&steps).unwrap()).unwrap();
        assert_eq!(
            canonical,
            concat!(
                r#"[{"setWeight":10},{"pause":{"duration":"1m"}},"#,
                r#"{"setCanaryScale":{"matchTrafficWeight":false,"replicas":2}},"#,
                r#"{"analysis":{"args":[{"name":"service","value":"shop"}],"#,
                r#""templates":[{"clusterScope":false,"templateName":"success-rate"}]}},"#,
                r#"{"setWeight":50},{"pause":{"duration":30}},"#,
                r#"{"setCanaryScale":{"matchTrafficWeight":true}},{"pause":{}}]"#,
            )
        );
        assert_eq!(value_hash(&steps), "g28kw4zpp2");
    }

    /// `status.currentStepHash` of a blue-green Rollout is the hash of its stage list: a
    /// renamed `Stage` variant would restart every in-flight blue-green rollout's stages
    /// (back to preview) after an upgrade.
    #[test]
    fn golden_blue_green_stage_hashes() {
        use crate::core::bluegreen::{Stage, stages};
        assert_eq!(
            serde_json::to_string(&[
                Stage::Preview,
                Stage::PrePromotionAnalysis,
                Stage::Pause,
                Stage::Promote,
                Stage::PostPromotionAnalysis,
            ])
            .unwrap(),
            r#"["Preview","PrePromotionAnalysis","Pause","Promote","PostPromotionAnalysis"]"#
        );
        let bg = |extra: serde_json::Value| -> sluice_api::rollout::BlueGreenStrategy {
            let mut spec = json!({ "activeService": "shop-active" });
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(spec).unwrap()
        };
        let analysis = json!({ "templates": [{ "templateName": "smoke" }] });
        let cases = [
            (bg(json!({})), "p67mmhwxhc"),
            (bg(json!({ "autoPromotionEnabled": false })), "hvlknqcn5k"),
            (
                bg(json!({
                    "autoPromotionSeconds": 60,
                    "prePromotionAnalysis": analysis,
                    "postPromotionAnalysis": analysis,
                })),
                "8d99htz9gq",
            ),
        ];
        let got: Vec<String> = cases.iter().map(|(b, _)| value_hash(&stages(b))).collect();
        let want: Vec<&str> = cases.iter().map(|(_, h)| *h).collect();
        assert_eq!(got, want);
    }

    /// An over-long canary Ingress name ends in `value_hash` of the full name: a changed
    /// hash would make an upgraded controller create a second canary Ingress.
    #[test]
    fn golden_name_hash() {
        assert_eq!(value_hash(&"a".repeat(300)), "n99dq8fhld");
    }
}
