//! The demo's example deployment: the Coordinator, a `web` frontend and a `backend` that `web`
//! calls over mesh mTLS. Ordinary Kubernetes YAML, as a user would write it.

use crate::builtin_images::{COORDINATOR, DEMO};

/// `(file name, YAML)` of every resource file the demo writes.
pub fn files() -> Vec<(&'static str, String)> {
    vec![
        ("coordinator.yaml", coordinator()),
        ("backend.yaml", service("backend", 8444, None)),
        ("web.yaml", service("web", 8443, Some("backend:8444"))),
    ]
}

fn coordinator() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: coordinator
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: coordinator
  template:
    metadata:
      labels:
        app.kubernetes.io/name: coordinator
      annotations:
        nunki.edgeless.systems/pod-role: coordinator
    spec:
      containers:
        - name: coordinator
          image: {COORDINATOR}
          env:
            - name: NUNKI_PLATFORM
              value: simulated
          ports:
            - containerPort: 1313
              name: userapi
            - containerPort: 7777
              name: meshapi
            - containerPort: 9102
              name: metrics
          readinessProbe:
            httpGet:
              path: /readyz
              port: 9102
---
apiVersion: v1
kind: Service
metadata:
  name: coordinator
  namespace: default
spec:
  selector:
    app.kubernetes.io/name: coordinator
  ports:
    - name: userapi
      port: 1313
    - name: meshapi
      port: 7777
"#
    )
}

fn service(name: &str, port: u16, upstream: Option<&str>) -> String {
    let upstream = upstream
        .map(|u| format!("\n            - --upstream\n            - {u}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {name}
    spec:
      containers:
        - name: {name}
          image: {DEMO}
          args:
            - --listen
            - 0.0.0.0:{port}
            - --name
            - {name}{upstream}
          ports:
            - containerPort: {port}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  selector:
    app.kubernetes.io/name: {name}
  ports:
    - port: {port}
"#
    )
}
