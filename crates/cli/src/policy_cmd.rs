//! `nunki policy eval`: evaluate Kata agent requests against a policy, the way the agent does,
//! and say which rule and field refused them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use nunki_kube::{INITDATA_ANNOTATION, Node, POLICY_ANNOTATION};
use nunki_policy::{AgentPolicy, PolicyDocument};

/// `nunki policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Evaluate agent requests (JSON, as the Kata agent sees them) against a policy.
    ///
    /// Exit status: 0 every request allowed, 1 a request denied, 2 an input error.
    Eval(EvalArgs),
}

/// Flags of `nunki policy eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The policy: a Rego file, or Kubernetes YAML whose pod template carries a policy
    /// annotation (the first one found, or the one of --workload).
    #[arg(long, value_name = "FILE_OR_YAML")]
    pub policy: PathBuf,
    /// With YAML: the name of the workload whose policy to use.
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// Request JSON file; repeat to evaluate several in order on one engine (state such as
    /// created containers carries over, as in the agent).
    #[arg(long, value_name = "REQUEST.json", required = true)]
    pub request: Vec<PathBuf>,
    /// The agent request kind, e.g. CreateContainerRequest, ExecProcessRequest; one for all
    /// requests, or one per --request.
    #[arg(long, value_name = "KIND", required = true)]
    pub kind: Vec<String>,
}

/// Runs `nunki policy ...`.
pub fn run(cmd: PolicyCmd) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::Eval(a) => eval(&a),
    }
}

fn eval(a: &EvalArgs) -> Result<ExitCode> {
    if a.kind.len() != 1 && a.kind.len() != a.request.len() {
        bail!(
            "give one --kind for all requests or one per --request ({} kinds, {} requests)",
            a.kind.len(),
            a.request.len()
        );
    }
    let text = load_policy(&a.policy, a.workload.as_deref())?;
    let mut engine = AgentPolicy::new(&text).map_err(anyhow::Error::msg)?;
    let mut all_allowed = true;
    for (i, path) in a.request.iter().enumerate() {
        let kind = a
            .kind
            .get(i)
            .or_else(|| a.kind.first())
            .ok_or_else(|| anyhow!("no --kind"))?;
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let request: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let decision = engine
            .evaluate(kind, &request)
            .map_err(anyhow::Error::msg)?;
        if decision.allowed {
            println!("{}: {kind}: allowed", path.display());
        } else {
            all_allowed = false;
            println!("{}: {kind}: DENIED", path.display());
            for r in &decision.reasons {
                println!("  {r}");
            }
        }
    }
    Ok(if all_allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The policy text of a Rego file, or of the policy annotation in Kubernetes YAML.
fn load_policy(path: &Path, workload: Option<&str>) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.contains("package agent_policy") {
        return Ok(text);
    }
    let docs = nunki_kube::parse_documents(path, &text).map_err(anyhow::Error::msg)?;
    let mut found = Vec::new();
    for doc in &docs {
        collect(doc, &mut found);
    }
    let chosen = match workload {
        Some(name) => found.into_iter().find(|(n, _)| n == name).ok_or_else(|| {
            anyhow!("{}: no workload {name:?} with a policy annotation", path.display())
        })?,
        None => found.into_iter().next().ok_or_else(|| {
            anyhow!(
                "{}: neither a Rego policy (package agent_policy) nor YAML with a policy annotation; run `nunki generate` first",
                path.display()
            )
        })?,
    };
    let doc = PolicyDocument::from_annotations(&chosen.1)
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow!("no policy annotation"))?;
    Ok(doc.policy_text)
}

/// `(name, policy annotations)` of every object in `node` with a policy annotation, using the
/// enclosing resource's name.
fn collect(node: &Node, out: &mut Vec<(String, BTreeMap<String, String>)>) {
    let name = node
        .get_path(&["metadata", "name"])
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if let Some(ann) = n
            .get_path(&["metadata", "annotations"])
            .and_then(Node::as_map)
        {
            let mut map = BTreeMap::new();
            for key in [INITDATA_ANNOTATION, POLICY_ANNOTATION] {
                if let Some(v) = ann.get(key).and_then(Node::as_str) {
                    map.insert(key.to_string(), v.to_string());
                }
            }
            if !map.is_empty() {
                out.push((name.clone(), map));
                continue;
            }
        }
        match n {
            Node::Map(m) => stack.extend(
                m.iter()
                    .map(|(_, v)| v)
                    .filter(|v| !matches!(v, Node::String(_))),
            ),
            Node::Seq(items) => {
                if let Some(first) = items.first()
                    && first.get_path(&["metadata", "name"]).is_some()
                {
                    for item in items {
                        collect(item, out);
                    }
                } else {
                    stack.extend(items.iter());
                }
            }
            _ => {}
        }
    }
}
