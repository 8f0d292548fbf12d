#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The simulated Kata agent against the upstream genpolicy test cases.
//!
//! For every `pod.yaml` in `kata-policy/src/tools/genpolicy/tests/policy/testdata`, the agent
//! builds the requests for the pod, and each request is compared with the case's *allowed*
//! `CreateContainerRequest`/`CreateSandboxRequest` on every field the policy checks. Ids that
//! are random per run are normalised; everything else must match exactly, or be one of the
//! disagreements listed (with the reason) in `KNOWN_DISAGREEMENTS`.
//!
//! Run with `--nocapture` to see the report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use nunki_policy::{ConfigSources, PodInput, WorkloadKind};
use nunki_runner::agent::{
    AgentError, ImageConfigs, ImageNameStyle, SANDBOX_CONTAINER, SandboxContext,
    build_container_requests, build_sandbox_request,
};
use regex::Regex;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Test data

fn testdata() -> PathBuf {
    std::env::var_os("NUNKI_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"))
}

fn cases_root() -> PathBuf {
    testdata().join("kata-policy/src/tools/genpolicy/tests/policy/testdata")
}

fn case_dirs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "pod.yaml") {
                out.push(dir.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(&cases_root(), &mut out);
    out
}

fn case_name(dir: &Path) -> String {
    dir.strip_prefix(cases_root())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The image fixtures of the Kata test images (written for the policy generator's tests).
fn images() -> ImageConfigs {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nunki-policy/tests/fixtures/kata-images.json");
    ImageConfigs::from_file(&path).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A tiny loader: YAML documents into k8s-openapi types, pod templates into `PodInput`.

mod loader {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    use k8s_openapi::api::core::v1::{
        ConfigMap, Pod, PodTemplateSpec, ReplicationController, Secret,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn documents(text: &str) -> Vec<String> {
        let mut docs = vec![String::new()];
        for line in text.lines() {
            if line.trim_end() == "---" {
                docs.push(String::new());
            } else if let Some(d) = docs.last_mut() {
                d.push_str(line);
                d.push('\n');
            }
        }
        docs.into_iter().filter(|d| !d.trim().is_empty()).collect()
    }

    fn input(kind: WorkloadKind, meta: &ObjectMeta, template: Option<PodTemplateSpec>) -> PodInput {
        let template = template.unwrap_or_default();
        let tmeta = template.metadata.unwrap_or_default();
        let mut annotations = tmeta.annotations.unwrap_or_default();
        annotations.remove("io.katacontainers.config.agent.policy");
        annotations.remove("io.katacontainers.config.hypervisor.cc_init_data");
        PodInput {
            kind,
            name: meta.name.clone().unwrap_or_default(),
            generate_name: meta.generate_name.clone(),
            namespace: meta.namespace.clone(),
            annotations,
            labels: tmeta.labels.unwrap_or_default(),
            spec: template.spec.unwrap_or_default(),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(doc: &str, file: &Path) -> T {
        serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }

    /// The pod templates and the ConfigMaps/Secrets of all YAML files in `dir`.
    pub fn load(dir: &Path) -> (Vec<PodInput>, ConfigSources) {
        let mut pods = Vec::new();
        let mut sources = ConfigSources::default();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            add(&text, &file, &mut pods, &mut sources);
        }
        (pods, sources)
    }

    /// The pod templates and the ConfigMaps/Secrets of one YAML text.
    pub fn from_str(text: &str) -> (Vec<PodInput>, ConfigSources) {
        let mut pods = Vec::new();
        let mut sources = ConfigSources::default();
        add(text, Path::new("<inline>"), &mut pods, &mut sources);
        (pods, sources)
    }

    fn add(text: &str, file: &Path, pods: &mut Vec<PodInput>, sources: &mut ConfigSources) {
        {
            for doc in documents(text) {
                let header: Value = serde_saphyr::from_str(&doc).unwrap();
                let kind = header["kind"].as_str().unwrap_or_default().to_owned();
                match kind.as_str() {
                    "Pod" => {
                        let p: Pod = parse(&doc, file);
                        let meta = p.metadata.clone();
                        let template = PodTemplateSpec {
                            metadata: Some(p.metadata),
                            spec: p.spec,
                        };
                        pods.push(input(WorkloadKind::Pod, &meta, Some(template)));
                    }
                    "Deployment" => {
                        let d: Deployment = parse(&doc, file);
                        let t = d.spec.map(|s| s.template);
                        pods.push(input(WorkloadKind::Deployment, &d.metadata, t));
                    }
                    "StatefulSet" => {
                        let d: StatefulSet = parse(&doc, file);
                        let t = d.spec.map(|s| s.template);
                        pods.push(input(WorkloadKind::StatefulSet, &d.metadata, t));
                    }
                    "DaemonSet" => {
                        let d: DaemonSet = parse(&doc, file);
                        let t = d.spec.map(|s| s.template);
                        pods.push(input(WorkloadKind::DaemonSet, &d.metadata, t));
                    }
                    "ReplicaSet" => {
                        let d: ReplicaSet = parse(&doc, file);
                        let t = d.spec.and_then(|s| s.template);
                        pods.push(input(WorkloadKind::ReplicaSet, &d.metadata, t));
                    }
                    "ReplicationController" => {
                        let d: ReplicationController = parse(&doc, file);
                        let t = d.spec.and_then(|s| s.template);
                        pods.push(input(WorkloadKind::ReplicationController, &d.metadata, t));
                    }
                    "Job" => {
                        let d: Job = parse(&doc, file);
                        let t = d.spec.map(|s| s.template);
                        pods.push(input(WorkloadKind::Job, &d.metadata, t));
                    }
                    "CronJob" => {
                        let d: CronJob = parse(&doc, file);
                        let t = d.spec.and_then(|s| s.job_template.spec).map(|s| s.template);
                        pods.push(input(WorkloadKind::CronJob, &d.metadata, t));
                    }
                    "ConfigMap" => {
                        let c: ConfigMap = parse(&doc, file);
                        sources.config_maps.insert(
                            (c.metadata.namespace, c.metadata.name.unwrap_or_default()),
                            c.data.unwrap_or_default(),
                        );
                    }
                    "Secret" => {
                        let s: Secret = parse(&doc, file);
                        let mut data: BTreeMap<String, String> = s
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                            .collect();
                        data.extend(s.string_data.unwrap_or_default());
                        sources.secrets.insert(
                            (s.metadata.namespace, s.metadata.name.unwrap_or_default()),
                            data,
                        );
                    }
                    // Not a pod template.
                    _ => {}
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The allowed requests of a case

#[derive(Debug, Clone)]
struct Case {
    description: String,
    kind: String,
    request: Value,
}

fn allowed_requests(dir: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("testcases.json")).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    cases
        .into_iter()
        .filter(|c| c["allowed"] == Value::Bool(true))
        .filter(|c| {
            matches!(
                c["kind"].as_str(),
                Some("CreateContainerRequest" | "CreateSandboxRequest")
            )
        })
        .map(|c| Case {
            description: c["description"].as_str().unwrap_or_default().to_owned(),
            kind: c["kind"].as_str().unwrap_or_default().to_owned(),
            request: c["request"].clone(),
        })
        .collect()
}

fn annotation<'a>(request: &'a Value, key: &str) -> Option<&'a str> {
    request["OCI"]["Annotations"][key].as_str()
}

/// A context with the test cluster's choices that are not random ids: the namespace the case
/// ran in, the pod name (generated names are random, so the case's name is taken after checking
/// it has the shape the API server gives that kind), the `kubernetes` service IP.
fn aligned_context(
    pod: &PodInput,
    cases: &[Case],
    findings: &mut Vec<Finding>,
    case: &str,
) -> SandboxContext {
    let mut ctx = SandboxContext::from_seed(pod, 42);
    ctx.image_name_style = ImageNameStyle::Normalized;
    let containers: Vec<&Value> = cases
        .iter()
        .filter(|c| c.kind == "CreateContainerRequest")
        .map(|c| &c.request)
        .collect();
    if let Some(ns) = containers
        .iter()
        .find_map(|r| annotation(r, "io.kubernetes.cri.sandbox-namespace"))
    {
        ctx.namespace = ns.to_owned();
    }
    if let Some(name) = containers
        .iter()
        .find_map(|r| annotation(r, "io.kubernetes.cri.sandbox-name"))
    {
        let pattern = match pod.kind {
            WorkloadKind::Pod if !pod.name.is_empty() => regex::escape(&pod.name),
            WorkloadKind::Pod => format!(
                "{}[bcdfghjklmnpqrstvwxz2456789]+",
                regex::escape(pod.generate_name.as_deref().unwrap_or_default())
            ),
            WorkloadKind::Deployment => format!(
                "{}-[bcdfghjklmnpqrstvwxz2456789]+-[bcdfghjklmnpqrstvwxz2456789]+",
                regex::escape(&pod.name)
            ),
            _ => format!("{}-.+", regex::escape(&pod.name)),
        };
        let ok = Regex::new(&format!("^{pattern}$")).unwrap().is_match(name);
        findings.push(Finding {
            case: case.to_owned(),
            container: "-".into(),
            field: "pod name shape".into(),
            outcome: if ok {
                Outcome::Agree
            } else {
                Outcome::Disagree {
                    ours: format!("/^{pattern}$/"),
                    theirs: name.to_owned(),
                }
            },
        });
        ctx.pod_name = name.to_owned();
        if pod.spec.hostname.is_none() {
            ctx.hostname = name.to_owned();
        }
    }
    if let Some(ip) = containers.iter().find_map(|r| {
        r["OCI"]["Process"]["Env"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .find_map(|e| e.strip_prefix("KUBERNETES_SERVICE_HOST="))
    }) {
        ctx.kubernetes_service_ip = ip.to_owned();
    }
    ctx
}

// ---------------------------------------------------------------------------------------------
// Normalisation of random ids

struct Normalizer {
    /// Exact replacements (block-device mount points).
    exact: Vec<(String, String)>,
    /// Ids replaced where they stand as a path segment or as a whole 64-hex value.
    ids: Vec<(Regex, String)>,
    /// Block-device sources (PCI paths), replaced where they are a whole value.
    blk: Vec<String>,
    uuid: Regex,
    shared: Regex,
}

impl Normalizer {
    /// `container_ids` and `sandbox_id` as this side spells them; `blk` the sources of its
    /// block-device storages in order.
    fn new(container_ids: &[String], sandbox_id: &str, blk: &[String]) -> Self {
        let mut exact = Vec::new();
        for (i, pci) in blk.iter().enumerate() {
            let b64 = base64::engine::general_purpose::URL_SAFE.encode(pci.as_bytes());
            exact.push((
                format!("/run/kata-containers/sandbox/storage/{b64}"),
                format!("/run/kata-containers/sandbox/storage/<blk{i}>"),
            ));
        }
        let mut ids = Vec::new();
        let mut add = |id: &str, to: &str| {
            if id.is_empty() {
                return;
            }
            let e = regex::escape(id);
            // As a path segment (also `<id>-<16 hex>-<file>`), or as a whole long id.
            let pattern = if id.len() >= 32 {
                format!("(^|/){e}($|/|-[0-9a-f]{{16}}-)")
            } else {
                format!("(/){e}($|/|-[0-9a-f]{{16}}-)")
            };
            ids.push((Regex::new(&pattern).unwrap(), format!("${{1}}{to}${{2}}")));
        };
        for id in container_ids {
            if id != sandbox_id {
                add(id, "<container-id>");
            }
        }
        add(sandbox_id, "<sandbox-id>");
        Self {
            exact,
            ids,
            blk: blk.to_vec(),
            uuid: Regex::new("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
                .unwrap(),
            shared: Regex::new("(<container-id>|<sandbox-id>)-[0-9a-f]{16}-").unwrap(),
        }
    }

    fn string(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for (from, to) in &self.exact {
            s = s.replace(from.as_str(), to);
        }
        for (re, to) in &self.ids {
            // Twice: adjacent matches share their delimiter.
            s = re.replace_all(&s, to.as_str()).into_owned();
            s = re.replace_all(&s, to.as_str()).into_owned();
        }
        let s = self.uuid.replace_all(&s, "<uuid>");
        self.shared.replace_all(&s, "$1-<rand16>-").into_owned()
    }

    fn value(&self, v: &Value) -> Value {
        match v {
            // The guest-pull storage's driver option carries the annotations as JSON.
            Value::String(s) if s.starts_with("image_guest_pull={") => {
                let json: Value =
                    serde_json::from_str(s.trim_start_matches("image_guest_pull=")).unwrap();
                Value::String(format!("image_guest_pull={}", self.value(&json)))
            }
            Value::String(s) => match self.blk.iter().position(|b| b == s) {
                Some(i) => Value::String(format!("<pci{i}>")),
                None => Value::String(self.string(s)),
            },
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| (self.string(k), self.value(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn blk_sources(request: &Value) -> Vec<String> {
    request["storages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["driver"] == "blk")
        .filter_map(|s| s["source"].as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .into_iter()
        .fold(Vec::new(), |mut acc, s| {
            if !acc.contains(&s) {
                acc.push(s);
            }
            acc
        })
}

/// The ids a test request uses for its container: the bundle directory, `container_id` and
/// the rootfs directory (hand-written requests do not always agree on one).
fn test_container_ids(request: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    if let Some(b) = annotation(request, "io.katacontainers.pkg.oci.bundle_path") {
        ids.push(b.rsplit('/').next().unwrap_or_default().to_owned());
    }
    if let Some(id) = request["container_id"].as_str() {
        ids.push(id.to_owned());
    }
    if let Some(id) = request["OCI"]["Root"]["Path"]
        .as_str()
        .and_then(|p| p.strip_prefix("/run/kata-containers/"))
        .and_then(|p| p.strip_suffix("/rootfs"))
    {
        ids.push(id.to_owned());
    }
    ids.sort();
    ids.dedup();
    ids
}

// ---------------------------------------------------------------------------------------------
// Field-by-field comparison

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Agree,
    Disagree {
        ours: String,
        theirs: String,
    },
    /// The test request does not carry the field (sparse request): nothing to compare.
    NotInTest,
}

#[derive(Debug, Clone)]
struct Finding {
    case: String,
    container: String,
    field: String,
    outcome: Outcome,
}

struct Cmp<'a> {
    case: &'a str,
    container: &'a str,
    out: &'a mut Vec<Finding>,
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 400 {
        format!("{}…", &s[..400])
    } else {
        s
    }
}

fn as_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
        .collect()
}

impl Cmp<'_> {
    fn push(&mut self, field: &str, outcome: Outcome) {
        self.out.push(Finding {
            case: self.case.to_owned(),
            container: self.container.to_owned(),
            field: field.to_owned(),
            outcome,
        });
    }

    /// Exact comparison of the value at `pointer`.
    fn exact(&mut self, ours: &Value, theirs: &Value, pointer: &str) {
        let outcome = match theirs.pointer(pointer) {
            None => Outcome::NotInTest,
            Some(t) => {
                let o = ours.pointer(pointer).cloned().unwrap_or(Value::Null);
                if &o == t {
                    Outcome::Agree
                } else {
                    Outcome::Disagree {
                        ours: short(&o),
                        theirs: short(t),
                    }
                }
            }
        };
        self.push(pointer, outcome);
    }

    /// Set comparison of the array at `pointer`.
    fn set(&mut self, ours: &Value, theirs: &Value, pointer: &str) {
        let outcome = match theirs.pointer(pointer) {
            None => Outcome::NotInTest,
            Some(t) => {
                let o = as_set(ours.pointer(pointer).unwrap_or(&Value::Null));
                let t = as_set(t);
                if o == t {
                    Outcome::Agree
                } else {
                    Outcome::Disagree {
                        ours: format!("only ours: {:?}", o.difference(&t).collect::<Vec<_>>()),
                        theirs: format!("only theirs: {:?}", t.difference(&o).collect::<Vec<_>>()),
                    }
                }
            }
        };
        self.push(&format!("{pointer} (as a set)"), outcome);
    }

    /// Keyed comparison of two lists of objects: one finding per key.
    fn keyed(
        &mut self,
        name: &str,
        ours: &[(String, Value)],
        theirs: Option<&[(String, Value)]>,
        complete: bool,
    ) {
        let Some(theirs) = theirs else {
            self.push(name, Outcome::NotInTest);
            return;
        };
        let keys: BTreeSet<&String> = ours.iter().chain(theirs.iter()).map(|(k, _)| k).collect();
        for key in keys {
            let o: Vec<&Value> = ours
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v)
                .collect();
            let t: Vec<&Value> = theirs
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v)
                .collect();
            let field = format!("{name}[{key}]");
            let outcome = if t.is_empty() && !complete {
                Outcome::NotInTest
            } else if o == t {
                Outcome::Agree
            } else {
                Outcome::Disagree {
                    ours: o.iter().map(|v| short(v)).collect::<Vec<_>>().join(" | "),
                    theirs: t.iter().map(|v| short(v)).collect::<Vec<_>>().join(" | "),
                }
            };
            self.push(&field, outcome);
        }
    }
}

fn mounts(request: &Value) -> Option<Vec<(String, Value)>> {
    Some(
        request["OCI"]["Mounts"]
            .as_array()?
            .iter()
            .map(|m| {
                (
                    m["destination"].as_str().unwrap_or_default().to_owned(),
                    serde_json::json!({
                        "type_": m["type_"], "source": m["source"], "options": m["options"]
                    }),
                )
            })
            .collect(),
    )
}

/// Storages keyed by mount point; the guest-pull storage's metadata (the container's
/// annotations as JSON) is compared key by key separately.
fn storages(request: &Value) -> Option<Vec<(String, Value)>> {
    Some(
        request["storages"]
            .as_array()?
            .iter()
            .map(|s| {
                let mut s = s.clone();
                let obj = s.as_object_mut().unwrap();
                obj.entry("shared").or_insert(Value::Bool(false));
                obj.entry("fs_group").or_insert(Value::Null);
                if let Some(Value::Object(g)) = obj.get_mut("fs_group") {
                    g.entry("group_change_policy").or_insert(Value::from(0));
                }
                if s["driver"] == "image_guest_pull" {
                    s["driver_options"] = Value::String("<compared as metadata>".into());
                }
                (s["mount_point"].as_str().unwrap_or_default().to_owned(), s)
            })
            .collect(),
    )
}

fn pull_metadata(request: &Value) -> Option<Vec<(String, Value)>> {
    let s = request["storages"]
        .as_array()?
        .iter()
        .find(|s| s["driver"] == "image_guest_pull")?;
    let opt = s["driver_options"][0].as_str()?;
    let json: Value = serde_json::from_str(opt.strip_prefix("image_guest_pull=")?).ok()?;
    Some(
        json["metadata"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn annotations(request: &Value) -> Option<Vec<(String, Value)>> {
    Some(
        request["OCI"]["Annotations"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn namespaces(request: &Value) -> Option<Vec<(String, Value)>> {
    Some(
        request["OCI"]["Linux"]["Namespaces"]
            .as_array()?
            .iter()
            .map(|n| {
                (
                    n["Type"].as_str().unwrap_or_default().to_owned(),
                    n["Path"].clone(),
                )
            })
            .collect(),
    )
}

/// Compares one allowed `CreateContainerRequest` with ours.
fn compare_container(cmp: &mut Cmp<'_>, ours: &Value, theirs: &Value) {
    // A request captured from a real node has containerd's default mounts; a hand-written or
    // trimmed one lists only what its case is about, so what it leaves out (annotations,
    // mounts, storages) is not compared.
    let destinations: Vec<String> = mounts(theirs)
        .unwrap_or_default()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let complete = ["/proc", "/dev/pts", "/sys"]
        .iter()
        .all(|d| destinations.iter().any(|x| x == d));
    for p in [
        "/OCI/Version",
        "/OCI/Root/Readonly",
        "/OCI/Root/Path",
        "/OCI/Hooks",
        "/OCI/Process/Args",
        "/OCI/Process/Cwd",
        "/OCI/Process/Terminal",
        "/OCI/Process/NoNewPrivileges",
        "/OCI/Process/User/UID",
        "/OCI/Process/User/GID",
        "/OCI/Process/User/Username",
        "/OCI/Linux/Sysctl",
        "/OCI/Linux/Devices",
        "/OCI/Linux/Seccomp",
        "/OCI/Linux/GIDMappings",
        "/OCI/Linux/UIDMappings",
        "/OCI/Linux/MountLabel",
        "/OCI/Linux/RootfsPropagation",
        "/sandbox_pidns",
        "/devices",
        "/string_user",
        "/shared_mounts",
    ] {
        cmp.exact(ours, theirs, p);
    }
    for p in [
        "/OCI/Process/User/AdditionalGids",
        "/OCI/Process/Env",
        "/OCI/Process/Capabilities/Bounding",
        "/OCI/Process/Capabilities/Effective",
        "/OCI/Process/Capabilities/Permitted",
        "/OCI/Process/Capabilities/Inheritable",
        "/OCI/Process/Capabilities/Ambient",
        "/OCI/Linux/MaskedPaths",
        "/OCI/Linux/ReadonlyPaths",
    ] {
        cmp.set(ours, theirs, p);
    }
    cmp.keyed(
        "Annotations",
        &annotations(ours).unwrap_or_default(),
        annotations(theirs).as_deref(),
        complete,
    );
    cmp.keyed(
        "Namespaces",
        &namespaces(ours).unwrap_or_default(),
        namespaces(theirs).as_deref(),
        true,
    );
    cmp.keyed(
        "Mounts",
        &mounts(ours).unwrap_or_default(),
        mounts(theirs).as_deref(),
        complete,
    );
    cmp.keyed(
        "storages",
        &storages(ours).unwrap_or_default(),
        storages(theirs).as_deref(),
        complete,
    );
    if let Some(t) = pull_metadata(theirs) {
        cmp.keyed(
            "guest-pull metadata",
            &pull_metadata(ours).unwrap_or_default(),
            Some(&t),
            true,
        );
    }
}

fn compare_sandbox(cmp: &mut Cmp<'_>, ours: &Value, theirs: &Value) {
    for p in [
        "/sandbox_pidns",
        "/guest_hook_path",
        "/kernel_modules",
        "/storages",
        "/hostname",
        "/dns",
        "/sandbox_id",
    ] {
        cmp.exact(ours, theirs, p);
    }
}

/// Runs the comparison over all cases.
fn compare_all() -> (Vec<Finding>, usize, usize) {
    let images = images();
    let mut findings = Vec::new();
    let mut pods_built = 0;
    let mut requests_compared = 0;
    for dir in case_dirs() {
        let case = case_name(&dir);
        let (pods, sources) = loader::load(&dir);
        assert_eq!(pods.len(), 1, "{case}: one pod template per case");
        let pod = &pods[0];
        let allowed = allowed_requests(&dir);
        let ctx = aligned_context(pod, &allowed, &mut findings, &case).with_config_sources(sources);
        let (ours, sandbox) = match build_container_requests(pod, &images, &ctx) {
            Ok(ours) => (ours, build_sandbox_request(pod, &ctx)),
            // The API server refuses Bidirectional propagation for unprivileged containers, so
            // the case's pod cannot run at all; compare the pod without it.
            Err(AgentError::InvalidPod(msg)) if msg.contains("Bidirectional") => {
                findings.push(Finding {
                    case: format!("{case} / (pod)"),
                    container: "-".into(),
                    field: "API validation".into(),
                    outcome: Outcome::Disagree {
                        ours: msg,
                        theirs: "allowed requests for this pod".into(),
                    },
                });
                let mut pod = pod.clone();
                for c in &mut pod.spec.containers {
                    for m in c.volume_mounts.iter_mut().flatten() {
                        m.mount_propagation = None;
                    }
                }
                let ours = build_container_requests(&pod, &images, &ctx)
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                (ours, build_sandbox_request(&pod, &ctx))
            }
            Err(e) => panic!("{case}: {e}"),
        };
        pods_built += 1;
        for c in &allowed {
            let label = format!("{case} / {:?}", c.description);
            if c.kind == "CreateSandboxRequest" {
                let norm = |v: &Value, id: &str| Normalizer::new(&[], id, &[]).value(v);
                let o = norm(&sandbox, &ctx.sandbox_id);
                let t = norm(
                    &c.request,
                    c.request["sandbox_id"].as_str().unwrap_or_default(),
                );
                let mut cmp = Cmp {
                    case: &label,
                    container: "CreateSandbox",
                    out: &mut findings,
                };
                compare_sandbox(&mut cmp, &o, &t);
                requests_compared += 1;
                continue;
            }
            let t_raw = &c.request;
            let is_sandbox =
                annotation(t_raw, "io.kubernetes.cri.container-type") == Some("sandbox");
            let name = if is_sandbox {
                SANDBOX_CONTAINER.to_owned()
            } else {
                annotation(t_raw, "io.kubernetes.cri.container-name")
                    .unwrap_or_default()
                    .to_owned()
            };
            let Some((_, o_raw)) = ours.iter().find(|(n, _)| *n == name) else {
                panic!("{label}: no request of ours for container {name:?}");
            };
            let o_norm = Normalizer::new(
                &[o_raw["container_id"].as_str().unwrap().to_owned()],
                &ctx.sandbox_id,
                &blk_sources(o_raw),
            );
            let t_norm = Normalizer::new(
                &test_container_ids(t_raw),
                annotation(t_raw, "io.kubernetes.cri.sandbox-id").unwrap_or_default(),
                &blk_sources(t_raw),
            );
            let mut cmp = Cmp {
                case: &label,
                container: &name,
                out: &mut findings,
            };
            compare_container(&mut cmp, &o_norm.value(o_raw), &t_norm.value(t_raw));
            requests_compared += 1;
        }
    }
    (findings, pods_built, requests_compared)
}

/// Every disagreement between our requests and the cases' allowed requests, with the reason.
/// Keys: (case directory, container, field); the case directory matches the start of the case
/// label.
const KNOWN_DISAGREEMENTS: &[(&str, &str, &str, &str)] = &[
    // Hand-written requests that keep what the Kata runtime removes or never sends.
    (
        "createcontainer/generate_name",
        "POD",
        "Namespaces[network]",
        NETNS,
    ),
    (
        "createcontainer/network_namespace",
        "POD",
        "Namespaces[network]",
        NETNS,
    ),
    (
        "createcontainer/volumes/config_map",
        "dummy",
        "Namespaces[network]",
        NETNS,
    ),
    (
        "createcontainer/volumes/container_image",
        "redis",
        "Namespaces[network]",
        NETNS,
    ),
    (
        "createcontainer/volumes/emptydir",
        "dummy",
        "Namespaces[network]",
        NETNS,
    ),
    (
        "createcontainer/generate_name",
        "POD",
        "/OCI/Root/Path",
        PAUSE_ID,
    ),
    (
        "createcontainer/generate_name",
        "POD",
        "Annotations[io.katacontainers.pkg.oci.bundle_path]",
        PAUSE_ID,
    ),
    (
        "createcontainer/network_namespace",
        "POD",
        "/OCI/Root/Path",
        PAUSE_ID,
    ),
    (
        "createcontainer/network_namespace",
        "POD",
        "Annotations[io.katacontainers.pkg.oci.bundle_path]",
        PAUSE_ID,
    ),
    // An older masked-path list.
    (
        "createcontainer/generate_name",
        "POD",
        "/OCI/Linux/MaskedPaths (as a set)",
        POWERCAP,
    ),
    (
        "createcontainer/network_namespace",
        "POD",
        "/OCI/Linux/MaskedPaths (as a set)",
        POWERCAP,
    ),
    (
        "createcontainer/volumes/config_map",
        "dummy",
        "/OCI/Linux/MaskedPaths (as a set)",
        POWERCAP,
    ),
    (
        "createcontainer/volumes/container_image",
        "redis",
        "/OCI/Linux/MaskedPaths (as a set)",
        POWERCAP,
    ),
    (
        "createcontainer/volumes/emptydir",
        "dummy",
        "/OCI/Linux/MaskedPaths (as a set)",
        POWERCAP,
    ),
    (
        "state/execprocess",
        "first-test-container",
        "/OCI/Linux/MaskedPaths (as a set)",
        POWERCAP,
    ),
    (
        "state/execprocess",
        "second-test-container",
        "/OCI/Linux/MaskedPaths (as a set)",
        POWERCAP,
    ),
    // Trimmed environments.
    (
        "createcontainer/env_vars",
        "gid",
        "/OCI/Process/Env (as a set)",
        SERVICE_ENV,
    ),
    (
        "createcontainer/gpu_vfio_cdi",
        "gpu-container",
        "/OCI/Process/Env (as a set)",
        SERVICE_ENV,
    ),
    (
        "state/execprocess",
        "first-test-container",
        "/OCI/Process/Env (as a set)",
        EXEC_ENV,
    ),
    (
        "state/execprocess",
        "second-test-container",
        "/OCI/Process/Env (as a set)",
        EXEC_ENV,
    ),
    // Policy placeholders in a request.
    (
        "createcontainer/volumes/container_image",
        "redis",
        "/OCI/Process/Env (as a set)",
        PLACEHOLDERS,
    ),
    (
        "createcontainer/volumes/container_image",
        "redis",
        "/OCI/Process/Capabilities/Bounding (as a set)",
        PLACEHOLDERS,
    ),
    (
        "createcontainer/volumes/container_image",
        "redis",
        "/OCI/Process/Capabilities/Effective (as a set)",
        PLACEHOLDERS,
    ),
    (
        "createcontainer/volumes/container_image",
        "redis",
        "/OCI/Process/Capabilities/Permitted (as a set)",
        PLACEHOLDERS,
    ),
    (
        "createcontainer/volumes/container_image",
        "redis",
        "Mounts[/data]",
        FAKE_SUFFIX,
    ),
    (
        "createcontainer/volumes/container_image",
        "redis",
        "Mounts[/node-conf]",
        FAKE_SUFFIX,
    ),
    // emptyDir: one device per volume, Bidirectional propagation.
    (
        "createcontainer/volumes/emptydir",
        "-",
        "API validation",
        BIDIRECTIONAL,
    ),
    (
        "createcontainer/volumes/emptydir",
        "dummy",
        "Mounts[/mnt/test2]",
        BLOCK_PER_VOLUME,
    ),
    (
        "createcontainer/volumes/emptydir",
        "dummy",
        "Mounts[/mnt/test3]",
        BLOCK_PER_VOLUME,
    ),
    (
        "createcontainer/volumes/emptydir",
        "dummy",
        "Mounts[/mnt/test4]",
        BLOCK_PER_VOLUME,
    ),
    (
        "createcontainer/volumes/emptydir",
        "dummy",
        "storages[/run/kata-containers/sandbox/storage/<blk0>]",
        BLOCK_PER_VOLUME,
    ),
    (
        "createcontainer/volumes/emptydir",
        "dummy",
        "storages[/run/kata-containers/sandbox/storage/<blk2>]",
        BLOCK_PER_VOLUME,
    ),
    (
        "createcontainer/volumes/emptydir",
        "dummy",
        "storages[/run/kata-containers/sandbox/storage/<blk3>]",
        BLOCK_PER_VOLUME,
    ),
    // Hand-edited annotations and storages of the exec test's containers.
    (
        "state/execprocess",
        "first-test-container",
        "Annotations[io.kubernetes.cri.image-name]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "first-test-container",
        "Annotations[io.kubernetes.cri.sandbox-cpu-period]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "first-test-container",
        "Annotations[io.kubernetes.cri.sandbox-cpu-quota]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "first-test-container",
        "Annotations[io.kubernetes.cri.sandbox-cpu-shares]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "first-test-container",
        "Annotations[io.kubernetes.cri.sandbox-memory]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "first-test-container",
        "storages[/run/kata-containers/<container-id>/rootfs]",
        EXEC_STORAGE,
    ),
    (
        "state/execprocess",
        "second-test-container",
        "Annotations[io.kubernetes.cri.image-name]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "second-test-container",
        "Annotations[io.kubernetes.cri.sandbox-cpu-period]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "second-test-container",
        "Annotations[io.kubernetes.cri.sandbox-cpu-quota]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "second-test-container",
        "Annotations[io.kubernetes.cri.sandbox-cpu-shares]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "second-test-container",
        "Annotations[io.kubernetes.cri.sandbox-memory]",
        EXEC_ANNOTATIONS,
    ),
    (
        "state/execprocess",
        "second-test-container",
        "storages[/run/kata-containers/<container-id>/rootfs]",
        EXEC_STORAGE,
    ),
    // Differences of the cluster or containerd version the requests were captured on.
    (
        "createcontainer/cgroup_mount_extras",
        "gid",
        "Mounts[/sys/fs/cgroup]",
        CGROUP_EXTRAS,
    ),
    (
        "createcontainer/ignored_fields",
        "POD",
        "Annotations[io.kubernetes.cri.sandbox-cpu-shares]",
        CPU_SHARES,
    ),
    (
        "createcontainer/ignored_fields",
        "POD",
        "guest-pull metadata[io.kubernetes.cri.sandbox-cpu-shares]",
        CPU_SHARES,
    ),
    (
        "createcontainer/sysctls",
        "POD",
        "Annotations[io.kubernetes.cri.sandbox-cpu-shares]",
        CPU_SHARES,
    ),
    (
        "createcontainer/sysctls",
        "POD",
        "guest-pull metadata[io.kubernetes.cri.sandbox-cpu-shares]",
        CPU_SHARES,
    ),
    (
        "state/createcontainer",
        "POD",
        "Annotations[io.kubernetes.cri.sandbox-cpu-shares]",
        CPU_SHARES,
    ),
    (
        "state/createcontainer",
        "POD",
        "guest-pull metadata[io.kubernetes.cri.sandbox-cpu-shares]",
        CPU_SHARES,
    ),
    (
        "createcontainer/security_context/runas",
        "POD",
        "/OCI/Linux/Sysctl",
        CONTAINERD_1_SYSCTLS,
    ),
    (
        "state/createcontainer",
        "POD",
        "/OCI/Linux/Sysctl",
        CONTAINERD_1_SYSCTLS,
    ),
    (
        "createcontainer/security_context/runas",
        "POD",
        "Annotations[io.kubernetes.cri.podsandbox.image-name]",
        CONTAINERD_1_IMAGE,
    ),
    // Not simulated.
    (
        "createcontainer/gpu_vfio_cdi",
        "gpu-container",
        "/devices",
        GPU,
    ),
];

const NETNS: &str = "hand-written request: the Kata runtime drops the network (and cgroup) \
    namespace from the spec before sending it (constrainGRPCSpec); this request keeps \
    /run/netns/podns. The captured requests (gid, sysctls, security_context/*) have none.";
const PAUSE_ID: &str = "hand-written request: the pause container's id is the sandbox id, so \
    its bundle and rootfs directories are named after io.kubernetes.cri.sandbox-id (as in the \
    captured sysctls request); this one uses an unrelated id (e3b0…) for them.";
const POWERCAP: &str = "written for an older default list: the kubelet (and containerd 2.x for \
    the sandbox) also mask /sys/devices/virtual/powercap, as the captured requests of gid, \
    env_vars and sysctls show.";
const SERVICE_ENV: &str = "trimmed Env: the kubelet always adds the eight KUBERNETES_* variables \
    of the default/kubernetes service (the captured gid and security_context requests have \
    them); ours use the simulated service IP 10.96.0.1.";
const EXEC_ENV: &str = "trimmed Env (PATH only): the pod's own CONTAINER_NAME, containerd's \
    HOSTNAME and the kubelet's KUBERNETES_* variables are missing.";
const PLACEHOLDERS: &str = "synthetic request: it holds genpolicy placeholders \
    ($(default_caps), HOSTNAME=$(host-name)) instead of the values containerd sends, and no \
    KUBERNETES_* variables.";
const FAKE_SUFFIX: &str = "synthetic request: the shared-file name uses the id e3b0… (sha256 of \
    nothing) and the suffix a1b2c3d4e5f6g7h8, which is not hex (Kata uses 8 random bytes in \
    hex), so it cannot be normalised like a real one.";
const BIDIRECTIONAL: &str = "the API server refuses this pod: mountPropagation Bidirectional \
    is only for privileged containers (and containerd would make the mount rshared, not the \
    rprivate of the hand-written request). The rest is compared for the pod without it.";
const BLOCK_PER_VOLUME: &str = "hand-written request: one block device per mount (00/00 … \
    03/03). Kata hot-plugs one device per emptyDir volume (its disk.img) and sends one storage \
    per mount, so the three mounts of test-volume share one device and mount point.";
const EXEC_ANNOTATIONS: &str = "hand-edited annotations: containerd puts sandbox-cpu-* only on \
    the sandbox (pause) container and io.kubernetes.cri.image-name on every container (since \
    1.6 at least).";
const EXEC_STORAGE: &str = "hand-trimmed storages: the rootfs /run/kata-containers/<id>/rootfs \
    is a guest-pulled image, which comes with an image_guest_pull storage.";
const CGROUP_EXTRAS: &str = "host-dependent: containerd copies nsdelegate and \
    memory_recursiveprot from the host's /sys/fs/cgroup only for a container without a cgroup \
    namespace (privileged, or a cgroup-v1 host). The simulated node is cgroup v2, where an \
    unprivileged container has its own cgroup namespace, so the options are not added.";
const CPU_SHARES: &str = "cluster-dependent: the captured sandbox had 102 CPU shares (100m, e.g. \
    the RuntimeClass pod overhead or a LimitRange default); the YAML requests nothing and the \
    simulated runtime class has no overhead, so 2 shares.";
const CONTAINERD_1_SYSCTLS: &str = "containerd-version dependent: containerd 2.x enables \
    unprivileged ports and ICMP by default and writes these two sysctls into the sandbox spec; \
    this request was captured from containerd 1.x (the sysctls case's capture has them).";
const CONTAINERD_1_IMAGE: &str = "containerd-version dependent: \
    io.kubernetes.cri.podsandbox.image-name exists since containerd 2.0; this capture is older.";
const GPU: &str = "hot-plug: the request carries two hot-plugged VFIO devices. The simulated \
    node cold-plugs passthrough GPUs (devices [] with the cdi.k8s.io/vfioN annotations, as in \
    the case's cold-plug request, which agrees)";

fn known(f: &Finding) -> Option<&'static str> {
    KNOWN_DISAGREEMENTS
        .iter()
        .find(|(case, container, field, _)| {
            f.case.starts_with(&format!("{case} / "))
                && f.container == *container
                && f.field == *field
        })
        .map(|(_, _, _, why)| *why)
}

#[test]
fn requests_agree_with_the_allowed_kata_test_requests() {
    let (findings, pods, requests) = compare_all();
    let agree = findings
        .iter()
        .filter(|f| f.outcome == Outcome::Agree)
        .count();
    let absent = findings
        .iter()
        .filter(|f| f.outcome == Outcome::NotInTest)
        .count();
    let disagreements: Vec<&Finding> = findings
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Disagree { .. }))
        .collect();
    println!(
        "simulated agent vs. kata test requests: {pods} pods built, {requests} allowed requests \
         compared, {} fields: {agree} agree, {} disagree, {absent} not in the (sparse) test request",
        findings.len(),
        disagreements.len()
    );
    let mut per_case: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for f in &findings {
        let case = f.case.split(" / ").next().unwrap_or_default().to_owned();
        let slot = match f.outcome {
            Outcome::Agree => 0,
            Outcome::Disagree { .. } => 1,
            Outcome::NotInTest => 2,
        };
        per_case.entry(case).or_default()[slot] += 1;
    }
    for (case, [a, d, n]) in &per_case {
        println!("  {case:<48} {a:>4} agree {d:>3} disagree {n:>3} not in test");
    }
    let mut unexplained = Vec::new();
    for f in &disagreements {
        let Outcome::Disagree { ours, theirs } = &f.outcome else {
            continue;
        };
        match known(f) {
            Some(why) => println!(
                "  known  {} [{}] {}: ours {ours} / theirs {theirs}\n         why: {why}",
                f.case, f.container, f.field
            ),
            None => {
                println!(
                    "  NEW    {} [{}] {}: ours {ours} / theirs {theirs}",
                    f.case, f.container, f.field
                );
                unexplained.push(format!("{} [{}] {}", f.case, f.container, f.field));
            }
        }
    }
    let stale: Vec<_> = KNOWN_DISAGREEMENTS
        .iter()
        .filter(|(case, container, field, _)| {
            !disagreements.iter().any(|f| {
                f.case.starts_with(&format!("{case} / "))
                    && f.container == *container
                    && f.field == *field
            })
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "{} disagreements without a documented reason:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
    assert!(
        stale.is_empty(),
        "documented disagreements that no longer occur: {stale:?}"
    );
    // Sanity: the comparison did compare something in every kind of case.
    assert!(requests >= 20, "{requests}");
    assert!(agree > 500, "{agree}");
}

// ---------------------------------------------------------------------------------------------
// The simulated agent with small policies

use nunki_runner::agent::SimulatedAgent;

fn load_case(dir: &str) -> (PodInput, SandboxContext) {
    let (pods, sources) = loader::load(&cases_root().join(dir));
    let pod = pods.into_iter().next().unwrap();
    let ctx = SandboxContext::random(&pod).with_config_sources(sources);
    (pod, ctx)
}

/// The case whose pod the API server refuses (Bidirectional propagation in an unprivileged
/// container).
const API_REFUSED: &str = "createcontainer/volumes/emptydir";

/// The pods of a case as they can run: for [`API_REFUSED`], checks that the simulation refuses
/// the pod as the API server would and returns it without the Bidirectional propagation.
fn runnable_variants(case: &str, pods: Vec<PodInput>) -> Vec<PodInput> {
    if case != API_REFUSED {
        return pods;
    }
    pods.into_iter()
        .map(|mut pod| {
            let ctx = SandboxContext::random(&pod);
            let mut agent = SimulatedAgent::new(ALLOW_CREATE).unwrap();
            let err = agent.run_pod(&pod, &images(), &ctx).unwrap_err();
            assert!(
                matches!(&err, AgentError::InvalidPod(m) if m.contains("Bidirectional")),
                "{case}: {err}"
            );
            for c in &mut pod.spec.containers {
                for m in c.volume_mounts.iter_mut().flatten() {
                    m.mount_propagation = None;
                }
            }
            pod
        })
        .collect()
}

const ALLOW_CREATE: &str = r#"package agent_policy

default CreateSandboxRequest := true
default CreateContainerRequest := true
default ExecProcessRequest := false
"#;

/// Every request built for every test pod has the shape of its protobuf message (the engine
/// rejects unknown fields and wrong types), and an allow-all policy admits every pod.
#[test]
fn every_test_pod_is_admitted_by_an_allow_all_policy() {
    let images = images();
    let mut admitted = 0;
    for dir in case_dirs() {
        let (pods, sources) = loader::load(&dir);
        for pod in runnable_variants(&case_name(&dir), pods) {
            let ctx = SandboxContext::random(&pod).with_config_sources(sources.clone());
            let mut agent = SimulatedAgent::new(ALLOW_CREATE).unwrap();
            let a = agent
                .run_pod(&pod, &images, &ctx)
                .unwrap_or_else(|e| panic!("{}: {e}", case_name(&dir)));
            let init = pod.spec.init_containers.as_ref().map_or(0, Vec::len);
            assert_eq!(a.containers.len(), 1 + init + pod.spec.containers.len());
            assert_eq!(a.containers[0].name, SANDBOX_CONTAINER);
            assert_eq!(a.containers[0].container_id, ctx.sandbox_id);
            assert_eq!(a.requests_allowed, a.containers.len() + 1);
            assert_eq!(a.pod_name, ctx.pod_name);
            admitted += 1;
        }
    }
    assert_eq!(admitted, case_dirs().len());
}

#[test]
fn a_denied_create_container_fails_the_pod_with_rule_and_field() {
    let (pod, ctx) = load_case("state/execprocess");
    let policy = r#"package agent_policy

default CreateSandboxRequest := true
default CreateContainerRequest := false

CreateContainerRequest if {
    input.OCI.Process.Args != ["sleep", "3600"]
}

why_CreateContainerRequest contains "rule allow_process_args: field OCI.Process.Args" if {
    input.OCI.Process.Args == ["sleep", "3600"]
}
"#;
    let mut agent = SimulatedAgent::new(policy).unwrap();
    let err = agent.run_pod(&pod, &images(), &ctx).unwrap_err();
    match &err {
        AgentError::Denied {
            request,
            container,
            reasons,
        } => {
            assert_eq!(request, "CreateContainerRequest");
            // The pause container passes; the first workload container is refused.
            assert_eq!(container.as_deref(), Some("first-test-container"));
            assert!(
                reasons.iter().any(|r| r.contains("OCI.Process.Args")),
                "{reasons:?}"
            );
        }
        other => panic!("expected a denial, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("first-test-container"), "{text}");
    assert!(
        text.contains("allow_process_args") && text.contains("OCI.Process.Args"),
        "{text}"
    );
}

#[test]
fn a_denied_create_sandbox_fails_before_any_container() {
    let (pod, ctx) = load_case("createsandbox");
    let policy = "package agent_policy\n\ndefault CreateSandboxRequest := false\ndefault CreateContainerRequest := true\n";
    let mut agent = SimulatedAgent::new(policy).unwrap();
    match agent.run_pod(&pod, &images(), &ctx) {
        Err(AgentError::Denied {
            request, container, ..
        }) => {
            assert_eq!(request, "CreateSandboxRequest");
            assert_eq!(container, None);
        }
        other => panic!("expected a sandbox denial, got {other:?}"),
    }
}

#[test]
fn exec_is_refused_unless_the_policy_allows_the_command() {
    let (pod, ctx) = load_case("state/execprocess");
    let policy = r#"package agent_policy

default CreateSandboxRequest := true
default CreateContainerRequest := true
default ExecProcessRequest := false

ExecProcessRequest if {
    input.process.Args == ["test1"]
    input.process.Capabilities == null
    input.process.Env[_] == "CONTAINER_NAME=first-test-container"
}

why_ExecProcessRequest contains "rule allow_exec: field process.Args" if {
    input.process.Args != ["test1"]
}
"#;
    let mut agent = SimulatedAgent::new(policy).unwrap();
    let admission = agent.run_pod(&pod, &images(), &ctx).unwrap();
    assert_eq!(admission.containers.len(), 3);
    agent.exec("first-test-container", &["test1"]).unwrap();
    let err = agent.exec("first-test-container", &["sh"]).unwrap_err();
    assert!(
        matches!(&err, AgentError::Denied { request, container, .. }
            if request == "ExecProcessRequest" && container.as_deref() == Some("first-test-container")),
        "{err}"
    );
    assert!(err.to_string().contains("process.Args"), "{err}");
    // The second container runs with its own environment, which the rule does not accept.
    assert!(agent.exec("second-test-container", &["test1"]).is_err());
    assert!(matches!(
        agent.exec("no-such-container", &["test1"]),
        Err(AgentError::UnknownContainer(_))
    ));
}

#[test]
fn a_missing_image_names_the_image_and_the_fix() {
    let (mut pod, ctx) = load_case("state/execprocess");
    pod.spec.containers[1].image = Some("example.com/not/in/the/file:1".into());
    let err = build_container_requests(&pod, &images(), &ctx).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AgentError::MissingImage { .. }), "{text}");
    assert!(text.contains("example.com/not/in/the/file:1"), "{text}");
    assert!(text.contains("second-test-container"), "{text}");
    assert!(text.contains("nunki images pull"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Our generated policies against the simulated pods

/// For each Kata test pod: generate our policy (`nunki_policy::generate`) and start the pod in
/// the simulated agent under it. Every pod must be admitted: the generator and the simulation
/// are written independently, so a disagreement is a bug in one of them.
#[test]
fn generated_policies_admit_the_simulated_test_pods() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../nunki-policy/tests/fixtures/kata-images.json");
    let info = nunki_policy::ImageInfo::read(&fixture).unwrap();
    let settings = nunki_policy::Settings::default();
    let images = images();
    let mut failures = Vec::new();
    let mut admitted = 0;
    for (i, dir) in case_dirs().into_iter().enumerate() {
        let case = case_name(&dir);
        let (pods, sources) = loader::load(&dir);
        for pod in runnable_variants(&case, pods) {
            let policy = nunki_policy::generate::generate_policy(&pod, &info, &sources, &settings)
                .unwrap_or_else(|e| panic!("{case}: generate: {e}"));
            // A different seed (ids, names) per case: nothing may depend on them.
            let ctx = SandboxContext::from_seed(&pod, 1000 + i as u64)
                .with_config_sources(sources.clone());
            let mut agent = SimulatedAgent::new(&policy).unwrap();
            match agent.run_pod(&pod, &images, &ctx) {
                Ok(_) => admitted += 1,
                Err(e) => failures.push(format!("{case}: {e}")),
            }
            if case == "state/execprocess" {
                // The containers' exec probes are the only commands the policy allows, each in
                // its own container.
                agent.exec("first-test-container", &["test1"]).unwrap();
                agent.exec("second-test-container", &["test2"]).unwrap();
                for (container, argv) in [
                    ("first-test-container", vec!["test2"]),
                    ("second-test-container", vec!["test1"]),
                    ("first-test-container", vec!["sh"]),
                ] {
                    let err = agent.exec(container, &argv).unwrap_err();
                    assert!(
                        matches!(err, AgentError::Denied { ref request, .. } if request == "ExecProcessRequest"),
                        "{container} {argv:?}: {err}"
                    );
                }
            }
        }
    }
    println!("generated policies: {admitted} simulated pod starts admitted");
    for f in &failures {
        println!("  DENIED {f}");
    }
    assert!(
        failures.is_empty(),
        "{} pods denied:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Behaviour the Kata cases do not cover

const APP_IMAGES: &str = r#"{"images": {
  "example.com/app:1": {
    "config": {"architecture": "amd64", "os": "linux", "config": {
      "User": "app", "Entrypoint": ["/app"], "Cmd": ["--serve"], "WorkingDir": "/srv",
      "Env": ["PATH=/usr/bin:/bin", "MODE=prod"], "Volumes": {"/cache": {}}}},
    "passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/srv:/bin/false\n",
    "group": "root:x:0:\napp:x:1000:\nmetrics:x:3000:app\n"},
  "example.com/tools:1": {
    "config": {"config": {"Cmd": ["sh"]}}, "passwd": null, "group": null}
}}"#;

fn app_pod(yaml: &str) -> (PodInput, SandboxContext, ImageConfigs) {
    let (pods, sources) = loader::from_str(yaml);
    let pod = pods.into_iter().next().expect("a pod template");
    let ctx = SandboxContext::from_seed(&pod, 7).with_config_sources(sources);
    (pod, ctx, ImageConfigs::from_json(APP_IMAGES).unwrap())
}

fn requests_of(yaml: &str) -> (SandboxContext, BTreeMap<String, Value>) {
    let (pod, ctx, images) = app_pod(yaml);
    let reqs = build_container_requests(&pod, &images, &ctx).unwrap();
    (ctx, reqs.into_iter().collect())
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

fn mount<'a>(req: &'a Value, destination: &str) -> &'a Value {
    req["OCI"]["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == destination)
        .unwrap_or_else(|| panic!("no mount {destination}"))
}

#[test]
fn image_defaults_user_lookup_and_image_volumes() {
    let (ctx, reqs) = requests_of(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers:\n  - {name: app, image: example.com/app:1}\n",
    );
    let app = &reqs["app"];
    let p = &app["OCI"]["Process"];
    assert_eq!(strs(&p["Args"]), ["/app", "--serve"]);
    assert_eq!(p["Cwd"], "/srv");
    // The image user is a name: the kubelet passes it on, containerd resolves it in the
    // image's /etc/passwd and adds the groups that list it.
    assert_eq!(p["User"]["UID"], 1000);
    assert_eq!(p["User"]["GID"], 1000);
    assert_eq!(p["User"]["AdditionalGids"], serde_json::json!([1000, 3000]));
    let env = strs(&p["Env"]);
    assert!(env.contains(&"PATH=/usr/bin:/bin".to_owned()), "{env:?}");
    assert!(env.contains(&"MODE=prod".to_owned()));
    assert!(env.contains(&"HOSTNAME=web".to_owned()));
    assert!(env.contains(&"KUBERNETES_SERVICE_HOST=10.96.0.1".to_owned()));
    assert_eq!(p["NoNewPrivileges"], false);
    assert_eq!(p["ApparmorProfile"], "cri-containerd.apparmor.d");
    let a = &app["OCI"]["Annotations"];
    assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "shop");
    assert_eq!(a["io.kubernetes.cri.image-name"], "example.com/app:1");
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], ctx.sandbox_id.as_str());
    let cid = app["container_id"].as_str().unwrap();
    assert_eq!(cid.len(), 64);
    assert_eq!(
        app["OCI"]["Root"]["Path"],
        format!("/run/kata-containers/{cid}/rootfs")
    );
    // The image volume is a host directory that Kata copies into the guest.
    let cache = mount(app, "/cache")["source"].as_str().unwrap().to_owned();
    let re = Regex::new(&format!(
        "^/run/kata-containers/shared/containers/{cid}-[0-9a-f]{{16}}-cache$"
    ))
    .unwrap();
    assert!(re.is_match(&cache), "{cache}");
    // The service-account token is mounted read-only.
    assert_eq!(
        mount(app, "/var/run/secrets/kubernetes.io/serviceaccount")["options"],
        serde_json::json!(["rbind", "rprivate", "ro"])
    );
    let pull = &app["storages"][0];
    assert_eq!(pull["driver"], "image_guest_pull");
    assert_eq!(pull["source"], "example.com/app:1");
}

#[test]
fn security_context_privileged_capabilities_and_read_only_root() {
    let (_, reqs) = requests_of(
        r#"apiVersion: v1
kind: Pod
metadata: {name: sec}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsUser: 4000, runAsGroup: 5000, fsGroup: 6000, supplementalGroups: [7000]}
  containers:
  - name: locked
    image: example.com/app:1
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {add: [NET_ADMIN], drop: [MKNOD, NET_RAW]}
  - name: none
    image: example.com/app:1
    securityContext: {capabilities: {drop: [ALL]}}
  - name: root
    image: example.com/tools:1
    securityContext: {privileged: true, runAsUser: 0}
"#,
    );
    let locked = &reqs["locked"]["OCI"];
    let caps = strs(&locked["Process"]["Capabilities"]["Bounding"]);
    assert!(caps.contains(&"CAP_NET_ADMIN".to_owned()));
    assert!(!caps.contains(&"CAP_MKNOD".to_owned()) && !caps.contains(&"CAP_NET_RAW".to_owned()));
    assert_eq!(caps.len(), 13);
    assert_eq!(locked["Process"]["NoNewPrivileges"], true);
    assert_eq!(locked["Root"]["Readonly"], true);
    let user = &locked["Process"]["User"];
    assert_eq!(
        (user["UID"].clone(), user["GID"].clone()),
        (4000.into(), 5000.into())
    );
    assert_eq!(
        user["AdditionalGids"],
        serde_json::json!([5000, 6000, 7000])
    );
    // containerd's own files follow readOnlyRootFilesystem; the kubelet's /etc/hosts does not.
    assert_eq!(
        mount(&reqs["locked"], "/etc/resolv.conf")["options"],
        serde_json::json!(["rbind", "rprivate", "ro"])
    );
    assert_eq!(
        mount(&reqs["locked"], "/etc/hosts")["options"],
        serde_json::json!(["rbind", "rprivate", "rw"])
    );
    assert!(
        !locked["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/var/run/secrets/kubernetes.io/serviceaccount")
    );
    let none = &reqs["none"]["OCI"]["Process"]["Capabilities"];
    for set in [
        "Bounding",
        "Effective",
        "Permitted",
        "Inheritable",
        "Ambient",
    ] {
        assert_eq!(none[set], serde_json::json!([]), "{set}");
    }
    let root = &reqs["root"]["OCI"];
    assert_eq!(
        root["Process"]["Capabilities"]["Bounding"]
            .as_array()
            .unwrap()
            .len(),
        41
    );
    assert_eq!(root["Linux"]["MaskedPaths"], serde_json::json!([]));
    assert_eq!(root["Linux"]["ReadonlyPaths"], serde_json::json!([]));
    assert_eq!(root["Process"]["ApparmorProfile"], "");
    assert_eq!(mount(&reqs["root"], "/sys")["options"][3], "rw");
    assert_eq!(
        mount(&reqs["root"], "/sys/fs/cgroup")["options"],
        serde_json::json!([
            "nosuid",
            "noexec",
            "nodev",
            "relatime",
            "rw",
            "nsdelegate",
            "memory_recursiveprot"
        ])
    );
    // The pause container keeps the pod user only.
    let pause = &reqs[SANDBOX_CONTAINER]["OCI"]["Process"]["User"];
    assert_eq!(pause["AdditionalGids"], serde_json::json!([5000]));
    // Kata drops the network and cgroup namespaces and the PID namespace (sandbox_pidns).
    for r in reqs.values() {
        let ns: Vec<&str> = r["OCI"]["Linux"]["Namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["Type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["ipc", "uts", "mount"]);
        assert_eq!(r["sandbox_pidns"], false);
    }
}

#[test]
fn environment_from_config_maps_secrets_and_the_downward_api() {
    let yaml = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {LEVEL: debug, COLOR: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cr3t}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: prod}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api, tier: backend}
    spec:
      containers:
      - name: api
        image: example.com/app:1
        command: [/app, "--level=$(LEVEL)", "--pod=$(POD)", "$$(LEVEL)"]
        tty: true
        resources:
          limits: {cpu: 500m, memory: 128Mi}
        envFrom:
        - configMapRef: {name: settings}
          prefix: CFG_
        env:
        - {name: LEVEL, valueFrom: {configMapKeyRef: {name: settings, key: LEVEL}}}
        - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}
        - {name: MAYBE, valueFrom: {secretKeyRef: {name: creds, key: nope, optional: true}}}
        - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
        - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: CPUS, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
        - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
        - {name: URL, value: "http://$(NS).svc/$(UNKNOWN)"}
"#;
    let (pod, ctx, images) = app_pod(yaml);
    let reqs: BTreeMap<String, Value> = build_container_requests(&pod, &images, &ctx)
        .unwrap()
        .into_iter()
        .collect();
    let p = &reqs["api"]["OCI"]["Process"];
    let env: BTreeSet<String> = strs(&p["Env"]).into_iter().collect();
    let name = &ctx.pod_name;
    for want in [
        "CFG_LEVEL=debug".to_owned(),
        "CFG_COLOR=blue".to_owned(),
        "LEVEL=debug".to_owned(),
        "TOKEN=s3cr3t".to_owned(),
        format!("POD={name}"),
        "NS=prod".to_owned(),
        "TIER=backend".to_owned(),
        format!("IP={}", ctx.pod_ip),
        "CPUS=1".to_owned(),
        "MEM_MI=128".to_owned(),
        "URL=http://prod.svc/$(UNKNOWN)".to_owned(),
        "TERM=xterm".to_owned(),
        format!("HOSTNAME={name}"),
    ] {
        assert!(env.contains(&want), "missing {want} in {env:?}");
    }
    assert!(!env.iter().any(|e| e.starts_with("MAYBE=")));
    assert_eq!(
        strs(&p["Args"]),
        [
            "/app".to_owned(),
            "--level=debug".into(),
            format!("--pod={name}"),
            "$(LEVEL)".into()
        ]
    );
    assert_eq!(p["Terminal"], true);
    assert!(
        Regex::new("^api-[bcdfghjklmnpqrstvwxz2456789]{10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")
            .unwrap()
            .is_match(name)
    );

    // A missing key is the kubelet's CreateContainerConfigError.
    let broken = yaml.replace("key: token", "key: absent");
    let (pod, ctx, images) = app_pod(&broken);
    let err = build_container_requests(&pod, &images, &ctx).unwrap_err();
    assert!(matches!(err, AgentError::Env { .. }), "{err}");
    assert!(
        err.to_string().contains("TOKEN") && err.to_string().contains("absent"),
        "{err}"
    );
}

#[test]
fn volumes_init_containers_and_shared_pid_namespace() {
    let (ctx, reqs) = requests_of(
        r#"apiVersion: v1
kind: Pod
metadata: {name: vols}
spec:
  shareProcessNamespace: true
  securityContext: {fsGroup: 2000}
  initContainers:
  - {name: first, image: example.com/tools:1, volumeMounts: [{name: scratch, mountPath: /scratch}]}
  - {name: second, image: example.com/tools:1}
  containers:
  - name: main
    image: example.com/app:1
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
    - {name: ram, mountPath: /ram}
    - {name: conf, mountPath: /etc/app, readOnly: true}
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: ram, emptyDir: {medium: Memory}}
  - {name: conf, configMap: {name: app-conf}}
"#,
    );
    let names: Vec<&String> = reqs.keys().collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let main = &reqs["main"];
    assert_eq!(main["sandbox_pidns"], true);
    assert_eq!(reqs[SANDBOX_CONTAINER]["sandbox_pidns"], false);
    // The disk emptyDir is one encrypted block device, the same in every container.
    let scratch = mount(main, "/scratch")["source"].clone();
    assert_eq!(mount(&reqs["first"], "/scratch")["source"], scratch);
    let blk: Vec<&Value> = main["storages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["driver"] == "blk")
        .collect();
    assert_eq!(blk.len(), 1);
    assert_eq!(blk[0]["mount_point"], scratch);
    assert_eq!(
        blk[0]["fs_group"],
        serde_json::json!({"group_id": 2000, "group_change_policy": 0})
    );
    assert_eq!(blk[0]["shared"], true);
    // The memory emptyDir is a tmpfs in the VM, owned by the fsGroup.
    assert_eq!(
        mount(main, "/ram")["source"],
        "/run/kata-containers/sandbox/ephemeral/ram"
    );
    let eph = main["storages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["driver"] == "ephemeral")
        .unwrap();
    assert_eq!(eph["options"], serde_json::json!(["fsgid=2000"]));
    assert_eq!(eph["fstype"], "tmpfs");
    // The ConfigMap is copied into the guest and mounted read-only.
    let conf = mount(main, "/etc/app");
    assert_eq!(
        conf["options"],
        serde_json::json!(["rbind", "rprivate", "ro"])
    );
    assert!(conf["source"].as_str().unwrap().ends_with("-app"));
    // The sandbox: pod sysctls defaults, shm storage, DNS from the cluster.
    let (pod, ctx2, _) = app_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: vols}\nspec:\n  containers:\n  - {name: c, image: example.com/tools:1}\n",
    );
    let sb = build_sandbox_request(&pod, &ctx2);
    assert_eq!(sb["sandbox_id"], ctx2.sandbox_id.as_str());
    assert_eq!(
        sb["storages"][0]["mount_point"],
        "/run/kata-containers/sandbox/shm"
    );
    assert!(
        strs(&sb["dns"])
            .iter()
            .any(|l| l == "nameserver 10.96.0.10")
    );
    let pause = &reqs[SANDBOX_CONTAINER]["OCI"];
    assert_eq!(
        pause["Annotations"]["nerdctl/network-namespace"],
        ctx.netns_path.as_str()
    );
    assert_eq!(
        pause["Linux"]["Sysctl"]["net.ipv4.ip_unprivileged_port_start"],
        "0"
    );
}

#[test]
fn host_network_pods_share_the_node_name_and_namespaces() {
    let (ctx, reqs) = requests_of(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: hn}\nspec:\n  hostNetwork: true\n  containers:\n  - {name: c, image: example.com/tools:1}\n",
    );
    assert_eq!(ctx.hostname, ctx.node_name);
    let pause = &reqs[SANDBOX_CONTAINER]["OCI"];
    assert_eq!(pause["Annotations"]["nerdctl/network-namespace"], "");
    assert_eq!(pause["Hostname"], ctx.node_name.as_str());
    let ns: Vec<&str> = pause["Linux"]["Namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["ipc", "mount"]);
    assert_eq!(pause["Linux"]["Sysctl"], serde_json::json!({}));
}

#[test]
fn unresolvable_users_and_commands_are_errors() {
    let (pod, ctx, mut images) = app_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: u}\nspec:\n  containers:\n  - {name: c, image: example.com/app:1}\n",
    );
    let mut no_passwd = images.get("example.com/app:1").unwrap().clone();
    no_passwd.passwd = None;
    images.insert("example.com/app:1", no_passwd);
    let err = build_container_requests(&pod, &images, &ctx).unwrap_err();
    assert!(matches!(err, AgentError::User { .. }), "{err}");
    assert!(err.to_string().contains("\"app\""), "{err}");

    let mut empty = images.get("example.com/tools:1").unwrap().clone();
    empty.cmd.clear();
    images.insert("example.com/tools:1", empty);
    let (pod, ctx, _) = app_pod(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: u}\nspec:\n  containers:\n  - {name: c, image: example.com/tools:1}\n",
    );
    let err = build_container_requests(&pod, &images, &ctx).unwrap_err();
    assert!(matches!(err, AgentError::NoCommand { .. }), "{err}");
}
