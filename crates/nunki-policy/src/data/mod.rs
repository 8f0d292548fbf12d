//! `policy_data.containers`: what the agent policy allows for each container of a pod, built
//! from the pod spec, the image configs and the container settings (genpolicy's algorithm).

pub mod settings;
pub mod spec;

mod container;
mod containerd;
mod env;
mod mounts;
mod names;
mod process;
mod user;

use k8s_openapi::api::core::v1::Volume;

pub use settings::{
    ContainerFragment, ContainerSettings, EmptyDirType, LinuxFragment, ProcessFragment,
    VfioSettings, VolumeTemplate, VolumeTemplates,
};
pub use spec::{
    Capabilities, ContainerPolicy, Device, FsGroup, KataSpec, Linux, LinuxDevice, Mount, Namespace,
    Process, Root, Storage, User,
};

pub(crate) use container::pod_containers;

use crate::generate::GenerateError;
use crate::input::{ConfigSources, PodInput, WorkloadKind};
use user::PodUser;

/// Everything the per-container code reads about the pod.
pub(crate) struct Ctx<'a> {
    pub(crate) input: &'a PodInput,
    pub(crate) settings: &'a ContainerSettings,
    pub(crate) sources: &'a ConfigSources,
    /// YAML path of the pod spec in the resource (`spec`, `spec.template.spec`, …).
    pub(crate) spec_path: &'static str,
    /// `Kind namespace/name`, for messages.
    pub(crate) resource: String,
    pub(crate) pod_user: PodUser,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        input: &'a PodInput,
        settings: &'a ContainerSettings,
        sources: &'a ConfigSources,
    ) -> Result<Self, GenerateError> {
        let spec_path = match input.kind {
            WorkloadKind::Pod => "spec",
            WorkloadKind::CronJob => "spec.jobTemplate.spec.template.spec",
            _ => "spec.template.spec",
        };
        let name = if input.name.is_empty() {
            format!("{}*", input.generate_name.as_deref().unwrap_or_default())
        } else {
            input.name.clone()
        };
        let resource = match input.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => format!("{} {ns}/{name}", input.kind.as_str()),
            _ => format!("{} {name}", input.kind.as_str()),
        };
        let mut ctx = Self {
            input,
            settings,
            sources,
            spec_path,
            resource,
            pod_user: PodUser::default(),
        };
        ctx.pod_user = PodUser::from_context(input.spec.security_context.as_ref())
            .map_err(|reason| ctx.invalid(&format!("{spec_path}.securityContext"), &reason))?;
        Ok(ctx)
    }

    /// The volume named `name` and its index in `spec.volumes`.
    pub(crate) fn volume(&self, name: &str) -> Option<(usize, &'a Volume)> {
        self.input
            .spec
            .volumes
            .iter()
            .flatten()
            .enumerate()
            .find(|(_, v)| v.name == name)
    }

    pub(crate) fn fragment(&self, is_pause: bool) -> &'a ContainerFragment {
        if is_pause {
            &self.settings.pause_container
        } else {
            &self.settings.other_container
        }
    }

    pub(crate) fn invalid(&self, path: &str, reason: &str) -> GenerateError {
        GenerateError::Invalid {
            resource: self.resource.clone(),
            path: path.to_owned(),
            reason: reason.to_owned(),
        }
    }

    pub(crate) fn unsupported(&self, path: &str, what: &str) -> GenerateError {
        GenerateError::Unsupported {
            resource: self.resource.clone(),
            path: path.to_owned(),
            what: what.to_owned(),
        }
    }
}
