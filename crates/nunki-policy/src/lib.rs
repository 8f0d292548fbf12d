//! Kata agent policies: our own Rego rules, `policy_data` from pod specs and image configs, initdata.

pub mod input;

pub use input::{ConfigSources, PodInput, WorkloadKind};
