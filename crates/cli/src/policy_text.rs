//! One place that turns a pod template into its policy text: generated containers, our
//! default settings, our rules.

use anyhow::Result;
use nunki_policy::generate::PolicyGenerator;
use nunki_policy::{ConfigSources, ImageInfo, PodInput, Settings};

/// The policy generator `generate` uses (our default settings).
pub fn generator() -> Result<PolicyGenerator> {
    Ok(PolicyGenerator::new(Settings::default())?)
}

/// The Kata agent policy for `input`.
pub fn generate(
    generator: &PolicyGenerator,
    input: &PodInput,
    images: &ImageInfo,
    config: &ConfigSources,
) -> Result<String> {
    Ok(generator.policy(input, images, config)?)
}
