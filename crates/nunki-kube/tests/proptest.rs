#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Properties of the YAML path: emitting and re-reading any tree gives the same tree, and no
//! input makes reading panic.

use nunki_kube::{Mapping, Node, Resources, RewriteOptions};
use proptest::prelude::*;

/// Strings that stress quoting: YAML indicators, YAML 1.1 look-alikes, whitespace at the
/// edges, line breaks, control and non-ASCII characters.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \t\n\r:#&*!|>'\"%@`,\\[\\]{}?~-]{0,6}",
        prop::sample::select(vec![
            "on",
            "off",
            "yes",
            "No",
            "Y",
            "null",
            "~",
            "",
            "0o10",
            "0x1F",
            "1e3",
            "0644",
            "1_000",
            "12:30:00",
            "2001-12-14",
            ".nan",
            "-.inf",
            "+1",
            "<<",
            "=",
            "- a",
            "a: b",
            "#",
            "---",
            "...",
            " ",
            "\n",
            "\u{feff}x",
            "\u{85}",
            "\u{2028}",
            "\t",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9 .:/-]{0,40}",
    ]
}

fn scalar() -> impl Strategy<Value = Node> {
    prop_oneof![
        Just(Node::Null),
        any::<bool>().prop_map(Node::Bool),
        any::<i64>().prop_map(Node::Int),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Node::UInt),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Node::Float),
        tricky_string().prop_map(Node::String),
    ]
}

fn mapping(inner: impl Strategy<Value = Node>) -> impl Strategy<Value = Mapping> {
    prop::collection::vec((tricky_string(), inner), 0..6).prop_map(|entries| {
        let mut m = Mapping::new();
        for (k, v) in entries {
            m.insert(k, v);
        }
        m
    })
}

fn node() -> impl Strategy<Value = Node> {
    scalar().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Node::Seq),
            mapping(inner).prop_map(Node::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn emit_then_parse_is_the_identity(docs in prop::collection::vec(mapping(node()), 1..4)) {
        let docs: Vec<Node> = docs.into_iter().map(Node::Map).collect();
        let text = nunki_kube::to_yaml(&docs).unwrap();
        let back = nunki_kube::parse_documents("p.yaml".as_ref(), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(back, docs, "{}", text);
    }

    #[test]
    fn container_strings_survive_the_whole_pipeline(
        args in prop::collection::vec(tricky_string(), 0..8),
        env in prop::collection::vec(tricky_string(), 0..4),
    ) {
        let mut c = Mapping::new();
        c.insert("name", Node::from("c"));
        c.insert("image", Node::from("img"));
        c.insert("args", Node::Seq(args.iter().cloned().map(Node::String).collect()));
        c.insert("env", Node::Seq(env.iter().enumerate().map(|(i, v)| {
            let mut e = Mapping::new();
            e.insert("name", Node::String(format!("V{i}")));
            e.insert("value", Node::String(v.clone()));
            Node::Map(e)
        }).collect()));
        let mut spec = Mapping::new();
        spec.insert("containers", Node::Seq(vec![Node::Map(c)]));
        let mut meta = Mapping::new();
        meta.insert("name", Node::from("p"));
        let mut pod = Mapping::new();
        pod.insert("apiVersion", Node::from("v1"));
        pod.insert("kind", Node::from("Pod"));
        pod.insert("metadata", Node::Map(meta));
        pod.insert("spec", Node::Map(spec));
        let text = nunki_kube::to_yaml(&[Node::Map(pod)]).unwrap();

        let mut r = Resources::from_str("p.yaml", &text).unwrap();
        r.rewrite(&RewriteOptions::new("init")).unwrap();
        let out = r.to_combined_yaml().unwrap();
        let again = Resources::from_str("p.yaml", &out).unwrap();
        let spec = again.workloads()[0].pod_input().spec;
        let c = &spec.containers[0];
        prop_assert_eq!(c.args.clone().unwrap_or_default(), args);
        let values: Vec<String> = c.env.clone().unwrap_or_default().into_iter().map(|e| e.value.unwrap_or_default()).collect();
        prop_assert_eq!(values, env);
    }

    #[test]
    fn reading_arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Resources::from_str("fuzz.yaml", &text);
    }

    #[test]
    fn reading_yaml_like_text_never_panics(
        lines in prop::collection::vec(
            "( {0,6})(-|[a-z]{1,8}:|apiVersion: v1|kind: Pod|kind: Deployment|spec:|containers:|template:|metadata:|name: x|image: y|- name: c|---|&a|\\*a|<<: \\*a|\\[|\\]|\\{|\\}|'|\"|#)( [a-z0-9\\[\\]{}:,'\"]{0,8})?",
            0..40,
        )
    ) {
        let text = lines.join("\n");
        if let Ok(mut r) = Resources::from_str("fuzz.yaml", &text) {
            let _ = r.rewrite(&RewriteOptions::new("init"));
            let _ = r.to_combined_yaml();
            for w in r.workloads() {
                let _ = w.pod_input();
            }
        }
    }
}
