//! The sample manifests in `examples/` must deserialize into the Rust types, so that what
//! the README shows is what the controller reads.

use serde::Deserialize;
use sluice_api::{HumanDuration, Rollout};

fn example_rollouts(file: &str) -> Vec<Rollout> {
    let path = sluice_api::crdgen::manifest_dir(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("example exists");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("valid YAML"))
        .filter(|doc| doc["kind"] == "Rollout")
        .map(|doc| serde_yaml::from_value(doc).expect("example Rollout matches the Rust types"))
        .collect()
}

#[test]
fn istio_example_reads_as_an_istio_canary_with_subsets() {
    let rollouts = example_rollouts("canary-istio-rollout.yaml");
    assert_eq!(rollouts.len(), 1);
    let canary = rollouts[0].spec.strategy.canary.as_ref().expect("canary");
    let istio = canary
        .traffic_routing
        .as_ref()
        .and_then(|t| t.istio.as_ref())
        .expect("istio routing");
    assert_eq!(istio.virtual_service.name, "shop");
    assert_eq!(istio.virtual_service.routes, ["primary"]);
    let dr = istio.destination_rule.as_ref().expect("a DestinationRule");
    assert_eq!(
        (
            dr.canary_subset_name.as_str(),
            dr.stable_subset_name.as_str()
        ),
        ("canary", "stable")
    );
    assert_eq!(canary.steps.len(), 5);
    assert!(canary.steps[1].set_header_route.is_some());
}

#[test]
fn canary_example_reads_as_a_canary_with_five_steps() {
    let rollouts = example_rollouts("canary-rollout.yaml");
    assert_eq!(rollouts.len(), 1);
    let canary = rollouts[0]
        .spec
        .strategy
        .canary
        .as_ref()
        .expect("canary strategy");
    assert_eq!(canary.steps.len(), 5);
    assert_eq!(canary.steps[0].set_weight, Some(20));
    let pause = canary.steps[1]
        .pause
        .as_ref()
        .and_then(|p| p.duration.clone());
    assert_eq!(pause, Some(HumanDuration::Text("10s".into())));
    assert_eq!(
        pause.unwrap().to_duration().unwrap(),
        std::time::Duration::from_secs(10)
    );
    assert!(
        canary.steps[3]
            .pause
            .as_ref()
            .is_some_and(|p| p.duration.is_none())
    );
    // serde defaults match the CRD defaults when a field is omitted
    assert_eq!(rollouts[0].spec.revision_history_limit, 10);
    assert_eq!(canary.scale_down_delay_seconds, 30);
}

#[test]
fn blue_green_example_reads_as_blue_green() {
    let rollouts = example_rollouts("blue-green-rollout.yaml");
    let bg = rollouts[0]
        .spec
        .strategy
        .blue_green
        .as_ref()
        .expect("blueGreen strategy");
    assert_eq!(bg.active_service, "store-active");
    assert!(!bg.auto_promotion_enabled);
    assert!(rollouts[0].spec.strategy.canary.is_none());
}
