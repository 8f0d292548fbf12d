//! What containerd's CRI plugin makes of the kubelet's sandbox and container configs: the OCI
//! runtime spec it hands to the Kata shim.
//!
//! Modelled on containerd 2.x (`internal/cri/server/container_create*.go`,
//! `internal/cri/server/podsandbox/sandbox_run_linux.go`, `internal/cri/opts`, `pkg/oci`) with the
//! defaults of a Kata runtime handler on a cgroup-v2 host: default spec, mounts sorted by depth,
//! `/etc/hostname`, `/etc/resolv.conf` and `/dev/shm` from the sandbox, image volumes, user and
//! group resolution against the image's `/etc/passwd` and `/etc/group`, capabilities, masked
//! paths, the CRI annotations and the unprivileged-port and ICMP sysctls of the sandbox.

use std::collections::BTreeMap;

use super::context::{ImageNameStyle, SandboxContext};
use super::error::AgentError;
use super::images::{DEFAULT_PATH_ENV, ImageConfig, ImageRef, parse_group, parse_passwd};
use super::kubelet::{CriContainer, CriMount, CriSandbox, HostSource, PidMode, Propagation};
use super::oci::{Capabilities, Cpu, Linux, Memory, Mount, Namespace, Process, Root, Spec, User};

/// containerd's default capability set.
pub(crate) const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the host kernel knows (what a privileged container gets), in kernel order.
/// The policy generator keeps its own copy on purpose: this runner stands in for containerd and
/// checks what the generator predicts, so the two must not share their model.
pub(crate) const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's default masked paths (`populateDefaultUnixSpec`).
const CONTAINERD_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// The apparmor profile containerd loads for `RuntimeDefault`.
const DEFAULT_APPARMOR_PROFILE: &str = "cri-containerd.apparmor.d";

/// The mount options of `/sys/fs/cgroup` on a systemd cgroup-v2 host that containerd copies
/// into containers without a cgroup namespace.
const HOST_CGROUP_EXTRAS: [&str; 2] = ["nsdelegate", "memory_recursiveprot"];

/// The sandbox's OOM score adjustment.
const SANDBOX_OOM_SCORE_ADJ: i64 = -998;

/// An OCI spec plus, for each mount, what backs it on the host.
#[derive(Debug, Clone)]
pub(crate) struct CtrSpec {
    pub spec: Spec,
    pub sources: Vec<HostSource>,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn default_spec(ctx: &SandboxContext, id: &str) -> CtrSpec {
    let caps = strings(&DEFAULT_CAPS);
    let spec = Spec {
        version: ctx.oci_version.clone(),
        process: Process {
            cwd: "/".into(),
            no_new_privileges: true,
            capabilities: Some(Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                permitted: caps,
                ..Default::default()
            }),
            ..Default::default()
        },
        root: Root {
            path: "rootfs".into(),
            readonly: false,
        },
        linux: Linux {
            masked_paths: strings(&CONTAINERD_MASKED_PATHS),
            readonly_paths: strings(&super::kubelet::DEFAULT_READONLY_PATHS),
            cgroups_path: format!("/k8s.io/{id}"),
            namespaces: ["pid", "ipc", "uts", "mount", "network"]
                .iter()
                .map(|t| Namespace {
                    kind: (*t).to_owned(),
                    path: String::new(),
                })
                .collect(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mount = |dst: &str, ty: &str, src: &str, opts: &[&str]| Mount {
        destination: dst.into(),
        type_: ty.into(),
        source: src.into(),
        options: strings(opts),
    };
    // The defaults without `/run` (`oci.WithoutRunMount`).
    let mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    let sources = mounts
        .iter()
        .map(|m| HostSource::HostOnly(m.source.clone()))
        .collect();
    CtrSpec {
        spec: Spec { mounts, ..spec },
        sources,
    }
}

/// `replaceOrAppendEnvValues`: later values replace earlier ones with the same key in place; a
/// bare `KEY` removes it.
fn replace_or_append_env(env: &mut Vec<String>, overrides: &[String]) {
    for value in overrides {
        let (key, has_value) = match value.split_once('=') {
            Some((k, _)) => (k, true),
            None => (value.as_str(), false),
        };
        let pos = env
            .iter()
            .position(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
        match (pos, has_value) {
            (Some(i), true) => {
                if let Some(slot) = env.get_mut(i) {
                    slot.clone_from(value);
                }
            }
            (Some(i), false) => {
                env.remove(i);
            }
            (None, true) => env.push(value.clone()),
            (None, false) => {}
        }
    }
}

fn depth(path: &str) -> usize {
    let cleaned: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    cleaned.len()
}

fn clean(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The image name containerd puts into `io.kubernetes.cri.image-name`.
pub(crate) fn image_name(reference: &str, style: ImageNameStyle) -> String {
    match style {
        ImageNameStyle::AsWritten => reference.to_owned(),
        ImageNameStyle::Normalized => ImageRef::parse(reference).normalized(),
    }
}

fn cgroups_path(ctx: &SandboxContext, qos_slice: &str, id: &str) -> String {
    format!(
        "kubepods-{qos_slice}pod{}.slice:cri-containerd:{id}",
        ctx.pod_uid.replace('-', "_")
    )
}

/// Resolves the process user like `oci.WithUser`, against the image's files.
fn with_user(container: &str, userstr: &str, image: &ImageConfig) -> Result<User, AgentError> {
    let err = |reason: String| AgentError::User {
        container: container.to_owned(),
        user: userstr.to_owned(),
        reason,
    };
    let passwd = image.passwd.as_deref().map(parse_passwd);
    let group = image.group.as_deref().map(parse_group);
    let by_name = |name: &str| -> Result<(u32, u32), AgentError> {
        let entries = passwd
            .as_ref()
            .ok_or_else(|| err("the image has no /etc/passwd".into()))?;
        entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.uid, e.gid))
            .ok_or_else(|| err(format!("no user {name:?} in the image's /etc/passwd")))
    };
    let (uid, gid) = match userstr.split(':').collect::<Vec<_>>().as_slice() {
        [u] => match u.parse::<u32>() {
            // WithUserID: the primary group from /etc/passwd, or 0.
            Ok(uid) => {
                let gid = passwd
                    .as_ref()
                    .and_then(|p| p.iter().find(|e| e.uid == uid))
                    .map_or(0, |e| e.gid);
                (uid, gid)
            }
            Err(_) => by_name(u)?,
        },
        [u, g] => {
            let uid = match u.parse::<u32>() {
                Ok(uid) => uid,
                Err(_) => by_name(u)?.0,
            };
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    let entries = group
                        .as_ref()
                        .ok_or_else(|| err("the image has no /etc/group".into()))?;
                    entries
                        .iter()
                        .find(|e| e.name == *g)
                        .map(|e| e.gid)
                        .ok_or_else(|| err(format!("no group {g:?} in the image's /etc/group")))?
                }
            };
            (uid, gid)
        }
        _ => return Err(err("invalid USER value".into())),
    };
    Ok(User {
        uid,
        gid,
        additional_gids: vec![gid],
        username: String::new(),
    })
}

/// The supplementary groups `oci.WithAdditionalGIDs` finds for `userstr` in the image's
/// `/etc/group`: groups that list the user as a member, except a group named like the user.
fn groups_of(userstr: &str, image: &ImageConfig) -> Vec<u32> {
    let username = match userstr.parse::<u32>() {
        Ok(uid) => match image
            .passwd
            .as_deref()
            .map(parse_passwd)
            .and_then(|p| p.into_iter().find(|e| e.uid == uid))
        {
            Some(e) => e.name,
            None => return Vec::new(),
        },
        Err(_) => userstr.to_owned(),
    };
    image
        .group
        .as_deref()
        .map(parse_group)
        .unwrap_or_default()
        .into_iter()
        .filter(|g| g.name != username && g.members.contains(&username))
        .map(|g| g.gid)
        .collect()
}

fn merge_gids(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut all: Vec<u32> = a.iter().chain(b.iter()).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn to_gids(groups: &[i64]) -> Vec<u32> {
    groups.iter().map(|g| *g as u32).collect()
}

/// containerd's `GenerateUserString`.
fn user_string(username: &str, uid: Option<i64>, gid: Option<i64>) -> Result<String, String> {
    let mut user = uid.map(|u| u.to_string()).unwrap_or_default();
    if !username.is_empty() {
        user = username.to_owned();
    }
    match (user.is_empty(), gid) {
        (true, Some(g)) => Err(format!("user group {g:?} is specified without user")),
        (true, None) => Ok(String::new()),
        (false, Some(g)) => Ok(format!("{user}:{g}")),
        (false, None) => Ok(user),
    }
}

fn cri_annotations(ctx: &SandboxContext, sandbox: &CriSandbox) -> BTreeMap<String, String> {
    let mut a = sandbox.passthrough_annotations.clone();
    a.insert(
        "io.kubernetes.cri.sandbox-id".into(),
        ctx.sandbox_id.clone(),
    );
    a.insert(
        "io.kubernetes.cri.sandbox-namespace".into(),
        ctx.namespace.clone(),
    );
    a.insert("io.kubernetes.cri.sandbox-uid".into(), ctx.pod_uid.clone());
    a.insert(
        "io.kubernetes.cri.sandbox-name".into(),
        ctx.pod_name.clone(),
    );
    a
}

/// The pause container's spec (`sandboxContainerSpec` + `sandboxContainerSpecOpts`).
pub(crate) fn sandbox_spec(
    sandbox: &CriSandbox,
    ctx: &SandboxContext,
) -> Result<CtrSpec, AgentError> {
    let image = ImageConfig::pause();
    let id = ctx.sandbox_id.as_str();
    let CtrSpec {
        mut spec,
        mut sources,
    } = default_spec(ctx, id);
    replace_or_append_env(&mut spec.process.env, &image.env);
    spec.root.readonly = true;
    spec.hostname = sandbox.hostname.clone();
    if !image.working_dir.is_empty() {
        spec.process.cwd = image.working_dir.clone();
    }
    spec.process.args = image
        .entrypoint
        .iter()
        .chain(image.cmd.iter())
        .cloned()
        .collect();
    spec.linux.cgroups_path = cgroups_path(ctx, sandbox.qos.slice(), id);

    let ns = sandbox.namespaces;
    let keep = |t: &str| match t {
        "network" | "uts" => !ns.host_network,
        "pid" => ns.pid != PidMode::Node,
        "ipc" => !ns.host_ipc,
        _ => true,
    };
    spec.linux.namespaces.retain(|n| keep(&n.kind));
    for n in &mut spec.linux.namespaces {
        if n.kind == "network" {
            n.path = ctx.netns_path.clone();
        }
    }

    // `/dev/shm` and `/etc/resolv.conf` come from the sandbox's files on the host.
    let keep: Vec<bool> = spec
        .mounts
        .iter()
        .map(|m| m.destination != "/dev/shm")
        .collect();
    let mut it = keep.iter();
    spec.mounts.retain(|_| *it.next().unwrap_or(&true));
    let mut it = keep.iter();
    sources.retain(|_| *it.next().unwrap_or(&true));
    let ro_bind = ["rbind", "ro", "nosuid", "nodev", "noexec"];
    spec.mounts.push(Mount {
        destination: "/dev/shm".into(),
        source: format!("/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{id}/shm"),
        type_: "bind".into(),
        options: strings(&ro_bind),
    });
    sources.push(HostSource::SandboxShm);
    spec.mounts.push(Mount {
        destination: "/etc/resolv.conf".into(),
        source: format!("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{id}/resolv.conf"),
        type_: "bind".into(),
        options: strings(&ro_bind),
    });
    sources.push(HostSource::Copied);

    spec.process.user.additional_gids = merge_gids(
        &spec.process.user.additional_gids,
        &to_gids(&sandbox.supplemental_groups),
    );

    let mut sysctls = sandbox.sysctls.clone();
    if !ns.host_network {
        sysctls
            .entry("net.ipv4.ip_unprivileged_port_start".into())
            .or_insert_with(|| "0".into());
        sysctls
            .entry("net.ipv4.ping_group_range".into())
            .or_insert_with(|| "0 2147483647".into());
    }
    spec.linux.sysctl = sysctls;
    spec.linux.resources.cpu = Some(Cpu {
        shares: 2,
        ..Default::default()
    });

    let (period, quota, shares, memory) = sandbox.resources;
    let mut annotations = cri_annotations(ctx, sandbox);
    for (k, v) in [
        ("io.kubernetes.cri.sandbox-cpu-period", period.to_string()),
        ("io.kubernetes.cri.sandbox-cpu-quota", quota.to_string()),
        ("io.kubernetes.cri.sandbox-cpu-shares", shares.to_string()),
        ("io.kubernetes.cri.sandbox-memory", memory.to_string()),
        (
            "io.kubernetes.cri.sandbox-log-directory",
            sandbox.log_directory.clone(),
        ),
        (
            "io.kubernetes.cri.podsandbox.image-name",
            ctx.sandbox_image.clone(),
        ),
        ("io.kubernetes.cri.container-type", "sandbox".to_owned()),
    ] {
        annotations.insert(k.to_owned(), v);
    }
    spec.annotations = annotations;
    spec.process.oom_score_adj = SANDBOX_OOM_SCORE_ADJ;

    // sandboxContainerSpecOpts: the pod's runAsUser/runAsGroup, else the image's user. This
    // resets the supplementary groups.
    let userstr = user_string("", sandbox.run_as_user, sandbox.run_as_group)
        .map_err(|e| AgentError::InvalidPod(format!("pod securityContext: {e}")))?;
    let userstr = if userstr.is_empty() {
        image.user.clone()
    } else {
        userstr
    };
    if !userstr.is_empty() {
        spec.process.user = with_user(super::requests::SANDBOX_CONTAINER, &userstr, &image)?;
    }
    Ok(CtrSpec { spec, sources })
}

fn bind_options(m: &CriMount) -> Vec<String> {
    let propagation = match m.propagation {
        Propagation::Private => "rprivate",
        Propagation::HostToContainer => "rslave",
        Propagation::Bidirectional => "rshared",
    };
    let mode = if m.readonly { "ro" } else { "rw" };
    strings(&["rbind", propagation, mode])
}

/// A workload container's spec (`buildLinuxSpec` + `platformSpecOpts`).
pub(crate) fn container_spec(
    c: &CriContainer,
    sandbox: &CriSandbox,
    image: &ImageConfig,
    id: &str,
    ctx: &SandboxContext,
) -> Result<CtrSpec, AgentError> {
    let sc = &c.security;
    let CtrSpec {
        mut spec,
        mut sources,
    } = default_spec(ctx, id);
    spec.process.apparmor_profile = String::new();

    // WithProcessArgs: the pod's command and args override the image's Entrypoint and Cmd.
    let mut command = c.command.clone();
    let mut args = c.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args.clone_from(&image.cmd);
        }
        if image.entrypoint.len() != 1 || image.entrypoint.first().map(String::as_str) != Some("") {
            command.clone_from(&image.entrypoint);
        }
    }
    if command.is_empty() && args.is_empty() {
        return Err(AgentError::NoCommand {
            container: c.name.clone(),
        });
    }
    command.extend(args);
    spec.process.args = command;

    replace_or_append_env(&mut spec.process.env, &[DEFAULT_PATH_ENV.to_owned()]);
    spec.process.no_new_privileges = false;
    if !c.working_dir.is_empty() {
        spec.process.cwd = c.working_dir.clone();
    } else if !image.working_dir.is_empty() {
        spec.process.cwd = image.working_dir.clone();
    }
    if c.tty {
        spec.process.terminal = true;
        spec.process.env.push("TERM=xterm".into());
    }
    replace_or_append_env(
        &mut spec.process.env,
        &[format!("HOSTNAME={}", sandbox.hostname)],
    );
    let mut env = image.env.clone();
    env.extend(c.envs.iter().map(|(k, v)| format!("{k}={v}")));
    replace_or_append_env(&mut spec.process.env, &env);

    // A cgroup namespace for unprivileged containers on a cgroup-v2 host.
    if !sc.privileged {
        spec.linux.namespaces.push(Namespace {
            kind: "cgroup".into(),
            path: String::new(),
        });
    }

    // WithMounts: the kubelet's mounts, then containerd's own (/etc/hostname, /etc/hosts,
    // /etc/resolv.conf, /dev/shm) and the image's volumes unless the kubelet mounts the same
    // path; sorted by depth.
    let mut mounts: Vec<CriMount> = c.mounts.clone();
    let in_cri = |path: &str| {
        c.mounts
            .iter()
            .any(|m| clean(&m.container_path) == clean(path))
    };
    let mut extra = Vec::new();
    for (path, host, readonly) in [
        ("/etc/hostname", HostSource::Copied, sc.readonly_rootfs),
        ("/etc/hosts", HostSource::Copied, sc.readonly_rootfs),
        ("/etc/resolv.conf", HostSource::Copied, sc.readonly_rootfs),
        ("/dev/shm", HostSource::SandboxShm, false),
    ] {
        if !in_cri(path) {
            extra.push(CriMount {
                container_path: path.into(),
                host,
                readonly,
                propagation: Propagation::Private,
            });
        }
    }
    for v in &image.volumes {
        if in_cri(v) {
            continue;
        }
        let path = if v.starts_with('/') {
            v.clone()
        } else {
            clean(&format!("/{v}"))
        };
        extra.push(CriMount {
            container_path: path,
            host: HostSource::Copied,
            readonly: false,
            propagation: Propagation::Private,
        });
    }
    for e in extra {
        if !mounts
            .iter()
            .any(|m| clean(&m.container_path) == clean(&e.container_path))
        {
            mounts.push(e);
        }
    }
    mounts.sort_by_key(|m| depth(&m.container_path));

    let mut cgroup_options = strings(&["nosuid", "noexec", "nodev", "relatime", "ro"]);
    if !spec.linux.namespaces.iter().any(|n| n.kind == "cgroup") {
        cgroup_options.extend(strings(&HOST_CGROUP_EXTRAS));
    }
    spec.mounts.push(Mount {
        destination: "/sys/fs/cgroup".into(),
        source: "cgroup".into(),
        type_: "cgroup".into(),
        options: cgroup_options,
    });
    sources.push(HostSource::HostOnly("cgroup".into()));
    let supplied: Vec<String> = mounts.iter().map(|m| clean(&m.container_path)).collect();
    let dev_supplied = supplied.iter().any(|p| p == "/dev");
    let keep: Vec<bool> = spec
        .mounts
        .iter()
        .map(|m| {
            let dst = clean(&m.destination);
            !(supplied.contains(&dst) || (dev_supplied && dst.starts_with("/dev/")))
        })
        .collect();
    let mut it = keep.iter();
    spec.mounts.retain(|_| *it.next().unwrap_or(&true));
    let mut it = keep.iter();
    sources.retain(|_| *it.next().unwrap_or(&true));
    for m in &mounts {
        match m.propagation {
            Propagation::Bidirectional => spec.linux.rootfs_propagation = "rshared".into(),
            Propagation::HostToContainer if spec.linux.rootfs_propagation != "rshared" => {
                spec.linux.rootfs_propagation = "rslave".into();
            }
            _ => {}
        }
        let source = match &m.host {
            HostSource::HostOnly(p) => p.clone(),
            HostSource::SandboxShm => format!(
                "/run/containerd/io.containerd.grpc.v1.cri/sandboxes/{}/shm",
                ctx.sandbox_id
            ),
            _ => format!(
                "/var/lib/kubelet/pods/{}/volumes/{}",
                ctx.pod_uid,
                m.container_path.trim_start_matches('/')
            ),
        };
        spec.mounts.push(Mount {
            destination: m.container_path.clone(),
            source,
            type_: "bind".into(),
            options: bind_options(m),
        });
        sources.push(m.host.clone());
    }

    spec.linux.masked_paths.clone_from(&sc.masked_paths);
    spec.linux.readonly_paths.clone_from(&sc.readonly_paths);

    // WithCapabilities.
    let mut caps = spec.process.capabilities.take().unwrap_or_default();
    if let Some((add, drop)) = &sc.capabilities {
        let set_all = |caps: &mut Capabilities, list: Vec<String>| {
            caps.bounding.clone_from(&list);
            caps.effective.clone_from(&list);
            caps.permitted = list;
        };
        if add.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
            set_all(&mut caps, strings(&ALL_CAPS));
        }
        if drop.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
            set_all(&mut caps, Vec::new());
            caps.inheritable.clear();
        }
        for a in add.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
            let name = format!("CAP_{}", a.to_uppercase());
            for list in [&mut caps.bounding, &mut caps.effective, &mut caps.permitted] {
                if !list.contains(&name) {
                    list.push(name.clone());
                }
            }
        }
        for d in drop.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
            let name = format!("CAP_{}", d.to_uppercase());
            for list in [
                &mut caps.bounding,
                &mut caps.effective,
                &mut caps.permitted,
                &mut caps.inheritable,
            ] {
                list.retain(|c| *c != name);
            }
        }
    }
    if sc.privileged {
        if !sandbox.privileged {
            return Err(AgentError::InvalidPod(format!(
                "container {:?}: no privileged container allowed in sandbox",
                c.name
            )));
        }
        let all = strings(&ALL_CAPS);
        caps.bounding.clone_from(&all);
        caps.effective.clone_from(&all);
        caps.permitted = all;
        spec.linux.masked_paths.clear();
        spec.linux.readonly_paths.clear();
        for m in &mut spec.mounts {
            if m.type_ == "sysfs" || m.type_ == "cgroup" {
                for o in &mut m.options {
                    if o == "ro" {
                        *o = "rw".into();
                    }
                }
            }
        }
    } else {
        spec.process.apparmor_profile = DEFAULT_APPARMOR_PROFILE.into();
    }
    caps.ambient.clear();
    spec.process.capabilities = Some(caps);

    if sc.no_new_privs {
        spec.process.no_new_privileges = true;
    }
    if sc.readonly_rootfs {
        spec.root.readonly = true;
    }
    let r = c.resources;
    spec.linux.resources.cpu = Some(Cpu {
        shares: r.cpu_shares,
        quota: r.cpu_quota,
        period: r.cpu_period,
        ..Default::default()
    });
    spec.linux.resources.memory = Some(Memory {
        limit: r.memory_limit,
        swap: r.memory_limit,
        ..Default::default()
    });
    spec.linux.cgroups_path = cgroups_path(ctx, sandbox.qos.slice(), id);
    spec.process.oom_score_adj = r.oom_score_adj;

    // WithPodNamespaces: join the sandbox's network, IPC and UTS namespaces (and its PID
    // namespace unless the pod uses one per container).
    let sandbox_pid = 4242;
    for n in &mut spec.linux.namespaces {
        match n.kind.as_str() {
            "network" => n.path = format!("/proc/{sandbox_pid}/ns/net"),
            "ipc" => n.path = format!("/proc/{sandbox_pid}/ns/ipc"),
            "uts" => n.path = format!("/proc/{sandbox_pid}/ns/uts"),
            "pid" if sandbox.namespaces.pid != PidMode::Container => {
                n.path = format!("/proc/{sandbox_pid}/ns/pid");
            }
            _ => {}
        }
    }
    spec.process.user.additional_gids = merge_gids(
        &spec.process.user.additional_gids,
        &to_gids(&sc.supplemental_groups),
    );

    let mut annotations = cri_annotations(ctx, sandbox);
    annotations.insert("io.kubernetes.cri.container-name".into(), c.name.clone());
    annotations.insert(
        "io.kubernetes.cri.image-name".into(),
        image_name(&c.image, ctx.image_name_style),
    );
    annotations.insert(
        "io.kubernetes.cri.container-type".into(),
        "container".into(),
    );
    // The Kata handler passes CDI device annotations on (`container_annotations`).
    for (k, v) in &c.annotations {
        if k.starts_with("cdi.k8s.io/") {
            annotations.insert(k.clone(), v.clone());
        }
    }
    spec.annotations = annotations;

    // platformSpecOpts: the user, then the groups from the image's /etc/group and the pod's
    // supplementary groups.
    let userstr = user_string(&sc.run_as_username, sc.run_as_user, sc.run_as_group)
        .map_err(|e| AgentError::InvalidPod(format!("container {:?}: {e}", c.name)))?;
    let userstr = if userstr.is_empty() {
        image.user.clone()
    } else {
        userstr
    };
    if !userstr.is_empty() {
        spec.process.user = with_user(&c.name, &userstr, image)?;
    }
    let lookup_user = if !sc.run_as_username.is_empty() {
        sc.run_as_username.clone()
    } else if let Some(uid) = sc.run_as_user {
        uid.to_string()
    } else if !image.user.is_empty() {
        image.user.split(':').next().unwrap_or("").to_owned()
    } else {
        "0".to_owned()
    };
    let user = &mut spec.process.user;
    if !sc.strict_groups {
        let before = user.additional_gids.clone();
        let mut found = groups_of(&lookup_user, image);
        if !found.contains(&user.gid) {
            found.insert(0, user.gid);
        }
        user.additional_gids = merge_gids(&found, &before);
    }
    user.additional_gids = merge_gids(&user.additional_gids, &to_gids(&sc.supplemental_groups));
    Ok(CtrSpec { spec, sources })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn env_replacement_keeps_positions() {
        let mut env = vec!["PATH=/a".to_owned(), "X=1".to_owned()];
        replace_or_append_env(&mut env, &["PATH=/b".into(), "Y=2".into(), "X".into()]);
        assert_eq!(env, ["PATH=/b", "Y=2"]);
    }

    fn image(user: &str, passwd: Option<&str>, group: Option<&str>) -> ImageConfig {
        ImageConfig {
            user: user.into(),
            passwd: passwd.map(str::to_owned),
            group: group.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn users_resolve_like_containerd() {
        let passwd = "root:x:0:0::/:/bin/sh\nname:x:2:1::/:/bin/sh\n";
        let group = "daemon:x:1:\nname:x:2:name\nwheel:x:10:root,name\n";
        let img = image("", Some(passwd), Some(group));
        let u = with_user("c", "2", &img).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (2, 1, vec![1]));
        let u = with_user("c", "name", &img).unwrap();
        assert_eq!((u.uid, u.gid), (2, 1));
        let u = with_user("c", "7", &img).unwrap();
        assert_eq!((u.uid, u.gid), (7, 0));
        let u = with_user("c", "name:wheel", &img).unwrap();
        assert_eq!((u.uid, u.gid), (2, 10));
        assert!(with_user("c", "nobody", &img).is_err());
        assert!(with_user("c", "name", &image("", None, None)).is_err());
        // The group named like the user is skipped (containerd's behaviour).
        assert_eq!(groups_of("2", &img), vec![10]);
        assert_eq!(groups_of("root", &img), vec![10]);
        assert!(groups_of("9", &img).is_empty());
    }

    #[test]
    fn user_strings() {
        assert_eq!(user_string("", Some(1), Some(2)).unwrap(), "1:2");
        assert_eq!(user_string("bob", Some(1), None).unwrap(), "bob");
        assert_eq!(user_string("", None, None).unwrap(), "");
        assert!(user_string("", None, Some(3)).is_err());
    }

    #[test]
    fn depth_counts_path_components() {
        assert_eq!(depth("/data"), 1);
        assert_eq!(depth("/etc/hosts"), 2);
        assert_eq!(depth(SERVICE), 5);
    }

    const SERVICE: &str = super::super::kubelet::SERVICE_ACCOUNT_MOUNT;
}
