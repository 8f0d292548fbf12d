//! Kata agent policies: our own Rego rules, `policy_data` from pod specs and image configs, initdata.

pub mod data;
pub mod document;
pub mod engine;
pub mod generate;
pub mod image_info;
pub mod input;
pub mod render;
pub mod settings;

pub use data::{ContainerPolicy, ContainerSettings};
pub use document::{DocumentError, PolicyDocument, PolicyFormat};
pub use engine::{AgentPolicy, Decision, PolicyError};
pub use generate::{
    GenerateError, MissingReference, PolicyGenerator, SourceKind, generate_containers,
    generate_policy, generate_policy_data,
};
pub use image_info::{ImageConfig, ImageEntry, ImageInfo, ImageInfoError, reference_has_digest};
pub use input::{ConfigSources, PodInput, WorkloadKind};
pub use render::{RULES, render_policy};
pub use settings::{Settings, SettingsError};
