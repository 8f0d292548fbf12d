//! `nunki images pull` against a registry on loopback that speaks the OCI distribution API
//! (plain HTTP via --insecure-registry): config stored verbatim, passwd/group from the layers
//! (later layers win, whiteouts remove), digest pinning enforced.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, *data).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

struct Registry {
    manifest: Vec<u8>,
    blobs: HashMap<String, Vec<u8>>,
}

/// `/v2/<name with slashes>/manifests/<ref>` and `/v2/<name>/blobs/<digest>`.
async fn route(State(r): State<Arc<Registry>>, Path(rest): Path<String>) -> Response {
    if rest.contains("/manifests/") {
        manifest(r)
    } else if let Some((_, digest)) = rest.split_once("/blobs/") {
        blob(r, digest)
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

fn manifest(r: Arc<Registry>) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"),
    );
    h.insert(
        "docker-content-digest",
        HeaderValue::from_str(&format!("sha256:{}", sha256_hex(&r.manifest))).unwrap(),
    );
    (h, r.manifest.clone()).into_response()
}

fn blob(r: Arc<Registry>, digest: &str) -> Response {
    match r.blobs.get(digest) {
        Some(b) => b.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_config_and_account_files_from_a_registry() {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"User": "app", "Env": ["PATH=/bin"], "Entrypoint": ["/app"], "WorkingDir": "/srv"},
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let l1 = layer(&[
        ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        ("etc/group", b"root:x:0:\n"),
    ]);
    let l2 = layer(&[
        (
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n",
        ),
        ("etc/.wh.group", b""),
    ]);
    let desc = |media: &str, b: &[u8]| serde_json::json!({"mediaType": media, "digest": format!("sha256:{}", sha256_hex(b)), "size": b.len()});
    let manifest_bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", &config_bytes),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", &l1), desc("application/vnd.oci.image.layer.v1.tar+gzip", &l2)]
    }))
    .unwrap();
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest_bytes));
    let mut blobs = HashMap::new();
    for b in [&config_bytes, &l1, &l2] {
        blobs.insert(format!("sha256:{}", sha256_hex(b)), b.clone());
    }
    let state = Arc::new(Registry {
        manifest: manifest_bytes,
        blobs,
    });
    let app = axum::Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route("/v2/{*rest}", get(route))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let pinned = format!("{addr}/team/app@{manifest_digest}");
    let wrong = format!("{addr}/team/app@sha256:{}", "0".repeat(64));
    let pod = |image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n      image: {image}\n"
        )
    };
    std::fs::write(dir.path().join("pod.yaml"), pod(&pinned)).unwrap();
    let run = |dir: std::path::PathBuf, addr: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nunki"))
            .args(["images", "pull", "--insecure-registry", &addr, "pod.yaml"])
            .current_dir(dir)
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let (d, a) = (dir.path().to_path_buf(), addr.to_string());
        move || run(d, a)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("images.json")).unwrap()).unwrap();
    let entry = &info["images"][&pinned];
    assert_eq!(entry["config"], config, "config stored verbatim");
    assert_eq!(
        entry["passwd"],
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n"
    );
    assert!(entry["group"].is_null(), "the whiteout removed /etc/group");
    // The file is usable by generate's image-info reader.
    nunki_policy::ImageInfo::read(&dir.path().join("images.json")).unwrap();

    // A digest the registry does not serve is refused.
    std::fs::write(dir.path().join("pod.yaml"), pod(&wrong)).unwrap();
    let out = tokio::task::spawn_blocking({
        let (d, a) = (dir.path().to_path_buf(), addr.to_string());
        move || run(d, a)
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // oci-client checks the manifest digest itself; our own check backs it up.
    assert!(
        err.to_lowercase().contains("digest") && err.contains(&"0".repeat(64)),
        "{err}"
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("images.json")).unwrap()).unwrap();
    assert!(
        info["images"].get(&wrong).is_none(),
        "nothing stored for the refused image"
    );
}
