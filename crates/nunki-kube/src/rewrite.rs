//! Nunki's rewrites of each pod template: the Initializer, its TLS volume, the runtime class.
//! Every step checks before it changes, so a second run changes nothing.

use crate::error::{Diagnostic, Diagnostics, KubeError};
use crate::kinds;
use crate::node::{Mapping, Node};
use crate::resources::{Resources, join_path, resource_prefix};
use crate::typed;

/// Name of the Initializer init container.
pub const INITIALIZER_NAME: &str = "nunki-initializer";
/// Name of the `emptyDir` volume that receives the mesh certificate.
pub const TLS_VOLUME: &str = "tls-certs";
/// Where that volume is mounted in every container.
pub const TLS_MOUNT_PATH: &str = "/tls-config";
/// Environment variable that tells the Initializer where the Coordinator is.
pub const COORDINATOR_HOST_ENV: &str = "COORDINATOR_HOST";
/// Runtime class used unless the user's pod already names a `kata-*` class.
pub const DEFAULT_RUNTIME_CLASS: &str = "kata-cc-isolation";
/// Default Coordinator host name (its Service name).
pub const DEFAULT_COORDINATOR_HOST: &str = "coordinator";

/// How to rewrite pod templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteOptions {
    /// Image of the Initializer init container.
    pub initializer_image: String,
    /// `Some(class)`: set this runtime class everywhere. `None`: keep a class the user already
    /// set if it starts with `kata-`, else use [`DEFAULT_RUNTIME_CLASS`].
    pub runtime_class: Option<String>,
    /// `COORDINATOR_HOST` for the Initializer (`host` or `host:port`).
    pub coordinator_host: String,
}

impl RewriteOptions {
    /// Options with the given Initializer image and the defaults for everything else.
    pub fn new(initializer_image: impl Into<String>) -> Self {
        Self {
            initializer_image: initializer_image.into(),
            runtime_class: None,
            coordinator_host: DEFAULT_COORDINATOR_HOST.to_owned(),
        }
    }
}

impl Resources {
    /// Rewrites every workload's pod template: the runtime class; unless the template is
    /// annotated as the Coordinator, the Initializer as the first init container (updated in
    /// place if a previous run added it) and the `tls-certs` `emptyDir` volume mounted at
    /// `/tls-config` into every container and init container. Fields Nunki does not touch are
    /// kept as they are. Idempotent.
    ///
    /// Fails, naming file, resource and path, if a volume or mount the user defined conflicts
    /// with the TLS volume (same name or same mount path, but something else).
    pub fn rewrite(&mut self, options: &RewriteOptions) -> Result<(), KubeError> {
        let mut workloads = std::mem::take(&mut self.workloads);
        let mut errors = Vec::new();
        for wl in &mut workloads {
            let file = self
                .files
                .get(wl.loc.file)
                .map(|f| f.path.clone())
                .unwrap_or_default();
            let resource = wl.describe(wl.loc.doc);
            let diag = |path: String, message: String| Diagnostic {
                file: file.clone(),
                resource: resource.clone(),
                path,
                message,
            };
            let template_prefix =
                join_path(&resource_prefix(wl.loc), kinds::template_keys(wl.kind));
            let spec_prefix = join_path(&template_prefix, &["spec"]);
            let rewritten = match self
                .node_mut(wl.loc)
                .and_then(|n| n.get_path_mut(kinds::template_keys(wl.kind)))
                .and_then(Node::as_map_mut)
            {
                None => Err((String::new(), "the pod template disappeared".to_owned())),
                Some(template) => {
                    let coordinator = is_coordinator_template(template);
                    match template.get_mut("spec").and_then(Node::as_map_mut) {
                        None => Err((String::new(), "the pod spec disappeared".to_owned())),
                        Some(spec) => {
                            let mut notes = Vec::new();
                            rewrite_spec(spec, options, coordinator, &mut notes).map(|()| notes)
                        }
                    }
                }
            };
            let notes = match rewritten {
                Ok(notes) => notes,
                Err((rel, message)) => {
                    errors.push(diag(format!("{spec_prefix}{rel}"), message));
                    continue;
                }
            };
            for (rel, message) in notes {
                self.warnings
                    .push(diag(format!("{spec_prefix}{rel}"), message));
            }
            // Re-read the typed spec from the rewritten tree: this is what the policy is for.
            // Its unknown fields were checked when reading; the rewrite adds only known ones.
            let spec_node = self
                .node(wl.loc)
                .and_then(|n| n.get_path(kinds::template_keys(wl.kind)))
                .and_then(|t| t.get("spec"));
            match spec_node.map(|n| typed::typed_pod_spec(n, &spec_prefix)) {
                Some(Ok(typed)) => wl.spec = typed,
                Some(Err(f)) => errors.push(diag(f.path, f.message)),
                None => errors.push(diag(spec_prefix, "the pod spec disappeared".to_owned())),
            }
        }
        self.workloads = workloads;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(KubeError::Invalid(Diagnostics(errors)))
        }
    }
}

/// Whether a pod template carries the Coordinator role annotation.
pub(crate) fn is_coordinator_template(template: &Mapping) -> bool {
    crate::resources::annotation(template, crate::POD_ROLE_ANNOTATION)
        == Some(crate::COORDINATOR_ROLE)
}

/// A path relative to the pod spec (`.volumes[2]`) and a message.
type Conflict = (String, String);

fn rewrite_spec(
    spec: &mut Mapping,
    options: &RewriteOptions,
    coordinator: bool,
    notes: &mut Vec<Conflict>,
) -> Result<(), Conflict> {
    set_runtime_class(spec, options, notes);
    if coordinator {
        remove_initializer(spec)?;
        return Ok(());
    }
    ensure_tls_volume(spec)?;
    ensure_initializer(spec, options)?;
    for field in ["initContainers", "containers"] {
        let Some(node) = spec.get_mut(field) else {
            continue;
        };
        let Node::Seq(containers) = node else {
            return Err((
                format!(".{field}"),
                format!("must be a sequence, not {}", node.type_name()),
            ));
        };
        for (i, c) in containers.iter_mut().enumerate() {
            let Node::Map(c) = c else {
                return Err((
                    format!(".{field}[{i}]"),
                    "must be a mapping (a container)".to_owned(),
                ));
            };
            ensure_tls_mount(c).map_err(|(rel, m)| (format!(".{field}[{i}]{rel}"), m))?;
        }
    }
    Ok(())
}

fn set_runtime_class(spec: &mut Mapping, options: &RewriteOptions, notes: &mut Vec<Conflict>) {
    let current = spec.get("runtimeClassName").and_then(Node::as_str);
    let target = match (&options.runtime_class, current) {
        (Some(class), _) => class.clone(),
        (None, Some(c)) if c.starts_with("kata-") => c.to_owned(),
        (None, _) => DEFAULT_RUNTIME_CLASS.to_owned(),
    };
    if let Some(c) = current
        && c != target
        && options.runtime_class.is_none()
    {
        notes.push((
            ".runtimeClassName".to_owned(),
            format!("runtime class {c:?} is not a Kata class; replaced by {target:?}"),
        ));
    }
    if current != Some(target.as_str()) {
        spec.insert("runtimeClassName", Node::String(target));
    }
}

/// The sequence under `key`, created empty at the end of `map` if absent.
fn seq_mut<'a>(map: &'a mut Mapping, key: &str) -> Result<&'a mut Vec<Node>, Conflict> {
    let slot = map
        .entry_or_insert_with(key, || Node::Seq(Vec::new()))
        .ok_or_else(|| (format!(".{key}"), "cannot be created".to_owned()))?;
    if matches!(slot, Node::Null) {
        *slot = Node::Seq(Vec::new());
    }
    match slot {
        Node::Seq(s) => Ok(s),
        other => Err((
            format!(".{key}"),
            format!("must be a sequence, not {}", other.type_name()),
        )),
    }
}

fn name_of(node: &Node) -> Option<&str> {
    node.get("name")?.as_str()
}

fn ensure_tls_volume(spec: &mut Mapping) -> Result<(), Conflict> {
    let volumes = seq_mut(spec, "volumes")?;
    match volumes.iter().position(|v| name_of(v) == Some(TLS_VOLUME)) {
        Some(i) => {
            let is_empty_dir = volumes
                .get(i)
                .and_then(Node::as_map)
                .is_some_and(|v| v.get("emptyDir").is_some() && v.len() == 2);
            if is_empty_dir {
                Ok(())
            } else {
                Err((
                    format!(".volumes[{i}]"),
                    format!(
                        "the volume name {TLS_VOLUME:?} is reserved for Nunki's TLS files and must be an emptyDir; rename this volume"
                    ),
                ))
            }
        }
        None => {
            let mut v = Mapping::new();
            v.insert("name", Node::from(TLS_VOLUME));
            v.insert("emptyDir", Node::Map(Mapping::new()));
            volumes.push(Node::Map(v));
            Ok(())
        }
    }
}

fn same_path(a: &str, b: &str) -> bool {
    let trim = |p: &str| -> String {
        let t = p.trim_end_matches('/');
        if t.is_empty() {
            "/".to_owned()
        } else {
            t.to_owned()
        }
    };
    trim(a) == trim(b)
}

fn ensure_tls_mount(container: &mut Mapping) -> Result<(), Conflict> {
    let mounts = seq_mut(container, "volumeMounts")?;
    for (j, m) in mounts.iter().enumerate() {
        let name = name_of(m);
        let path = m.get("mountPath").and_then(Node::as_str);
        let name_match = name == Some(TLS_VOLUME);
        let path_match = path.is_some_and(|p| same_path(p, TLS_MOUNT_PATH));
        match (name_match, path_match) {
            (true, true) => return Ok(()),
            (true, false) => {
                return Err((
                    format!(".volumeMounts[{j}]"),
                    format!(
                        "volume {TLS_VOLUME:?} is Nunki's and is mounted at {TLS_MOUNT_PATH}; remove this mount or change it to that path"
                    ),
                ));
            }
            (false, true) => {
                return Err((
                    format!(".volumeMounts[{j}]"),
                    format!(
                        "{TLS_MOUNT_PATH} is where Nunki mounts its TLS files (volume {TLS_VOLUME:?}); mount this volume elsewhere"
                    ),
                ));
            }
            (false, false) => {}
        }
    }
    let mut m = Mapping::new();
    m.insert("name", Node::from(TLS_VOLUME));
    m.insert("mountPath", Node::from(TLS_MOUNT_PATH));
    mounts.push(Node::Map(m));
    Ok(())
}

fn ensure_initializer(spec: &mut Mapping, options: &RewriteOptions) -> Result<(), Conflict> {
    let init = seq_mut(spec, "initContainers")?;
    let mut container = match init
        .iter()
        .position(|c| name_of(c) == Some(INITIALIZER_NAME))
    {
        Some(i) => match init.remove(i) {
            Node::Map(m) => m,
            _ => {
                return Err((
                    format!(".initContainers[{i}]"),
                    "must be a mapping (a container)".to_owned(),
                ));
            }
        },
        None => {
            let mut m = Mapping::new();
            m.insert("name", Node::from(INITIALIZER_NAME));
            m
        }
    };
    container.insert("image", Node::from(options.initializer_image.as_str()));
    let env = seq_mut(&mut container, "env")
        .map_err(|(rel, m)| (format!(".initContainers[0]{rel}"), m))?;
    let host = Node::from(options.coordinator_host.as_str());
    match env
        .iter_mut()
        .find(|e| name_of(e) == Some(COORDINATOR_HOST_ENV))
        .and_then(Node::as_map_mut)
    {
        Some(var) => {
            var.remove("valueFrom");
            var.insert("value", host);
        }
        None => {
            let mut var = Mapping::new();
            var.insert("name", Node::from(COORDINATOR_HOST_ENV));
            var.insert("value", host);
            env.push(Node::Map(var));
        }
    }
    init.insert(0, Node::Map(container));
    Ok(())
}

fn remove_initializer(spec: &mut Mapping) -> Result<(), Conflict> {
    let Some(node) = spec.get_mut("initContainers") else {
        return Ok(());
    };
    if let Node::Seq(init) = node {
        init.retain(|c| name_of(c) != Some(INITIALIZER_NAME));
        if init.is_empty() {
            spec.remove("initContainers");
        }
    }
    Ok(())
}
