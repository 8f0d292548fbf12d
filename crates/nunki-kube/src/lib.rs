//! Kubernetes YAML: read, rewrite and write the resources `nunki generate` handles.
