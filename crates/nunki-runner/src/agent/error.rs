//! Errors of the simulated Kata agent.

/// What went wrong while simulating a pod's start on Kata.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The policy refused a request: the pod (or exec) fails, as it would on a real node.
    #[error(
        "{request}{} denied by the pod's agent policy: {}",
        container.as_deref().map(|c| format!(" for container {c:?}")).unwrap_or_default(),
        format_reasons(reasons)
    )]
    Denied {
        /// The agent request kind, e.g. `CreateContainerRequest`.
        request: String,
        /// The container the request was for (`None` for `CreateSandboxRequest`).
        container: Option<String>,
        /// What the policy reported: the rule and the field that failed.
        reasons: Vec<String>,
    },

    /// The policy text could not be loaded or evaluated.
    #[error("agent policy error: {0}")]
    Policy(String),

    /// The image info has no entry for an image the pod runs.
    #[error(
        "container {container:?} runs image {image:?}, which is not in the image info; \
         add it with `nunki images pull` (or write its entry into images.json by hand)"
    )]
    MissingImage { container: String, image: String },

    /// The image info file is not in the documented format.
    #[error("invalid image info: {0}")]
    InvalidImageInfo(String),

    /// Neither the pod nor the image says what to run (containerd: "no command specified").
    #[error(
        "container {container:?}: no command specified (the pod sets no command/args and the \
         image config has no Entrypoint/Cmd); set `command` in the pod spec"
    )]
    NoCommand { container: String },

    /// containerd could not resolve the user the container should run as.
    #[error("container {container:?}: cannot resolve user {user:?}: {reason}")]
    User {
        container: String,
        user: String,
        reason: String,
    },

    /// The kubelet could not build the container's environment (a missing ConfigMap or
    /// Secret key, an unsupported field reference).
    #[error("container {container:?}: environment variable {variable:?}: {reason}")]
    Env {
        container: String,
        variable: String,
        reason: String,
    },

    /// The pod spec is one that Kubernetes would refuse or that Kata cannot run.
    #[error("pod spec not runnable on the simulated node: {0}")]
    InvalidPod(String),

    /// A volume type the simulation does not model.
    #[error(
        "volume {volume:?} ({kind}) is not supported by the local runner; \
         use emptyDir, configMap, secret, projected, downwardAPI or hostPath volumes"
    )]
    UnsupportedVolume { volume: String, kind: String },

    /// `exec` named a container that the last `run_pod` did not create.
    #[error("no running container {0:?} in the simulated pod; run the pod first")]
    UnknownContainer(String),
}

fn format_reasons(reasons: &[String]) -> String {
    if reasons.is_empty() {
        "the policy gave no reason (run `nunki policy eval` on the request for details)".to_owned()
    } else {
        reasons.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_names_request_container_and_reasons() {
        let e = AgentError::Denied {
            request: "CreateContainerRequest".into(),
            container: Some("web".into()),
            reasons: vec!["rule allow_process: field OCI.Process.Args".into()],
        };
        assert_eq!(
            e.to_string(),
            "CreateContainerRequest for container \"web\" denied by the pod's agent policy: \
             rule allow_process: field OCI.Process.Args"
        );
        let e = AgentError::Denied {
            request: "CreateSandboxRequest".into(),
            container: None,
            reasons: vec![],
        };
        assert!(e.to_string().starts_with("CreateSandboxRequest denied"));
        assert!(e.to_string().contains("no reason"));
    }
}
