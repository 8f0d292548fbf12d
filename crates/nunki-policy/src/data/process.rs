//! `OCI.Process` of a container: command line, environment, working directory, user,
//! capabilities, terminal and `no_new_privs`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Container;

use super::Ctx;
use super::env::{EnvList, expand, kubernetes_env};
use super::spec::{Capabilities, Process, User};
use super::user::{Accounts, container_ids, pause_user, workload_user};
use crate::generate::{GenerateError, GuestPullUser};
use crate::image_info::{DEFAULT_PATH_ENV, ImageEntry};

/// What a container's process depends on.
pub(crate) struct ProcessInput<'a> {
    pub(crate) container: &'a Container,
    pub(crate) cpath: &'a str,
    pub(crate) is_pause: bool,
    pub(crate) privileged: bool,
    pub(crate) image: &'a ImageEntry,
    pub(crate) image_ref: &'a str,
}

/// Builds the process the runtime will be asked to start.
pub(crate) fn container_process(
    ctx: &Ctx<'_>,
    input: &ProcessInput<'_>,
) -> Result<Process, GenerateError> {
    let container = input.container;
    let config = input.image.config();
    let fragment = ctx.fragment(input.is_pause);

    let kube_env = if input.is_pause {
        EnvList::default()
    } else {
        kubernetes_env(ctx, container, input.cpath)?
    };

    let mut args = command_line(input, &kube_env);
    for arg in &fragment.process.args {
        if !args.contains(arg) {
            args.push(arg.clone());
        }
    }
    if args.is_empty() {
        return Err(ctx.invalid(
            input.cpath,
            &format!(
                "no command: image \"{}\" has neither Entrypoint nor Cmd and the container sets no command",
                input.image_ref
            ),
        ));
    }

    // containerd starts from its default PATH, then applies the image's Env, the terminal and
    // host name variables and kubelet's variables, each replacing a variable of the same name.
    let mut env = EnvList::from_entries(&[DEFAULT_PATH_ENV.to_owned()]);
    for entry in config.env.iter().flatten() {
        match entry.split_once('=') {
            Some((name, value)) => env.set(name, value.to_owned()),
            None => env.set(entry, String::new()),
        }
    }
    let terminal = container.tty == Some(true);
    if !input.is_pause {
        if terminal {
            env.set("TERM", "xterm".to_owned());
        }
        env.set("HOSTNAME", "$(host-name)".to_owned());
    }
    for (name, value) in kube_env.iter() {
        env.set(name, value.unwrap_or_default().to_owned());
    }
    let mut env = env.entries();
    for entry in &fragment.process.env {
        if !env.contains(entry) {
            env.push(entry.clone());
        }
    }

    let cwd = container
        .working_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .or(config.working_dir.as_deref().filter(|d| !d.is_empty()))
        .unwrap_or("/")
        .to_owned();

    let user = process_user(ctx, input)?;
    let no_new_privileges = !input.privileged
        && container
            .security_context
            .as_ref()
            .and_then(|sc| sc.allow_privilege_escalation)
            == Some(false);

    Ok(Process {
        terminal,
        user,
        args,
        env,
        cwd,
        capabilities: capabilities(ctx, container, input.privileged),
        no_new_privileges,
    })
}

/// YAML `command`/`args` (with `$(VAR)` expanded) or the image's `Entrypoint`/`Cmd`, as
/// containerd combines them: an empty list counts as unset, `Entrypoint [""]` as none.
fn command_line(input: &ProcessInput<'_>, kube_env: &EnvList) -> Vec<String> {
    let container = input.container;
    let config = input.image.config();
    let lookup = |name: &str| kube_env.get(name);
    let expand_all = |items: &[String]| -> Vec<String> {
        items.iter().map(|s| expand(s, &lookup, true)).collect()
    };
    let command = container.command.as_deref().filter(|c| !c.is_empty());
    let args = container.args.as_deref().filter(|a| !a.is_empty());
    if let Some(command) = command {
        let mut out = expand_all(command);
        out.extend(expand_all(args.unwrap_or_default()));
        return out;
    }
    let mut out = match config.entrypoint.as_deref() {
        Some([only]) if only.is_empty() => Vec::new(),
        Some(entrypoint) => entrypoint.to_vec(),
        None => Vec::new(),
    };
    match args {
        Some(args) => out.extend(expand_all(args)),
        None => out.extend(config.cmd.iter().flatten().cloned()),
    }
    out
}

fn process_user(ctx: &Ctx<'_>, input: &ProcessInput<'_>) -> Result<User, GenerateError> {
    let image_at = format!("{}.image", input.cpath);
    let accounts =
        Accounts::parse(input.image.passwd(), input.image.group()).map_err(|reason| {
            ctx.invalid(
                &image_at,
                &format!("image \"{}\": {reason}", input.image_ref),
            )
        })?;
    let image_user = input.image.config().user.as_deref();
    if input.is_pause {
        return pause_user(image_user, &accounts, &ctx.pod_user).map_err(|reason| {
            ctx.invalid(
                &image_at,
                &format!("image \"{}\": {reason}", input.image_ref),
            )
        });
    }
    let context = input.container.security_context.as_ref();
    let ids = container_ids(context)
        .map_err(|reason| ctx.invalid(&format!("{}.securityContext", input.cpath), &reason))?;
    let user = workload_user(image_user, &accounts, &ctx.pod_user, ids).map_err(|reason| {
        ctx.invalid(
            &image_at,
            &format!("image \"{}\": {reason}", input.image_ref),
        )
    })?;
    if ctx.settings.guest_pull {
        check_guest_pull_user(ctx, input, &user, ids)?;
    }
    Ok(user)
}

/// With images pulled in the guest, containerd on the host cannot read the image's passwd and
/// group files, so every non-root ID that comes from them must be pinned in the pod spec.
fn check_guest_pull_user(
    ctx: &Ctx<'_>,
    input: &ProcessInput<'_>,
    user: &User,
    ids: (Option<u32>, Option<u32>),
) -> Result<(), GenerateError> {
    let pod = &ctx.pod_user;
    let explicit_uid = ids.0.or(pod.run_as_user) == Some(user.uid);
    let explicit_gid = ids.1.or(pod.run_as_group) == Some(user.gid);
    let explicit_groups: BTreeSet<u32> = pod
        .fs_group
        .iter()
        .chain(pod.supplemental_groups.iter())
        .copied()
        .collect();
    let missing_uid = user.uid != 0 && !explicit_uid;
    let missing_gid = user.gid != 0 && !explicit_gid;
    let missing_groups: Vec<u32> = user
        .additional_gids
        .iter()
        .copied()
        .filter(|g| *g != user.gid && !explicit_groups.contains(g))
        .collect();
    if !missing_uid && !missing_gid && missing_groups.is_empty() {
        return Ok(());
    }
    let mut suggestion = Vec::new();
    if missing_uid || missing_gid {
        let mut s = format!("{}.securityContext:", input.cpath);
        if user.uid != 0 {
            s.push_str(&format!(" runAsUser: {}", user.uid));
        }
        if user.gid != 0 {
            s.push_str(&format!(" runAsGroup: {}", user.gid));
        }
        suggestion.push(s);
    }
    if !missing_groups.is_empty() {
        let groups: Vec<String> = missing_groups.iter().map(u32::to_string).collect();
        suggestion.push(format!(
            "{}.securityContext: supplementalGroups: [{}]",
            ctx.spec_path,
            groups.join(", ")
        ));
    }
    Err(GenerateError::GuestPullUser(Box::new(GuestPullUser {
        resource: ctx.resource.clone(),
        path: input.cpath.to_owned(),
        image: input.image_ref.to_owned(),
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids.iter().copied().collect(),
        suggestion: suggestion.join("; "),
    })))
}

/// containerd's capability sets: all for a privileged container, otherwise the defaults with
/// `capabilities.add` then `capabilities.drop` applied. A set equal to a settings list is
/// written as its macro.
fn capabilities(ctx: &Ctx<'_>, container: &Container, privileged: bool) -> Capabilities {
    let settings = ctx.settings;
    let requested = container
        .security_context
        .as_ref()
        .and_then(|sc| sc.capabilities.as_ref())
        .filter(|_| !privileged);
    if requested.is_none() && !privileged {
        return capability_sets(vec!["$(default_caps)".to_owned()]);
    }
    let mut set: Vec<String> = if privileged {
        settings.privileged_caps.clone()
    } else {
        settings.default_caps.clone()
    };
    if let Some(caps) = requested {
        let add = caps.add.as_deref().unwrap_or_default();
        let drop = caps.drop.as_deref().unwrap_or_default();
        let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
        if add.iter().any(is_all) {
            set = settings.privileged_caps.clone();
        }
        if drop.iter().any(is_all) {
            set.clear();
        }
        for cap in add.iter().filter(|c| !is_all(c)) {
            let cap = format!("CAP_{}", cap.to_uppercase());
            if !set.contains(&cap) {
                set.push(cap);
            }
        }
        for cap in drop.iter().filter(|c| !is_all(c)) {
            let cap = format!("CAP_{}", cap.to_uppercase());
            set.retain(|c| *c != cap);
        }
    }
    let compressed = if set == settings.default_caps {
        vec!["$(default_caps)".to_owned()]
    } else if set == settings.privileged_caps {
        vec!["$(privileged_caps)".to_owned()]
    } else {
        set
    };
    capability_sets(compressed)
}

fn capability_sets(set: Vec<String>) -> Capabilities {
    Capabilities {
        ambient: Vec::new(),
        bounding: set.clone(),
        effective: set.clone(),
        inheritable: Vec::new(),
        permitted: set,
    }
}
