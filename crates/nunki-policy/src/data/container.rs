//! One `ContainerPolicy` per container: the pause container first, then the init containers
//! (in reverse order, as genpolicy inserts each at index 1), then the app containers.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{Container, SecurityContext};

use super::mounts::{MountInput, container_mounts};
use super::names::sandbox_name_regex;
use super::process::{ProcessInput, container_process};
use super::spec::{ContainerPolicy, Device, KataSpec, LinuxDevice, Namespace, Root};
use super::{Ctx, containerd};
use crate::generate::GenerateError;
use crate::image_info::{ImageConfig, ImageEntry, ImageInfo};

/// Annotation keys that carry the policy itself; never part of the policy.
pub(crate) const POLICY_ANNOTATIONS: &[&str] = &[
    "io.katacontainers.config.hypervisor.cc_init_data",
    "io.katacontainers.config.agent.policy",
];

struct Entry<'a> {
    container: Cow<'a, Container>,
    path: String,
    is_pause: bool,
}

/// The policy entries of all containers of the pod.
pub(crate) fn pod_containers(
    ctx: &Ctx<'_>,
    images: &ImageInfo,
) -> Result<Vec<ContainerPolicy>, GenerateError> {
    let spec = &ctx.input.spec;
    let sp = ctx.spec_path;
    if spec.containers.is_empty() {
        return Err(ctx.invalid(
            &format!("{sp}.containers"),
            "a pod needs at least one container",
        ));
    }
    if spec.host_pid == Some(true) {
        return Err(ctx.unsupported(
            &format!("{sp}.hostPID"),
            "hostPID: true (a Kata pod has its own kernel)",
        ));
    }
    if spec.host_ipc == Some(true) {
        return Err(ctx.unsupported(
            &format!("{sp}.hostIPC"),
            "hostIPC: true (a Kata pod has its own kernel)",
        ));
    }
    if spec.host_users == Some(false) {
        return Err(ctx.unsupported(
            &format!("{sp}.hostUsers"),
            "hostUsers: false (user namespaces)",
        ));
    }
    let sandbox_name = sandbox_name_regex(ctx.input).ok_or_else(|| {
        ctx.invalid(
            "metadata",
            "the resource has neither metadata.name nor metadata.generateName",
        )
    })?;

    let pause = Container {
        name: String::new(),
        image: Some(ctx.settings.pause_container_image.clone()),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let mut entries = vec![Entry {
        container: Cow::Owned(pause),
        path: "pause container".to_owned(),
        is_pause: true,
    }];
    let init = spec
        .init_containers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate();
    for (i, c) in init.rev() {
        entries.push(Entry {
            container: Cow::Borrowed(c),
            path: format!("{sp}.initContainers[{i}]"),
            is_pause: false,
        });
    }
    for (i, c) in spec.containers.iter().enumerate() {
        entries.push(Entry {
            container: Cow::Borrowed(c),
            path: format!("{sp}.containers[{i}]"),
            is_pause: false,
        });
    }
    let any_privileged = entries.iter().any(|e| is_privileged(&e.container));

    entries
        .iter()
        .map(|entry| {
            let image_ref = entry.container.image.as_deref().unwrap_or_default();
            if image_ref.is_empty() {
                return Err(ctx.invalid(&format!("{}.image", entry.path), "no image"));
            }
            let image = match images.get(image_ref) {
                Ok(image) => image,
                // The pause image needs no entry in the image-info file.
                Err(_) if entry.is_pause => builtin_pause(),
                Err(source) => return Err(image_error(ctx, entry, source)),
            };
            container_policy(ctx, entry, image, image_ref, &sandbox_name, any_privileged)
        })
        .collect()
}

/// The built-in config of the configured pause image.
fn builtin_pause() -> &'static ImageEntry {
    static PAUSE: OnceLock<ImageEntry> = OnceLock::new();
    PAUSE.get_or_init(|| ImageEntry::builtin(ImageConfig::kubernetes_pause()))
}

fn image_error(ctx: &Ctx<'_>, entry: &Entry<'_>, source: crate::ImageInfoError) -> GenerateError {
    GenerateError::Image {
        resource: ctx.resource.clone(),
        path: format!("{}.image", entry.path),
        source,
    }
}

fn is_privileged(container: &Container) -> bool {
    container
        .security_context
        .as_ref()
        .and_then(|sc| sc.privileged)
        == Some(true)
}

fn container_policy(
    ctx: &Ctx<'_>,
    entry: &Entry<'_>,
    image: &ImageEntry,
    image_ref: &str,
    sandbox_name: &str,
    any_privileged: bool,
) -> Result<ContainerPolicy, GenerateError> {
    let container: &Container = &entry.container;
    let cpath = entry.path.as_str();
    let is_pause = entry.is_pause;
    let fragment = ctx.fragment(is_pause);
    let privileged = is_privileged(container);
    let read_only_root = container
        .security_context
        .as_ref()
        .and_then(|sc| sc.read_only_root_filesystem)
        == Some(true);
    if let Some(proc_mount) = container
        .security_context
        .as_ref()
        .and_then(|sc| sc.proc_mount.as_deref())
        .filter(|p| *p != "Default")
    {
        return Err(ctx.unsupported(
            &format!("{cpath}.securityContext.procMount"),
            &format!("procMount \"{proc_mount}\""),
        ));
    }

    let process = container_process(
        ctx,
        &ProcessInput {
            container,
            cpath,
            is_pause,
            privileged,
            image,
            image_ref,
        },
    )?;

    let (mounts, storages) = container_mounts(
        ctx,
        &MountInput {
            container,
            cpath,
            is_pause,
            privileged_mounts: privileged || (is_pause && any_privileged),
            read_only_root,
            image: image.config(),
            image_path: &format!("{cpath}.image"),
        },
    )?;

    let host_network = ctx.input.spec.host_network == Some(true);
    let mut linux = containerd::default_linux(privileged);
    linux.namespaces.push(namespace("ipc"));
    if !is_pause || !host_network {
        linux.namespaces.push(namespace("uts"));
    }
    linux.namespaces.push(namespace("mount"));
    if !fragment.linux.masked_paths.is_empty() {
        linux.masked_paths.clone_from(&fragment.linux.masked_paths);
    }
    if !fragment.linux.readonly_paths.is_empty() {
        linux
            .readonly_paths
            .clone_from(&fragment.linux.readonly_paths);
    }

    let mut devices = Vec::new();
    let vfio = &ctx.settings.vfio;
    for (j, device) in container.volume_devices.iter().flatten().enumerate() {
        let at = format!("{cpath}.volumeDevices[{j}]");
        if ctx.volume(&device.name).is_none() {
            return Err(GenerateError::VolumeNotDefined {
                resource: ctx.resource.clone(),
                path: at,
                volume: device.name.clone(),
                volumes_path: format!("{}.volumes", ctx.spec_path),
            });
        }
        if device.device_path.starts_with(&vfio.device_path) {
            return Err(ctx.invalid(
                &format!("{at}.devicePath"),
                &format!(
                    "\"{}\" is reserved for VFIO device pass-through ({}); request GPUs with resource limits instead",
                    device.device_path, vfio.device_path
                ),
            ));
        }
        devices.push(Device {
            container_path: device.device_path.clone(),
            ..Device::default()
        });
        linux.devices.push(LinuxDevice {
            type_: String::new(),
            path: device.device_path.clone(),
        });
    }

    let mut runtime_anno_patterns = BTreeMap::new();
    let gpus = pgpu_count(ctx, container, cpath)?;
    if gpus > 0 {
        for _ in 0..gpus {
            devices.push(Device {
                type_: vfio.gpu_gk_device_type.clone(),
                container_path: vfio.device_path.clone(),
                ..Device::default()
            });
        }
        runtime_anno_patterns.insert(
            vfio.anno_key_regex.clone(),
            vfio.gpu_anno_value_regex.clone(),
        );
    }
    if !is_pause {
        // Present only when containerd passes kubelet's container annotations through.
        runtime_anno_patterns.insert(
            "^io\\.kubernetes\\.container\\.terminationMessagePath$".to_owned(),
            "^/.*$".to_owned(),
        );
        runtime_anno_patterns.insert(
            "^io\\.kubernetes\\.container\\.terminationMessagePolicy$".to_owned(),
            "^(File|FallbackToLogsOnError)$".to_owned(),
        );
    }
    linux.devices.extend(fragment.linux.devices.iter().cloned());

    linux.sysctl.extend(
        fragment
            .linux
            .sysctl
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    if let Some(sysctls) = ctx
        .input
        .spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_ref())
    {
        for sysctl in sysctls {
            linux
                .sysctl
                .insert(sysctl.name.clone(), sysctl.value.clone());
        }
    }

    Ok(ContainerPolicy {
        oci: KataSpec {
            version: ctx.settings.oci_version.clone(),
            process,
            root: Root {
                path: fragment.root.path.clone(),
                readonly: read_only_root,
            },
            mounts,
            annotations: annotations(
                ctx,
                container,
                is_pause,
                image_ref,
                sandbox_name,
                host_network,
            ),
            linux,
        },
        storages,
        devices,
        sandbox_pidns: !is_pause && ctx.input.spec.share_process_namespace == Some(true),
        exec_commands: exec_commands(container),
        runtime_anno_patterns,
    })
}

fn namespace(type_: &str) -> Namespace {
    Namespace {
        type_: type_.to_owned(),
        path: String::new(),
    }
}

fn annotations(
    ctx: &Ctx<'_>,
    container: &Container,
    is_pause: bool,
    image_ref: &str,
    sandbox_name: &str,
    host_network: bool,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = ctx
        .input
        .annotations
        .iter()
        .filter(|(k, _)| !POLICY_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &ctx.fragment(is_pause).annotations {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    out.entry("io.kubernetes.cri.sandbox-name".to_owned())
        .or_insert_with(|| format!("^{sandbox_name}$"));
    if !is_pause {
        let image_name = if image_ref.contains(':') {
            image_ref.to_owned()
        } else {
            format!("{image_ref}:latest")
        };
        out.entry("io.kubernetes.cri.image-name".to_owned())
            .or_insert(image_name);
    }
    out.insert(
        "io.kubernetes.cri.sandbox-namespace".to_owned(),
        ctx.input.namespace.clone().unwrap_or_default(),
    );
    if !container.name.is_empty() {
        out.entry("io.kubernetes.cri.container-name".to_owned())
            .or_insert_with(|| container.name.clone());
    }
    if is_pause {
        let netns = if host_network { "cnitest" } else { "cni" };
        out.entry("nerdctl/network-namespace".to_owned())
            .or_insert_with(|| {
                format!(
                    "^/var/run/netns/{netns}-[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$"
                )
            });
    }
    out
}

/// Commands the kubelet runs through `ExecProcessRequest`: exec probes and lifecycle hooks.
fn exec_commands(container: &Container) -> Vec<Vec<String>> {
    let probes = [
        &container.liveness_probe,
        &container.readiness_probe,
        &container.startup_probe,
    ];
    let mut out: Vec<Vec<String>> = probes
        .into_iter()
        .flatten()
        .filter_map(|p| p.exec.as_ref()?.command.clone())
        .collect();
    if let Some(lifecycle) = &container.lifecycle {
        for handler in [&lifecycle.post_start, &lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            if let Some(command) = handler.exec.as_ref().and_then(|e| e.command.clone()) {
                out.push(command);
            }
        }
    }
    out
}

/// NVIDIA pass-through GPUs requested in `resources.limits`.
fn pgpu_count(ctx: &Ctx<'_>, container: &Container, cpath: &str) -> Result<u64, GenerateError> {
    let Some(limits) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) else {
        return Ok(0);
    };
    let mut total: u64 = 0;
    for key in &ctx.settings.vfio.pgpu_resource_keys {
        if let Some(quantity) = limits.get(key) {
            let n: u64 = quantity.0.trim().parse().map_err(|_| {
                ctx.invalid(
                    &format!("{cpath}.resources.limits[{key}]"),
                    &format!("\"{}\" is not a whole number of devices", quantity.0),
                )
            })?;
            total = total.saturating_add(n);
        }
    }
    if total > 64 {
        return Err(ctx.invalid(
            &format!("{cpath}.resources.limits"),
            &format!("{total} pass-through GPUs requested; at most 64 are supported"),
        ));
    }
    Ok(total)
}
