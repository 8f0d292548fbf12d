# Nunki's Kata agent policy rules (package agent_policy, Rego v1).
# The generator appends `policy_data := {...}` (containers, common, sandbox, request_defaults,
# devices, cluster_config). Every request kind the agent knows has an entry point here. A request
# that Kata does not need is denied. A denied request explains itself: why_<Request> lists the
# failed fields, and is printed so that the agent's error message carries the reasons.
package agent_policy

default AllowRequestsFailingPolicy := false

# Needed by Kata at runtime; they reveal nothing and change no container.
default DestroySandboxRequest := true
default GetOOMEventRequest := true
default GuestDetailsRequest := true
default OnlineCPUMemRequest := true
default RemoveStaleVirtiofsShareMountsRequest := true
default SignalProcessRequest := true
default StartContainerRequest := true
default StatsContainerRequest := true
default TtyWinResizeRequest := true
default WaitProcessRequest := true

# Denied unless a rule below allows them.
default AddARPNeighborsRequest := false
default AddSwapPathRequest := false
default AddSwapRequest := false
default CloseStdinRequest := false
default CopyFileRequest := false
default CreateContainerRequest := false
default CreateSandboxRequest := false
default ExecProcessRequest := false
default GetDiagnosticDataRequest := false
default GetIPTablesRequest := false
default GetMetricsRequest := false
default ListInterfacesRequest := false
default ListRoutesRequest := false
default MemAgentCompactConfig := false
default MemAgentMemcgConfig := false
default MemHotplugByProbeRequest := false
default PauseContainerRequest := false
default ReadStreamRequest := false
default RemoveContainerRequest := false
default ReseedRandomDevRequest := false
default ResizeVolumeRequest := false
default ResumeContainerRequest := false
default SetGuestDateTimeRequest := false
default SetIPTablesRequest := false
default SetPolicyRequest := false
default UpdateContainerRequest := false
default UpdateEphemeralMountsRequest := false
default UpdateInterfaceRequest := false
default UpdateRoutesRequest := false
default VolumeStatsRequest := false
default WriteStreamRequest := false

why_SetPolicyRequest contains "the policy is fixed at launch (its hash is in the TEE evidence) and cannot be replaced"

######## helpers

C := policy_data.common
RD := policy_data.request_defaults
K_SNAME := "io.kubernetes.cri.sandbox-name"
K_SNS := "io.kubernetes.cri.sandbox-namespace"
K_CNAME := "io.kubernetes.cri.container-name"
K_CTYPE := "io.kubernetes.cri.container-type"
K_IMAGE := "io.kubernetes.cri.image-name"
K_LOG := "io.kubernetes.cri.sandbox-log-directory"
K_NETNS := "nerdctl/network-namespace"

obj(x) := x if is_object(x) else := {}
arr(x) := x if is_array(x) else := []
has(o, k) if _ = o[k]
j(x) := json.marshal(x)
gw(got, want) := sprintf("got %s, policy allows %s", [j(got), j(want)])
say(msgs) if print(concat("; ", sort(msgs)))
empty(x) if x == null
empty(x) if x == ""
empty(x) if x == []
empty(x) if x == {}
esc(s) := replace(s, ".", "\\.")
no_dotdot(p) if not regex.match(`(^|/)\.\.($|/)`, p)

# Policy text macros, expanded into a regex. Order matters: sfprefix and root_path contain others.
xp(s, bundle, sid) := replace(replace(replace(replace(replace(replace(s, "$(sfprefix)", C.sfprefix), "$(root_path)", C.root_path), "$(cpath)", C.cpath), "$(spath)", C.spath), "$(bundle-id)", bundle), "$(sandbox-id)", sid)

# Literal equality or a full regex match (policy patterns never match a mere substring).
fm(pat, s) if pat == s
fm(pat, s) if regex.match(concat("", ["^(?:", pat, ")$"]), s)

kv(s) := [substring(s, 0, n), substring(s, n + 1, -1)] if {
	n := indexof(s, "=")
	n >= 0
}

# Policy state (data.pstate, patched by the agent with our ops): sandbox_name, namespace,
# network_namespace, and containers: container_id -> index into policy_data.containers.
S := obj(object.get(data, "pstate", {}))
SC := obj(object.get(S, "containers", {}))
ptr(k) := replace(replace(k, "~", "~0"), "/", "~1")
pin_ok(k, v) if not has(S, k)
pin_ok(k, v) if S[k] == v
pin(k, v) := [] if S[k] == v
else := [{"op": "add", "path": concat("/", ["/pstate", ptr(k)]), "value": v}]
pin_msg(k, v) := sprintf("state: %s was pinned to %s by an earlier request, got %s", [k, j(S[k]), j(v)])

######## CreateContainerRequest

CreateContainerRequest := {"allowed": true, "ops": cc_ops} if cc_allowed
CreateContainerRequest := false if {
	not cc_allowed
	say(why_CreateContainerRequest)
}

cc_allowed if {
	every c in ci_checks { ci_ok(c) }
	cc_fits != set()
}

cc_fits := {i | some i in cc_cands; every c in cc_checks { cc_ok(i, c) }}
cc_idx := min(cc_fits)
cc_ops := array.concat(array.concat(pin("sandbox_name", cc_sname), pin("namespace", cc_sns)), array.concat(pin("network_namespace", cc_netns), cid_op(cc_cid, cc_idx)))
cid_op(id, i) := [] if SC[id] == i
else := [{"op": "add", "path": concat("/", ["/pstate/containers", ptr(id)]), "value": i}] if has(S, "containers")
else := [{"op": "add", "path": "/pstate/containers", "value": {id: i}}]

cc_oci := obj(object.get(input, "OCI", null))
cc_proc := obj(object.get(cc_oci, "Process", null))
cc_user := obj(object.get(cc_proc, "User", null))
cc_linux := obj(object.get(cc_oci, "Linux", null))
cc_res := obj(object.get(cc_linux, "Resources", null))
cc_anno := obj(object.get(cc_oci, "Annotations", null))
cc_root := obj(object.get(cc_oci, "Root", null))
cc_cid := input.container_id
cc_type := object.get(cc_anno, K_CTYPE, "")
cc_name := object.get(cc_anno, K_CNAME, "")
cc_sname := object.get(cc_anno, K_SNAME, "")
cc_sns := object.get(cc_anno, K_SNS, "")
cc_sid := object.get(cc_anno, "io.kubernetes.cri.sandbox-id", "")
cc_mounts := cc_oci.Mounts
cc_storages := input.storages
cc_pull := [s | some s in cc_storages; s.driver == "image_guest_pull"]
cc_devs := input.devices
cc_netns_list := [n.Path | some n in cc_linux.Namespaces; n.Type == "network"]
cc_netns := cc_netns_list[0] if count(cc_netns_list) == 1 else := ""
cc_who := sprintf("container %s", [j(cc_name)]) if cc_type == "container" else := "sandbox (pause) container" if cc_type == "sandbox" else := sprintf("container of type %s", [j(cc_type)])

# Fields that must be empty: each would let the host run code or change isolation in the guest.
cc_empty := {
	"shared_mounts": input.shared_mounts,
	"string_user": input.string_user,
	"OCI.Hooks": cc_oci.Hooks,
	"OCI.Solaris": cc_oci.Solaris,
	"OCI.Windows": cc_oci.Windows,
	"OCI.Linux.UIDMappings": cc_linux.UIDMappings,
	"OCI.Linux.GIDMappings": cc_linux.GIDMappings,
	"OCI.Linux.MountLabel": cc_linux.MountLabel,
	"OCI.Linux.RootfsPropagation": cc_linux.RootfsPropagation,
	"OCI.Linux.IntelRdt": cc_linux.IntelRdt,
	"OCI.Linux.Seccomp": cc_linux.Seccomp,
	"OCI.Linux.Resources.Devices": object.get(cc_res, "Devices", []),
	"OCI.Linux.Resources.BlockIO": object.get(cc_res, "BlockIO", null),
	"OCI.Linux.Resources.Network": object.get(cc_res, "Network", null),
	"OCI.Linux.Resources.Pids": object.get(cc_res, "Pids", null),
	"OCI.Process.SelinuxLabel": cc_proc.SelinuxLabel,
	"OCI.Process.User.Username": cc_user.Username,
}

# Candidates: the policy container of the same type (and, for workloads, the same name).
cc_cands contains i if {
	some i, p in policy_data.containers
	object.get(obj(p.OCI.Annotations), K_CTYPE, "") == "sandbox"
	cc_type == "sandbox"
}

cc_cands contains i if {
	some i, p in policy_data.containers
	a := obj(p.OCI.Annotations)
	object.get(a, K_CTYPE, "") == "container"
	cc_type == "container"
	object.get(a, K_CNAME, "") == cc_name
}

ci_checks := ["OCI", "empty fields", "candidate", "state: sandbox_name", "state: namespace", "state: network_namespace"]

ci_ok("OCI") if {
	is_object(input.OCI)
	is_object(input.OCI.Process)
	is_object(input.OCI.Process.User)
	is_object(input.OCI.Root)
	is_object(input.OCI.Linux)
}

ci_ok("empty fields") if {
	is_object(cc_empty)
	every _, v in cc_empty { empty(v) }
}
ci_ok("candidate") if cc_cands != set()
ci_ok("state: sandbox_name") if pin_ok("sandbox_name", cc_sname)
ci_ok("state: namespace") if pin_ok("namespace", cc_sns)
ci_ok("state: network_namespace") if {
	count(cc_netns_list) <= 1
	pin_ok("network_namespace", cc_netns)
}

ci_msgs contains "OCI: OCI, OCI.Process, OCI.Process.User, OCI.Root and OCI.Linux must be set" if not ci_ok("OCI")
ci_msgs contains sprintf("%s: must be empty, got %s", [k, j(v)]) if {
	some k, v in cc_empty
	not empty(v)
}

ci_msgs contains sprintf("%s: no such container in the policy (policy has %s)", [cc_who, j(sort(names))]) if {
	not ci_ok("candidate")
	names := {sprintf("%s:%s", [object.get(a, K_CTYPE, "?"), object.get(a, K_CNAME, "")]) | some p in policy_data.containers; a := obj(p.OCI.Annotations)}
}

ci_msgs contains pin_msg("sandbox_name", cc_sname) if not ci_ok("state: sandbox_name")
ci_msgs contains pin_msg("namespace", cc_sns) if not ci_ok("state: namespace")
ci_msgs contains sprintf("OCI.Linux.Namespaces: at most one network namespace, got %s", [j(cc_netns_list)]) if count(cc_netns_list) > 1
ci_msgs contains pin_msg("network_namespace", cc_netns) if not pin_ok("network_namespace", cc_netns)

why_CreateContainerRequest contains m if some m in ci_msgs
why_CreateContainerRequest contains sprintf("%s: %s: %s", [cc_who, c, d]) if {
	some i in cc_cands
	some c in cc_checks
	not cc_ok(i, c)
	d := cc_detail(i, c)
}

cc_detail(i, c) := d if d := cc_msg(i, c) else := "does not match the policy"

cc_checks := [
	"sandbox_pidns", "OCI.Version", "OCI.Root.Readonly", "OCI.Root.Path", "OCI.Annotations",
	"io.katacontainers.pkg.oci.container_type", "io.kubernetes.cri.sandbox-name",
	"io.kubernetes.cri.sandbox-namespace", "io.kubernetes.cri.sandbox-id", "io.kubernetes.cri.container-name",
	"nerdctl/network-namespace", "io.kubernetes.cri.sandbox-log-directory", "image", "OCI.Mounts",
	"storages", "devices", "OCI.Linux.Namespaces", "OCI.Linux.MaskedPaths", "OCI.Linux.ReadonlyPaths",
	"OCI.Linux.Devices", "OCI.Linux.Sysctl", "OCI.Process.Args", "OCI.Process.Cwd",
	"OCI.Process.NoNewPrivileges", "OCI.Process.Terminal", "OCI.Process.User.UID", "OCI.Process.User.GID",
	"OCI.Process.User.AdditionalGids", "OCI.Process.Env", "OCI.Process.Capabilities", "state: container_id",
]

# Policy side of candidate i.
P(i) := policy_data.containers[i]
PO(i) := P(i).OCI
PA(i) := obj(PO(i).Annotations)
PP(i) := obj(PO(i).Process)
PL(i) := obj(PO(i).Linux)

# The bundle ID, taken from the input root path where the policy has $(bundle-id).
bundle(i) := m[0][1] if {
	pat := replace(replace(object.get(obj(PO(i).Root), "Path", ""), "$(root_path)", C.root_path), "$(bundle-id)", "([0-9a-f]{64}|[a-z0-9][a-z0-9.-]*)")
	m := regex.find_all_string_submatch_n(concat("", ["^", pat, "$"]), cc_root.Path, 1)
}

cx(i, s) := xp(s, esc(bundle(i)), cc_sid)

# Fields that must equal the policy's: candidate -> name -> [input, policy].
cc_eq[i] := {
	"sandbox_pidns": [input.sandbox_pidns, object.get(P(i), "sandbox_pidns", false)],
	"OCI.Version": [cc_oci.Version, PO(i).Version],
	"OCI.Root.Readonly": [cc_root.Readonly, object.get(PO(i).Root, "Readonly", false)],
	"OCI.Process.Cwd": [cc_proc.Cwd, object.get(PP(i), "Cwd", "")],
	"OCI.Process.NoNewPrivileges": [cc_proc.NoNewPrivileges, object.get(PP(i), "NoNewPrivileges", false)],
	"OCI.Process.Terminal": [cc_proc.Terminal, object.get(PP(i), "Terminal", false)],
	"OCI.Process.User.UID": [object.get(cc_user, "UID", null), PP(i).User.UID],
	"OCI.Process.User.GID": [object.get(cc_user, "GID", null), PP(i).User.GID],
} if some i in cc_cands

cc_ok(i, c) if {
	[got, want] := cc_eq[i][c]
	got == want
}

cc_msg(i, c) := gw(got, want) if [got, want] := cc_eq[i][c]
cc_ok(i, "OCI.Root.Path") if _ = bundle(i)
cc_msg(i, "OCI.Root.Path") := sprintf("got %s, policy allows %s", [j(cc_root.Path), j(PO(i).Root.Path)])

# Annotations: CRI ones, keys the policy lists, or runtime patterns (CDI devices, termination message).
cc_ok(i, "OCI.Annotations") if cc_bad_anno(i) == set()
cc_msg(i, "OCI.Annotations") := sprintf("unexpected %s", [j(sort(cc_bad_anno(i)))])
cc_bad_anno(i) := {k | some k, v in cc_anno; not anno_ok(i, k, v)}
anno_ok(_, k, _) if startswith(k, "io.kubernetes.cri.")
anno_ok(i, k, _) if has(PA(i), k)
anno_ok(i, k, v) if {
	some kr, vr in obj(object.get(P(i), "runtime_anno_patterns", {}))
	regex.match(kr, k)
	regex.match(vr, v)
}

# Annotation checks are named by their key; the message shows both values.
cc_msg(i, k) := gw(object.get(cc_anno, k, null), object.get(PA(i), k, null)) if regex.match(`^(io\.|nerdctl/)`, k)

cc_kata_type := {"sandbox": "pod_sandbox", "container": "pod_container"}
cc_ok(i, "io.katacontainers.pkg.oci.container_type") if cc_anno["io.katacontainers.pkg.oci.container_type"] == cc_kata_type[cc_type]

cc_ok(i, "io.kubernetes.cri.sandbox-name") if {
	has(cc_anno, K_SNAME)
	not has(PA(i), K_SNAME)
}

cc_ok(i, "io.kubernetes.cri.sandbox-name") if regex.match(PA(i)[K_SNAME], cc_anno[K_SNAME])

cc_ok(i, "io.kubernetes.cri.sandbox-namespace") if PA(i)[K_SNS] in {"", cc_anno[K_SNS]}

cc_ok(i, "io.kubernetes.cri.sandbox-id") if regex.match(PA(i)["io.kubernetes.cri.sandbox-id"], cc_anno["io.kubernetes.cri.sandbox-id"])

cc_ok(i, "io.kubernetes.cri.container-name") if {
	cc_type == "sandbox"
	not has(cc_anno, K_CNAME)
	not has(PA(i), K_CNAME)
}

cc_ok(i, "io.kubernetes.cri.container-name") if {
	cc_type == "container"
	PA(i)[K_CNAME] == cc_anno[K_CNAME]
}

# Only the sandbox carries the network namespace and the log directory.
cc_ok(i, "nerdctl/network-namespace") if {
	cc_type == "sandbox"
	regex.match(PA(i)[K_NETNS], cc_anno[K_NETNS])
}

cc_ok(i, "nerdctl/network-namespace") if {
	cc_type == "container"
	not has(cc_anno, K_NETNS)
	not has(PA(i), K_NETNS)
}

cc_ok(i, "io.kubernetes.cri.sandbox-log-directory") if {
	cc_type == "sandbox"
	regex.match(cc_logre(i), cc_anno[K_LOG])
}

cc_ok(i, "io.kubernetes.cri.sandbox-log-directory") if {
	cc_type == "container"
	not has(cc_anno, K_LOG)
	not has(PA(i), K_LOG)
}

cc_logre(i) := replace(replace(PA(i)[K_LOG], "$(sandbox-name)", esc(cc_sname)), "$(sandbox-namespace)", esc(cc_sns))

# Image: the guest pulls storages[driver=image_guest_pull].source; it must be the policy's image
# (same repository; same digest when the policy pins one, else the same tag).
cc_ok(i, "image") if {
	count(cc_pull) <= 1
	cc_type == "sandbox"
}

cc_ok(i, "image") if {
	count(cc_pull) <= 1
	cc_type == "container"
	not has(PA(i), K_IMAGE)
}

cc_ok(i, "image") if {
	count(cc_pull) <= 1
	cc_type == "container"
	want := PA(i)[K_IMAGE]
	every s in cc_pull { image_ok(want, s.source) }
	image_ok(want, object.get(cc_anno, K_IMAGE, want))
}

cc_msg(i, "image") := "more than one image_guest_pull storage" if count(cc_pull) > 1
else := sprintf("got %s (guest pull) and %s (annotation), policy allows %s", [j([s.source | some s in cc_pull]), j(object.get(cc_anno, K_IMAGE, null)), j(PA(i)[K_IMAGE])])

img(r) := {"repo": repo(m[1]), "tag": m[2], "digest": m[3]} if {
	ms := regex.find_all_string_submatch_n(`^(.+?)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@([A-Za-z0-9_+.-]+:[A-Fa-f0-9]+))?$`, r, 1)
	m := ms[0]
}

repo(n) := concat("", ["docker.io/library/", n]) if not contains(n, "/")
else := concat("", ["docker.io/", n]) if {
	h := split(n, "/")[0]
	not contains(h, ".")
	not contains(h, ":")
	h != "localhost"
}
else := concat("", ["docker.io/", substring(n, 16, -1)]) if startswith(n, "index.docker.io/")
else := n

image_ok(want, got) if {
	w := img(want)
	g := img(got)
	w.repo == g.repo
	w.digest != ""
	g.digest == w.digest
}

image_ok(want, got) if {
	w := img(want)
	g := img(got)
	w.repo == g.repo
	w.digest == ""
	g.digest == ""
	object.get({"": "latest"}, w.tag, w.tag) == object.get({"": "latest"}, g.tag, g.tag)
}

# Mounts: each input mount needs a policy mount, and no two input mounts may share one.
cc_ok(i, "OCI.Mounts") if {
	every m in cc_mounts { mhits(i, m) != set() }
	count({h | some m in cc_mounts; some h in mhits(i, m)}) >= count(cc_mounts)
	count({m.destination | some m in cc_mounts}) == count(cc_mounts)
}

cc_msg(i, "OCI.Mounts") := sprintf("got %s, policy allows %s", [j(bad), j(want)]) if {
	bad := [m | some m in cc_mounts; mhits(i, m) == set()]
	bad != []
	want := [pm | some pm in arr(PO(i).Mounts); pm.destination in {m.destination | some m in bad}]
}
else := sprintf("input mounts share policy mounts or destinations: %s", [j(cc_mounts)])

mhits(i, m) := {k | some k, pm in arr(PO(i).Mounts); mount_ok(i, pm, m)}
mount_ok(i, pm, m) if {
	pm.source != ""
	pm.destination == m.destination
	pm.type_ == m.type_
	pm.options == m.options
	fm(cx(i, pm.source), m.source)
}

# sysfs: the policy may say rw where containerd >= 2.0.4 gives ro.
mount_ok(_, pm, m) if {
	m.type_ == "sysfs"
	pm.type_ == "sysfs"
	pm.destination == m.destination
	pm.source == m.source
	ro := {o | some o in pm.options} | {"ro"}
	ro == {o | some o in m.options} | {"rw"}
}

# cgroup v2: newer kernels add flags that the cluster settings allow.
mount_ok(_, pm, m) if {
	m.type_ == "cgroup"
	pm.type_ == "cgroup"
	pm.destination == m.destination
	pm.source == m.source
	po := {o | some o in pm.options}
	io := {o | some o in m.options}
	po - io == set()
	extra := io - po
	extra - {o | some o in policy_data.cluster_config.cgroup_mount_extras_allowed} == set()
}

# Block-device emptyDir: the mount source is where a blk/scsi storage is mounted.
mount_ok(_, pm, m) if {
	pm.source == ""
	pm.destination == m.destination
	pm.type_ == m.type_
	pm.options == m.options
	some s in cc_storages
	s.driver in {"blk", "scsi"}
	s.mount_point == m.source
}

# Storages: one per policy storage, plus at most one image_guest_pull for the root file system.
cc_ok(i, "storages") if {
	count(arr(object.get(P(i), "storages", []))) == count(cc_storages) - count(cc_pull)
	every s in cc_storages { storage_ok(i, s) }
}

cc_msg(i, "storages") := sprintf("got %s, policy allows %s plus one image_guest_pull", [j(cc_storages), j(object.get(P(i), "storages", []))])

storage_ok(i, s) if {
	s.driver == "image_guest_pull"
	s.fstype == "overlay"
	s.fs_group == null
	s.shared == false
	s.options == []
	s.mount_point == replace(C.root_path, "$(bundle-id)", bundle(i))
}

storage_ok(i, s) if {
	not s.driver in {"image_guest_pull", "blk", "scsi"}
	some p in arr(object.get(P(i), "storages", []))
	p.driver == s.driver
	fm(cx(i, p.source), s.source)
	storage_base_ok(i, p, s)
}

storage_ok(i, s) if {
	s.driver == "scsi"
	regex.match(`^[0-9]+:[0-9]+$`, s.source)
	some p in arr(object.get(P(i), "storages", []))
	storage_base_ok(i, p, s)
}

storage_ok(i, s) if {
	s.driver == "blk"
	regex.match(`^[0-9a-f]{2}(/[0-9a-f]{2})?$`, s.source)
	some p in arr(object.get(P(i), "storages", []))
	storage_base_ok(i, p, s)
}

storage_base_ok(i, p, s) if {
	object.get(p, "driver_options", []) == s.driver_options
	object.get(p, "fs_group", null) == s.fs_group
	object.get(p, "fstype", "") == s.fstype
	object.get(p, "shared", false) == s.shared
	object.get(p, "options", []) == s.options
	mount_point_ok(i, p, s)
}

mount_point_ok(i, p, s) if {
	s.driver in {"blk", "scsi"}
	replace(cx(i, p.mount_point), "$(b64_device_id)", base64url.encode(s.source)) == s.mount_point
}

mount_point_ok(i, p, s) if {
	not s.driver in {"blk", "scsi"}
	fm(cx(i, p.mount_point), s.mount_point)
}

# Devices: volume devices by path; VFIO devices (GPUs) must correlate with CDI annotations.
VFIO := object.get(obj(object.get(obj(object.get(policy_data, "devices", {})), "vfio", {})), "device_path", "/dev/vfio/devices/vfio")
cc_ivol := [d | some d in cc_devs; not startswith(d.container_path, VFIO)]
cc_ivfio := [d | some d in cc_devs; startswith(d.container_path, VFIO)]
cc_vfio_nums := [trim_prefix(d.container_path, VFIO) | some d in cc_ivfio]
cc_cdi := [n | some k, _ in cc_anno; startswith(k, "cdi.k8s.io/vfio"); n := trim_prefix(k, "cdi.k8s.io/vfio"); regex.match(`^[0-9]+$`, n)]
pvfio(i) := [d | some d in arr(object.get(P(i), "devices", [])); d.container_path == VFIO]

cc_ok(i, "devices") if {
	every d in cc_ivol {
		some p in arr(object.get(P(i), "devices", []))
		p.container_path != VFIO
		p.container_path == d.container_path
	}
	every d in cc_ivfio { vfio_ok(pvfio(i), d) }
	cdi_ok(pvfio(i))
}

cc_msg(i, "devices") := sprintf("got %s with CDI annotations for %s, policy allows %s", [j(cc_devs), j(cc_cdi), j(object.get(P(i), "devices", []))])

vfio_ok(pv, d) if {
	n := trim_prefix(d.container_path, VFIO)
	regex.match(`^[0-9]+$`, n)
	d.id == concat("", ["vfio", n])
	count(d.options) > 0
	every o in d.options { regex.match(`^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7]=[0-9a-fA-F]{2}/[0-9a-fA-F]{2}$`, o) }
	some p in pv
	p.type_ == d.type_
	p.vm_path == d.vm_path
}

cdi_ok(pv) if {
	cc_ivfio == []
	pv == []
}

# Hot plug: the device numbers are exactly the CDI annotation numbers.
cdi_ok(pv) if {
	cc_ivfio != []
	count(cc_ivfio) == count(pv)
	nums := {n | some n in cc_vfio_nums}
	count(nums) == count(cc_vfio_nums)
	nums == {n | some n in cc_cdi}
}

# Cold plug: no devices in the request, one CDI annotation per policy device.
cdi_ok(pv) if {
	cc_ivfio == []
	pv != []
	count(cc_cdi) == count(pv)
}

ns_norm(t) := "mnt" if lower(t) == "mount" else := t
ns_set(l) := {{"Type": ns_norm(n.Type), "Path": n.Path} | some n in arr(l); not n.Type in {"network", "cgroup"}}
cc_ok(i, "OCI.Linux.Namespaces") if ns_set(object.get(PL(i), "Namespaces", [])) == ns_set(cc_linux.Namespaces)
cc_msg(i, "OCI.Linux.Namespaces") := gw(cc_linux.Namespaces, PL(i).Namespaces)

cc_imasked := cc_linux.MaskedPaths
cc_ok(i, "OCI.Linux.MaskedPaths") if every p in arr(object.get(PL(i), "MaskedPaths", [])) { p in cc_imasked }
cc_msg(i, "OCI.Linux.MaskedPaths") := sprintf("missing %s", [j([p | some p in arr(object.get(PL(i), "MaskedPaths", [])); not p in cc_imasked])])

cc_iro := array.concat(cc_linux.ReadonlyPaths, cc_imasked)
cc_ok(i, "OCI.Linux.ReadonlyPaths") if every p in arr(object.get(PL(i), "ReadonlyPaths", [])) { p in cc_iro }
cc_msg(i, "OCI.Linux.ReadonlyPaths") := sprintf("missing %s", [j([p | some p in arr(object.get(PL(i), "ReadonlyPaths", [])); not p in cc_iro])])

cc_ok(i, "OCI.Linux.Devices") if every d in cc_linux.Devices { d.Path in {p.Path | some p in arr(object.get(PL(i), "Devices", []))} }
cc_msg(i, "OCI.Linux.Devices") := gw(cc_linux.Devices, object.get(PL(i), "Devices", []))

cc_ok(i, "OCI.Linux.Sysctl") if bad_sysctl(i) == {}
cc_msg(i, "OCI.Linux.Sysctl") := gw(bad_sysctl(i), object.get(PL(i), "Sysctl", {}))
bad_sysctl(i) := {k: v | some k, v in cc_linux.Sysctl; not object.get(PL(i), "Sysctl", {})[k] == v}

# Process.
cc_ok(i, "OCI.Process.Args") if args_ok(object.get(PP(i), "Args", []), cc_proc.Args, cc_sname)
cc_msg(i, "OCI.Process.Args") := gw(cc_proc.Args, object.get(PP(i), "Args", []))

args_ok(pa, ia, sname) if {
	count(pa) == count(ia)
	every k, a in ia { arg_ok(pa[k], a, sname) }
}

arg_ok(p, a, _) if replace(p, "$$", "$") == a
arg_ok(p, _, _) if contains(p, "$(node-name)")
arg_ok(p, a, sname) if replace(replace(p, "$$", "$"), "$(sandbox-name)", sname) == a

cc_ok(i, "OCI.Process.User.AdditionalGids") if gids_ok(PP(i), cc_proc)
cc_msg(i, "OCI.Process.User.AdditionalGids") := gw(cc_user.AdditionalGids, PP(i).User.AdditionalGids)
gids_ok(pp, ip) if {g | some g in pp.User.AdditionalGids} == {g | some g in ip.User.AdditionalGids}

cc_ok(i, "OCI.Process.Env") if bad_env(PP(i), cc_proc, cc_sname, cc_sns) == []
cc_msg(i, "OCI.Process.Env") := sprintf("got unexpected %s, policy allows %s", [j(bad_env(PP(i), cc_proc, cc_sname, cc_sns)), j(object.get(PP(i), "Env", []))])

bad_env(pp, ip, sname, sns) := [v | some v in ip.Env; not env_ok(object.get(pp, "Env", []), v, sname, sns)]
env_ok(penv, v, _, _) if v in penv
env_ok(penv, v, sname, sns) if {
	some p in penv
	replace(replace(p, "$(sandbox-name)", sname), "$(sandbox-namespace)", sns) == v
}

# Variables that Kubernetes adds (service links) or that settings allow.
env_ok(_, v, _, _) if {
	some r in RD.CreateContainerRequest.allow_env_regex
	regex.match(replace(replace(replace(replace(r, "$(ipv4_a)", C.ipv4_a), "$(ip_p)", C.ip_p), "$(svc_name_downward_env)", C.svc_name_downward_env), "$(dns_label)", C.dns_label), v)
}

# fieldRef/resourceFieldRef values only known at runtime.
env_ok(penv, v, _, _) if {
	[name, value] := kv(v)
	some p in penv
	[pname, pval] := kv(p)
	pname == name
	env_wild(pval, value)
}

env_wild(pval, _) if {
	some w in ["$(host-name)", "$(node-name)", "$(pod-uid)", "$(resource-field)", "$(todo-annotation)"]
	contains(pval, w)
}

env_wild(pval, value) if {
	pval in {"$(pod-ip)", "$(host-ip)"}
	regex.match(concat("", ["^", C.ipv4_a, "$"]), value)
}

CAPS := ["Ambient", "Bounding", "Effective", "Inheritable", "Permitted"]
caps(c) := {strip_cap(x) | some x in caps_list(arr(c))}
caps_list(c) := C.default_caps if c == ["$(default_caps)"]
else := C.privileged_caps if c == ["$(privileged_caps)"]
else := c

strip_cap(s) := substring(s, 4, -1) if startswith(s, "CAP_") else := s
cc_ok(i, "OCI.Process.Capabilities") if {
	pc := obj(object.get(PP(i), "Capabilities", null))
	ic := obj(cc_proc.Capabilities)
	every k in CAPS { caps(object.get(pc, k, [])) == caps(object.get(ic, k, [])) }
}

cc_msg(i, "OCI.Process.Capabilities") := gw(cc_proc.Capabilities, object.get(PP(i), "Capabilities", null))

cc_ok(i, "state: container_id") if not has(SC, cc_cid)
cc_ok(i, "state: container_id") if SC[cc_cid] == i
cc_msg(i, "state: container_id") := sprintf("container_id %s already belongs to policy container %d", [j(cc_cid), SC[cc_cid]])

######## RemoveContainerRequest: forget the container (its ID may be reused).

RemoveContainerRequest := {"allowed": true, "ops": ops} if {
	id := object.get(input, "container_id", "")
	ops := [{"op": "remove", "path": concat("/", ["/pstate/containers", ptr(id)])} | has(SC, id)]
}

######## ExecProcessRequest: only commands the policy lists, in a process like the container's.

ExecProcessRequest if ep_allowed
ExecProcessRequest := false if {
	not ep_allowed
	say(why_ExecProcessRequest)
}

ep_allowed if every c in array.concat(ep_in_checks, ep_ct_checks) { ep_ok(c) }
ep_proc := obj(input.process)
ep_cid := input.container_id
ep_p := policy_data.containers[SC[ep_cid]]
ep_pp := obj(ep_p.OCI.Process)
ep_args := ep_proc.Args
ep_modes contains "listed" if ep_args in RD.ExecProcessRequest.allowed_commands
ep_modes contains "regex" if {
	some r in RD.ExecProcessRequest.regex
	fm(r, concat(" ", ep_args))
}

ep_modes contains "probe" if ep_args in arr(object.get(ep_p, "exec_commands", []))
ep_who := sprintf("container %s", [j(object.get(obj(ep_p.OCI.Annotations), K_CNAME, "sandbox"))]) if _ = ep_p else := sprintf("container_id %s", [j(ep_cid)])

ep_in_checks := ["process", "string_user", "process.SelinuxLabel", "process.ApparmorProfile", "container_id"]
ep_ct_checks := ["process.Args", "process.Cwd", "process.NoNewPrivileges", "process.Terminal", "process.User.UID", "process.User.GID", "process.User.AdditionalGids", "process.Env", "process.Capabilities"]

ep_ok("process") if is_object(input.process)
ep_ok("string_user") if input.string_user == null
ep_ok("process.SelinuxLabel") if ep_proc.SelinuxLabel == ""
ep_ok("process.ApparmorProfile") if ep_proc.ApparmorProfile == ""
ep_ok("container_id") if _ = ep_p
ep_ok("process.Args") if ep_modes != set()
ep_ok(c) if {
	[got, want] := ep_eq[c]
	got == want
}

ep_msg(c) := gw(got, want) if [got, want] := ep_eq[c]
ep_eq := {
	"process.Cwd": [ep_proc.Cwd, object.get(ep_pp, "Cwd", "")],
	"process.NoNewPrivileges": [ep_proc.NoNewPrivileges, object.get(ep_pp, "NoNewPrivileges", false)],
	"process.User.UID": [object.get(obj(ep_proc.User), "UID", null), ep_pp.User.UID],
	"process.User.GID": [object.get(obj(ep_proc.User), "GID", null), ep_pp.User.GID],
}

# Listed and regex commands may be interactive; probe commands run like the probe.
ep_ok("process.Terminal") if ep_modes - {"probe"} != set()
ep_ok("process.Terminal") if object.get(ep_pp, "Terminal", false) == ep_proc.Terminal
ep_ok("process.User.AdditionalGids") if gids_ok(ep_pp, ep_proc)
ep_ok("process.Env") if bad_env(ep_pp, ep_proc, object.get(S, "sandbox_name", ""), object.get(S, "namespace", "")) == []
ep_ok("process.Capabilities") if ep_proc.Capabilities == null

ep_msg("process") := "must be set"
ep_msg("string_user") := sprintf("must be null, got %s", [j(input.string_user)])
ep_msg("process.SelinuxLabel") := sprintf("must be empty, got %s", [j(ep_proc.SelinuxLabel)])
ep_msg("process.ApparmorProfile") := sprintf("must be empty, got %s", [j(ep_proc.ApparmorProfile)])
ep_msg("container_id") := "no container with this ID was created under this policy"
ep_msg("process.Args") := sprintf("got %s, policy allows %s for this container, %s for all (request_defaults.ExecProcessRequest.allowed_commands) and commands matching %s", [j(ep_args), j(object.get(ep_p, "exec_commands", [])), j(RD.ExecProcessRequest.allowed_commands), j(RD.ExecProcessRequest.regex)])
ep_msg("process.Terminal") := gw(ep_proc.Terminal, ep_pp.Terminal)
ep_msg("process.User.AdditionalGids") := gw(ep_proc.User.AdditionalGids, ep_pp.User.AdditionalGids)
ep_msg("process.Env") := sprintf("got unexpected %s, policy allows %s", [j(bad_env(ep_pp, ep_proc, object.get(S, "sandbox_name", ""), object.get(S, "namespace", ""))), j(object.get(ep_pp, "Env", []))])
ep_msg("process.Capabilities") := sprintf("must be null (the container's own capabilities apply), got %s", [j(ep_proc.Capabilities)])

why_ExecProcessRequest contains sprintf("%s: %s: %s", [ep_who, c, ep_msg_or(c)]) if {
	some c in ep_in_checks
	not ep_ok(c)
}

why_ExecProcessRequest contains sprintf("%s: %s: %s", [ep_who, c, ep_msg_or(c)]) if {
	_ = ep_p
	some c in ep_ct_checks
	not ep_ok(c)
}

ep_msg_or(c) := d if d := ep_msg(c) else := "does not match the policy"

######## CopyFileRequest: the host shares files only below the shared-files prefix.

CopyFileRequest if cf_allowed
CopyFileRequest := false if {
	not cf_allowed
	say(why_CopyFileRequest)
}

cf_allowed if every c in ["file_type", "path", "symlink_target"] { cf_ok(c) }
cf_path := input.path
cf_type := input.file_type

# Symlinks may not replace a top-level shared file (those are mount sources).
cf_suffix := ".*/.+" if cf_type == "Symlink" else := ""
cf_res := [concat("", [xp(r, "[a-z0-9]{64}", "[a-z0-9]{64}"), cf_suffix]) | some r in RD.CopyFileRequest]
cf_ok("file_type") if cf_type in {"Regular", "Directory", "Symlink"}
cf_ok("path") if {
	no_dotdot(cf_path)
	some r in cf_res
	regex.match(r, cf_path)
}

cf_ok("symlink_target") if cf_type != "Symlink"
cf_ok("symlink_target") if {
	t := input.symlink_target
	is_string(t)
	not startswith(t, "/")
	no_dotdot(t)
}

cf_msg("file_type") := sprintf("got %s, policy allows Regular, Directory or Symlink", [j(cf_type)])
cf_msg("path") := sprintf("got %s, policy allows paths matching %s without \"..\"", [j(cf_path), j(cf_res)])
cf_msg("symlink_target") := sprintf("got %s, policy allows relative targets without \"..\"", [j(input.symlink_target)])

why_CopyFileRequest contains sprintf("%s: %s", [c, cf_msg(c)]) if {
	some c in ["file_type", "path", "symlink_target"]
	not cf_ok(c)
}

######## CreateSandboxRequest

CreateSandboxRequest if why_CreateSandboxRequest == set()
CreateSandboxRequest := false if {
	why_CreateSandboxRequest != set()
	say(why_CreateSandboxRequest)
}

sb_storage(s) := {k: object.get(s, k, v) | some k, v in {"driver": "", "driver_options": [], "source": "", "fstype": "", "options": [], "mount_point": "", "fs_group": null, "shared": false}}
sb_allowed := {sb_storage(s) | some s in policy_data.sandbox.storages}

why_CreateSandboxRequest contains sprintf("guest_hook_path: must be empty, got %s", [j(input.guest_hook_path)]) if input.guest_hook_path != ""
why_CreateSandboxRequest contains sprintf("kernel_modules: must be empty, got %s", [j(input.kernel_modules)]) if input.kernel_modules != []
why_CreateSandboxRequest contains "sandbox_pidns: got true, policy allows false" if input.sandbox_pidns != false
why_CreateSandboxRequest contains sprintf("storages: got %s, policy allows %s", [j(s), j(policy_data.sandbox.storages)]) if {
	some s in input.storages
	not sb_storage(s) in sb_allowed
}

why_CreateSandboxRequest contains "storages: must be an array" if not is_array(object.get(input, "storages", []))

######## Network: nothing may touch the loopback interface or loopback addresses.

UpdateRoutesRequest if why_UpdateRoutesRequest == set()
UpdateRoutesRequest := false if {
	why_UpdateRoutesRequest != set()
	say(why_UpdateRoutesRequest)
}

# These kinds are allowed when nothing is wrong, so a settings section they need must exist.
cfg(sec, ks) := [] if every k in ks { is_array(RD[sec][k]) }
else := [sprintf("policy_data.request_defaults.%s is incomplete (needs %s)", [sec, concat(", ", ks)])]

why_UpdateRoutesRequest contains m if some m in cfg("UpdateRoutesRequest", ["forbidden_device_names", "forbidden_source_regex"])
why_UpdateInterfaceRequest contains m if some m in cfg("UpdateInterfaceRequest", ["forbidden_names", "forbidden_hw_addrs"])
why_UpdateInterfaceRequest contains m if some m in cfg("UpdateRoutesRequest", ["forbidden_source_regex"])
why_AddARPNeighborsRequest contains m if some m in cfg("AddARPNeighborsRequest", ["forbidden_device_names", "forbidden_cidrs_regex", "allowed_states"])

loopback(a) if {
	some r in RD.UpdateRoutesRequest.forbidden_source_regex
	regex.match(r, split(a, "/")[0])
}

why_UpdateRoutesRequest contains "routes.Routes: must be set" if not is_array(input.routes.Routes)
why_UpdateRoutesRequest contains sprintf("routes.Routes[%d].device: %s is forbidden", [k, j(r.device)]) if {
	some k, r in input.routes.Routes
	r.device in RD.UpdateRoutesRequest.forbidden_device_names
}

why_UpdateRoutesRequest contains sprintf("routes.Routes[%d].%s: %s is a loopback address", [k, f, j(r[f])]) if {
	some k, r in input.routes.Routes
	some f in ["source", "gateway", "dest"]
	loopback(r[f])
}

UpdateInterfaceRequest if why_UpdateInterfaceRequest == set()
UpdateInterfaceRequest := false if {
	why_UpdateInterfaceRequest != set()
	say(why_UpdateInterfaceRequest)
}

ui := obj(input.interface)
why_UpdateInterfaceRequest contains "interface: must be set" if ui == {}
why_UpdateInterfaceRequest contains sprintf("interface.raw_flags: got %d, policy allows only flags %d", [ui.raw_flags, RD.UpdateInterfaceRequest.allow_raw_flags]) if bits.and(ui.raw_flags, bits.negate(RD.UpdateInterfaceRequest.allow_raw_flags)) != 0
why_UpdateInterfaceRequest contains sprintf("interface.name: %s is forbidden", [j(ui.name)]) if ui.name in RD.UpdateInterfaceRequest.forbidden_names
why_UpdateInterfaceRequest contains sprintf("interface.hwAddr: %s is forbidden", [j(ui.hwAddr)]) if ui.hwAddr in RD.UpdateInterfaceRequest.forbidden_hw_addrs
why_UpdateInterfaceRequest contains sprintf("interface.IPAddresses[%d]: %s is a loopback address", [k, j(a.address)]) if {
	some k, a in ui.IPAddresses
	loopback(a.address)
}

AddARPNeighborsRequest if why_AddARPNeighborsRequest == set()
AddARPNeighborsRequest := false if {
	why_AddARPNeighborsRequest != set()
	say(why_AddARPNeighborsRequest)
}

ARP := RD.AddARPNeighborsRequest
ARPN := arr(object.get(obj(input.neighbors), "ARPNeighbors", null))
why_AddARPNeighborsRequest contains "neighbors.ARPNeighbors: must be set" if not is_array(input.neighbors.ARPNeighbors)
why_AddARPNeighborsRequest contains sprintf("neighbors.ARPNeighbors[%d].device: %s is forbidden", [k, j(n.device)]) if {
	some k, n in ARPN
	n.device in ARP.forbidden_device_names
}

why_AddARPNeighborsRequest contains sprintf("neighbors.ARPNeighbors[%d].toIPAddress.mask: must be empty, got %s", [k, j(n.toIPAddress.mask)]) if {
	some k, n in ARPN
	n.toIPAddress.mask != ""
}

why_AddARPNeighborsRequest contains sprintf("neighbors.ARPNeighbors[%d].toIPAddress.address: %s is forbidden", [k, j(n.toIPAddress.address)]) if {
	some k, n in ARPN
	some r in ARP.forbidden_cidrs_regex
	regex.match(r, n.toIPAddress.address)
}

why_AddARPNeighborsRequest contains sprintf("neighbors.ARPNeighbors[%d].state: got %d, policy allows %s", [k, n.state, j(ARP.allowed_states)]) if {
	some k, n in ARPN
	not n.state in ARP.allowed_states
}

why_AddARPNeighborsRequest contains sprintf("neighbors.ARPNeighbors[%d].flags: got %d, policy allows only NTF_PROXY (8) and NTF_ROUTER (128)", [k, n.flags]) if {
	some k, n in ARPN
	bits.or(n.flags, 136) != 136
}

######## Streams and other switches from request_defaults (all off by default).

CloseStdinRequest if RD.CloseStdinRequest == true
ReadStreamRequest if RD.ReadStreamRequest == true
WriteStreamRequest if RD.WriteStreamRequest == true
UpdateEphemeralMountsRequest if RD.UpdateEphemeralMountsRequest == true
GetDiagnosticDataRequest if RD.GetDiagnosticDataRequest == true

why_CloseStdinRequest contains "request_defaults.CloseStdinRequest is false: the host may not close a process's stdin" if RD.CloseStdinRequest != true
why_ReadStreamRequest contains "request_defaults.ReadStreamRequest is false: the host may not read container output (logs) or exec output" if RD.ReadStreamRequest != true
why_WriteStreamRequest contains "request_defaults.WriteStreamRequest is false: the host may not write to a process's stdin" if RD.WriteStreamRequest != true
why_UpdateEphemeralMountsRequest contains "request_defaults.UpdateEphemeralMountsRequest is false: the host may not change mounts" if RD.UpdateEphemeralMountsRequest != true
why_GetDiagnosticDataRequest contains "request_defaults.GetDiagnosticDataRequest is false: the host may not read diagnostic data" if RD.GetDiagnosticDataRequest != true
