//! Mounts and storages: containerd's defaults, the settings' mounts, the pod's volumes and the
//! image's `Volumes`.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, Volume, VolumeMount};

use super::settings::{EmptyDirType, VolumeTemplate};
use super::spec::{FsGroup, Mount, Storage};
use super::{Ctx, containerd};
use crate::generate::GenerateError;
use crate::image_info::ImageConfig;

const SFPREFIX: &str = "$(sfprefix)";

/// What a container's mounts depend on.
pub(crate) struct MountInput<'a> {
    pub(crate) container: &'a Container,
    pub(crate) cpath: &'a str,
    pub(crate) is_pause: bool,
    pub(crate) privileged_mounts: bool,
    pub(crate) read_only_root: bool,
    pub(crate) image: &'a ImageConfig,
    pub(crate) image_path: &'a str,
}

fn file_name<'a>(ctx: &Ctx<'_>, path: &'a str, at: &str) -> Result<&'a str, GenerateError> {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ctx.invalid(at, &format!("\"{path}\" does not end in a file name")))
}

fn options(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Replaces the mount with the same destination, or appends one.
fn replace_or_push(mounts: &mut Vec<Mount>, mount: Mount) {
    match mounts
        .iter_mut()
        .find(|m| m.destination == mount.destination)
    {
        Some(existing) => *existing = mount,
        None => mounts.push(mount),
    }
}

fn access(mount: &VolumeMount) -> &'static str {
    if mount.read_only == Some(true) {
        "ro"
    } else {
        "rw"
    }
}

/// All mounts and storages of one container.
pub(crate) fn container_mounts(
    ctx: &Ctx<'_>,
    input: &MountInput<'_>,
) -> Result<(Vec<Mount>, Vec<Storage>), GenerateError> {
    let volume_mounts = input.container.volume_mounts.as_deref().unwrap_or_default();
    for (j, mount) in volume_mounts.iter().enumerate() {
        let at = format!("{}.volumeMounts[{j}]", input.cpath);
        if mount.sub_path.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ctx.unsupported(
                &format!("{at}.subPath"),
                "subPath (Kata Containers cannot mount part of a volume; mount the whole volume or use subPathExpr with an emptyDir)",
            ));
        }
    }

    let mut mounts = containerd::default_mounts(input.is_pause, input.privileged_mounts);
    settings_mounts(ctx, input, volume_mounts, &mut mounts)?;

    let mut storages = Vec::new();
    for (j, mount) in volume_mounts.iter().enumerate() {
        let at = format!("{}.volumeMounts[{j}]", input.cpath);
        let (index, volume) =
            ctx.volume(&mount.name)
                .ok_or_else(|| GenerateError::VolumeNotDefined {
                    resource: ctx.resource.clone(),
                    path: at.clone(),
                    volume: mount.name.clone(),
                    volumes_path: format!("{}.volumes", ctx.spec_path),
                })?;
        let volume_path = format!("{}.volumes[{index}]", ctx.spec_path);
        volume_mount(
            ctx,
            volume,
            &volume_path,
            mount,
            &at,
            &mut mounts,
            &mut storages,
        )?;
    }

    for destination in input.image.volumes.iter().flat_map(|v| v.keys()) {
        image_volume(ctx, destination, input.image_path, &mut mounts)?;
    }
    Ok((mounts, storages))
}

/// The settings' mounts (`/etc/hosts`, `/etc/resolv.conf`, the service account token, …):
/// kept when listed in `mount_destinations` or mounted by the pod.
fn settings_mounts(
    ctx: &Ctx<'_>,
    input: &MountInput<'_>,
    volume_mounts: &[VolumeMount],
    mounts: &mut Vec<Mount>,
) -> Result<(), GenerateError> {
    let fragment = ctx.fragment(input.is_pause);
    let root_access = if input.read_only_root { "ro" } else { "rw" };
    for s_mount in &fragment.mounts {
        let keep = ctx
            .settings
            .mount_destinations
            .contains(&s_mount.destination)
            || volume_mounts
                .iter()
                .any(|m| m.mount_path == s_mount.destination);
        if !keep {
            continue;
        }
        let mut mount = s_mount.clone();
        if let Some(path) = input
            .container
            .termination_message_path
            .as_deref()
            .filter(|p| !p.is_empty() && mount.destination == "/dev/termination-log")
        {
            mount.destination = path.to_owned();
        }
        if mount.source.is_empty() && mount.type_ == "bind" {
            let name = file_name(ctx, &mount.destination, input.cpath)?;
            mount.source = format!("{SFPREFIX}{name}$");
        }
        if let Some(existing) = mounts
            .iter_mut()
            .find(|m| m.destination == s_mount.destination)
        {
            existing.type_ = mount.type_;
            existing.source = mount.source;
            existing.options = mount.options;
        } else {
            if !input.is_pause
                && (s_mount.destination == "/etc/hostname"
                    || s_mount.destination == "/etc/resolv.conf")
            {
                mount.options.push(root_access.to_owned());
            }
            mounts.push(mount);
        }
    }
    Ok(())
}

fn volume_mount(
    ctx: &Ctx<'_>,
    volume: &Volume,
    volume_path: &str,
    mount: &VolumeMount,
    at: &str,
    mounts: &mut Vec<Mount>,
    storages: &mut Vec<Storage>,
) -> Result<(), GenerateError> {
    let has_sub_path_expr = mount
        .sub_path_expr
        .as_deref()
        .is_some_and(|s| !s.is_empty());
    if let Some(empty_dir) = &volume.empty_dir {
        return empty_dir_mount(ctx, empty_dir, volume_path, mount, at, mounts, storages);
    }
    if has_sub_path_expr {
        return Err(ctx.unsupported(
            &format!("{at}.subPathExpr"),
            "subPathExpr on a volume other than emptyDir",
        ));
    }
    let propagation = if mount.mount_propagation.as_deref() == Some("Bidirectional") {
        "rshared"
    } else {
        "rprivate"
    };
    if let Some(pvc) = &volume.persistent_volume_claim {
        let read_only = mount.read_only == Some(true) || pvc.read_only == Some(true);
        let access = if read_only { "ro" } else { "rw" };
        return shared_bind(ctx, mount, at, mounts, "rprivate", access);
    }
    if let Some(azure) = &volume.azure_file {
        let read_only = mount.read_only == Some(true) || azure.read_only == Some(true);
        let access = if read_only { "ro" } else { "rw" };
        return shared_bind(ctx, mount, at, mounts, "rprivate", access);
    }
    if let Some(host_path) = &volume.host_path {
        let path = Path::new(&host_path.path);
        // Component-wise: `/dev` and `/dev/x` are in the guest, `/device` is not.
        if path.starts_with("/dev") || path.starts_with("/sys") {
            // Device and sysfs paths are bind-mounted from the guest itself.
            replace_or_push(
                mounts,
                Mount {
                    destination: mount.mount_path.clone(),
                    source: host_path.path.clone(),
                    type_: "bind".to_owned(),
                    options: options(&["rbind", propagation, access(mount)]),
                },
            );
            return Ok(());
        }
        return shared_bind(ctx, mount, at, mounts, propagation, access(mount));
    }
    if volume.config_map.is_some() || volume.secret.is_some() {
        let template = &ctx.settings.volumes.config_map;
        let name = file_name(ctx, &mount.mount_path, &format!("{at}.mountPath"))?;
        if ctx.settings.enable_configmap_secret_storages {
            storages.push(Storage {
                driver: template.driver.clone(),
                driver_options: Vec::new(),
                source: format!("{}{name}$", template.mount_source),
                fstype: template.fstype.clone(),
                options: template.options.clone(),
                mount_point: format!("{}{name}$", template.mount_point),
                fs_group: None,
                shared: false,
            });
        }
        mounts.push(Mount {
            destination: mount.mount_path.clone(),
            source: format!("{}{name}$", template.mount_point),
            type_: template.mount_type.clone(),
            options: template.options.clone(),
        });
        return Ok(());
    }
    if volume.projected.is_some() {
        return shared_bind(ctx, mount, at, mounts, "rprivate", "ro");
    }
    if volume.downward_api.is_some() {
        let name = mount
            .mount_path
            .rsplit('/')
            .next()
            .unwrap_or(mount.mount_path.as_str());
        replace_or_push(
            mounts,
            Mount {
                destination: mount.mount_path.clone(),
                source: format!("{SFPREFIX}{name}$"),
                type_: "bind".to_owned(),
                options: options(&["rbind", "rprivate", "ro"]),
            },
        );
        return Ok(());
    }
    Err(ctx.unsupported(
        volume_path,
        &format!("volume \"{}\" of this type", volume.name),
    ))
}

/// A file or directory the runtime shares from the host: `$(sfprefix)<name>$`.
fn shared_bind(
    ctx: &Ctx<'_>,
    mount: &VolumeMount,
    at: &str,
    mounts: &mut Vec<Mount>,
    propagation: &str,
    access: &str,
) -> Result<(), GenerateError> {
    let name = file_name(ctx, &mount.mount_path, &format!("{at}.mountPath"))?;
    replace_or_push(
        mounts,
        Mount {
            destination: mount.mount_path.clone(),
            source: format!("{SFPREFIX}{}$", regex::escape(name)),
            type_: "bind".to_owned(),
            options: options(&["rbind", propagation, access]),
        },
    );
    Ok(())
}

fn empty_dir_mount(
    ctx: &Ctx<'_>,
    empty_dir: &EmptyDirVolumeSource,
    volume_path: &str,
    mount: &VolumeMount,
    at: &str,
    mounts: &mut Vec<Mount>,
    storages: &mut Vec<Storage>,
) -> Result<(), GenerateError> {
    let volumes = &ctx.settings.volumes;
    let (template, block) = match empty_dir.medium.as_deref().unwrap_or_default() {
        "Memory" => (&volumes.empty_dir_memory, false),
        "" => match ctx.settings.emptydir_type {
            EmptyDirType::BlockEncrypted => (&volumes.empty_dir_encrypted, true),
            EmptyDirType::BlockPlain => (&volumes.empty_dir_plain, true),
            EmptyDirType::SharedFs => (&volumes.empty_dir, false),
        },
        other => {
            return Err(ctx.unsupported(
                &format!("{volume_path}.emptyDir.medium"),
                &format!("emptyDir medium \"{other}\""),
            ));
        }
    };
    let in_guest = block || empty_dir.medium.as_deref() == Some("Memory");
    if in_guest {
        guest_empty_dir(ctx, template, block, mount, at, mounts, storages)
    } else {
        // Shared from the host: the runtime names it either after the volume or after the
        // mount's file name.
        let escaped = regex::escape(&mount.name);
        mounts.push(Mount {
            destination: mount.mount_path.clone(),
            source: format!("^$(cpath)/sandbox-[0-9a-f]{{16}}-{escaped}$"),
            type_: "bind".to_owned(),
            options: options(&["rbind", "rprivate", access(mount)]),
        });
        let name = file_name(ctx, &mount.mount_path, &format!("{at}.mountPath"))?;
        mounts.push(Mount {
            destination: mount.mount_path.clone(),
            source: format!("{SFPREFIX}{}$", regex::escape(name)),
            type_: "bind".to_owned(),
            options: options(&["rbind", "rprivate", access(mount)]),
        });
        Ok(())
    }
}

/// An emptyDir that lives in the guest (block device or tmpfs): one storage per mount.
fn guest_empty_dir(
    ctx: &Ctx<'_>,
    template: &VolumeTemplate,
    block: bool,
    mount: &VolumeMount,
    at: &str,
    mounts: &mut Vec<Mount>,
    storages: &mut Vec<Storage>,
) -> Result<(), GenerateError> {
    let sub_path_expr = mount
        .sub_path_expr
        .as_deref()
        .is_some_and(|s| !s.is_empty());
    if !sub_path_expr {
        let fs_group = ctx.pod_user.fs_group;
        let mut storage_options = template.options.clone();
        let fs_group = if block {
            fs_group.filter(|g| *g > 0).map(|group_id| FsGroup {
                group_id,
                group_change_policy: 0,
            })
        } else {
            if let Some(gid) = fs_group.filter(|g| *g != 0) {
                storage_options.push(format!("fsgid={gid}"));
            }
            None
        };
        let mount_point = if template.mount_point.ends_with('/') {
            format!("{}{}$", template.mount_point, mount.name)
        } else {
            template.mount_point.clone()
        };
        storages.push(Storage {
            driver: template.driver.clone(),
            driver_options: template.driver_options.clone(),
            source: template.source.clone(),
            fstype: template.fstype.clone(),
            options: storage_options,
            mount_point,
            fs_group,
            shared: template.shared,
        });
    }
    let (type_, source) = if sub_path_expr {
        let name = file_name(ctx, &mount.mount_path, &format!("{at}.mountPath"))?;
        (
            "bind".to_owned(),
            format!("{}{name}$", ctx.settings.volumes.config_map.mount_source),
        )
    } else if template.mount_source.is_empty() {
        (template.mount_type.clone(), String::new())
    } else {
        (
            template.mount_type.clone(),
            format!("{}{}$", template.mount_source, mount.name),
        )
    };
    mounts.push(Mount {
        destination: mount.mount_path.clone(),
        source,
        type_,
        options: options(&["rbind", "rprivate", access(mount)]),
    });
    Ok(())
}

/// A volume the image declares (`VOLUME`), unless the pod mounts something there.
fn image_volume(
    ctx: &Ctx<'_>,
    destination: &str,
    image_path: &str,
    mounts: &mut Vec<Mount>,
) -> Result<(), GenerateError> {
    let mut normalized = destination.to_owned();
    while normalized.contains("//") {
        normalized = normalized.replace("//", "/");
    }
    if mounts.iter().any(|m| m.destination == normalized) {
        return Ok(());
    }
    let template = &ctx.settings.volumes.image_volume;
    let name = file_name(
        ctx,
        &normalized,
        &format!("{image_path} (image config Volumes)"),
    )?;
    mounts.push(Mount {
        destination: normalized.clone(),
        source: format!("{}{name}$", template.mount_source),
        type_: template.fstype.clone(),
        options: template.options.clone(),
    });
    Ok(())
}
