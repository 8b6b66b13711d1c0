//! Adapters: everything that talks to the Kubernetes API on behalf of the core's actions.
//! Every write is idempotent (server-side apply with field manager `sluice`, or a patch
//! guarded by a test), so executing a plan twice is harmless.

pub mod analysis;
pub mod cache;
#[cfg(test)]
pub(crate) mod mock_api;
pub mod prometheus;
pub mod router;
pub mod slices;
pub mod status;
pub mod web;
pub mod workload;
pub mod written;

use kube::api::PatchParams;

/// The field manager of every write sluice makes.
pub const FIELD_MANAGER: &str = "sluice";

/// Parameters of a non-apply patch, attributed to sluice's field manager.
pub fn update_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// An adapter failure, with a stable category used as a metric label and in logs.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{0}")]
    Invalid(String),
}

impl AdapterError {
    /// A short, stable label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            AdapterError::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            AdapterError::Kube(kube::Error::Api(s)) if s.code == 404 => "not_found",
            // Only evictions are answered 429 by the apiserver (a PodDisruptionBudget).
            AdapterError::Kube(kube::Error::Api(s)) if s.code == 429 => "disruption_budget",
            AdapterError::Kube(kube::Error::Api(_)) => "api",
            AdapterError::Kube(_) => "transport",
            AdapterError::NotFound { .. } => "reference_not_found",
            AdapterError::Invalid(_) => "invalid",
        }
    }
}
