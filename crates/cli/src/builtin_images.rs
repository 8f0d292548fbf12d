//! Nunki's own images. Their configs are built in, so they need no image-info entry, and the
//! local runner knows how to start them.
//!
//! Reference scheme: `ghcr.io/nunki/<binary>:v<version of this CLI>`.

use nunki_policy::ImageConfig;

/// The Initializer image.
pub const INITIALIZER: &str = concat!(
    "ghcr.io/nunki/nunki-initializer:v",
    env!("CARGO_PKG_VERSION")
);
/// The Coordinator image.
pub const COORDINATOR: &str = concat!(
    "ghcr.io/nunki/nunki-coordinator:v",
    env!("CARGO_PKG_VERSION")
);
/// The demo HTTPS service image.
pub const DEMO: &str = concat!("ghcr.io/nunki/nunki-demo:v", env!("CARGO_PKG_VERSION"));

fn config(binary: &str) -> ImageConfig {
    ImageConfig {
        // Root inside the VM: the Initializer writes key.pem (0400) for the workload to read.
        user: Some("0:0".to_string()),
        env: Some(vec![nunki_policy::image_info::DEFAULT_PATH_ENV.to_string()]),
        entrypoint: Some(vec![format!("/usr/bin/{binary}")]),
        cmd: None,
        working_dir: Some("/".to_string()),
        volumes: None,
    }
}

/// Every built-in image with its config; `initializer` is the Initializer reference in use
/// (it may differ from [`INITIALIZER`] with `--initializer-image`).
pub fn configs(initializer: &str) -> Vec<(String, ImageConfig)> {
    let mut out = vec![
        (INITIALIZER.to_string(), config("nunki-initializer")),
        (COORDINATOR.to_string(), config("nunki-coordinator")),
        (DEMO.to_string(), config("nunki-demo")),
    ];
    if initializer != INITIALIZER {
        out.push((initializer.to_string(), config("nunki-initializer")));
    }
    out
}

/// The built-in images in the image-info file format (`{"images": {ref: {"config": ...}}}`),
/// for the local runner's simulated agent.
pub fn image_info_json(initializer: &str) -> String {
    let mut images = serde_json::Map::new();
    for (reference, config) in configs(initializer) {
        images.insert(
            reference,
            serde_json::json!({
                "config": {"architecture": "amd64", "os": "linux", "config": config},
                "passwd": "root:x:0:0:root:/root:/sbin/nologin\n",
                "group": "root:x:0:\n"
            }),
        );
    }
    serde_json::json!({ "images": images }).to_string()
}

/// Whether `image` is one of Nunki's built-in images (no digest warning for those).
pub fn is_builtin(image: &str) -> bool {
    [INITIALIZER, COORDINATOR, DEMO].contains(&image)
}
