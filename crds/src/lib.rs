//! The `sluice.dev/v1alpha1` API: the Rust types of every sluice custom resource are the
//! source of truth; `crdgen` turns them into the CRD YAML in `crds/yaml/`.

pub mod analysis;
pub mod crdgen;
pub mod duration;
pub mod gate;
pub mod labels;
pub mod rollout;

pub use analysis::{
    AnalysisRun, AnalysisRunSpec, AnalysisRunStatus, AnalysisSpec, AnalysisTemplate,
    AnalysisTemplateSpec, AnalysisTemplateStatus, ClusterAnalysisTemplate,
    ClusterAnalysisTemplateSpec,
};
pub use duration::HumanDuration;
pub use rollout::{Rollout, RolloutSpec, RolloutStatus};

/// The API group of every sluice resource.
pub const GROUP: &str = "sluice.dev";
/// The API version served.
pub const VERSION: &str = "v1alpha1";
