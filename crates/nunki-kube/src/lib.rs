//! Kubernetes for Nunki. Mostly YAML for `nunki generate`: read resources, rewrite their pod
//! templates for Nunki, hand each workload to the policy generator, and write the result. Also
//! the Coordinator's history store in ConfigMaps ([`KubeStore`], module [`store`]).
//!
//! ```no_run
//! # fn main() -> Result<(), nunki_kube::KubeError> {
//! use nunki_kube::{Resources, RewriteOptions, INITDATA_ANNOTATION};
//!
//! let mut resources = Resources::read(&["resources/".into()])?;
//! for w in resources.warnings() {
//!     eprintln!("warning: {w}");
//! }
//! resources.rewrite(&RewriteOptions::new("ghcr.io/nunki/initializer:v1"))?;
//! for workload in resources.workloads() {
//!     let input = workload.pod_input(); // -> the policy generator
//!     # let initdata = String::new();
//!     resources.set_policy_annotation(&workload, INITDATA_ANNOTATION, initdata)?;
//! }
//! resources.write_in_place()?;
//! # Ok(()) }
//! ```
//!
//! Documents are kept as an order-preserving tree ([`Node`]), so kinds and fields Nunki does
//! not know pass through with their content and order unchanged. Pod specs are additionally
//! read into `k8s_openapi`'s typed `PodSpec`; a field that typed struct would drop is an error
//! where it could change what a container runs and a warning elsewhere.
//!
//! Decisions worth knowing:
//! - **Input**: directories contribute their `*.yaml`/`*.yml` files sorted by name, without
//!   descending into subdirectories (like `kubectl apply -f DIR`); files named explicitly are
//!   read whatever their extension; a file named twice is read once.
//! - **YAML dialect**: scalars are read as `kubectl` reads them (YAML 1.1: `yes`/`on` are
//!   booleans, `0644` is octal); duplicate keys are errors; limits: [`MAX_FILE_BYTES`] per
//!   file, [`MAX_TOTAL_BYTES`] in all, [`MAX_DEPTH`] levels, alias expansion capped.
//! - **Document numbers** ([`WorkloadRef::document`]) count non-empty documents from 0.
//! - **Output**: a file whose documents did not change is never rewritten (comments and
//!   formatting survive); a changed file is re-emitted as a whole and loses its comments.
//!   Strings YAML 1.1 would read as something else are quoted.
//! - **Workload secret IDs**: `<group>/<version>/<kind>/<namespace>/<name>` with `core` for the
//!   core group and `default` for no namespace ([`WorkloadRef::workload_secret_id`]).

mod error;
mod kinds;
mod node;
mod read;
mod resources;
mod rewrite;
pub mod store;
mod typed;
mod validate;
mod workload;
mod write;

pub use error::{Diagnostic, Diagnostics, KubeError};
pub use node::{Mapping, Node};
pub use read::{MAX_DEPTH, MAX_FILE_BYTES, MAX_TOTAL_BYTES};
pub use resources::Resources;
pub use rewrite::{
    COORDINATOR_HOST_ENV, DEFAULT_COORDINATOR_HOST, DEFAULT_RUNTIME_CLASS, INITIALIZER_NAME,
    RewriteOptions, TLS_MOUNT_PATH, TLS_VOLUME,
};
pub use store::KubeStore;
pub use workload::WorkloadRef;

/// Parses a YAML stream the way [`Resources::read`] does (same limits and YAML 1.1 scalars),
/// skipping empty documents. `path` only names the source in errors.
pub fn parse_documents(path: &std::path::Path, text: &str) -> Result<Vec<Node>, KubeError> {
    read::parse_documents(path, text)
}

/// Emits documents the way [`Resources::to_combined_yaml`] does, separated by `---`.
pub fn to_yaml(docs: &[Node]) -> Result<String, KubeError> {
    write::emit_stream(std::path::Path::new("<memory>"), docs)
}

/// Initdata annotation (default policy delivery): base64(gzip(initdata TOML)).
pub const INITDATA_ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";
/// Seed-era policy annotation: base64(policy text).
pub const POLICY_ANNOTATION: &str = "io.katacontainers.config.agent.policy";
/// Pod template annotation that marks the Coordinator.
pub const POD_ROLE_ANNOTATION: &str = "nunki.edgeless.systems/pod-role";
/// Value of [`POD_ROLE_ANNOTATION`] for the Coordinator.
pub const COORDINATOR_ROLE: &str = "coordinator";
