//! Policy documents for `nunki set`: found by hash in a directory, or in the Kata policy
//! annotation of Kubernetes resources (pods, pod templates of Deployments, Jobs, CronJobs, …).
//!
//! A policy hash is the SHA-256 of the policy document: the initdata TOML carried (gzipped,
//! base64) by `io.katacontainers.config.hypervisor.cc_init_data`, or the policy text carried
//! in base64 by the seed-era `io.katacontainers.config.agent.policy`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use nunki_manifest::{ParsedManifest, PolicyHash};
use serde_json::Value;

/// The seed-era pod annotation holding the base64 of the Kata agent policy.
pub const POLICY_ANNOTATION: &str = "io.katacontainers.config.agent.policy";
/// The initdata annotation: base64(gzip(initdata TOML)); the document is the TOML.
pub const INITDATA_ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";

pub use nunki_manifest::sha256;

/// The policy hash of a policy document.
pub fn policy_hash(doc: &[u8]) -> PolicyHash {
    PolicyHash(sha256(doc))
}

/// A policy document found in a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its hash.
    pub hash: PolicyHash,
    /// Where: file, document, kind and name, JSON path of the object.
    pub location: String,
}

/// Policy documents by hash, with where each was found.
#[derive(Debug, Default)]
pub struct PolicyDocs {
    docs: BTreeMap<PolicyHash, (Vec<u8>, String)>,
}

impl PolicyDocs {
    /// Adds a document; returns its hash.
    pub fn insert(&mut self, doc: Vec<u8>, source: String) -> PolicyHash {
        let h = policy_hash(&doc);
        self.docs.entry(h).or_insert((doc, source));
        h
    }

    /// The document for `hash`.
    pub fn get(&self, hash: &PolicyHash) -> Option<&[u8]> {
        self.docs.get(hash).map(|(d, _)| d.as_slice())
    }

    /// Where the document for `hash` came from.
    pub fn source(&self, hash: &PolicyHash) -> Option<&str> {
        self.docs.get(hash).map(|(_, s)| s.as_str())
    }

    /// Adds every regular file directly in `dir` whose SHA-256 is in `wanted` (names do not
    /// matter). Returns how many matched.
    pub fn add_dir(&mut self, dir: &Path, wanted: &BTreeSet<PolicyHash>) -> Result<usize> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("--policies: cannot read directory {}", dir.display()))?;
        let mut paths = Vec::new();
        for e in entries {
            let e = e.with_context(|| format!("--policies: cannot read {}", dir.display()))?;
            paths.push(e.path());
        }
        paths.sort();
        let mut matched = 0;
        for p in paths {
            let meta = std::fs::metadata(&p)
                .with_context(|| format!("--policies: cannot read {}", p.display()))?;
            if !meta.is_file() {
                continue;
            }
            let doc = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
            if wanted.contains(&policy_hash(&doc)) {
                self.insert(doc, p.display().to_string());
                matched += 1;
            }
        }
        Ok(matched)
    }

    /// Adds the policies annotated in the YAML files given (directories: every `*.yaml` and
    /// `*.yml` below, hidden entries skipped). Returns every policy found, where it was found.
    pub fn add_resources(&mut self, paths: &[PathBuf]) -> Result<Vec<Found>> {
        let mut files = Vec::new();
        for p in paths {
            let meta = std::fs::metadata(p)
                .with_context(|| format!("resource {}: cannot read", p.display()))?;
            if meta.is_dir() {
                yaml_files_below(p, &mut files)?;
            } else {
                files.push(p.clone());
            }
        }
        let mut found = Vec::new();
        for f in files {
            let bytes =
                std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
            for (location, doc) in policies_in_yaml(&bytes, &f.display().to_string())? {
                let hash = self.insert(doc, location.clone());
                found.push(Found { hash, location });
            }
        }
        Ok(found)
    }

    /// The documents for every policy of `manifest`, in the manifest's (hash) order, or the
    /// list of policies without a document.
    pub fn for_manifest(&self, manifest: &ParsedManifest) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for (hash, entry) in &manifest.manifest().policies {
            match self.get(hash) {
                Some(d) => out.push(d.to_vec()),
                None => missing.push(format!(
                    "  {hash} (SANs {}{})",
                    entry.sans.join(", "),
                    if entry.role.as_str().is_empty() {
                        String::new()
                    } else {
                        format!(", role {}", entry.role)
                    }
                )),
            }
        }
        if !missing.is_empty() {
            bail!(
                "no policy document for {} of the manifest's {} policies:\n{}\n\
                 pass the Kubernetes resources `nunki generate` annotated, or \
                 --policies DIR with the policy documents (any file name; matched by SHA-256)",
                missing.len(),
                manifest.manifest().policies.len(),
                missing.join("\n")
            );
        }
        Ok(out)
    }
}

fn yaml_files_below(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        entries.push(e.path());
    }
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        let meta = std::fs::metadata(&p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            yaml_files_below(&p, out)?;
        } else if meta.is_file()
            && p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// The policy documents annotated anywhere in a (multi-document) YAML file: every object with
/// `metadata.annotations["io.katacontainers.config.agent.policy"]`, at any depth (so pod
/// templates of Deployments, Jobs and CronJobs, and items of a List, count).
pub fn policies_in_yaml(bytes: &[u8], file: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let docs: Vec<Value> = serde_saphyr::from_slice_multiple(bytes)
        .map_err(|e| anyhow!("{file}: not valid YAML: {e}"))?;
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let label = format!("{file}: document {}{}", i + 1, describe(doc));
        let mut hits = Vec::new();
        walk(doc, "$".to_string(), &mut hits);
        for (path, key, value) in hits {
            let at = format!("{label} at {path}.metadata.annotations[\"{key}\"]");
            let text = value
                .as_str()
                .ok_or_else(|| anyhow!("{at}: must be a string (the base64 of the policy)"))?;
            let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let doc = if key == INITDATA_ANNOTATION {
                nunki_policy::PolicyDocument::decode_initdata(&compact)
                    .map_err(|e| anyhow!("{at}: {e}"))?
                    .document_bytes
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .map_err(|e| anyhow!("{at}: not valid base64: {e}"))?
            };
            out.push((format!("{label} at {path}"), doc));
        }
    }
    Ok(out)
}

/// ` (Kind name)` of a Kubernetes object, if it has them.
fn describe(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str);
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str);
    match (kind, name) {
        (Some(k), Some(n)) => format!(" ({k} {n})"),
        (Some(k), None) => format!(" ({k})"),
        (None, Some(n)) => format!(" ({n})"),
        (None, None) => String::new(),
    }
}

type Hit<'a> = (String, &'static str, &'a Value);

fn walk<'a>(v: &'a Value, path: String, hits: &mut Vec<Hit<'a>>) {
    match v {
        Value::Object(map) => {
            let annotations = map
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(Value::as_object);
            // initdata first: a pod carrying both is judged by the runtime on initdata.
            if let Some(policy) = annotations.and_then(|a| a.get(INITDATA_ANNOTATION)) {
                hits.push((path.clone(), INITDATA_ANNOTATION, policy));
            } else if let Some(policy) = annotations.and_then(|a| a.get(POLICY_ANNOTATION)) {
                hits.push((path.clone(), POLICY_ANNOTATION, policy));
            }
            for (k, child) in map {
                if k == "metadata" {
                    continue;
                }
                let p = if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    format!("{path}.{k}")
                } else {
                    format!("{path}[{k:?}]")
                };
                walk(child, p, hits);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), hits);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn yaml() -> String {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: plain
  annotations:
    {POLICY_ANNOTATION}: {pod}
spec:
  containers: []
---
# a document without any policy
apiVersion: v1
kind: Service
metadata:
  name: svc
  annotations:
    something: else
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    metadata:
      labels: {{app: web}}
      annotations:
        {POLICY_ANNOTATION}: "{deploy}"
    spec:
      containers: []
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            {POLICY_ANNOTATION}: >-
              {cron}
---
"#,
            pod = b64("package agent_policy\n# pod\n"),
            deploy = b64("package agent_policy\n# deployment\n"),
            cron = b64("package agent_policy\n# cronjob\n"),
        )
    }

    #[test]
    fn finds_pods_templates_and_job_templates() {
        let found = policies_in_yaml(yaml().as_bytes(), "app.yml").unwrap();
        let docs: Vec<_> = found
            .iter()
            .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
            .collect();
        assert_eq!(
            docs,
            vec![
                "package agent_policy\n# pod\n",
                "package agent_policy\n# deployment\n",
                "package agent_policy\n# cronjob\n",
            ]
        );
        assert_eq!(found[0].0, "app.yml: document 1 (Pod plain) at $");
        assert_eq!(
            found[1].0,
            "app.yml: document 3 (Deployment web) at $.spec.template"
        );
        assert_eq!(
            found[2].0,
            "app.yml: document 4 (CronJob nightly) at $.spec.jobTemplate.spec.template"
        );
    }

    #[test]
    fn no_annotation_no_policy() {
        let y = "kind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n---\nkind: Pod\nmetadata:\n  annotations:\n";
        assert!(policies_in_yaml(y.as_bytes(), "x.yaml").unwrap().is_empty());
        assert!(policies_in_yaml(b"", "empty.yaml").unwrap().is_empty());
    }

    #[test]
    fn wrong_base64_is_a_clear_error() {
        let y = format!(
            "kind: Pod\nmetadata:\n  name: bad\n  annotations:\n    {POLICY_ANNOTATION}: \"not*base64\"\n"
        );
        let err = policies_in_yaml(y.as_bytes(), "bad.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.yaml: document 1 (Pod bad)"), "{err}");
        assert!(err.contains(POLICY_ANNOTATION), "{err}");
        assert!(err.contains("not valid base64"), "{err}");
        let y = format!("kind: Pod\nmetadata:\n  annotations:\n    {POLICY_ANNOTATION}: 3\n");
        let err = policies_in_yaml(y.as_bytes(), "n.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a string"), "{err}");
        let err = policies_in_yaml(b"a: [", "broken.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("broken.yaml: not valid YAML"), "{err}");
    }

    #[test]
    fn resources_from_files_and_directories() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/app.yml"), yaml()).unwrap();
        std::fs::write(d.path().join("notes.txt"), "not yaml: [").unwrap();
        std::fs::create_dir(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/x.yaml"), "a: [").unwrap();
        let mut docs = PolicyDocs::default();
        let found = docs.add_resources(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(found.len(), 3);
        let h = policy_hash(b"package agent_policy\n# deployment\n");
        assert_eq!(
            docs.get(&h).unwrap(),
            b"package agent_policy\n# deployment\n"
        );
        assert!(docs.source(&h).unwrap().contains("Deployment web"));
        assert!(
            docs.add_resources(&[d.path().join("missing.yaml")])
                .is_err()
        );
    }

    #[test]
    fn policies_dir_matches_by_hash_not_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("whatever-name"), b"policy one").unwrap();
        std::fs::write(d.path().join("unrelated.rego"), b"policy two").unwrap();
        std::fs::create_dir(d.path().join("nested")).unwrap();
        let one = policy_hash(b"policy one");
        let three = policy_hash(b"policy three");
        let wanted = BTreeSet::from([one, three]);
        let mut docs = PolicyDocs::default();
        assert_eq!(docs.add_dir(d.path(), &wanted).unwrap(), 1);
        assert_eq!(docs.get(&one).unwrap(), b"policy one");
        assert!(docs.get(&policy_hash(b"policy two")).is_none());
        assert!(docs.get(&three).is_none());
        assert!(docs.add_dir(&d.path().join("nope"), &wanted).is_err());
    }

    #[test]
    fn hash_is_sha256_of_the_document() {
        assert_eq!(
            policy_hash(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn missing_documents_are_listed() {
        let a = policy_hash(b"coordinator policy");
        let b = policy_hash(b"web policy");
        let m = crate::testutil::manifest(&[(&a, "coordinator"), (&b, "")]);
        let mut docs = PolicyDocs::default();
        docs.insert(b"web policy".to_vec(), "test".into());
        let err = docs.for_manifest(&m).unwrap_err().to_string();
        assert!(
            err.contains("no policy document for 1 of the manifest's 2 policies"),
            "{err}"
        );
        assert!(err.contains(&a.to_hex()), "{err}");
        assert!(err.contains("role coordinator"), "{err}");
        assert!(!err.contains(&b.to_hex()), "{err}");
        docs.insert(b"coordinator policy".to_vec(), "test".into());
        docs.insert(b"unrelated".to_vec(), "test".into());
        let mut sent = docs.for_manifest(&m).unwrap();
        sent.sort();
        assert_eq!(
            sent,
            vec![b"coordinator policy".to_vec(), b"web policy".to_vec()]
        );
    }
}
