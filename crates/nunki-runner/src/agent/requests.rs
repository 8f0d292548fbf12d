//! The agent requests for one pod: `CreateSandboxRequest`, then one `CreateContainerRequest` for
//! the pause container, each init container and each container, in that order.
//!
//! Built from the pod spec the way the API server, the kubelet, containerd's CRI plugin and the
//! Kata runtime would (see the `kubelet`, `containerd` and `kata` modules for the facts each
//! layer contributes), independently of the policy generator.

use nunki_policy::PodInput;
use serde_json::Value;

use super::containerd;
pub use super::context::{ImageNameStyle, SandboxContext};
use super::error::AgentError;
use super::images::{ImageConfig, ImageConfigs, ImageRef};
use super::kata::{self, ContainerType};
use super::kubelet;
use super::oci::{CreateContainerRequest, CreateSandboxRequest};

/// The name under which the pause (sandbox) container's request is returned. Kubernetes
/// container names are lower case, so it cannot clash with a real one.
pub const SANDBOX_CONTAINER: &str = "POD";

/// One container's request, typed.
#[derive(Debug, Clone)]
pub(crate) struct BuiltContainer {
    pub name: String,
    pub request: CreateContainerRequest,
}

/// All requests of a pod, typed.
#[derive(Debug, Clone)]
pub(crate) struct BuiltPod {
    pub sandbox: CreateSandboxRequest,
    pub containers: Vec<BuiltContainer>,
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The image config for a container: the image-info entry, or the built-in pause config for a
/// pause image.
fn image_config(
    images: &ImageConfigs,
    container: &str,
    reference: &str,
) -> Result<ImageConfig, AgentError> {
    if let Some(c) = images.get(reference) {
        return Ok(c.clone());
    }
    let path = ImageRef::parse(reference).path;
    if path == "pause" || path.ends_with("/pause") {
        return Ok(ImageConfig::pause());
    }
    Err(AgentError::MissingImage {
        container: container.to_owned(),
        image: reference.to_owned(),
    })
}

/// Builds every request of the pod.
pub(crate) fn build_pod(
    pod: &PodInput,
    images: &ImageConfigs,
    ctx: &SandboxContext,
) -> Result<BuiltPod, AgentError> {
    kubelet::validate(&pod.spec)?;
    let admitted = kubelet::admit(pod, ctx);
    let sandbox = kubelet::sandbox(pod, &admitted, ctx);
    let fs_group = pod.spec.security_context.as_ref().and_then(|s| s.fs_group);
    let pause = containerd::sandbox_spec(&sandbox, ctx)?;
    let mut containers = vec![BuiltContainer {
        name: SANDBOX_CONTAINER.to_owned(),
        request: kata::create_container(
            pause,
            &ctx.sandbox_id,
            ContainerType::Sandbox,
            "pause",
            fs_group,
            ctx,
        ),
    }];
    let lookup = |name: &str, reference: &str| image_config(images, name, reference);
    for c in kubelet::containers(pod, &admitted, &lookup, ctx)? {
        let image = lookup(&c.name, &c.image)?;
        let id = ctx.container_id(&c.name);
        let spec = containerd::container_spec(&c, &sandbox, &image, &id, ctx)?;
        let image_name = containerd::image_name(&c.image, ctx.image_name_style);
        containers.push(BuiltContainer {
            request: kata::create_container(
                spec,
                &id,
                ContainerType::Workload,
                &image_name,
                fs_group,
                ctx,
            ),
            name: c.name,
        });
    }
    Ok(BuiltPod {
        sandbox: kata::create_sandbox(&sandbox, ctx),
        containers,
    })
}

/// The `CreateSandboxRequest` the Kata runtime sends for `pod`.
pub fn build_sandbox_request(pod: &PodInput, ctx: &SandboxContext) -> Value {
    let admitted = kubelet::admit(pod, ctx);
    let sandbox = kubelet::sandbox(pod, &admitted, ctx);
    to_value(&kata::create_sandbox(&sandbox, ctx))
}

/// The `CreateContainerRequest`s for `pod`, in the order they are sent: the pause container
/// (named [`SANDBOX_CONTAINER`]), the init containers, then the containers.
pub fn build_container_requests(
    pod: &PodInput,
    images: &ImageConfigs,
    ctx: &SandboxContext,
) -> Result<Vec<(String, Value)>, AgentError> {
    Ok(build_pod(pod, images, ctx)?
        .containers
        .into_iter()
        .map(|c| (c.name, to_value(&c.request)))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn pause_images_are_built_in_and_others_must_be_listed() {
        let images = ImageConfigs::new();
        for r in [
            "registry.k8s.io/pause:3.10",
            "mcr.microsoft.com/oss/kubernetes/pause:3.6",
            "pause",
        ] {
            assert_eq!(
                image_config(&images, "c", r).unwrap(),
                ImageConfig::pause(),
                "{r}"
            );
        }
        let err = image_config(&images, "c", "registry.k8s.io/pausefor:1").unwrap_err();
        assert!(matches!(err, AgentError::MissingImage { .. }));
    }
}
