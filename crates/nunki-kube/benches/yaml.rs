//! The YAML half of `nunki generate` for N Deployments in one file: read (parse, typed pod
//! specs, unknown-field diff), rewrite, per-workload access with a policy annotation each, and
//! emitting the result. The policy generation itself is benchmarked in nunki-policy.
#![allow(clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nunki_kube::{INITDATA_ANNOTATION, Resources, RewriteOptions};

/// `n` Deployments with 1–3 containers, env, mounts and volumes that vary per index.
fn deployments(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let containers = 1 + i % 3;
        out.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: ns-{}\nspec:\n  replicas: {}\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n    spec:\n      containers:\n",
            i % 7,
            1 + i % 4
        ));
        for c in 0..containers {
            out.push_str(&format!(
                "      - name: c{c}\n        image: registry.example/app{c}@sha256:{:064x}\n        command: [/bin/app, --port, \"{}\"]\n        env:\n        - {{name: MODE, value: \"on\"}}\n        - {{name: INDEX, value: \"{i}\"}}\n        - name: POD\n          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}\n        ports: [{{containerPort: {}}}]\n        resources: {{limits: {{cpu: 500m, memory: 128Mi}}}}\n        volumeMounts:\n        - {{name: data, mountPath: /data}}\n        securityContext: {{runAsUser: 1000, readOnlyRootFilesystem: true}}\n",
                i * 3 + c,
                8000 + c,
                8000 + c
            ));
        }
        out.push_str("      volumes:\n      - name: data\n        emptyDir: {}\n");
    }
    out
}

fn pipeline(text: &str) -> String {
    let mut r = Resources::from_str("bench.yaml", text).expect("valid input");
    r.rewrite(&RewriteOptions::new("ghcr.io/nunki/initializer:v1"))
        .expect("rewrites");
    for w in r.workloads() {
        let input = w.pod_input();
        let value = format!("{}-{}", input.name, input.spec.containers.len());
        r.set_policy_annotation(&w, INITDATA_ANNOTATION, value)
            .expect("annotates");
    }
    r.to_combined_yaml().expect("emits")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("yaml_pipeline");
    group.sample_size(10);
    for n in [100, 1_000, 5_000] {
        let text = deployments(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| pipeline(text))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
