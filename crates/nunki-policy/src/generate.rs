//! Generating `policy_data.containers` (and, with the rules, the policy text) for one pod
//! template.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::data::{self, ContainerPolicy, ContainerSettings, EmptyDirType};
use crate::image_info::{ImageInfo, ImageInfoError};
use crate::input::{ConfigSources, PodInput};
use crate::render::render_policy;
use crate::settings::Settings;

/// Why no policy data could be generated. Every variant names the resource and the YAML path.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// An image is missing from the image-info file or its entry is unusable.
    #[error("{resource}: {path}: {source}")]
    Image {
        /// `Kind namespace/name`.
        resource: String,
        /// YAML path of the `image` field.
        path: String,
        /// What is wrong with the image information.
        #[source]
        source: ImageInfoError,
    },
    /// A volume mount or device names a volume the pod does not define.
    #[error("{resource}: {path}: volume \"{volume}\" not defined in {volumes_path}")]
    VolumeNotDefined {
        /// `Kind namespace/name`.
        resource: String,
        /// YAML path of the volume mount.
        path: String,
        /// The volume name.
        volume: String,
        /// YAML path of the pod's volumes.
        volumes_path: String,
    },
    /// An `env`/`envFrom` reference names a ConfigMap or Secret (or a key of one) that none of
    /// the input files defines.
    #[error("{0}")]
    MissingReference(Box<MissingReference>),
    /// The pod uses a feature the generator (or Kata) cannot express in a policy.
    #[error("{resource}: {path}: {what} is not supported")]
    Unsupported {
        /// `Kind namespace/name`.
        resource: String,
        /// YAML path of the field.
        path: String,
        /// The feature.
        what: String,
    },
    /// A value is invalid or cannot be resolved.
    #[error("{resource}: {path}: {reason}")]
    Invalid {
        /// `Kind namespace/name`.
        resource: String,
        /// YAML path of the field.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// With images pulled in the guest, the host cannot resolve the image's users and groups,
    /// so the pod spec must pin them.
    #[error(
        "{resource}: {path}: image \"{image}\" runs as UID {uid}, GID {gid}, groups {additional_gids:?}, which containerd cannot reproduce for an image pulled inside the guest; set them in the pod spec: {suggestion}",
        resource = .0.resource, path = .0.path, image = .0.image, uid = .0.uid, gid = .0.gid,
        additional_gids = .0.additional_gids, suggestion = .0.suggestion
    )]
    GuestPullUser(Box<GuestPullUser>),
    /// The settings name an emptyDir type the generator does not know.
    #[error(
        "settings: cluster_config.emptydir_type \"{0}\" is not one of \"shared-fs\", \"block-encrypted\", \"block-plain\""
    )]
    EmptyDirType(String),
    /// The container data could not be turned into JSON (a bug).
    #[error("cannot serialize policy_data.containers: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Whether a reference is to a ConfigMap or a Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
        })
    }
}

/// Details of [`GenerateError::MissingReference`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{resource}, container \"{container}\": {kind} \"{name}\" {what} ({path}); {fix}, or mark the reference optional",
    what = match key { Some(key) => format!("has no key \"{key}\""), None => "not found".to_owned() },
    fix = match key { Some(_) => format!("add the key to the {kind}"), None => "pass the file that defines it".to_owned() }
)]
pub struct MissingReference {
    /// `Kind namespace/name`.
    pub resource: String,
    /// Container name.
    pub container: String,
    /// YAML path of the reference.
    pub path: String,
    /// ConfigMap or Secret.
    pub kind: SourceKind,
    /// Its name.
    pub name: String,
    /// The missing key; `None` when the whole ConfigMap or Secret is missing.
    pub key: Option<String>,
}

/// Details of [`GenerateError::GuestPullUser`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPullUser {
    /// `Kind namespace/name`.
    pub resource: String,
    /// YAML path of the container.
    pub path: String,
    /// The image.
    pub image: String,
    /// UID derived from the image.
    pub uid: u32,
    /// GID derived from the image.
    pub gid: u32,
    /// Groups derived from the image.
    pub additional_gids: Vec<u32>,
    /// The securityContext fields to set.
    pub suggestion: String,
}

/// The `policy_data.containers` entries of one pod template: the pause container first, then
/// the init containers (last first), then the containers.
///
/// `images` must hold every image the pod uses (the pause image is built in); `config`
/// resolves `env`/`envFrom` references to ConfigMaps and Secrets.
pub fn generate_containers(
    input: &PodInput,
    images: &ImageInfo,
    config: &ConfigSources,
    settings: &ContainerSettings,
) -> Result<Vec<ContainerPolicy>, GenerateError> {
    let ctx = data::Ctx::new(input, settings, config)?;
    data::pod_containers(&ctx, images)
}

impl ContainerSettings {
    /// The default container settings with the values they share with `settings` (capability
    /// lists, pause image, guest pull, emptyDir type, OCI version, ConfigMap storages, VFIO)
    /// taken from there, so that both halves of `policy_data` agree.
    pub fn for_settings(settings: &Settings) -> Result<Self, GenerateError> {
        let mut out = Self::default();
        out.sync_with(settings)?;
        Ok(out)
    }

    /// Copies the values shared with `settings` into `self` (see [`Self::for_settings`]).
    pub fn sync_with(&mut self, settings: &Settings) -> Result<(), GenerateError> {
        let cluster = &settings.cluster_config;
        self.emptydir_type = match cluster.emptydir_type.as_str() {
            "shared-fs" => EmptyDirType::SharedFs,
            "block-encrypted" => EmptyDirType::BlockEncrypted,
            "block-plain" => EmptyDirType::BlockPlain,
            other => return Err(GenerateError::EmptyDirType(other.to_owned())),
        };
        self.pause_container_image
            .clone_from(&cluster.pause_container_image);
        self.guest_pull = cluster.guest_pull;
        self.default_caps.clone_from(&settings.common.default_caps);
        self.privileged_caps
            .clone_from(&settings.common.privileged_caps);
        self.oci_version
            .clone_from(&settings.kata_config.oci_version);
        self.enable_configmap_secret_storages =
            settings.kata_config.enable_configmap_secret_storages;
        let vfio = &settings.devices.vfio;
        self.vfio.device_path.clone_from(&vfio.device_path);
        self.vfio.anno_key_regex.clone_from(&vfio.anno_key_regex);
        self.vfio
            .gpu_anno_value_regex
            .clone_from(&vfio.nvidia.gpu_anno_value_regex);
        self.vfio
            .gpu_gk_device_type
            .clone_from(&vfio.nvidia.gpu_gk_device_type);
        self.vfio
            .pgpu_resource_keys
            .clone_from(&vfio.nvidia.pgpu_resource_keys);
        Ok(())
    }
}

/// Generates policies for many pods with one set of settings.
///
/// [`Self::policy`] writes the same bytes as `render_policy(&self.policy_data(..))`, without
/// building the intermediate `serde_json::Value` (most of the cost for large batches).
#[derive(Debug, Clone)]
pub struct PolicyGenerator {
    settings: Settings,
    containers: ContainerSettings,
    /// `policy_data` of the settings with an empty `containers` array.
    base: Map<String, Value>,
    /// What `render_policy` writes before the JSON, when it can be determined.
    prefix: Option<String>,
}

impl PolicyGenerator {
    /// A generator for `settings`, with the default container settings synced to them.
    pub fn new(settings: Settings) -> Result<Self, GenerateError> {
        let containers = ContainerSettings::for_settings(&settings)?;
        Ok(Self::build(settings, containers))
    }

    /// A generator with explicit container settings (their shared values are synced to
    /// `settings`).
    pub fn with_container_settings(
        settings: Settings,
        mut containers: ContainerSettings,
    ) -> Result<Self, GenerateError> {
        containers.sync_with(&settings)?;
        Ok(Self::build(settings, containers))
    }

    fn build(settings: Settings, containers: ContainerSettings) -> Self {
        let base = match settings.policy_data(Value::Array(Vec::new())) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let prefix = render_policy(&Value::Null)
            .strip_suffix("null")
            .map(str::to_owned);
        Self {
            settings,
            containers,
            base,
            prefix,
        }
    }

    /// The settings (`common`, `sandbox`, … of `policy_data`).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The container settings.
    pub fn container_settings(&self) -> &ContainerSettings {
        &self.containers
    }

    /// `policy_data.containers` of one pod template.
    pub fn containers(
        &self,
        input: &PodInput,
        images: &ImageInfo,
        config: &ConfigSources,
    ) -> Result<Vec<ContainerPolicy>, GenerateError> {
        generate_containers(input, images, config, &self.containers)
    }

    /// The whole `policy_data` of one pod template, in genpolicy's shape.
    pub fn policy_data(
        &self,
        input: &PodInput,
        images: &ImageInfo,
        config: &ConfigSources,
    ) -> Result<Value, GenerateError> {
        let containers = serde_json::to_value(self.containers(input, images, config)?)?;
        let mut data = self.base.clone();
        data.insert("containers".to_owned(), containers);
        Ok(Value::Object(data))
    }

    /// The policy text (our rules followed by `policy_data`) of one pod template.
    pub fn policy(
        &self,
        input: &PodInput,
        images: &ImageInfo,
        config: &ConfigSources,
    ) -> Result<String, GenerateError> {
        let Some(prefix) = &self.prefix else {
            return Ok(render_policy(&self.policy_data(input, images, config)?));
        };
        let containers = self.containers(input, images, config)?;
        let mut out = Vec::with_capacity(prefix.len() + 16 * 1024);
        out.extend_from_slice(prefix.as_bytes());
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            serde_json::ser::PrettyFormatter::with_indent(b"  "),
        );
        PolicyDataOut {
            base: &self.base,
            containers: &containers,
        }
        .serialize(&mut ser)?;
        String::from_utf8(out).map_err(|e| {
            GenerateError::Serialize(serde::ser::Error::custom(format!(
                "policy text is not UTF-8: {e}"
            )))
        })
    }
}

/// `policy_data` with typed containers, serialized with the keys in the order of the
/// (sorted) base object, i.e. exactly like the equivalent `serde_json::Value`.
struct PolicyDataOut<'a> {
    base: &'a Map<String, Value>,
    containers: &'a [ContainerPolicy],
}

impl Serialize for PolicyDataOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.base.len()))?;
        for (key, value) in self.base {
            if key == "containers" {
                map.serialize_entry(key, self.containers)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// `policy_data` of one pod template (see [`PolicyGenerator::policy_data`]).
pub fn generate_policy_data(
    input: &PodInput,
    images: &ImageInfo,
    config: &ConfigSources,
    settings: &Settings,
) -> Result<Value, GenerateError> {
    let containers = ContainerSettings::for_settings(settings)?;
    let data = serde_json::to_value(generate_containers(input, images, config, &containers)?)?;
    Ok(settings.policy_data(data))
}

/// The policy text of one pod template (see [`PolicyGenerator::policy`]).
pub fn generate_policy(
    input: &PodInput,
    images: &ImageInfo,
    config: &ConfigSources,
    settings: &Settings,
) -> Result<String, GenerateError> {
    Ok(render_policy(&generate_policy_data(
        input, images, config, settings,
    )?))
}
