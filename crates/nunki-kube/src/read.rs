//! Finding input files and parsing them into documents, with limits against hostile input.

use std::path::{Path, PathBuf};

use crate::error::KubeError;
use crate::node::Node;

/// Largest YAML file we read. Kubernetes objects are at most ~1.5 MiB (the etcd limit), so this
/// leaves room for thousands of resources per file while bounding memory for hostile input.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Largest total of all input files together.
pub const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;

/// Deepest nesting of mappings and sequences we accept (CRD schemas are the deepest real
/// resources; pod specs stay below 20).
pub const MAX_DEPTH: usize = 128;

/// The input files for `paths`: files as given (any extension), and for each directory its
/// `*.yaml`/`*.yml` files sorted by name, not descending into subdirectories (like
/// `kubectl apply -f DIR` without `-R`). A file named twice is read once.
pub(crate) fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, KubeError> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |p: PathBuf, out: &mut Vec<PathBuf>| {
        // Canonical paths only for de-duplication; keep the user's spelling for messages.
        let key = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if seen.insert(key) {
            out.push(p);
        }
    };
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| KubeError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            let entries = std::fs::read_dir(path).map_err(|source| KubeError::Read {
                path: path.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| KubeError::Read {
                    path: path.clone(),
                    source,
                })?;
                let p = entry.path();
                let is_yaml = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e == "yaml" || e == "yml");
                // `metadata` follows symlinks: a link to a YAML file counts, one to a directory not.
                if is_yaml && std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
                    files.push(p);
                }
            }
            if files.is_empty() {
                return Err(KubeError::EmptyDirectory { path: path.clone() });
            }
            files.sort();
            for f in files {
                push(f, &mut out);
            }
        } else {
            push(path.clone(), &mut out);
        }
    }
    Ok(out)
}

/// Reads one file with the size limit.
pub(crate) fn read_file(path: &Path) -> Result<String, KubeError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|source| KubeError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = Vec::new();
    // Read one byte past the limit to detect files that grow or lie about their size.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| KubeError::Read {
            path: path.to_owned(),
            source,
        })?;
    let size = bytes.len() as u64;
    if size > MAX_FILE_BYTES {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(size);
        return Err(KubeError::TooLarge {
            path: path.to_owned(),
            size,
            limit: MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| KubeError::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Parser options: YAML 1.1 scalars like `kubectl` (`yes`/`on` are booleans, `0644` is octal),
/// duplicate keys rejected, and budgets against hostile input.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES as usize),
            max_depth: MAX_DEPTH,
            max_documents: 100_000,
            max_events: 20_000_000,
            max_nodes: 10_000_000,
            max_total_scalar_bytes: MAX_FILE_BYTES as usize,
            max_aliases: 10_000,
            max_anchors: 10_000,
            max_recorded_anchor_events: 200_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 1_000_000,
            max_replay_stack_depth: 32,
        },
        emit_comments: false,
        legacy_octal_numbers: true,
    }
}

/// Stack for the parser thread. The YAML deserializer recurses once per nesting level, with
/// large frames in debug builds (over 20 KiB per level); [`MAX_DEPTH`] levels must fit whatever
/// stack the caller runs on, so parsing gets its own thread. Only touched pages are committed.
const PARSER_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Parses all documents of `text`; empty documents are skipped.
pub(crate) fn parse_documents(path: &Path, text: &str) -> Result<Vec<Node>, KubeError> {
    let spawned = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("nunki-yaml".to_owned())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, || parse_on_this_thread(path, text))
            .map(|handle| handle.join())
    });
    match spawned {
        Ok(Ok(result)) => result,
        // The parser is panic-free by design; a panic would still be a bug to report, not a
        // reason to take the caller down.
        Ok(Err(_panic)) => Err(KubeError::Yaml {
            path: path.to_owned(),
            line: None,
            column: None,
            message: "the YAML parser failed unexpectedly on this input; please report it"
                .to_owned(),
        }),
        Err(source) => Err(KubeError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_on_this_thread(path: &Path, text: &str) -> Result<Vec<Node>, KubeError> {
    serde_saphyr::from_multiple_with_options::<Node>(text, options()).map_err(|e| {
        let location = e.location();
        KubeError::Yaml {
            path: path.to_owned(),
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
            message: e.without_snippet().to_string(),
        }
    })
}
