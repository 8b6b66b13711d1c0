//! Adapters: everything that talks to the Kubernetes API on behalf of the core's actions.
//! Every write is idempotent (server-side apply with field manager `sluice`, or a patch
//! guarded by a test), so executing a plan twice is harmless.

pub mod analysis;
pub mod cache;
pub mod job;
#[cfg(test)]
pub(crate) mod mock_api;
pub mod notify;
pub mod prometheus;
pub mod router;
pub mod slices;
pub mod status;
pub mod web;
pub mod workload;
pub mod workload_ref;
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

/// An error with its sources, `a: b: c`, without repeating a source already in the text:
/// the reason of a failed request in a measurement's message.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Why a response body could not be read whole.
pub(crate) enum BodyError {
    /// The connection failed while reading.
    Read(reqwest::Error),
    /// It is longer than the limit (the text says by how much in MiB).
    TooLarge(String),
}

/// Reads a response body chunk by chunk, refusing one longer than `max_bytes` as soon as
/// it gets there, so a runaway endpoint cannot fill the controller's memory.
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(BodyError::TooLarge(format!(
                "response larger than {} MiB",
                max_bytes / (1024 * 1024)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A response body's start as text, at most `max_chars` characters, for messages.
pub(crate) fn body_start(body: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}… (truncated)", &text[..cut]),
        None => text.to_owned(),
    }
}
