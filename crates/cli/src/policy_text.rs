//! One place that turns a pod template into its policy text: generated containers, our
//! default settings, our rules.

use anyhow::Result;
use nunki_policy::{ConfigSources, ContainerSettings, ImageInfo, PodInput, Settings};

/// The Kata agent policy for `input`.
pub fn generate(input: &PodInput, images: &ImageInfo, config: &ConfigSources) -> Result<String> {
    let containers =
        nunki_policy::generate_containers(input, images, config, &ContainerSettings::default())?;
    let settings = Settings::default();
    let data = settings.policy_data(serde_json::to_value(&containers)?);
    Ok(nunki_policy::render_policy(&data))
}
