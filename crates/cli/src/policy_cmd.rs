//! `nunki policy eval`: evaluate Kata agent requests against a policy, the way the agent does,
//! and say which rule and field refused them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use nunki_kube::Resources;
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

/// The policy text of a Rego file, or of the policy annotation of a workload in Kubernetes
/// YAML.
fn load_policy(path: &Path, workload: Option<&str>) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.contains("package agent_policy") {
        return Ok(text);
    }
    let resources = Resources::read(&[path.to_path_buf()]).map_err(anyhow::Error::msg)?;
    let found: Vec<(String, BTreeMap<String, String>)> = resources
        .workloads()
        .iter()
        .map(|w| (w.name().to_string(), resources.policy_annotations(w)))
        .filter(|(_, annotations)| !annotations.is_empty())
        .collect();
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
