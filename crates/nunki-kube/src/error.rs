//! Errors and warnings of reading, rewriting and writing Kubernetes YAML.

use std::fmt;
use std::path::PathBuf;

/// One finding about one place in one resource: an error (inside [`KubeError::Invalid`]) or a
/// warning (from [`crate::Resources::warnings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the resource came from.
    pub file: PathBuf,
    /// The resource, e.g. `Deployment default/web (document 2)`.
    pub resource: String,
    /// The YAML path inside the document, e.g. `spec.template.spec.containers[0].comand`.
    pub path: String,
    /// What is wrong and, where we know, how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.file.display(), self.resource)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// All [`Diagnostic`]s that made an operation fail, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for d in &self.0 {
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A directory given as input holds no `*.yaml`/`*.yml` file.
    #[error("{path}: no *.yaml or *.yml files in this directory (subdirectories are not searched)")]
    EmptyDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// A file, or all files up to this one, exceed the size limit for hostile input.
    #[error(
        "{path}: {size} bytes of YAML, more than the limit of {limit} bytes; split the input or leave out files that are not Kubernetes resources"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A file is not UTF-8.
    #[error("{path}: not valid UTF-8 at byte {offset}; Kubernetes YAML must be UTF-8")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// Invalid YAML (syntax, limits, duplicate keys, ...).
    #[error("{}{}: invalid YAML: {message}", path.display(), location_suffix(*line, *column))]
    Yaml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem, if the parser knows it.
        line: Option<u64>,
        /// 1-based column of the problem, if the parser knows it.
        column: Option<u64>,
        /// The parser's message.
        message: String,
    },
    /// Resources that cannot be handled: wrong types, unknown fields that change what a
    /// container runs, missing required fields, conflicts with Nunki's rewrites.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// [`crate::Resources::set_policy_annotation`] was called with another key.
    #[error(
        "{key:?} is not a policy annotation; use {:?} or {:?}",
        crate::INITDATA_ANNOTATION,
        crate::POLICY_ANNOTATION
    )]
    NotAPolicyAnnotation {
        /// The key given.
        key: String,
    },
    /// A [`crate::WorkloadRef`] does not point at a workload of these resources.
    #[error(
        "{0}: no such workload in these resources (was the WorkloadRef taken from another Resources?)"
    )]
    UnknownWorkload(String),
    /// The YAML emitter failed (should not happen for trees read by this crate).
    #[error("cannot write YAML for {path}: {message}")]
    Emit {
        /// The file being written.
        path: PathBuf,
        /// The emitter's message.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn location_suffix(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

impl KubeError {
    /// The diagnostics, if this error is [`KubeError::Invalid`].
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            KubeError::Invalid(d) => &d.0,
            _ => &[],
        }
    }
}
