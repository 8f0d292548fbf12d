//! The YAML path of `nunki generate` (nunki-kube) on arbitrary text: reading must never panic;
//! whatever it accepts must survive emit → re-read unchanged, and the rewrite must be
//! idempotent (a second run over its own output changes nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nunki_kube::{Resources, RewriteOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.yaml");

    // Tree level: emit and re-read gives the same documents.
    if let Ok(docs) = nunki_kube::parse_documents(path, text) {
        let out = nunki_kube::to_yaml(&docs).expect("a parsed tree can be emitted");
        let back = nunki_kube::parse_documents(path, &out).expect("emitted YAML parses");
        assert_eq!(back, docs, "emit/parse round trip changed the tree:\n{out}");
    }

    // Resource level: read, rewrite, write, and again.
    let Ok(mut resources) = Resources::from_str(path, text) else {
        return;
    };
    let options = RewriteOptions::new("ghcr.io/nunki/initializer:fuzz");
    if resources.rewrite(&options).is_err() {
        return;
    }
    for w in resources.workloads() {
        let _ = w.pod_input();
        let _ = w.workload_secret_id();
    }
    let once = resources
        .to_combined_yaml()
        .expect("rewritten resources can be emitted");
    let mut again = Resources::from_str(path, &once).expect("our own output reads back");
    again.rewrite(&options).expect("our own output rewrites");
    assert_eq!(
        again.to_combined_yaml().expect("emits"),
        once,
        "rewrite is not idempotent"
    );
});
