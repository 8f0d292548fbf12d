//! Environment variables: the image's, containerd's and the pod spec's (`env`, `envFrom`), with
//! ConfigMap/Secret values resolved and `$(VAR)` references expanded the way kubelet does.

use k8s_openapi::api::core::v1::{Container, EnvVarSource};

use super::Ctx;
use crate::generate::{GenerateError, MissingReference, SourceKind};

fn missing(
    ctx: &Ctx<'_>,
    container: &Container,
    path: String,
    kind: SourceKind,
    name: &str,
    key: Option<&str>,
) -> GenerateError {
    GenerateError::MissingReference(Box::new(MissingReference {
        resource: ctx.resource.clone(),
        container: container.name.clone(),
        path,
        kind,
        name: name.to_owned(),
        key: key.map(str::to_owned),
    }))
}

/// Placeholder for `fieldRef: metadata.name` (the rules substitute the sandbox name).
const SANDBOX_NAME: &str = "$(sandbox-name)";

/// Expands `$(NAME)` references like kubelet (`k8s.io/kubernetes/third_party/forked/golang/
/// expansion`): a known name is replaced by its value, an unknown reference stays as written,
/// `$$` is an escaped `$`. With `keep_escapes`, `$$` is written as `$$` (genpolicy keeps the
/// escapes in `Args`, and the rules unescape them), otherwise as `$`.
pub(crate) fn expand(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    keep_escapes: bool,
) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        let (before, from_dollar) = rest.split_at(pos);
        out.push_str(before);
        let after = from_dollar.get(1..).unwrap_or_default();
        if after.is_empty() {
            out.push('$');
            rest = after;
            break;
        }
        if let Some(tail) = after.strip_prefix('$') {
            out.push_str(if keep_escapes { "$$" } else { "$" });
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = body.get(..end).unwrap_or_default();
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = body.get(end + 1..).unwrap_or_default();
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// An ordered list of variables where a later definition replaces an earlier one in place
/// (kubelet's map of variables, containerd's `WithEnv`).
#[derive(Debug, Clone, Default)]
pub(crate) struct EnvList {
    vars: Vec<(String, Option<String>)>,
}

impl EnvList {
    /// From `NAME=value` entries (an entry without `=` is kept as a bare name).
    pub(crate) fn from_entries<'a>(entries: impl IntoIterator<Item = &'a String>) -> Self {
        let mut list = Self::default();
        for entry in entries {
            match entry.split_once('=') {
                Some((name, value)) => list.set(name, value.to_owned()),
                None => list.set_bare(entry),
            }
        }
        list
    }

    pub(crate) fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = Some(value),
            None => self.vars.push((name.to_owned(), Some(value))),
        }
    }

    fn set_bare(&mut self, name: &str) {
        if !self.vars.iter().any(|(n, _)| n == name) {
            self.vars.push((name.to_owned(), None));
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// `NAME=value` entries in order.
    pub(crate) fn entries(&self) -> Vec<String> {
        self.vars
            .iter()
            .map(|(n, v)| match v {
                Some(v) => format!("{n}={v}"),
                None => n.clone(),
            })
            .collect()
    }
}

/// The variables kubelet passes for the container: `envFrom` first, then `env`, each `value`
/// expanded against the variables defined before it.
pub(crate) fn kubernetes_env(
    ctx: &Ctx<'_>,
    container: &Container,
    cpath: &str,
) -> Result<EnvList, GenerateError> {
    let mut list = EnvList::default();
    let namespace = ctx.input.namespace.as_deref();
    for (i, source) in container.env_from.iter().flatten().enumerate() {
        let path = format!("{cpath}.envFrom[{i}]");
        let prefix = source.prefix.as_deref().unwrap_or_default();
        if let Some(cm) = &source.config_map_ref {
            match ctx.sources.config_map(namespace, &cm.name) {
                Some(data) => {
                    for (key, value) in data {
                        list.set(&format!("{prefix}{key}"), value.clone());
                    }
                }
                None if cm.optional == Some(true) => {}
                None => {
                    return Err(missing(
                        ctx,
                        container,
                        path,
                        SourceKind::ConfigMap,
                        &cm.name,
                        None,
                    ));
                }
            }
        } else if let Some(secret) = &source.secret_ref {
            match ctx.sources.secret(namespace, &secret.name) {
                Some(data) => {
                    for (key, value) in data {
                        list.set(&format!("{prefix}{key}"), value.clone());
                    }
                }
                None if secret.optional == Some(true) => {}
                None => {
                    return Err(missing(
                        ctx,
                        container,
                        path,
                        SourceKind::Secret,
                        &secret.name,
                        None,
                    ));
                }
            }
        } else {
            return Err(ctx.invalid(&path, "neither configMapRef nor secretRef is set"));
        }
    }
    for (i, var) in container.env.iter().flatten().enumerate() {
        let path = format!("{cpath}.env[{i}]");
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => Some(expand(value, &|name| list.get(name), false)),
            (None, Some(source)) => {
                value_from(ctx, container, source, &format!("{path}.valueFrom"))?
            }
            (None, None) => Some(String::new()),
        };
        if let Some(value) = value {
            list.set(&var.name, value);
        }
    }
    Ok(list)
}

/// The value of `valueFrom`, or `None` for an optional reference that does not resolve.
fn value_from(
    ctx: &Ctx<'_>,
    container: &Container,
    source: &EnvVarSource,
    path: &str,
) -> Result<Option<String>, GenerateError> {
    let namespace = ctx.input.namespace.as_deref();
    if let Some(key_ref) = &source.config_map_key_ref {
        let optional = key_ref.optional == Some(true);
        let Some(data) = ctx.sources.config_map(namespace, &key_ref.name) else {
            if optional {
                return Ok(None);
            }
            return Err(missing(
                ctx,
                container,
                format!("{path}.configMapKeyRef"),
                SourceKind::ConfigMap,
                &key_ref.name,
                None,
            ));
        };
        return match data.get(&key_ref.key) {
            Some(value) => Ok(Some(value.clone())),
            None if optional => Ok(None),
            None => Err(missing(
                ctx,
                container,
                format!("{path}.configMapKeyRef"),
                SourceKind::ConfigMap,
                &key_ref.name,
                Some(&key_ref.key),
            )),
        };
    }
    if let Some(key_ref) = &source.secret_key_ref {
        let optional = key_ref.optional == Some(true);
        let Some(data) = ctx.sources.secret(namespace, &key_ref.name) else {
            if optional {
                return Ok(None);
            }
            return Err(missing(
                ctx,
                container,
                format!("{path}.secretKeyRef"),
                SourceKind::Secret,
                &key_ref.name,
                None,
            ));
        };
        return match data.get(&key_ref.key) {
            Some(value) => Ok(Some(value.clone())),
            None if optional => Ok(None),
            None => Err(missing(
                ctx,
                container,
                format!("{path}.secretKeyRef"),
                SourceKind::Secret,
                &key_ref.name,
                Some(&key_ref.key),
            )),
        };
    }
    if let Some(field_ref) = &source.field_ref {
        return field_value(
            ctx,
            &field_ref.field_path,
            &format!("{path}.fieldRef.fieldPath"),
        )
        .map(Some);
    }
    if source.resource_field_ref.is_some() {
        // Resource values (limits.cpu, …) depend on the node; the rules accept any value.
        return Ok(Some("$(resource-field)".to_owned()));
    }
    Err(ctx.invalid(
        path,
        "no configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef",
    ))
}

/// `metadata.labels['key']` → `key` (single or double quotes).
fn bracket_key<'a>(field_path: &'a str, prefix: &str) -> Option<&'a str> {
    let inner = field_path
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

/// The downward-API value of `fieldPath`: a literal when the YAML fixes it, otherwise a
/// placeholder that the rules match against the runtime value.
fn field_value(ctx: &Ctx<'_>, field_path: &str, path: &str) -> Result<String, GenerateError> {
    let spec = &ctx.input.spec;
    Ok(match field_path {
        "metadata.name" => SANDBOX_NAME.to_owned(),
        "metadata.namespace" => match ctx.input.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns.to_owned(),
            _ => "$(sandbox-namespace)".to_owned(),
        },
        "metadata.uid" => "$(pod-uid)".to_owned(),
        "status.hostIP" => "$(host-ip)".to_owned(),
        "status.podIP" => "$(pod-ip)".to_owned(),
        "spec.nodeName" => "$(node-name)".to_owned(),
        "spec.serviceAccountName" => spec
            .service_account_name
            .clone()
            .or_else(|| spec.service_account.clone())
            .unwrap_or_else(|| "default".to_owned()),
        other => {
            if let Some(key) = bracket_key(other, "metadata.annotations") {
                // Annotations can be added after generation (by controllers); any value is
                // accepted for one the YAML does not set.
                ctx.input
                    .annotations
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| "$(todo-annotation)".to_owned())
            } else if let Some(key) = bracket_key(other, "metadata.labels") {
                match ctx.input.labels.get(key) {
                    Some(value) => value.clone(),
                    None => {
                        return Err(ctx.invalid(
                            path,
                            &format!(
                                "label \"{key}\" is not set in the pod template's metadata.labels, so its value cannot be known"
                            ),
                        ));
                    }
                }
            } else {
                return Err(ctx.unsupported(path, &format!("fieldRef \"{other}\"")));
            }
        }
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

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn expansion_follows_kubelet() {
        let lookup = vars(&[("A", "x"), ("B", "$(A)")]);
        assert_eq!(expand("$(A)-$(B)", &lookup, false), "x-$(A)");
        assert_eq!(expand("$(MISSING)", &lookup, false), "$(MISSING)");
        assert_eq!(expand("$$(A)", &lookup, false), "$(A)");
        assert_eq!(expand("$$(A)", &lookup, true), "$$(A)");
        assert_eq!(expand("cost: 5$", &lookup, false), "cost: 5$");
        assert_eq!(expand("$HOME $(", &lookup, false), "$HOME $(");
        assert_eq!(expand("$(A", &lookup, false), "$(A");
        assert_eq!(expand("a$$$$b", &lookup, false), "a$$b");
        assert_eq!(expand("a$$$$b", &lookup, true), "a$$$$b");
        assert_eq!(expand("ünï$(A)cödé", &lookup, false), "ünïxcödé");
        assert_eq!(expand("", &lookup, false), "");
    }

    #[test]
    fn env_list_replaces_in_place() {
        let mut list =
            EnvList::from_entries(&["PATH=/bin".to_owned(), "BARE".to_owned(), "A=1".to_owned()]);
        list.set("PATH", "/usr/bin".to_owned());
        list.set("B", "2".to_owned());
        assert_eq!(list.entries(), vec!["PATH=/usr/bin", "BARE", "A=1", "B=2"]);
        assert_eq!(list.get("BARE"), None);
        assert_eq!(list.get("A").as_deref(), Some("1"));
    }

    #[test]
    fn bracket_keys() {
        assert_eq!(
            bracket_key("metadata.labels['a.b/c']", "metadata.labels"),
            Some("a.b/c")
        );
        assert_eq!(
            bracket_key("metadata.labels[\"x\"]", "metadata.labels"),
            Some("x")
        );
        assert_eq!(bracket_key("metadata.labels", "metadata.labels"), None);
        assert_eq!(
            bracket_key("metadata.labels['x\"]", "metadata.labels"),
            None
        );
    }
}
