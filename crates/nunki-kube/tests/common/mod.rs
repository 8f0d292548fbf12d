//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `$NUNKI_TESTDATA`, else `shared/testdata` beside the checkout.
pub fn testdata() -> PathBuf {
    match std::env::var_os("NUNKI_TESTDATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"),
    }
}

/// The upstream genpolicy test directory.
pub fn genpolicy_tests() -> PathBuf {
    testdata().join("kata-policy/src/tools/genpolicy/tests")
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Every `*.yaml` below `dir`, sorted.
pub fn yaml_files_below(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
