//! Kata agent policies: our own Rego rules, `policy_data` from pod specs and image configs, initdata.

pub mod document;
pub mod engine;
pub mod input;
pub mod render;
pub mod settings;

pub use document::{DocumentError, PolicyDocument, PolicyFormat};
pub use engine::{AgentPolicy, Decision, PolicyError};
pub use input::{ConfigSources, PodInput, WorkloadKind};
pub use render::{RULES, render_policy};
pub use settings::{Settings, SettingsError};
