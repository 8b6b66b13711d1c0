//! The sluice controller.
//!
//! Layering (see `docs/architecture.md`), arrows pointing one way:
//! `sluice-api` ← `core` (pure planning: no client, no tokio, no clock) ← `adapters`
//! (Kubernetes writes, traffic routers, metric providers) ← `runtime` (Controller wiring,
//! leader election, metrics) ← binaries.
pub mod actions;
pub mod adapters;
pub mod core;
pub mod runtime;
