#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Writing: YAML 1.1 strings stay strings, numbers stay numbers, files are rewritten
//! atomically and only when they change, `-o` output joins all documents.

mod common;

use std::path::PathBuf;

use nunki_kube::{Node, Resources, RewriteOptions};

const AMBIGUOUS: [&str; 20] = [
    "on",
    "off",
    "yes",
    "no",
    "y",
    "n",
    "true",
    "False",
    "0o10",
    "1e3",
    "0x1F",
    "~",
    "null",
    "",
    "0644",
    "1_000",
    "12:30",
    "2024-01-01",
    ".inf",
    "-.5",
];

fn pod_with_args(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("    - {a:?}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    enabled: \"on\"\nspec:\n  containers:\n  - name: c\n    image: x\n    args:\n{}    ports:\n    - containerPort: 8080\n    resources:\n      limits: {{cpu: 0.5, memory: 1024}}\n",
        args.concat()
    )
}

#[test]
fn yaml_1_1_strings_stay_quoted_and_numbers_stay_numbers() {
    let text = pod_with_args(&AMBIGUOUS);
    let mut r = Resources::from_str("in.yaml", &text).unwrap();
    r.rewrite(&RewriteOptions::new("init:1")).unwrap();
    let out = r.to_combined_yaml().unwrap();
    // In the text: each ambiguous string is quoted.
    for a in AMBIGUOUS {
        assert!(
            out.contains(&format!("    - \"{a}\"\n")) || out.contains(&format!("    - '{a}'\n")),
            "{a:?} is not quoted in:\n{out}"
        );
    }
    assert!(out.contains("    enabled: \"on\"\n"), "{out}");
    assert!(out.contains("    - containerPort: 8080\n"), "{out}");
    assert!(
        out.contains("        cpu: 0.5\n") && out.contains("        memory: 1024\n"),
        "{out}"
    );
    // Parsed back (as kubectl would, YAML 1.1): the same strings and numbers.
    let back = nunki_kube::parse_documents("out.yaml".as_ref(), &out).unwrap();
    let args = back[0]
        .get_path(&["spec", "containers"])
        .unwrap()
        .as_seq()
        .unwrap()[0]
        .get("args")
        .unwrap()
        .as_seq()
        .unwrap()
        .to_vec();
    assert_eq!(args, AMBIGUOUS.map(Node::from).to_vec());
    let port = back[0]
        .get_path(&["spec", "containers"])
        .unwrap()
        .as_seq()
        .unwrap()[0]
        .get("ports")
        .unwrap()
        .as_seq()
        .unwrap()[0]
        .get("containerPort");
    assert_eq!(port, Some(&Node::Int(8080)));
    // The whole tree survives, apart from what the rewrite added.
    let original = nunki_kube::parse_documents("in.yaml".as_ref(), &text).unwrap();
    let mut stripped = back[0].clone();
    let spec = stripped
        .as_map_mut()
        .unwrap()
        .get_mut("spec")
        .unwrap()
        .as_map_mut()
        .unwrap();
    spec.remove("initContainers");
    spec.remove("volumes");
    spec.remove("runtimeClassName");
    let c = &mut spec.get_mut("containers").unwrap();
    let Node::Seq(cs) = c else { panic!() };
    cs[0].as_map_mut().unwrap().remove("volumeMounts");
    assert_eq!(stripped, original[0]);
}

#[test]
fn multi_line_and_long_strings_round_trip() {
    let long = "x".repeat(5000);
    let script = "set -e\nif [ -f /x ]; then\n  echo 'a: b' # not a comment\nfi\n";
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    long: {long}\nspec:\n  containers:\n  - name: c\n    image: x\n    command: [sh, -c, {script:?}, \"trailing space \", \" leading\", \"tab\\there\", \"quote\\\"s\", \"it's\", \"#hash\", \"- dash\", \"key: value\", \"* star\", \"&amp\", \"!tag\", \"%pct\", \"@at\", \"`tick\"]\n"
    );
    let r = Resources::from_str("in.yaml", &text).unwrap();
    let out = r.to_combined_yaml().unwrap();
    // A long single-line string (the policy annotation) stays on one line.
    assert!(out.contains(&format!("    long: {long}\n")));
    // A multi-line string becomes a literal block.
    assert!(out.contains("  - |\n      set -e\n"), "{out}");
    assert_eq!(
        nunki_kube::parse_documents("o".as_ref(), &out).unwrap(),
        nunki_kube::parse_documents("i".as_ref(), &text).unwrap()
    );
}

#[test]
fn write_in_place_rewrites_changed_files_atomically_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let pod = "# my pod\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x}]\n";
    let svc = "# my service, formatted my way\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n";
    let pod_path = common::write(dir.path(), "pod.yaml", pod);
    let svc_path = common::write(dir.path(), "svc.yaml", svc);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pod_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }

    let mut r = Resources::read(&[dir.path().to_owned()]).unwrap();
    r.rewrite(&RewriteOptions::new("init:1")).unwrap();
    let written = r.write_in_place().unwrap();
    assert_eq!(written, vec![pod_path.clone()]);
    assert_eq!(
        std::fs::read_to_string(&svc_path).unwrap(),
        svc,
        "untouched, comments and all"
    );
    let new_pod = std::fs::read_to_string(&pod_path).unwrap();
    assert!(new_pod.contains("nunki-initializer"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&pod_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640, "permissions kept");
    }
    // No temporary files left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["pod.yaml", "svc.yaml"]);

    // Second run: nothing to write, byte-identical files.
    let mtime = std::fs::metadata(&pod_path).unwrap().modified().unwrap();
    let mut r = Resources::read(&[dir.path().to_owned()]).unwrap();
    r.rewrite(&RewriteOptions::new("init:1")).unwrap();
    assert_eq!(r.write_in_place().unwrap(), Vec::<PathBuf>::new());
    assert_eq!(std::fs::read_to_string(&pod_path).unwrap(), new_pod);
    assert_eq!(
        std::fs::metadata(&pod_path).unwrap().modified().unwrap(),
        mtime
    );
}

#[test]
fn combined_output_joins_all_documents_of_all_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    common::write(
        dir.path(),
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
    );
    common::write(
        dir.path(),
        "b.yaml",
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    let r = Resources::read(&[dir.path().to_owned()]).unwrap();
    assert_eq!(
        r.to_combined_yaml().unwrap(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
    );
}
