//! Policy generation for many Deployments from a warm image-info set: `policy_data` plus the
//! rendered policy text, per pod template, for 100, 1,000 and 5,000 Deployments with varied
//! containers, volumes and environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvFromSource,
    EnvVar, EnvVarSource, ExecAction, ObjectFieldSelector, PodSecurityContext, PodSpec, Probe,
    ProjectedVolumeSource, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use nunki_policy::{ConfigSources, ImageInfo, PodInput, PolicyGenerator, Settings, WorkloadKind};

const IMAGES: usize = 12;

fn image(i: usize) -> String {
    format!(
        "registry.example/team{}/service:1.{i}@sha256:{:064x}",
        i % 4,
        i
    )
}

fn images() -> ImageInfo {
    let mut entries = Vec::new();
    for i in 0..IMAGES {
        let env: Vec<String> = (0..(3 + i % 5))
            .map(|j| format!("\"IMAGE_VAR_{j}=value-{i}-{j}\""))
            .collect();
        let volumes = if i % 3 == 0 {
            r#","Volumes":{"/var/cache/app":{}}"#
        } else {
            ""
        };
        entries.push(format!(
            r#""{}": {{"config": {{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/bin/service-{i}"],"Cmd":["--port","80{i:02}"],"Env":["PATH=/usr/local/bin:/usr/bin:/bin",{}],"WorkingDir":"/srv/{i}"{volumes}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}, "passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/sbin/nologin\n", "group": "root:x:0:\napp:x:1000:\n"}}"#,
            image(i),
            env.join(",")
        ));
    }
    ImageInfo::from_json(&format!(r#"{{"images": {{{}}}}}"#, entries.join(","))).unwrap()
}

fn sources() -> ConfigSources {
    let mut sources = ConfigSources::default();
    for i in 0..20 {
        let data: BTreeMap<String, String> = (0..8)
            .map(|k| (format!("KEY_{k}"), format!("config-{i}-{k}")))
            .collect();
        sources
            .config_maps
            .insert((Some("apps".to_owned()), format!("settings-{i}")), data);
    }
    sources
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

fn container(d: usize, c: usize) -> Container {
    let mut env: Vec<EnvVar> = (0..(4 + (d + c) % 12))
        .map(|k| EnvVar {
            name: format!("APP_SETTING_{k}"),
            value: Some(format!("d{d}-c{c}-k{k}")),
            ..EnvVar::default()
        })
        .collect();
    env.push(EnvVar {
        name: "POD_NAME".to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
    env.push(EnvVar {
        name: "SELF_URL".to_owned(),
        value: Some("http://$(POD_NAME):8080/$(APP_SETTING_0)".to_owned()),
        ..EnvVar::default()
    });
    let mut mounts = vec![
        mount("tls-certs", "/tls-config"),
        mount("scratch", "/tmp/scratch"),
    ];
    if d.is_multiple_of(2) {
        mounts.push(mount("config", "/etc/app"));
    }
    if d.is_multiple_of(3) {
        mounts.push(mount("secret", "/etc/secret"));
        mounts.push(mount("token", "/var/run/token"));
    }
    Container {
        name: format!("c{c}"),
        image: Some(image((d * 7 + c) % IMAGES)),
        args: (c % 2 == 1).then(|| vec!["--verbose".to_owned(), "--id=$(POD_NAME)".to_owned()]),
        env: Some(env),
        env_from: (d.is_multiple_of(4)).then(|| {
            vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: format!("settings-{}", d % 20),
                    ..ConfigMapEnvSource::default()
                }),
                ..EnvFromSource::default()
            }]
        }),
        volume_mounts: Some(mounts),
        liveness_probe: (c == 0).then(|| Probe {
            exec: Some(ExecAction {
                command: Some(vec!["/bin/health".to_owned(), format!("--deployment={d}")]),
            }),
            ..Probe::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(d.is_multiple_of(5)),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn deployment(d: usize) -> PodInput {
    let containers = (0..(1 + d % 3)).map(|c| container(d, c)).collect();
    let init = Container {
        name: "initializer".to_owned(),
        image: Some(image(d % IMAGES)),
        volume_mounts: Some(vec![mount("tls-certs", "/tls-config")]),
        security_context: Some(SecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(1000),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let volume = |name: &str| Volume {
        name: name.to_owned(),
        ..Volume::default()
    };
    let volumes = vec![
        Volume {
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..volume("tls-certs")
        },
        Volume {
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                ..EmptyDirVolumeSource::default()
            }),
            ..volume("scratch")
        },
        Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: format!("settings-{}", d % 20),
                ..ConfigMapVolumeSource::default()
            }),
            ..volume("config")
        },
        Volume {
            secret: Some(SecretVolumeSource {
                secret_name: Some("credentials".to_owned()),
                ..SecretVolumeSource::default()
            }),
            ..volume("secret")
        },
        Volume {
            projected: Some(ProjectedVolumeSource::default()),
            ..volume("token")
        },
    ];
    PodInput {
        kind: WorkloadKind::Deployment,
        name: format!("service-{d}"),
        generate_name: None,
        namespace: Some("apps".to_owned()),
        annotations: BTreeMap::from([("team".to_owned(), format!("team{}", d % 4))]),
        labels: BTreeMap::from([("app".to_owned(), format!("service-{d}"))]),
        spec: PodSpec {
            containers,
            init_containers: Some(vec![init]),
            volumes: Some(volumes),
            security_context: Some(PodSecurityContext {
                fs_group: Some(1000),
                ..PodSecurityContext::default()
            }),
            runtime_class_name: Some("kata-cc-isolation".to_owned()),
            ..PodSpec::default()
        },
    }
}

fn generate(c: &mut Criterion) {
    let generator = PolicyGenerator::new(Settings::default()).unwrap();
    let images = images();
    let sources = sources();
    let mut group = c.benchmark_group("generate_deployments");
    group.sample_size(10);
    for n in [100usize, 1_000, 5_000] {
        let inputs: Vec<PodInput> = (0..n).map(deployment).collect();
        // Every input must generate (a failing benchmark would measure error paths).
        for input in &inputs {
            generator.policy(input, &images, &sources).unwrap();
        }
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &inputs, |b, inputs| {
            b.iter(|| {
                let mut bytes = 0;
                for input in inputs {
                    bytes += generator.policy(input, &images, &sources).unwrap().len();
                }
                black_box(bytes)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, generate);
criterion_main!(benches);
