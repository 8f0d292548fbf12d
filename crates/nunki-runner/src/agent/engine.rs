//! The policy evaluation behind the simulated agent.
//!
//! [`PolicyEvaluator`] is the one thing the agent needs: "is this request allowed, and if not,
//! why". [`RegoEngine`] implements it the way the Kata agent does (regorus, rego v1, prints
//! gathered, `{"pstate": {}}` as data, state operations applied after an allowed request).

use std::num::{NonZeroU32, NonZeroUsize};

use serde_json::Value;

use super::error::AgentError;

/// The verdict on one agent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the policy allows the request.
    pub allowed: bool,
    /// What the policy reported (for a denial: the rule and the field that failed).
    pub reasons: Vec<String>,
}

/// Something that decides agent requests, keeping policy state between them.
pub trait PolicyEvaluator {
    /// Evaluates request `kind` (e.g. `CreateContainerRequest`) with input `request`.
    fn evaluate(&mut self, kind: &str, request: &Value) -> Result<Decision, AgentError>;
}

/// The agent's policy engine: regorus configured like `kata-agent-policy`.
#[derive(Debug)]
pub struct RegoEngine {
    engine: regorus::Engine,
    data: Value,
}

impl RegoEngine {
    /// Loads a policy text (package `agent_policy`).
    pub fn new(policy_text: &str) -> Result<Self, AgentError> {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(false);
        engine.set_strict_builtin_errors(false);
        engine.set_gather_prints(true);
        // The agent raises the parser limits: long env values make long lines.
        engine.set_policy_length_config(regorus::PolicyLengthConfig {
            max_col: NonZeroU32::new(64 * 1024).unwrap_or(NonZeroU32::MIN),
            max_file_bytes: NonZeroUsize::new(16 * 1024 * 1024).unwrap_or(NonZeroUsize::MIN),
            max_lines: NonZeroUsize::new(200_000).unwrap_or(NonZeroUsize::MIN),
        });
        let data = serde_json::json!({"pstate": {}});
        let mut this = Self { engine, data };
        this.load_data()?;
        this.engine
            .add_policy("agent_policy.rego".into(), policy_text.to_owned())
            .map_err(|e| AgentError::Policy(format!("cannot load the policy: {e}")))?;
        Ok(this)
    }

    fn load_data(&mut self) -> Result<(), AgentError> {
        self.engine.clear_data();
        let data = regorus::Value::from_json_str(&self.data.to_string())
            .map_err(|e| AgentError::Policy(format!("policy state: {e}")))?;
        self.engine
            .add_data(data)
            .map_err(|e| AgentError::Policy(format!("policy state: {e}")))
    }

    /// The policy state (`data.pstate` and anything else the rules stored).
    pub fn state(&self) -> &Value {
        &self.data
    }
}

impl PolicyEvaluator for RegoEngine {
    fn evaluate(&mut self, kind: &str, request: &Value) -> Result<Decision, AgentError> {
        let input = regorus::Value::from_json_str(&request.to_string())
            .map_err(|e| AgentError::Policy(format!("{kind} input: {e}")))?;
        self.engine.set_input(input);
        let results = self
            .engine
            .eval_query(format!("data.agent_policy.{kind}"), false)
            .map_err(|e| AgentError::Policy(format!("evaluating {kind}: {e}")))?;
        let prints = self.engine.take_prints().unwrap_or_default();
        let value = match results.result.as_slice() {
            [one] => match one.expressions.as_slice() {
                [expr] => Some(expr.value.clone()),
                _ => None,
            },
            _ => None,
        };
        let value = match value {
            Some(v) => serde_json::from_str::<Value>(
                &v.to_json_str()
                    .map_err(|e| AgentError::Policy(format!("{kind} result: {e}")))?,
            )
            .map_err(|e| AgentError::Policy(format!("{kind} result: {e}")))?,
            // No rule and no default: the agent treats this as a denial.
            None => {
                return Ok(Decision {
                    allowed: false,
                    reasons: if prints.is_empty() {
                        vec![format!("the policy has no rule or default for {kind}")]
                    } else {
                        prints
                    },
                });
            }
        };
        let (allowed, ops) = match &value {
            Value::Bool(b) => (*b, None),
            Value::Object(o) => (
                o.get("allowed").and_then(Value::as_bool).unwrap_or(false),
                o.get("ops").cloned(),
            ),
            other => {
                return Err(AgentError::Policy(format!(
                    "{kind}: the policy returned {other}, expected a bool or {{allowed, ops}}"
                )));
            }
        };
        if let (true, Some(Value::Array(ops))) = (allowed, ops) {
            for op in &ops {
                apply_op(&mut self.data, op)
                    .map_err(|e| AgentError::Policy(format!("{kind} state update: {e}")))?;
            }
            self.load_data()?;
        }
        Ok(Decision {
            allowed,
            reasons: prints,
        })
    }
}

/// Applies one JSON Patch operation (`add`, `replace`, `remove`) to `doc`.
fn apply_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let kind = op
        .get("op")
        .and_then(Value::as_str)
        .ok_or("operation without op")?;
    let path = op
        .get("path")
        .and_then(Value::as_str)
        .ok_or("operation without path")?;
    let tokens: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = tokens.split_last().ok_or("empty path")?;
    let mut node = doc;
    for t in parents {
        node = match node {
            Value::Object(map) => map
                .entry(t.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            _ => return Err(format!("{path}: not an object at {t:?}")),
        };
    }
    let map = node
        .as_object_mut()
        .ok_or_else(|| format!("{path}: parent is not an object"))?;
    match kind {
        "add" | "replace" => {
            let value = op.get("value").cloned().ok_or("operation without value")?;
            map.insert(last.clone(), value);
        }
        "remove" => {
            map.remove(last);
        }
        other => return Err(format!("unsupported operation {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    const POLICY: &str = r#"package agent_policy

default CreateSandboxRequest := true
default ExecProcessRequest := false

CreateContainerRequest := {"ops": ops, "allowed": true} if {
    not input.container_id in object.keys(data.pstate)
    print("first use of", input.container_id)
    ops := [{"op": "add", "path": concat("", ["/pstate/", input.container_id]), "value": 1}]
}

ExecProcessRequest if {
    print("rule ExecProcessRequest: field process.Args", input.process.Args)
    input.process.Args == ["true"]
}
"#;

    #[test]
    fn evaluates_like_the_agent_and_keeps_state() {
        let mut e = RegoEngine::new(POLICY).unwrap();
        let d = e
            .evaluate("CreateSandboxRequest", &serde_json::json!({}))
            .unwrap();
        assert!(d.allowed);
        let req = serde_json::json!({"container_id": "abc"});
        let d = e.evaluate("CreateContainerRequest", &req).unwrap();
        assert!(d.allowed, "{d:?}");
        assert_eq!(e.state()["pstate"]["abc"], 1);
        // The state now refuses a second container with the same id.
        let d = e.evaluate("CreateContainerRequest", &req).unwrap();
        assert!(!d.allowed);
        let d = e
            .evaluate(
                "ExecProcessRequest",
                &serde_json::json!({"process": {"Args": ["sh"]}}),
            )
            .unwrap();
        assert!(!d.allowed);
        assert!(
            d.reasons.iter().any(|r| r.contains("process.Args")),
            "{d:?}"
        );
        let d = e.evaluate("NoSuchRequest", &serde_json::json!({})).unwrap();
        assert!(!d.allowed);
    }

    #[test]
    fn bad_policies_are_errors() {
        let err = RegoEngine::new("package agent_policy\nthis is not rego").unwrap_err();
        assert!(err.to_string().contains("cannot load the policy"), "{err}");
    }

    #[test]
    fn patch_operations() {
        let mut doc = serde_json::json!({"pstate": {"a": 1}});
        apply_op(
            &mut doc,
            &serde_json::json!({"op": "add", "path": "/pstate/b~1c", "value": 2}),
        )
        .unwrap();
        apply_op(
            &mut doc,
            &serde_json::json!({"op": "remove", "path": "/pstate/a"}),
        )
        .unwrap();
        assert_eq!(doc, serde_json::json!({"pstate": {"b/c": 2}}));
        assert!(apply_op(&mut doc, &serde_json::json!({"op": "move", "path": "/x"})).is_err());
    }
}
