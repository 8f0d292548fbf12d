//! Writing documents back: one configured emitter for every file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::KubeError;
use crate::node::Node;
use crate::resources::{Resources, SourceFile};

/// The emitter settings: 2-space indentation with list items at their parent's indentation
/// (as `kubectl` writes), literal blocks for multi-line strings, long single-line strings (the
/// policy annotation) kept on one line rather than folded, and YAML 1.1-aware quoting so that
/// strings such as `"on"`, `"yes"`, `"0o10"` or `"1e3"` stay strings for every reader.
fn options() -> serde_saphyr::SerializerOptions {
    serde_saphyr::ser_options! {
        indent_step: 2,
        compact_list_indent: true,
        yaml_12: false,
        prefer_block_scalars: true,
        folded_wrap_chars: usize::MAX,
    }
}

/// YAML text of one document, ending in a newline.
pub(crate) fn emit_document(path: &Path, doc: &Node) -> Result<String, KubeError> {
    let mut text =
        serde_saphyr::to_string_with_options(doc, options()).map_err(|e| KubeError::Emit {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

fn emit_documents<'a>(
    out: &mut String,
    path: &Path,
    docs: impl IntoIterator<Item = &'a Node>,
) -> Result<(), KubeError> {
    for doc in docs {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&emit_document(path, doc)?);
    }
    Ok(())
}

pub(crate) fn emit_stream(path: &Path, docs: &[Node]) -> Result<String, KubeError> {
    let mut out = String::new();
    emit_documents(&mut out, path, docs)?;
    Ok(out)
}

fn render_file(file: &SourceFile) -> Result<String, KubeError> {
    let mut out = String::new();
    emit_documents(&mut out, &file.path, &file.docs)?;
    Ok(out)
}

impl Resources {
    /// All documents of all files, in input order, as one YAML stream (documents separated by
    /// `---`), for `nunki generate -o OUT`.
    pub fn to_combined_yaml(&self) -> Result<String, KubeError> {
        let mut out = String::new();
        for file in &self.files {
            emit_documents(&mut out, &file.path, &file.docs)?;
        }
        Ok(out)
    }

    /// Each input file as it would be written by [`Self::write_in_place`], with a flag telling
    /// whether it differs from what was read.
    pub fn rendered_files(&self) -> Result<Vec<(PathBuf, String, bool)>, KubeError> {
        self.files
            .iter()
            .map(|f| {
                if f.docs == f.original {
                    Ok((f.path.clone(), f.text.clone(), false))
                } else {
                    let text = render_file(f)?;
                    let changed = text != f.text;
                    Ok((f.path.clone(), text, changed))
                }
            })
            .collect()
    }

    /// Writes every changed file back to where it was read from, atomically (a temporary file
    /// in the same directory, renamed over the original, keeping its permissions). A file whose
    /// documents did not change is not touched, so its comments and formatting survive; a
    /// rewritten file is re-emitted as a whole and loses its comments.
    ///
    /// Returns the files written.
    pub fn write_in_place(&self) -> Result<Vec<PathBuf>, KubeError> {
        let mut written = Vec::new();
        for (path, text, changed) in self.rendered_files()? {
            if changed {
                write_atomically(&path, text.as_bytes())?;
                written.push(path);
            }
        }
        Ok(written)
    }
}

/// Replaces `path` with `bytes` via a temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), KubeError> {
    let err = |source| KubeError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".nunki-")
        .suffix(".yaml.tmp")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions()).map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
