//! The policy evaluation behind the simulated agent.
//!
//! [`PolicyEvaluator`] is the one thing the agent needs: "is this request allowed, and if not,
//! why". The real implementation is [`nunki_policy::AgentPolicy`], the engine configured like the
//! Kata agent's (regorus, Rego v1, `{"pstate": {}}` state with the policy's operations applied).

use nunki_policy::AgentPolicy;
pub use nunki_policy::Decision;
use serde_json::Value;

use super::error::AgentError;

/// Something that decides agent requests, keeping policy state between them.
pub trait PolicyEvaluator {
    /// Evaluates request `kind` (e.g. `CreateContainerRequest`) with input `request`.
    fn evaluate(&mut self, kind: &str, request: &Value) -> Result<Decision, AgentError>;
}

impl PolicyEvaluator for AgentPolicy {
    fn evaluate(&mut self, kind: &str, request: &Value) -> Result<Decision, AgentError> {
        AgentPolicy::evaluate(self, kind, request).map_err(|e| AgentError::Policy(e.to_string()))
    }
}
