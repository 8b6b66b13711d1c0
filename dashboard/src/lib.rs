//! The sluice dashboard: an axum application served from the controller's reflector
//! caches, calling the same action functions as `kubectl-sluice`. It lands with the
//! dashboard issue; this crate fixes its place in the workspace.
