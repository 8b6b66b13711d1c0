//! The parts of `kubectl sluice` worth testing on their own: what `get rollout` and
//! `list rollouts` print (pure functions of the objects and the time), and the watch
//! that feeds them; and `convert`, from Argo Rollouts manifests to sluice's.

pub mod convert;
pub mod get;
pub mod view;
