//! Publishing the four files so that readers see all of them complete or none (the layout is
//! described in the crate documentation).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::check::{CERT_CHAIN_FILE, KEY_FILE, MESH_CA_FILE, ROOT_CA_FILE};
use crate::{InitError, MeshFiles};

/// The symlink that names the current generation's directory.
pub const DATA_LINK: &str = "..data";
/// The temporary name of the next `..data` symlink before it is renamed into place.
const DATA_TMP: &str = "..data_tmp";

/// The workload secret's file (hex, mode 0400), present when the manifest entry has a
/// `WorkloadSecretID`.
pub const WORKLOAD_SECRET_FILE: &str = "workload-secret-seed";

/// The visible files, their contents' source and their mode.
fn entries(files: &MeshFiles) -> Vec<(&'static str, &[u8], u32)> {
    let mut out = vec![
        (MESH_CA_FILE, files.mesh_ca.as_slice(), 0o444),
        (CERT_CHAIN_FILE, files.cert_chain.as_slice(), 0o444),
        (KEY_FILE, files.key_pem.as_slice(), 0o400),
        (ROOT_CA_FILE, files.root_ca.as_slice(), 0o444),
    ];
    if let Some(secret) = &files.workload_secret {
        out.push((WORKLOAD_SECRET_FILE, secret.as_slice(), 0o400));
    }
    out
}

/// The four file names a workload reads, in the order they are written.
pub const FILE_NAMES: [&str; 4] = [MESH_CA_FILE, CERT_CHAIN_FILE, KEY_FILE, ROOT_CA_FILE];

fn fail(path: &Path, what: &str, e: &io::Error) -> InitError {
    InitError::Write {
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    }
}

fn sync_dir(dir: &Path) -> Result<(), InitError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail(dir, "syncing the directory", &e))
}

/// A fresh, empty generation directory `..<seconds>_<nanoseconds>.<pid>[.<n>]` under `out`.
fn new_generation(out: &Path) -> Result<(String, PathBuf), InitError> {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let base = format!(
        "..{}_{:09}.{}",
        t.as_secs(),
        t.subsec_nanos(),
        std::process::id()
    );
    let mut name = base.clone();
    for n in 1u32.. {
        let path = out.join(&name);
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| fail(&path, "setting the mode", &e))?;
                return Ok((name, path));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => {
                name = format!("{base}.{n}");
            }
            Err(e) => return Err(fail(&path, "creating the directory", &e)),
        }
    }
    Err(InitError::Write {
        path: out.to_path_buf(),
        reason: "no free name for a new generation directory".into(),
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InitError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| fail(path, "creating", &e))?;
    // The umask may have cleared bits of `mode`; set it exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| fail(path, "setting the mode", &e))?;
    f.write_all(bytes).map_err(|e| fail(path, "writing", &e))?;
    f.sync_all().map_err(|e| fail(path, "syncing", &e))
}

/// Replaces whatever is at `at` by a symlink to `target`, atomically (via a temporary name and
/// rename), unless it already is exactly that symlink.
fn ensure_symlink(out: &Path, at: &str, target: &Path, tmp: &str) -> Result<(), InitError> {
    let path = out.join(at);
    if fs::read_link(&path).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let tmp_path = out.join(tmp);
    match fs::remove_file(&tmp_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(&tmp_path, "removing a stale temporary link", &e)),
    }
    symlink(target, &tmp_path).map_err(|e| fail(&tmp_path, "creating the symlink", &e))?;
    fs::rename(&tmp_path, &path).map_err(|e| fail(&path, "renaming the symlink into place", &e))
}

/// Writes the four files into `dir` (created if needed) so that readers see all of them
/// complete or none; a rerun replaces an earlier set in one step.
pub fn write_files(dir: &Path, files: &MeshFiles) -> Result<(), InitError> {
    write_files_observed(dir, files, &mut |_| Ok(()))
}

/// [`write_files`], calling `after_step` with a short description after every step that
/// changes the disk. An error from `after_step` stops the write right there, without any
/// cleanup, which is what a crash at that point leaves behind (tests use it as a failpoint).
pub fn write_files_observed(
    dir: &Path,
    files: &MeshFiles,
    after_step: &mut dyn FnMut(&str) -> io::Result<()>,
) -> Result<(), InitError> {
    let mut step = |what: &str| {
        after_step(what).map_err(|e| InitError::Write {
            path: dir.to_path_buf(),
            reason: format!("stopped after {what}: {e}"),
        })
    };
    fs::create_dir_all(dir).map_err(|e| fail(dir, "creating the directory", &e))?;
    step("create the output directory")?;

    // 1. The new generation, complete and durable, under a hidden name.
    let (generation, gen_path) = new_generation(dir)?;
    step("create the generation directory")?;
    for (name, bytes, mode) in entries(files) {
        write_file(&gen_path.join(name), bytes, mode)?;
        step(name)?;
    }
    sync_dir(&gen_path)?;
    step("sync the generation directory")?;

    // 2. The visible names: symlinks through `..data` (dangling until `..data` exists, so a
    //    first run shows no readable file before the switch; a rerun finds them in place).
    let tmp_suffix = format!(".tmp-{}", std::process::id());
    for (name, _, _) in entries(files) {
        ensure_symlink(
            dir,
            name,
            &Path::new(DATA_LINK).join(name),
            &format!(".{name}{tmp_suffix}"),
        )?;
        step(name)?;
    }
    sync_dir(dir)?;
    step("sync the output directory")?;

    // 3. The switch: `..data` names the new generation, all four files change at once.
    let data_tmp = dir.join(DATA_TMP);
    match fs::remove_file(&data_tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(&data_tmp, "removing a stale temporary link", &e)),
    }
    symlink(&generation, &data_tmp).map_err(|e| fail(&data_tmp, "creating the symlink", &e))?;
    step("create ..data_tmp")?;
    fs::rename(&data_tmp, dir.join(DATA_LINK))
        .map_err(|e| fail(&dir.join(DATA_LINK), "switching to the new generation", &e))?;
    step("switch ..data")?;
    sync_dir(dir)?;
    step("sync the output directory after the switch")?;

    // 4. Older generations and leftovers of interrupted runs. Failing here leaves only
    //    invisible garbage behind, so it is logged, not fatal.
    remove_leftovers(dir, &generation);
    step("remove older generations")?;
    Ok(())
}

/// Removes hidden generation directories other than `current` and temporary symlinks of
/// interrupted runs.
fn remove_leftovers(dir: &Path, current: &str) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let result = if is_dir && name.starts_with("..") && name != current {
            fs::remove_dir_all(&path)
        } else if !is_dir && is_tmp_link(name) {
            fs::remove_file(&path)
        } else {
            continue;
        };
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover of an earlier run");
        }
    }
}

/// `.<visible name>.tmp-<pid>`: a symlink an interrupted run left behind.
fn is_tmp_link(name: &str) -> bool {
    FILE_NAMES.iter().any(|f| {
        name.strip_prefix('.')
            .and_then(|r| r.strip_prefix(f))
            .and_then(|r| r.strip_prefix(".tmp-"))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use std::ffi::OsStr;

    use super::*;

    /// Whether `name` is part of the layout (a visible file, `..data`, or a hidden entry).
    fn is_layout_entry(name: &OsStr) -> bool {
        name.to_str()
            .is_some_and(|n| FILE_NAMES.contains(&n) || n.starts_with(".."))
    }

    fn files(tag: &str) -> MeshFiles {
        MeshFiles {
            mesh_ca: format!("mesh {tag}").into_bytes(),
            cert_chain: format!("chain {tag}").into_bytes(),
            key_pem: format!("key {tag}").into_bytes(),
            root_ca: format!("root {tag}").into_bytes(),
            workload_secret: None,
        }
    }

    /// What a reader sees: for each visible name, its contents or None if unreadable.
    fn seen(dir: &Path) -> Vec<Option<String>> {
        FILE_NAMES
            .iter()
            .map(|n| fs::read_to_string(dir.join(n)).ok())
            .collect()
    }

    fn expect(tag: &str) -> Vec<Option<String>> {
        let f = files(tag);
        [f.mesh_ca, f.cert_chain, f.key_pem, f.root_ca]
            .into_iter()
            .map(|b| Some(String::from_utf8(b).unwrap()))
            .collect()
    }

    fn hidden_dirs(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn layout_modes_and_rerun() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("tls");
        write_files(&out, &files("a")).unwrap();
        assert_eq!(seen(&out), expect("a"));
        for name in FILE_NAMES {
            let l = fs::read_link(out.join(name)).unwrap();
            assert_eq!(l, Path::new("..data").join(name));
        }
        let mode = |n: &str| fs::metadata(out.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(KEY_FILE), 0o400);
        assert_eq!(mode(CERT_CHAIN_FILE), 0o444);
        let first = hidden_dirs(&out);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(
            fs::read_link(out.join(DATA_LINK)).unwrap(),
            Path::new(&first[0])
        );

        write_files(&out, &files("b")).unwrap();
        assert_eq!(seen(&out), expect("b"));
        let second = hidden_dirs(&out);
        assert_eq!(second.len(), 1, "the old generation is removed: {second:?}");
        assert_ne!(first, second);
        // Nothing but the layout is left.
        let mut names: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want = vec![
            DATA_LINK.to_string(),
            second[0].clone(),
            CERT_CHAIN_FILE.into(),
            ROOT_CA_FILE.into(),
            KEY_FILE.into(),
            MESH_CA_FILE.into(),
        ];
        want.sort();
        assert_eq!(names, want);
    }

    #[test]
    fn replaces_plain_files_of_an_older_layout() {
        let t = tempfile::tempdir().unwrap();
        for name in FILE_NAMES {
            fs::write(t.path().join(name), "old").unwrap();
        }
        fs::set_permissions(t.path().join(KEY_FILE), fs::Permissions::from_mode(0o400)).unwrap();
        write_files(t.path(), &files("new")).unwrap();
        assert_eq!(seen(t.path()), expect("new"));
    }

    /// Stops the write after each step in turn (as a crash would) and checks what a reader
    /// sees, on a fresh directory and over an earlier set; then a rerun must succeed.
    #[test]
    fn interrupted_at_every_step_shows_all_or_nothing() {
        let mut steps = Vec::new();
        let t = tempfile::tempdir().unwrap();
        write_files_observed(t.path(), &files("x"), &mut |s| {
            steps.push(s.to_string());
            Ok(())
        })
        .unwrap();
        assert!(steps.len() >= 14, "{steps:?}");
        let switch = steps.iter().position(|s| s == "switch ..data").unwrap();

        for previous in [false, true] {
            for (stop, step) in steps.iter().enumerate() {
                let t = tempfile::tempdir().unwrap();
                let out = t.path().join("tls");
                if previous {
                    write_files(&out, &files("old")).unwrap();
                }
                let mut n = 0;
                let e = write_files_observed(&out, &files("new"), &mut |_| {
                    n += 1;
                    if n > stop {
                        Err(io::Error::other("killed"))
                    } else {
                        Ok(())
                    }
                })
                .unwrap_err();
                assert!(e.to_string().contains("killed"), "{e}");
                let now = seen(&out);
                let want = if stop >= switch {
                    expect("new")
                } else if previous {
                    expect("old")
                } else {
                    vec![None; 4]
                };
                assert_eq!(now, want, "stopped after step {stop} ({step})");
                // A rerun repairs everything and leaves one generation.
                write_files(&out, &files("again")).unwrap();
                assert_eq!(seen(&out), expect("again"));
                assert_eq!(hidden_dirs(&out).len(), 1, "after stop {stop}");
                assert!(
                    fs::read_dir(&out)
                        .unwrap()
                        .flatten()
                        .all(|e| is_layout_entry(&e.file_name())
                            && !e.file_name().to_string_lossy().contains(".tmp-")
                            && e.file_name() != DATA_TMP),
                    "leftovers after stop {stop}"
                );
            }
        }
    }

    #[test]
    fn tmp_link_names() {
        assert!(is_tmp_link(".key.pem.tmp-123"));
        assert!(!is_tmp_link(".key.pem.tmp-"));
        assert!(!is_tmp_link("key.pem"));
        assert!(!is_tmp_link(".other.tmp-1"));
    }
}
