//! The simulated Kata agent of the local runner.
//!
//! For each pod it builds the ttRPC requests that containerd (CRI) and the Kata runtime would
//! send to the agent in the pod's confidential VM — `CreateSandboxRequest`, then one
//! `CreateContainerRequest` per container (pause container, init containers, containers) — and
//! evaluates them against the pod's agent policy. The first denial fails the pod, naming the
//! request, the container and what the policy reported.
//!
//! The requests are built from the pod spec by modelling the API server, the kubelet,
//! containerd and the Kata runtime, and *not* with the policy generator's code, so that a bug in
//! one cannot hide the same bug in the other.
//!
//! This is a simulation: no VM, no containerd, no Kata. The simulated node is:
//!
//! * Kubernetes 1.33 (API server defaulting, ServiceAccount token admission, kubelet env,
//!   mounts, users, masked paths; the `kubernetes` service at [`SandboxContext::kubernetes_service_ip`]);
//! * containerd 2.x CRI with a Kata runtime handler that passes `io.katacontainers.*` pod
//!   annotations and `cdi.k8s.io/*` container annotations, on a cgroup-v2 host, sandbox image
//!   [`SandboxContext::sandbox_image`], OCI version [`SandboxContext::oci_version`];
//! * the Kata Go runtime configured for SEV-SNP (`qemu-snp`): guest image pull, no shared
//!   filesystem (files are copied into the guest), `emptydir_mode = block-encrypted`,
//!   `disable_guest_seccomp = true`, passthrough GPUs cold-plugged.
//!
//! Not simulated: the `CopyFile`, network (`UpdateInterface`, `UpdateRoutes`, ...) and
//! `StartContainer` requests, PVC/CSI volumes, user namespaces, hot-plugged devices.

mod containerd;
mod context;
mod engine;
mod error;
pub mod images;
mod kata;
mod kubelet;
mod oci;
mod quantity;
pub mod requests;
mod rng;

use std::collections::BTreeMap;

use nunki_policy::PodInput;

pub use engine::{Decision, PolicyEvaluator};
pub use error::AgentError;
pub use images::{ImageConfig, ImageConfigs};
pub use nunki_policy::AgentPolicy;
pub use requests::{
    ImageNameStyle, SANDBOX_CONTAINER, SandboxContext, build_container_requests,
    build_sandbox_request,
};

/// A container the simulated agent created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedContainer {
    /// The container's name ([`SANDBOX_CONTAINER`] for the pause container).
    pub name: String,
    /// The container id (64 hex characters).
    pub container_id: String,
}

/// A pod whose every request the policy allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAdmission {
    /// The sandbox id.
    pub sandbox_id: String,
    /// The pod's name.
    pub pod_name: String,
    /// The created containers, in creation order (the pause container first).
    pub containers: Vec<AdmittedContainer>,
    /// The number of requests the policy allowed.
    pub requests_allowed: usize,
}

#[derive(Debug, Clone)]
struct Running {
    container_id: String,
    process: oci::Process,
}

/// A Kata agent that only checks requests against its policy.
#[derive(Debug)]
pub struct SimulatedAgent<E: PolicyEvaluator = AgentPolicy> {
    engine: E,
    running: BTreeMap<String, Running>,
    seed: u64,
    execs: u64,
}

impl SimulatedAgent<AgentPolicy> {
    /// An agent enforcing `policy_text` (the Rego policy from the pod's initdata or policy
    /// annotation).
    pub fn new(policy_text: &str) -> Result<Self, AgentError> {
        let policy = AgentPolicy::new(policy_text)
            .map_err(|e| AgentError::Policy(format!("cannot load the policy: {e}")))?;
        Ok(Self::with_evaluator(policy))
    }
}

impl<E: PolicyEvaluator> SimulatedAgent<E> {
    /// An agent deciding with `engine`.
    pub fn with_evaluator(engine: E) -> Self {
        Self {
            engine,
            running: BTreeMap::new(),
            seed: rng::os_seed(),
            execs: 0,
        }
    }

    /// The policy engine (with the state the requests so far left in it).
    pub fn evaluator(&self) -> &E {
        &self.engine
    }

    fn check(
        &mut self,
        kind: &str,
        container: Option<&str>,
        request: &serde_json::Value,
    ) -> Result<(), AgentError> {
        let decision = self.engine.evaluate(kind, request)?;
        tracing::debug!(
            request = kind,
            container,
            allowed = decision.allowed,
            "simulated agent"
        );
        if decision.allowed {
            Ok(())
        } else {
            Err(AgentError::Denied {
                request: kind.to_owned(),
                container: container.map(str::to_owned),
                reasons: decision.reasons,
            })
        }
    }

    /// Starts `pod` in the simulated VM: sends `CreateSandboxRequest` and each
    /// `CreateContainerRequest` in order, stopping at the first denial.
    pub fn run_pod(
        &mut self,
        pod: &PodInput,
        images: &ImageConfigs,
        ctx: &SandboxContext,
    ) -> Result<PodAdmission, AgentError> {
        let built = requests::build_pod(pod, images, ctx)?;
        self.running.clear();
        self.seed = ctx.seed;
        let sandbox = serde_json::to_value(&built.sandbox)
            .map_err(|e| AgentError::Policy(format!("CreateSandboxRequest: {e}")))?;
        self.check("CreateSandboxRequest", None, &sandbox)?;
        let mut containers = Vec::new();
        for c in built.containers {
            let value = serde_json::to_value(&c.request)
                .map_err(|e| AgentError::Policy(format!("CreateContainerRequest: {e}")))?;
            self.check("CreateContainerRequest", Some(&c.name), &value)?;
            containers.push(AdmittedContainer {
                name: c.name.clone(),
                container_id: c.request.container_id.clone(),
            });
            self.running.insert(
                c.name,
                Running {
                    container_id: c.request.container_id,
                    process: c.request.oci.process,
                },
            );
        }
        Ok(PodAdmission {
            sandbox_id: ctx.sandbox_id.clone(),
            pod_name: ctx.pod_name.clone(),
            requests_allowed: containers.len() + 1,
            containers,
        })
    }

    /// `kubectl exec <pod> -c <container> -- argv...`: sends the `ExecProcessRequest` the Kata
    /// runtime would send. Ok if the policy allows it.
    pub fn exec<S: AsRef<str>>(&mut self, container: &str, argv: &[S]) -> Result<(), AgentError> {
        let running = self
            .running
            .get(container)
            .cloned()
            .ok_or_else(|| AgentError::UnknownContainer(container.to_owned()))?;
        self.execs += 1;
        let exec_id = rng::Rng::derived(self.seed, &format!("exec/{}", self.execs)).uuid();
        let argv: Vec<String> = argv.iter().map(|a| a.as_ref().to_owned()).collect();
        let request = kata::exec_process(
            &running.container_id,
            &running.process,
            &argv,
            false,
            exec_id,
        );
        let value = serde_json::to_value(&request)
            .map_err(|e| AgentError::Policy(format!("ExecProcessRequest: {e}")))?;
        self.check("ExecProcessRequest", Some(container), &value)
    }
}
