//! The parts of `kubectl sluice` worth testing on their own: what `get rollout` and
//! `list rollouts` print (pure functions of the objects and the time), the watch
//! that feeds them, `lint`'s offline checks of manifests, and `convert`, from Argo
//! Rollouts manifests to sluice's.

pub mod convert;
pub mod get;
pub mod lint;
pub mod view;
