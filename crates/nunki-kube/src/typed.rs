//! The typed view of a pod spec: converting a [`Node`] into `k8s_openapi`'s `PodSpec` while
//! tracking the YAML path (for wrong-type errors) and finding every field the typed struct
//! dropped (unknown or misspelled fields), with a nearest-name suggestion.
//!
//! The conversion uses a small deserializer over `&Node` instead of a generic one: it knows the
//! path at every step, and it sees the field list that each `k8s_openapi` struct passes to
//! `deserialize_struct`, which is exactly the set of names a suggestion can come from. The
//! dropped fields themselves are found by re-serialising the typed spec and diffing it against
//! the original tree, so nothing the typed struct loses goes unnoticed.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::PodSpec;
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use crate::node::{Mapping, Node};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    Error,
    Warning,
}

/// One problem found while converting a pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub severity: Severity,
    /// Full YAML path inside the document.
    pub path: String,
    pub message: String,
}

/// Top-level `PodSpec` fields whose content changes what a container runs or what it can reach
/// (its process, image, environment, mounts, identity, namespaces, hostname, DNS, devices).
/// A field lost under one of them is an error; elsewhere (scheduling, affinity, tolerations,
/// probes' timing, ...) a warning.
const RUNTIME_FIELDS: &[&str] = &[
    "automountServiceAccountToken",
    "containers",
    "dnsConfig",
    "dnsPolicy",
    "enableServiceLinks",
    "ephemeralContainers",
    "hostAliases",
    "hostIPC",
    "hostNetwork",
    "hostPID",
    "hostUsers",
    "hostname",
    "initContainers",
    "os",
    "resourceClaims",
    "resources",
    "runtimeClassName",
    "securityContext",
    "serviceAccount",
    "serviceAccountName",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "subdomain",
    "volumes",
];

/// Converts the pod spec at `node` (whose YAML path is `prefix`, e.g. `spec.template.spec`).
///
/// `Err` is a wrong type (with its path). `Ok` carries the typed spec and every dropped or
/// altered field: errors under [`RUNTIME_FIELDS`], warnings elsewhere.
pub(crate) fn convert_pod_spec(
    node: &Node,
    prefix: &str,
) -> Result<(PodSpec, Vec<Finding>), Finding> {
    let (spec, diffs, suggestions) = convert::<PodSpec>(node, prefix, "the pod spec")?;
    let findings = diffs
        .into_iter()
        .map(|d| classify(d, prefix, &suggestions))
        .collect();
    Ok((spec, findings))
}

/// What [`convert`] returns: the typed object, the differences, and the closest known field
/// name of each unknown key (by path).
pub(crate) type Converted<T> = (T, Vec<Diff>, HashMap<String, String>);

/// Reads `node` (at YAML path `prefix`) as the typed object `T`, re-serialises it and returns
/// what did not survive: every differing path (dropped, changed or coerced) and the closest
/// known field name of each unknown key. `what` names the object in messages.
pub(crate) fn convert<T: serde::de::DeserializeOwned + serde::Serialize>(
    node: &Node,
    prefix: &str,
    what: &str,
) -> Result<Converted<T>, Finding> {
    let ctx = Ctx::default();
    let root = Seg::Root(prefix);
    let value = T::deserialize(De {
        node,
        path: &root,
        ctx: &ctx,
    })
    .map_err(|e| Finding {
        severity: Severity::Error,
        path: e.path.unwrap_or_else(|| prefix.to_owned()),
        message: e.msg,
    })?;
    let typed = serde_json::to_value(&value).map_err(|e| Finding {
        severity: Severity::Error,
        path: prefix.to_owned(),
        message: format!("cannot re-serialise {what}: {e}"),
    })?;
    let suggestions = ctx.suggestions.into_inner();
    let coerced = ctx.coerced.into_inner();
    let mut diffs = Vec::new();
    diff(
        node,
        &typed,
        &mut YamlPath::new(prefix),
        &coerced,
        &mut diffs,
    );
    Ok((value, diffs, suggestions))
}

/// Only the typed spec, without looking for dropped fields: for trees already checked by
/// [`convert_pod_spec`] to which Nunki added only fields it knows.
pub(crate) fn typed_pod_spec(node: &Node, prefix: &str) -> Result<PodSpec, Finding> {
    deserialize_pod_spec(node, prefix, &Ctx::default())
}

fn deserialize_pod_spec(node: &Node, prefix: &str, ctx: &Ctx) -> Result<PodSpec, Finding> {
    let root = Seg::Root(prefix);
    PodSpec::deserialize(De {
        node,
        path: &root,
        ctx,
    })
    .map_err(|e| Finding {
        severity: Severity::Error,
        path: e.path.unwrap_or_else(|| prefix.to_owned()),
        message: e.msg,
    })
}

/// A difference between the original tree and the re-serialised typed object.
#[derive(Debug)]
pub(crate) struct Diff {
    pub path: String,
    pub kind: DiffKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiffKind {
    /// A mapping key the typed struct does not have.
    Dropped,
    /// A value that came back different.
    Changed,
    /// A non-string scalar read as a string.
    Coerced,
}

fn classify(d: Diff, prefix: &str, suggestions: &HashMap<String, String>) -> Finding {
    let rel = d
        .path
        .strip_prefix(prefix)
        .unwrap_or(&d.path)
        .trim_start_matches('.');
    let top = rel.split(['.', '[']).next().unwrap_or("");
    let suggestion = suggestions.get(&d.path);
    let at_top = !rel.contains(['.', '[']);
    let runtime = RUNTIME_FIELDS.contains(&top)
        || (at_top && suggestion.is_some_and(|s| RUNTIME_FIELDS.contains(&s.as_str())));
    let mut message = d.detail;
    if let Some(s) = suggestion {
        message.push_str(&format!("; did you mean {s:?}?"));
    }
    let severity = if d.kind == DiffKind::Coerced {
        Severity::Warning
    } else if runtime {
        if d.kind == DiffKind::Dropped {
            message.push_str(
                " (it would be ignored, but it is where what the container runs is defined; fix or remove it)",
            );
        }
        Severity::Error
    } else {
        if d.kind == DiffKind::Dropped {
            message.push_str(" (kept in the output; Kubernetes may reject or ignore it)");
        }
        Severity::Warning
    };
    Finding {
        severity,
        path: d.path,
        message,
    }
}

/// A YAML path under construction for the diff.
struct YamlPath(String);

impl YamlPath {
    fn new(prefix: &str) -> Self {
        Self(prefix.to_owned())
    }

    fn with_key<R>(&mut self, key: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let len = self.0.len();
        push_key(&mut self.0, key);
        let r = f(self);
        self.0.truncate(len);
        r
    }

    fn with_index<R>(&mut self, i: usize, f: impl FnOnce(&mut Self) -> R) -> R {
        let len = self.0.len();
        self.0.push_str(&format!("[{i}]"));
        let r = f(self);
        self.0.truncate(len);
        r
    }
}

/// Appends `.key` (or `["key"]` for keys that would be ambiguous in a dotted path).
pub(crate) fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'));
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push_str(&format!("[{key:?}]"));
    }
}

fn diff(
    orig: &Node,
    typed: &serde_json::Value,
    path: &mut YamlPath,
    coerced: &HashSet<String>,
    out: &mut Vec<Diff>,
) {
    use serde_json::Value as J;
    match (orig, typed) {
        (Node::Map(m), J::Object(t)) => {
            for (k, v) in m.iter() {
                path.with_key(k, |path| match t.get(k) {
                    Some(tv) => diff(v, tv, path, coerced, out),
                    // An explicit null is the same as an absent optional field.
                    None if matches!(v, Node::Null) => {}
                    None => out.push(Diff {
                        path: path.0.clone(),
                        kind: DiffKind::Dropped,
                        detail: "unknown field".to_owned(),
                    }),
                });
            }
        }
        (Node::Seq(s), J::Array(t)) if s.len() == t.len() => {
            for (i, (v, tv)) in s.iter().zip(t).enumerate() {
                path.with_index(i, |path| diff(v, tv, path, coerced, out));
            }
        }
        (Node::Null, J::Null) => {}
        (Node::Bool(a), J::Bool(b)) if a == b => {}
        (Node::String(a), J::String(b)) if a == b => {}
        (Node::Int(a), J::Number(b)) if b.as_i64() == Some(*a) => {}
        (Node::UInt(a), J::Number(b)) if b.as_u64() == Some(*a) => {}
        (Node::Float(a), J::Number(b)) if b.as_f64() == Some(*a) => {}
        // A number or boolean read as a string: worth a warning, the API server refuses it.
        (_, J::String(b)) if coerced.contains(&path.0) && scalar_text(orig).as_ref() == Some(b) => {
            out.push(Diff {
                path: path.0.clone(),
                kind: DiffKind::Coerced,
                detail: format!(
                    "{} where Kubernetes expects a string; read as {b:?}, but the API server will refuse it unquoted: write {b:?}",
                    orig.type_name()
                ),
            })
        }
        // A number where a Quantity (a string) is expected: k8s-openapi keeps its text.
        (Node::Int(_) | Node::UInt(_) | Node::Float(_), J::String(b))
            if b.parse::<f64>().ok() == number_f64(orig) => {}
        _ => out.push(Diff {
            path: path.0.clone(),
            kind: DiffKind::Changed,
            detail: format!(
                "the value changed when read as the typed Kubernetes object (was {}, became {})",
                orig.type_name(),
                json_type_name(typed)
            ),
        }),
    }
}

/// The text of a non-string scalar, as YAML would print it.
fn scalar_text(n: &Node) -> Option<String> {
    match n {
        Node::Bool(b) => Some(b.to_string()),
        Node::Int(i) => Some(i.to_string()),
        Node::UInt(u) => Some(u.to_string()),
        Node::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn number_f64(n: &Node) -> Option<f64> {
    match n {
        Node::Int(i) => Some(*i as f64),
        Node::UInt(u) => Some(*u as f64),
        Node::Float(f) => Some(*f),
        _ => None,
    }
}

fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a sequence",
        serde_json::Value::Object(_) => "a mapping",
    }
}

/// The closest of `candidates` to `key`, if it is close enough to be a plausible typo.
pub(crate) fn suggest<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if let Some(c) = candidates.iter().find(|c| c.eq_ignore_ascii_case(key)) {
        return Some(c);
    }
    let key_lower = key.to_ascii_lowercase();
    let max = match key.chars().count() {
        // `on` is one step from `os`, but that says nothing: short keys need an exact match.
        0..=2 => 0,
        3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (edit_distance(&key_lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions
/// of neighbours each cost 1 (`hostNetwrok` is one step from `hostNetwork`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the DP table.
    let mut prev2: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = Vec::with_capacity(b.len() + 1);
        row.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(usize::MAX / 2) + usize::from(ca != cb);
            let del = prev.get(j + 1).copied().unwrap_or(usize::MAX / 2) + 1;
            let ins = row.get(j).copied().unwrap_or(usize::MAX / 2) + 1;
            let mut best = sub.min(del).min(ins);
            if i > 0
                && j > 0
                && a.get(i - 1) == Some(cb)
                && b.get(j - 1) == Some(ca)
                && let Some(t) = prev2.get(j - 1)
            {
                best = best.min(t + 1);
            }
            row.push(best);
        }
        prev2 = std::mem::replace(&mut prev, row);
    }
    prev.last().copied().unwrap_or(0)
}

// ---- the path-tracking deserializer ----

#[derive(Default)]
struct Ctx {
    /// Full path of an unknown key → the closest field name of its struct.
    suggestions: RefCell<HashMap<String, String>>,
    /// Paths where a number or boolean was read as the string Kubernetes expects.
    coerced: RefCell<HashSet<String>>,
}

#[derive(Clone, Copy)]
enum Seg<'p> {
    Root(&'p str),
    Key(&'p Seg<'p>, &'p str),
    Index(&'p Seg<'p>, usize),
}

impl Seg<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match self {
            Seg::Root(prefix) => out.push_str(prefix),
            Seg::Key(parent, key) => {
                parent.render_into(out);
                push_key(out, key);
            }
            Seg::Index(parent, i) => {
                parent.render_into(out);
                out.push_str(&format!("[{i}]"));
            }
        }
    }
}

#[derive(Debug)]
struct DeError {
    msg: String,
    path: Option<String>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            msg: msg.to_string(),
            path: None,
        }
    }
}

struct De<'a, 'p> {
    node: &'a Node,
    path: &'p Seg<'p>,
    ctx: &'p Ctx,
}

impl<'a, 'p> De<'a, 'p> {
    fn locate<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|mut e| {
            if e.path.is_none() {
                e.path = Some(self.path.render());
            }
            e
        })
    }

    fn record_unknown_keys(&self, map: &Mapping, fields: &'static [&'static str]) {
        for key in map.keys() {
            if !fields.contains(&key)
                && let Some(s) = suggest(key, fields)
            {
                let mut path = self.path.render();
                push_key(&mut path, key);
                self.ctx.suggestions.borrow_mut().insert(path, s.to_owned());
            }
        }
    }
}

impl<'de, 'p> Deserializer<'de> for De<'de, 'p> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.node {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Int(i) => visitor.visit_i64(*i),
            Node::UInt(u) => visitor.visit_u64(*u),
            Node::Float(f) => visitor.visit_f64(*f),
            Node::String(s) => visitor.visit_borrowed_str(s),
            Node::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                path: self.path,
                ctx: self.ctx,
            }),
            Node::Map(map) => visitor.visit_map(MapDe {
                entries: map.iter(),
                value: None,
                path: self.path,
                ctx: self.ctx,
            }),
        };
        self.locate(r)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node {
            Node::Null => {
                let r = visitor.visit_none();
                self.locate(r)
            }
            _ => {
                let path = self.path;
                let r = visitor.visit_some(self);
                r.map_err(|mut e| {
                    if e.path.is_none() {
                        e.path = Some(path.render());
                    }
                    e
                })
            }
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path;
        visitor.visit_newtype_struct(self).map_err(|mut e| {
            if e.path.is_none() {
                e.path = Some(path.render());
            }
            e
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if let Node::Map(map) = self.node {
            self.record_unknown_keys(map, fields);
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match self.node {
            Node::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            other => Err(de::Error::custom(format_args!(
                "invalid type: {}, expected a string",
                other.type_name()
            ))),
        };
        self.locate(r)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    /// A number or boolean where a string is expected is read as its text (as genpolicy and
    /// YAML libraries with loose typing do), and reported: the API server would refuse it.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match scalar_text(self.node) {
            Some(text) => {
                self.ctx.coerced.borrow_mut().insert(self.path.render());
                let r = visitor.visit_string(text);
                self.locate(r)
            }
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct SeqDe<'a, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'p Seg<'p>,
    ctx: &'p Ctx,
}

impl<'de> SeqAccess<'de> for SeqDe<'de, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let seg = Seg::Index(self.path, i);
                seed.deserialize(De {
                    node,
                    path: &seg,
                    ctx: self.ctx,
                })
                .map(Some)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a, 'p, I> {
    entries: I,
    value: Option<(&'a str, &'a Node)>,
    path: &'p Seg<'p>,
    ctx: &'p Ctx,
}

impl<'de, I: Iterator<Item = (&'de str, &'de Node)>> MapAccess<'de> for MapDe<'de, '_, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.value = Some((k, v));
                let key: de::value::BorrowedStrDeserializer<'de, DeError> =
                    de::value::BorrowedStrDeserializer::new(k);
                seed.deserialize(key).map(Some)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (k, node) = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value requested before its key"))?;
        let seg = Seg::Key(self.path, k);
        seed.deserialize(De {
            node,
            path: &seg,
            ctx: self.ctx,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Node {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn distance_counts_transpositions_once() {
        assert_eq!(edit_distance("comand", "command"), 1);
        assert_eq!(edit_distance("hostnetwrok", "hostnetwork"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions_are_close_names_only() {
        let fields = ["command", "args", "image", "env"];
        assert_eq!(suggest("comand", &fields), Some("command"));
        assert_eq!(suggest("Image", &fields), Some("image"));
        assert_eq!(suggest("volumeMounts", &fields), None);
        assert_eq!(suggest("evn", &fields), Some("env"));
        assert_eq!(suggest("os", &["on"]), None);
    }

    #[test]
    fn misspelled_container_field_is_an_error_with_path_and_suggestion() {
        let spec = parse("containers:\n- name: a\n  image: x\n  comand: [sh]\n");
        let (_, findings) = convert_pod_spec(&spec, "spec").unwrap();
        assert_eq!(
            findings,
            vec![Finding {
                severity: Severity::Error,
                path: "spec.containers[0].comand".to_owned(),
                message: "unknown field; did you mean \"command\"? (it would be ignored, but it is where what the container runs is defined; fix or remove it)".to_owned(),
            }]
        );
    }

    #[test]
    fn misspelled_host_namespace_at_top_is_an_error() {
        let spec = parse("hostNetwrok: true\ncontainers:\n- name: a\n");
        let (_, findings) = convert_pod_spec(&spec, "spec").unwrap();
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Error);
        assert_eq!(findings[0].path, "spec.hostNetwrok");
        assert!(findings[0].message.contains("\"hostNetwork\""));
    }

    #[test]
    fn unknown_scheduling_field_is_a_warning() {
        let spec = parse("containers:\n- name: a\nschedulerNam: x\nfrobnicate: 1\n");
        let (_, findings) = convert_pod_spec(&spec, "spec").unwrap();
        assert_eq!(findings.len(), 2);
        assert!(findings.iter().all(|f| f.severity == Severity::Warning));
        assert_eq!(findings[0].path, "spec.schedulerNam");
        assert!(findings[0].message.contains("\"schedulerName\""));
        assert_eq!(findings[1].path, "spec.frobnicate");
    }

    #[test]
    fn wrong_type_names_the_path() {
        let spec = parse("containers:\n- name: a\n  command: sleep\n");
        let err = convert_pod_spec(&spec, "spec.template.spec").unwrap_err();
        assert_eq!(err.path, "spec.template.spec.containers[0].command");
        assert!(
            err.message.contains("invalid type: string \"sleep\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn nested_wrong_type_names_the_path() {
        let spec =
            parse("containers:\n- name: a\n  securityContext:\n    privileged: yes please\n");
        let err = convert_pod_spec(&spec, "spec").unwrap_err();
        assert_eq!(err.path, "spec.containers[0].securityContext.privileged");
    }

    #[test]
    fn numeric_quantities_and_nulls_are_not_findings() {
        let spec = parse(
            "containers:\n- name: a\n  resources:\n    limits:\n      cpu: 1\n      memory: 1.5\n      nvidia.com/gpu: 2\n  args: null\nnodeName: ~\n",
        );
        let (typed, findings) = convert_pod_spec(&spec, "spec").unwrap();
        assert_eq!(findings, vec![]);
        let limits = typed.containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert_eq!(limits["cpu"].0, "1");
        assert_eq!(limits["memory"].0, "1.5");
    }

    #[test]
    fn numbers_where_strings_belong_are_read_as_text_with_a_warning() {
        let spec = parse(
            "securityContext:\n  sysctls: [{name: a, value: 1}]\ncontainers:\n- name: a\n  env: [{name: A, value: true}]\n",
        );
        let (typed, findings) = convert_pod_spec(&spec, "spec").unwrap();
        assert_eq!(
            typed.security_context.unwrap().sysctls.unwrap()[0].value,
            "1"
        );
        assert_eq!(
            typed.containers[0].env.as_ref().unwrap()[0]
                .value
                .as_deref(),
            Some("true")
        );
        let got: Vec<(&str, Severity)> = findings
            .iter()
            .map(|f| (f.path.as_str(), f.severity))
            .collect();
        assert_eq!(
            got,
            [
                ("spec.securityContext.sysctls[0].value", Severity::Warning),
                ("spec.containers[0].env[0].value", Severity::Warning),
            ]
        );
        assert!(
            findings[0].message.contains("write \"1\""),
            "{}",
            findings[0].message
        );
    }

    #[test]
    fn keys_with_dots_are_bracketed_in_paths() {
        let mut p = String::from("metadata");
        push_key(&mut p, "annotations");
        push_key(&mut p, "io.katacontainers.config");
        assert_eq!(p, "metadata.annotations[\"io.katacontainers.config\"]");
    }
}
