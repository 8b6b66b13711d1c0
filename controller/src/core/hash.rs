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
}
