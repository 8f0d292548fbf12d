//! Evaluates agent requests against a policy the way the Kata agent does.
//!
//! The agent (`src/agent/policy/src/policy.rs` in kata-containers) runs regorus with Rego v1,
//! non-strict builtin errors, gathered prints, raised policy length limits and the data document
//! `{"pstate": {}}`. For every ttRPC call it evaluates `data.agent_policy.<Request>` on the request
//! serialized from its protobuf struct, so every proto3 field is present. It accepts a bool or
//! `{"allowed": bool, "ops": [JSON patch]}` and applies `ops` to its data when allowed. This module
//! does the same, and first fills sparse requests with proto3 defaults ([`normalize_request`]) so
//! that hand-written requests see what the agent would see.

use std::num::{NonZeroU32, NonZeroUsize};

use serde::Serialize;
use serde_json::{Map, Value, json};

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the agent would run the request.
    pub allowed: bool,
    /// Why a denied request was denied: `<Request>: <what>: <field>: got ..., policy allows ...`.
    /// Empty when allowed.
    pub reasons: Vec<String>,
}

/// Why a policy could not be loaded or a request not evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy text does not parse.
    #[error("the policy does not parse as Rego v1: {message}")]
    Parse {
        /// regorus' message, with line and column.
        message: String,
    },
    /// The policy text declares another package.
    #[error("the policy declares {found}, the Kata agent queries data.agent_policy")]
    Package {
        /// The package found.
        found: String,
    },
    /// The request kind is not an agent request.
    #[error("unknown request kind {kind:?}; valid kinds: {valid}")]
    UnknownKind {
        /// What was asked for.
        kind: String,
        /// Every valid kind, comma separated.
        valid: String,
    },
    /// The request does not have the shape of the agent's protobuf message.
    #[error("{kind}: request field {path}: expected {expected}, got {got}")]
    Request {
        /// The request kind.
        kind: String,
        /// Dotted path of the field.
        path: String,
        /// What the protobuf message has there.
        expected: &'static str,
        /// The JSON found (shortened).
        got: String,
    },
    /// regorus failed while evaluating.
    #[error("{kind}: evaluation failed: {message}")]
    Eval {
        /// The request kind.
        kind: String,
        /// regorus' message.
        message: String,
    },
    /// The rule returned something the agent would reject.
    #[error(
        "{kind}: the policy returned {got}; the Kata agent accepts only a bool or {{\"allowed\": bool, \"ops\": [...]}}"
    )]
    Result {
        /// The request kind.
        kind: String,
        /// The JSON returned (shortened).
        got: String,
    },
    /// The state operations of an allowed request could not be applied.
    #[error("{kind}: the policy's state operations cannot be applied: {source}")]
    State {
        /// The request kind.
        kind: String,
        /// The failed operation.
        source: PatchError,
    },
}

/// A failed RFC 6902 operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {index} ({op} {path}): {reason}")]
pub struct PatchError {
    /// Index of the operation in the patch.
    pub index: usize,
    /// The `op` member.
    pub op: String,
    /// The `path` member.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

// The agent raises regorus' limits (1024 columns, 1 MiB, 20 000 lines) because real env values
// exceed them; these are its values.
const MAX_COL: NonZeroU32 = match NonZeroU32::new(64 * 1024) {
    Some(v) => v,
    None => NonZeroU32::MIN,
};
const MAX_FILE_BYTES: NonZeroUsize = match NonZeroUsize::new(16 * 1024 * 1024) {
    Some(v) => v,
    None => NonZeroUsize::MIN,
};
const MAX_LINES: NonZeroUsize = match NonZeroUsize::new(200_000) {
    Some(v) => v,
    None => NonZeroUsize::MIN,
};

/// A loaded policy and its state, like one Kata agent.
#[derive(Debug)]
pub struct AgentPolicy {
    engine: regorus::Engine,
    data: Value,
}

impl AgentPolicy {
    /// Loads a policy configured like the Kata agent's engine, with empty state.
    pub fn new(policy_text: &str) -> Result<Self, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(false);
        engine.set_strict_builtin_errors(false);
        engine.set_gather_prints(true);
        engine.set_policy_length_config(regorus::PolicyLengthConfig {
            max_col: MAX_COL,
            max_file_bytes: MAX_FILE_BYTES,
            max_lines: MAX_LINES,
        });
        let data = json!({"pstate": {}});
        engine
            .add_data(regorus::Value::from(data.clone()))
            .map_err(|e| PolicyError::Parse {
                message: e.to_string(),
            })?;
        let package = engine
            .add_policy("agent_policy".to_string(), policy_text.to_string())
            .map_err(|e| PolicyError::Parse {
                message: e.to_string(),
            })?;
        if package != "data.agent_policy" {
            return Err(PolicyError::Package { found: package });
        }
        Ok(Self { engine, data })
    }

    /// The policy state (`data.pstate`): pinned sandbox name, namespace, network namespace and
    /// `containers` (container ID → index into `policy_data.containers`).
    pub fn state(&self) -> &Value {
        self.data.get("pstate").unwrap_or(&Value::Null)
    }

    /// Evaluates one agent request. `kind` is the request message name (e.g.
    /// `CreateContainerRequest`); `request` is its JSON form, which may be sparse.
    pub fn evaluate(&mut self, kind: &str, request: &Value) -> Result<Decision, PolicyError> {
        let input = normalize_request(kind, request)?;
        self.engine.set_input(regorus::Value::from(input));
        let result = self.query(kind, kind)?;
        // Prints are for the agent's error message; ours come from why_<Request>.
        let _ = self.engine.take_prints();
        let Some(result) = result else {
            return Ok(Decision {
                allowed: false,
                reasons: vec![format!(
                    "{kind}: the policy has no rule data.agent_policy.{kind} (the Kata agent fails such a request)"
                )],
            });
        };
        let (allowed, ops) = match &result {
            Value::Bool(b) => (*b, None),
            Value::Object(obj) => match obj.get("allowed") {
                Some(Value::Bool(b)) => (*b, obj.get("ops").filter(|o| !o.is_null())),
                _ => return Err(result_error(kind, &result)),
            },
            _ => return Err(result_error(kind, &result)),
        };
        if allowed {
            if let Some(ops) = ops {
                self.apply_ops(kind, ops)?;
            }
            return Ok(Decision {
                allowed: true,
                reasons: Vec::new(),
            });
        }
        let why = self.query(kind, &format!("why_{kind}"))?;
        let _ = self.engine.take_prints();
        let mut reasons: Vec<String> = match why {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => format!("{kind}: {s}"),
                    other => format!("{kind}: {other}"),
                })
                .collect(),
            _ => Vec::new(),
        };
        if reasons.is_empty() {
            reasons.push(format!(
                "{kind}: denied: no rule of the policy allows this request"
            ));
        }
        Ok(Decision {
            allowed: false,
            reasons,
        })
    }

    /// Evaluates `data.agent_policy.<rule>`; `None` when it is undefined.
    fn query(&mut self, kind: &str, rule: &str) -> Result<Option<Value>, PolicyError> {
        let results = self
            .engine
            .eval_query(format!("data.agent_policy.{rule}"), false)
            .map_err(|e| PolicyError::Eval {
                kind: kind.to_string(),
                message: e.to_string(),
            })?;
        let mut values = results
            .result
            .into_iter()
            .flat_map(|r| r.expressions.into_iter().map(|e| e.value));
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(PolicyError::Eval {
                kind: kind.to_string(),
                message: format!("data.agent_policy.{rule} has more than one result"),
            });
        }
        if first == regorus::Value::Undefined {
            return Ok(None);
        }
        serde_json::to_value(&first)
            .map(Some)
            .map_err(|e| PolicyError::Eval {
                kind: kind.to_string(),
                message: format!("result of data.agent_policy.{rule} is not JSON: {e}"),
            })
    }

    fn apply_ops(&mut self, kind: &str, ops: &Value) -> Result<(), PolicyError> {
        let data =
            apply_json_patch(self.data.clone(), ops).map_err(|source| PolicyError::State {
                kind: kind.to_string(),
                source,
            })?;
        if !data.get("pstate").is_some_and(Value::is_object) {
            return Err(PolicyError::State {
                kind: kind.to_string(),
                source: PatchError {
                    index: 0,
                    op: "patch".to_string(),
                    path: "/pstate".to_string(),
                    reason: "the result has no pstate object".to_string(),
                },
            });
        }
        // Like the agent: replace the whole data document.
        self.engine.clear_data();
        self.engine
            .add_data(regorus::Value::from(data.clone()))
            .map_err(|e| PolicyError::Eval {
                kind: kind.to_string(),
                message: format!("cannot store the new state: {e}"),
            })?;
        self.data = data;
        Ok(())
    }
}

fn result_error(kind: &str, got: &Value) -> PolicyError {
    PolicyError::Result {
        kind: kind.to_string(),
        got: short(got),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", s.get(..end).unwrap_or_default())
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Request schemas: the agent's protobuf messages (agent.proto, oci.proto, types.proto of
// kata-containers 4.1.0) as the `protocols` crate serializes them: proto field names (`type`
// becomes `type_`), unset messages `null`, enums as integers. CopyFileRequest is the agent's
// pre-processed `PolicyCopyFileRequest`.

#[derive(Debug, Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    Bytes,
    /// A string enum with its default (`PolicyCopyFileRequest.file_type`).
    Name(&'static str),
    /// `optional` scalar: `null` when unset.
    Opt(&'static Ty),
    /// A oneof, kept as sent.
    Any,
    Msg(&'static [(&'static str, Ty)]),
    Rep(&'static Ty),
    StrMap,
}

use Ty::{Any, Bool, Bytes, Int, Msg, Name, Opt, Rep, Str, StrMap};

const STRS: Ty = Rep(&Str);
const INTS: Ty = Rep(&Int);

const IP_ADDRESS: Ty = Msg(&[("family", Int), ("address", Str), ("mask", Str)]);
const INTERFACE: Ty = Msg(&[
    ("device", Str),
    ("name", Str),
    ("IPAddresses", Rep(&IP_ADDRESS)),
    ("mtu", Int),
    ("hwAddr", Str),
    ("devicePath", Str),
    ("type_", Str),
    ("raw_flags", Int),
]);
const ROUTE: Ty = Msg(&[
    ("dest", Str),
    ("gateway", Str),
    ("device", Str),
    ("source", Str),
    ("scope", Int),
    ("family", Int),
    ("flags", Int),
    ("mtu", Int),
]);
const ARP_NEIGHBOR: Ty = Msg(&[
    ("toIPAddress", IP_ADDRESS),
    ("device", Str),
    ("lladdr", Str),
    ("state", Int),
    ("flags", Int),
]);

const USER: Ty = Msg(&[
    ("UID", Int),
    ("GID", Int),
    ("AdditionalGids", INTS),
    ("Username", Str),
]);
const CAPABILITIES: Ty = Msg(&[
    ("Bounding", STRS),
    ("Effective", STRS),
    ("Inheritable", STRS),
    ("Permitted", STRS),
    ("Ambient", STRS),
]);
const PROCESS: Ty = Msg(&[
    ("Terminal", Bool),
    ("ConsoleSize", Msg(&[("Height", Int), ("Width", Int)])),
    ("User", USER),
    ("Args", STRS),
    ("Env", STRS),
    ("Cwd", Str),
    ("Capabilities", CAPABILITIES),
    (
        "Rlimits",
        Rep(&Msg(&[("Type", Str), ("Hard", Int), ("Soft", Int)])),
    ),
    ("NoNewPrivileges", Bool),
    ("ApparmorProfile", Str),
    ("OOMScoreAdj", Int),
    ("SelinuxLabel", Str),
]);
const HOOK: Ty = Msg(&[
    ("Path", Str),
    ("Args", STRS),
    ("Env", STRS),
    ("Timeout", Int),
]);
const HOOKS: Ty = Msg(&[
    ("Prestart", Rep(&HOOK)),
    ("Poststart", Rep(&HOOK)),
    ("Poststop", Rep(&HOOK)),
    ("CreateRuntime", Rep(&HOOK)),
    ("CreateContainer", Rep(&HOOK)),
    ("StartContainer", Rep(&HOOK)),
]);
const ID_MAPPING: Ty = Msg(&[("HostID", Int), ("ContainerID", Int), ("Size", Int)]);
const THROTTLE: Ty = Msg(&[("Major", Int), ("Minor", Int), ("Rate", Int)]);
const RESOURCES: Ty = Msg(&[
    (
        "Devices",
        Rep(&Msg(&[
            ("Allow", Bool),
            ("Type", Str),
            ("Major", Int),
            ("Minor", Int),
            ("Access", Str),
        ])),
    ),
    (
        "Memory",
        Msg(&[
            ("Limit", Int),
            ("Reservation", Int),
            ("Swap", Int),
            ("Kernel", Int),
            ("KernelTCP", Int),
            ("Swappiness", Int),
            ("DisableOOMKiller", Bool),
        ]),
    ),
    (
        "CPU",
        Msg(&[
            ("Shares", Int),
            ("Quota", Int),
            ("Period", Int),
            ("RealtimeRuntime", Int),
            ("RealtimePeriod", Int),
            ("Cpus", Str),
            ("Mems", Str),
        ]),
    ),
    ("Pids", Msg(&[("Limit", Int)])),
    (
        "BlockIO",
        Msg(&[
            ("Weight", Int),
            ("LeafWeight", Int),
            (
                "WeightDevice",
                Rep(&Msg(&[
                    ("Major", Int),
                    ("Minor", Int),
                    ("Weight", Int),
                    ("LeafWeight", Int),
                ])),
            ),
            ("ThrottleReadBpsDevice", Rep(&THROTTLE)),
            ("ThrottleWriteBpsDevice", Rep(&THROTTLE)),
            ("ThrottleReadIOPSDevice", Rep(&THROTTLE)),
            ("ThrottleWriteIOPSDevice", Rep(&THROTTLE)),
        ]),
    ),
    (
        "HugepageLimits",
        Rep(&Msg(&[("Pagesize", Str), ("Limit", Int)])),
    ),
    (
        "Network",
        Msg(&[
            ("ClassID", Int),
            ("Priorities", Rep(&Msg(&[("Name", Str), ("Priority", Int)]))),
        ]),
    ),
]);
const SECCOMP: Ty = Msg(&[
    ("DefaultAction", Str),
    ("Architectures", STRS),
    ("Flags", STRS),
    (
        "Syscalls",
        Rep(&Msg(&[
            ("Names", STRS),
            ("Action", Str),
            ("ErrnoRet", Any),
            (
                "Args",
                Rep(&Msg(&[
                    ("Index", Int),
                    ("Value", Int),
                    ("ValueTwo", Int),
                    ("Op", Str),
                ])),
            ),
        ])),
    ),
]);
const LINUX: Ty = Msg(&[
    ("UIDMappings", Rep(&ID_MAPPING)),
    ("GIDMappings", Rep(&ID_MAPPING)),
    ("Sysctl", StrMap),
    ("Resources", RESOURCES),
    ("CgroupsPath", Str),
    ("Namespaces", Rep(&Msg(&[("Type", Str), ("Path", Str)]))),
    (
        "Devices",
        Rep(&Msg(&[
            ("Path", Str),
            ("Type", Str),
            ("Major", Int),
            ("Minor", Int),
            ("FileMode", Int),
            ("UID", Int),
            ("GID", Int),
        ])),
    ),
    ("Seccomp", SECCOMP),
    ("RootfsPropagation", Str),
    ("MaskedPaths", STRS),
    ("ReadonlyPaths", STRS),
    ("MountLabel", Str),
    ("IntelRdt", Msg(&[("L3CacheSchema", Str)])),
]);
const SPEC: Ty = Msg(&[
    ("Version", Str),
    ("Process", PROCESS),
    ("Root", Msg(&[("Path", Str), ("Readonly", Bool)])),
    ("Hostname", Str),
    (
        "Mounts",
        Rep(&Msg(&[
            ("destination", Str),
            ("source", Str),
            ("type_", Str),
            ("options", STRS),
        ])),
    ),
    ("Hooks", HOOKS),
    ("Annotations", StrMap),
    ("Linux", LINUX),
    ("Solaris", Msg(&[("dummy", Str)])),
    ("Windows", Msg(&[("dummy", Str)])),
]);

const STRING_USER: Ty = Msg(&[("uid", Str), ("gid", Str), ("additionalGids", STRS)]);
const STORAGE: Ty = Msg(&[
    ("driver", Str),
    ("driver_options", STRS),
    ("source", Str),
    ("fstype", Str),
    ("options", STRS),
    ("mount_point", Str),
    (
        "fs_group",
        Msg(&[("group_id", Int), ("group_change_policy", Int)]),
    ),
    ("shared", Bool),
]);
const DEVICE: Ty = Msg(&[
    ("id", Str),
    ("type_", Str),
    ("vm_path", Str),
    ("container_path", Str),
    ("options", STRS),
]);
const SHARED_MOUNT: Ty = Msg(&[
    ("name", Str),
    ("src_ctr", Str),
    ("src_path", Str),
    ("dst_ctr", Str),
    ("dst_path", Str),
]);
const CONTAINER_ID: Ty = Msg(&[("container_id", Str)]);
const PROCESS_ID: Ty = Msg(&[("container_id", Str), ("exec_id", Str)]);
const EMPTY: Ty = Msg(&[]);

/// Every request kind the Kata agent checks against its policy, with its message schema.
const REQUESTS: &[(&str, Ty)] = &[
    (
        "AddARPNeighborsRequest",
        Msg(&[("neighbors", Msg(&[("ARPNeighbors", Rep(&ARP_NEIGHBOR))]))]),
    ),
    ("AddSwapPathRequest", Msg(&[("path", Str)])),
    ("AddSwapRequest", Msg(&[("PCIPath", INTS)])),
    ("CloseStdinRequest", PROCESS_ID),
    (
        "CopyFileRequest",
        Msg(&[
            ("path", Str),
            ("file_type", Name("Unknown")),
            ("symlink_target", Opt(&Str)),
            ("file_size", Int),
            ("file_mode", Int),
            ("dir_mode", Int),
            ("uid", Int),
            ("gid", Int),
            ("offset", Int),
        ]),
    ),
    (
        "CreateContainerRequest",
        Msg(&[
            ("container_id", Str),
            ("exec_id", Str),
            ("string_user", STRING_USER),
            ("devices", Rep(&DEVICE)),
            ("storages", Rep(&STORAGE)),
            ("OCI", SPEC),
            ("sandbox_pidns", Bool),
            ("shared_mounts", Rep(&SHARED_MOUNT)),
            ("stdin_port", Int),
            ("stdout_port", Int),
            ("stderr_port", Int),
        ]),
    ),
    (
        "CreateSandboxRequest",
        Msg(&[
            ("hostname", Str),
            ("dns", STRS),
            ("storages", Rep(&STORAGE)),
            ("sandbox_pidns", Bool),
            ("sandbox_id", Str),
            ("guest_hook_path", Str),
            (
                "kernel_modules",
                Rep(&Msg(&[("name", Str), ("parameters", STRS)])),
            ),
        ]),
    ),
    ("DestroySandboxRequest", EMPTY),
    (
        "ExecProcessRequest",
        Msg(&[
            ("container_id", Str),
            ("exec_id", Str),
            ("string_user", STRING_USER),
            ("process", PROCESS),
            ("stdin_port", Int),
            ("stdout_port", Int),
            ("stderr_port", Int),
        ]),
    ),
    (
        "GetDiagnosticDataRequest",
        Msg(&[("log_type", Str), ("container_id", Str)]),
    ),
    ("GetIPTablesRequest", Msg(&[("is_ipv6", Bool)])),
    ("GetMetricsRequest", EMPTY),
    ("GetOOMEventRequest", EMPTY),
    (
        "GuestDetailsRequest",
        Msg(&[("mem_block_size", Bool), ("mem_hotplug_probe", Bool)]),
    ),
    ("ListInterfacesRequest", EMPTY),
    ("ListRoutesRequest", EMPTY),
    (
        "MemAgentCompactConfig",
        Msg(&[
            ("disabled", Opt(&Bool)),
            ("period_secs", Opt(&Int)),
            ("period_psi_percent_limit", Opt(&Int)),
            ("compact_psi_percent_limit", Opt(&Int)),
            ("compact_sec_max", Opt(&Int)),
            ("compact_order", Opt(&Int)),
            ("compact_threshold", Opt(&Int)),
            ("compact_force_times", Opt(&Int)),
        ]),
    ),
    (
        "MemAgentMemcgConfig",
        Msg(&[
            ("disabled", Opt(&Bool)),
            ("swap", Opt(&Bool)),
            ("swappiness_max", Opt(&Int)),
            ("period_secs", Opt(&Int)),
            ("period_psi_percent_limit", Opt(&Int)),
            ("eviction_psi_percent_limit", Opt(&Int)),
            ("eviction_run_aging_count_min", Opt(&Int)),
        ]),
    ),
    (
        "MemHotplugByProbeRequest",
        Msg(&[("memHotplugProbeAddr", INTS)]),
    ),
    (
        "OnlineCPUMemRequest",
        Msg(&[("wait", Bool), ("nb_cpus", Int), ("cpu_only", Bool)]),
    ),
    ("PauseContainerRequest", CONTAINER_ID),
    (
        "ReadStreamRequest",
        Msg(&[("container_id", Str), ("exec_id", Str), ("len", Int)]),
    ),
    (
        "RemoveContainerRequest",
        Msg(&[("container_id", Str), ("timeout", Int)]),
    ),
    ("RemoveStaleVirtiofsShareMountsRequest", EMPTY),
    ("ReseedRandomDevRequest", Msg(&[("data", Bytes)])),
    (
        "ResizeVolumeRequest",
        Msg(&[("volume_guest_path", Str), ("size", Int)]),
    ),
    ("ResumeContainerRequest", CONTAINER_ID),
    (
        "SetGuestDateTimeRequest",
        Msg(&[("Sec", Int), ("Usec", Int)]),
    ),
    (
        "SetIPTablesRequest",
        Msg(&[("is_ipv6", Bool), ("data", Bytes)]),
    ),
    ("SetPolicyRequest", Msg(&[("policy", Str)])),
    (
        "SignalProcessRequest",
        Msg(&[("container_id", Str), ("exec_id", Str), ("signal", Int)]),
    ),
    ("StartContainerRequest", CONTAINER_ID),
    ("StatsContainerRequest", CONTAINER_ID),
    (
        "TtyWinResizeRequest",
        Msg(&[
            ("container_id", Str),
            ("exec_id", Str),
            ("row", Int),
            ("column", Int),
        ]),
    ),
    (
        "UpdateContainerRequest",
        Msg(&[("container_id", Str), ("resources", RESOURCES)]),
    ),
    (
        "UpdateEphemeralMountsRequest",
        Msg(&[("storages", Rep(&STORAGE))]),
    ),
    ("UpdateInterfaceRequest", Msg(&[("interface", INTERFACE)])),
    (
        "UpdateRoutesRequest",
        Msg(&[("routes", Msg(&[("Routes", Rep(&ROUTE))]))]),
    ),
    ("VolumeStatsRequest", Msg(&[("volume_guest_path", Str)])),
    ("WaitProcessRequest", PROCESS_ID),
    (
        "WriteStreamRequest",
        Msg(&[("container_id", Str), ("exec_id", Str), ("data", Bytes)]),
    ),
];

/// Every request kind the agent checks, sorted.
pub fn request_kinds() -> impl Iterator<Item = &'static str> {
    REQUESTS.iter().map(|(name, _)| *name)
}

/// The request as the agent would serialize it: every field of the protobuf message present
/// (missing scalars get their proto3 default, missing messages `null`, missing lists `[]`),
/// unknown keys dropped. Fails on an unknown kind or a value of the wrong type.
pub fn normalize_request(kind: &str, request: &Value) -> Result<Value, PolicyError> {
    let Some((_, ty)) = REQUESTS.iter().find(|(name, _)| *name == kind) else {
        return Err(PolicyError::UnknownKind {
            kind: kind.to_string(),
            valid: request_kinds().collect::<Vec<_>>().join(", "),
        });
    };
    if !request.is_object() {
        return Err(PolicyError::Request {
            kind: kind.to_string(),
            path: "(request)".to_string(),
            expected: "a JSON object",
            got: short(request),
        });
    }
    normalize(kind, ty, request, "")
}

fn default_of(ty: &Ty) -> Value {
    match ty {
        Str => Value::String(String::new()),
        Int => json!(0),
        Bool => Value::Bool(false),
        Name(d) => Value::String((*d).to_string()),
        Bytes | Rep(_) => Value::Array(Vec::new()),
        StrMap => Value::Object(Map::new()),
        Opt(_) | Any | Msg(_) => Value::Null,
    }
}

fn normalize(kind: &str, ty: &Ty, value: &Value, path: &str) -> Result<Value, PolicyError> {
    let wrong = |expected: &'static str| PolicyError::Request {
        kind: kind.to_string(),
        path: if path.is_empty() {
            "(request)".to_string()
        } else {
            path.to_string()
        },
        expected,
        got: short(value),
    };
    if value.is_null() {
        return Ok(default_of(ty));
    }
    match ty {
        Str | Name(_) => value
            .is_string()
            .then(|| value.clone())
            .ok_or_else(|| wrong("a string")),
        Int => (value.is_i64() || value.is_u64())
            .then(|| value.clone())
            .ok_or_else(|| wrong("an integer")),
        Bool => value
            .is_boolean()
            .then(|| value.clone())
            .ok_or_else(|| wrong("a bool")),
        Any => Ok(value.clone()),
        Opt(inner) => normalize(kind, inner, value, path),
        Bytes => match value {
            Value::Array(items) if items.iter().all(|b| b.as_u64().is_some_and(|b| b <= 255)) => {
                Ok(value.clone())
            }
            _ => Err(wrong("an array of bytes")),
        },
        StrMap => match value {
            Value::Object(map) if map.values().all(Value::is_string) => Ok(value.clone()),
            _ => Err(wrong("an object of strings")),
        },
        Rep(inner) => {
            let Value::Array(items) = value else {
                return Err(wrong("an array"));
            };
            items
                .iter()
                .enumerate()
                .map(|(i, item)| normalize(kind, inner, item, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        Msg(fields) => {
            let Value::Object(map) = value else {
                return Err(wrong("an object"));
            };
            let mut out = Map::new();
            for (name, field_ty) in fields.iter() {
                let field_path = if path.is_empty() {
                    (*name).to_string()
                } else {
                    format!("{path}.{name}")
                };
                let v = match map.get(*name) {
                    Some(v) => normalize(kind, field_ty, v, &field_path)?,
                    None => default_of(field_ty),
                };
                out.insert((*name).to_string(), v);
            }
            for key in map.keys() {
                if !fields.iter().any(|(name, _)| name == key) {
                    tracing::debug!(
                        kind,
                        path,
                        key,
                        "dropping a field the agent's message does not have"
                    );
                }
            }
            Ok(Value::Object(out))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 6902 JSON Patch (add, remove, replace, move, copy, test), for the policy state and for
// settings drop-ins.

/// Applies an RFC 6902 patch (a JSON array of operations) to `doc`.
pub fn apply_json_patch(mut doc: Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError {
            index: 0,
            op: String::new(),
            path: String::new(),
            reason: "a patch must be a JSON array of operations".to_string(),
        });
    };
    for (index, op) in ops.iter().enumerate() {
        let name = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let fail = |reason: String| PatchError {
            index,
            op: name.to_string(),
            path: path.to_string(),
            reason,
        };
        if op.get("path").and_then(Value::as_str).is_none() {
            return Err(fail("missing \"path\"".to_string()));
        }
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| fail("missing \"value\"".to_string()))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| fail("missing \"from\"".to_string()))
        };
        match name {
            "add" => add(&mut doc, path, value()?).map_err(fail)?,
            "remove" => {
                remove(&mut doc, path).map_err(fail)?;
            }
            "replace" => {
                let v = value()?;
                *pointer_mut(&mut doc, path).map_err(fail)? = v;
            }
            "move" => {
                let from = from()?;
                if path.starts_with(&format!("{from}/")) {
                    return Err(fail("cannot move a value into itself".to_string()));
                }
                let v = remove(&mut doc, from).map_err(fail)?;
                add(&mut doc, path, v).map_err(fail)?;
            }
            "copy" => {
                let v = pointer_mut(&mut doc, from()?).map_err(fail)?.clone();
                add(&mut doc, path, v).map_err(fail)?;
            }
            "test" => {
                let v = value()?;
                if *pointer_mut(&mut doc, path).map_err(fail)? != v {
                    return Err(fail("test failed".to_string()));
                }
            }
            other => return Err(fail(format!("unknown op {other:?}"))),
        }
    }
    Ok(doc)
}

/// Splits a JSON pointer into its unescaped parent tokens and last token.
fn split_pointer(path: &str) -> Result<(Vec<String>, Option<String>), String> {
    if path.is_empty() {
        return Ok((Vec::new(), None));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("a JSON pointer must start with /".to_string());
    };
    let mut tokens: Vec<String> = rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let last = tokens.pop();
    Ok((tokens, last))
}

fn walk<'a>(mut cur: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    for t in tokens {
        cur = match cur {
            Value::Object(map) => map.get_mut(t).ok_or_else(|| format!("no member {t:?}"))?,
            Value::Array(items) => {
                let i: usize = t
                    .parse()
                    .map_err(|_| format!("{t:?} is not an array index"))?;
                items
                    .get_mut(i)
                    .ok_or_else(|| format!("index {i} is out of range"))?
            }
            _ => return Err(format!("cannot descend into a scalar at {t:?}")),
        };
    }
    Ok(cur)
}

fn pointer_mut<'a>(doc: &'a mut Value, path: &str) -> Result<&'a mut Value, String> {
    let (mut tokens, last) = split_pointer(path)?;
    tokens.extend(last);
    walk(doc, &tokens)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = split_pointer(path)?;
    let Some(last) = last else {
        *doc = value;
        return Ok(());
    };
    match walk(doc, &parent)? {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            let i = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("{last:?} is not an array index"))?
            };
            if i > items.len() {
                return Err(format!("index {i} is out of range"));
            }
            items.insert(i, value);
            Ok(())
        }
        _ => Err("the parent is not an object or array".to_string()),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let Some(last) = last else {
        return Err("cannot remove the whole document".to_string());
    };
    match walk(doc, &parent)? {
        Value::Object(map) => map
            .remove(&last)
            .ok_or_else(|| format!("no member {last:?}")),
        Value::Array(items) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("{last:?} is not an array index"))?;
            if i >= items.len() {
                return Err(format!("index {i} is out of range"));
            }
            Ok(items.remove(i))
        }
        _ => Err("the parent is not an object or array".to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn patch_add_remove_replace_with_escapes() {
        let doc = json!({"pstate": {}});
        let doc = apply_json_patch(
            doc,
            &json!([
                {"op": "add", "path": "/pstate/containers", "value": {"a/b": 1}},
                {"op": "add", "path": "/pstate/containers/c~0d", "value": 2},
                {"op": "replace", "path": "/pstate/containers/a~1b", "value": 3},
                {"op": "add", "path": "/pstate/list", "value": [1]},
                {"op": "add", "path": "/pstate/list/-", "value": 2},
                {"op": "test", "path": "/pstate/list/1", "value": 2},
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"pstate": {"containers": {"a/b": 3, "c~d": 2}, "list": [1, 2]}})
        );
        let doc = apply_json_patch(
            doc,
            &json!([{"op": "remove", "path": "/pstate/containers/a~1b"}]),
        )
        .unwrap();
        assert_eq!(doc["pstate"]["containers"], json!({"c~d": 2}));
        let err =
            apply_json_patch(doc, &json!([{"op": "remove", "path": "/pstate/nope"}])).unwrap_err();
        assert_eq!(err.index, 0);
        assert!(err.to_string().contains("/pstate/nope"), "{err}");
    }

    #[test]
    fn normalize_fills_proto3_defaults_and_drops_unknown_keys() {
        let r = normalize_request(
            "UpdateInterfaceRequest",
            &json!({"interface": {"name": "eth0", "pciPath": "", "IPAddresses": [{"address": "10.0.0.1"}]}}),
        )
        .unwrap();
        assert_eq!(r["interface"]["raw_flags"], json!(0));
        assert_eq!(
            r["interface"]["IPAddresses"][0],
            json!({"family": 0, "address": "10.0.0.1", "mask": ""})
        );
        assert!(r["interface"].get("pciPath").is_none());

        let r = normalize_request(
            "CreateContainerRequest",
            &json!({"OCI": {"Process": {"Args": ["a"]}}}),
        )
        .unwrap();
        assert_eq!(r["OCI"]["Process"]["Env"], json!([]));
        assert_eq!(r["OCI"]["Process"]["User"], Value::Null);
        assert_eq!(r["OCI"]["Hooks"], Value::Null);
        assert_eq!(r["OCI"]["Linux"], Value::Null);
        assert_eq!(r["shared_mounts"], json!([]));
        assert_eq!(r["string_user"], Value::Null);
    }

    #[test]
    fn normalize_rejects_wrong_types_and_unknown_kinds() {
        let err = normalize_request(
            "CreateContainerRequest",
            &json!({"OCI": {"Process": {"Args": "sh"}}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("OCI.Process.Args"), "{err}");
        let err = normalize_request("NoSuchRequest", &json!({})).unwrap_err();
        assert!(err.to_string().contains("CreateContainerRequest"), "{err}");
    }

    #[test]
    fn every_kind_has_a_rule_in_our_rules() {
        let rules = crate::render::RULES;
        for kind in request_kinds() {
            assert!(
                rules.contains(&format!("default {kind} :=")),
                "{kind} has no default in rules.rego"
            );
        }
    }
}
