//! The scale benchmark (`make bench-scale`, `make bench-compare`): one controller at a
//! time against N Rollouts on the local plane, its requests counted from the apiserver's
//! audit log under its own client certificate. Figures, not a pass/fail test.

pub mod audit;
pub mod process;
pub mod report;
pub mod run;
pub mod workload;
