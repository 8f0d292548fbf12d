//! `nunki images pull`: fill the image-info file from registries, so that `generate` can run
//! offline afterwards.
//!
//! For each image it stores the image's OCI config exactly as the registry served it, and the
//! final `/etc/passwd` and `/etc/group` across its layers (later layers win; a whiteout removes
//! the file), which `generate` needs to resolve user and group names.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use oci_client::client::{ClientConfig, ClientProtocol, linux_amd64_resolver};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;

/// `nunki images ...`
#[derive(Debug, clap::Subcommand)]
pub enum ImagesCmd {
    /// Fetch the configs (and /etc/passwd, /etc/group) of every image the resources use into
    /// the image-info file, so that `generate` runs offline. Credentials come from
    /// ~/.docker/config.json ($DOCKER_CONFIG).
    Pull(PullArgs),
}

/// Flags of `nunki images pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The image-info file to fill (created if absent, other entries kept).
    #[arg(
        long = "image-info",
        value_name = "FILE",
        default_value = "images.json"
    )]
    pub image_info: PathBuf,
    /// Registry reached over plain HTTP (repeatable), e.g. localhost:5000.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Pull images again even if the file has them (images pinned by digest are skipped
    /// otherwise; tags are always pulled again, since they may have moved).
    #[arg(long)]
    pub force: bool,
    /// Kubernetes YAML files or directories.
    #[arg(value_name = "PATHS", required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs `nunki images ...`.
pub fn run(cmd: ImagesCmd) -> Result<std::process::ExitCode> {
    let ImagesCmd::Pull(a) = cmd;
    let resources = nunki_kube::Resources::read(&a.paths).map_err(anyhow::Error::msg)?;
    let existing = std::fs::read_to_string(&a.image_info)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let mut wanted = BTreeSet::new();
    for w in resources.workloads() {
        let spec = &w.input().spec;
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let Some(image) = c.image.clone() else {
                continue;
            };
            if crate::builtin_images::is_builtin(&image) {
                continue;
            }
            let have = existing
                .as_ref()
                .and_then(|e| e.get("images"))
                .and_then(|i| i.get(&image))
                .is_some();
            if have && !a.force && nunki_policy::reference_has_digest(&image) {
                continue;
            }
            wanted.insert(image);
        }
    }
    if wanted.is_empty() {
        println!("{}: nothing to pull", a.image_info.display());
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let n = pull_all(&wanted, &a.image_info, a.insecure_registry.clone())?;
    println!("wrote {} ({n} images)", a.image_info.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// Largest layer `images pull` reads (compressed), so a hostile registry cannot fill the disk.
const MAX_LAYER: u64 = 4 << 30;
/// Largest passwd or group file kept.
const MAX_ACCOUNT_FILE: u64 = 1 << 20;

/// What one image contributes to the image-info file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The image's OCI config JSON, verbatim.
    pub config: Value,
    /// `/etc/passwd` of the final filesystem, if any.
    pub passwd: Option<String>,
    /// `/etc/group` of the final filesystem, if any.
    pub group: Option<String>,
}

/// Pulls manifest, config and layers of `reference` and extracts what `generate` needs.
pub async fn pull(
    client: &Client,
    reference: &str,
    auth: &RegistryAuth,
    scratch: &Path,
) -> Result<PulledImage> {
    let parsed: Reference = reference
        .parse()
        .with_context(|| format!("{reference:?} is not an image reference"))?;
    let (manifest, digest, config, list_digest) = client
        .pull_manifest_and_config_and_list_digest(&parsed, auth)
        .await
        .with_context(|| format!("cannot pull the manifest and config of {reference}"))?;
    if let Some(pinned) = parsed.digest() {
        let matches = digest == pinned || list_digest.as_deref() == Some(pinned);
        if !matches {
            bail!("{reference}: the registry served manifest {digest}, not the pinned {pinned}");
        }
    }
    let config: Value = serde_json::from_str(&config)
        .with_context(|| format!("{reference}: the image config is not JSON"))?;
    let mut files = AccountFiles::default();
    for (i, layer) in manifest.layers.iter().enumerate() {
        if layer.size < 0 || layer.size as u64 > MAX_LAYER {
            bail!(
                "{reference}: layer {i} has size {}, more than the {} GiB limit",
                layer.size,
                MAX_LAYER >> 30
            );
        }
        let path = scratch.join(format!("layer-{i}"));
        let file = tokio::fs::File::create(&path)
            .await
            .with_context(|| format!("cannot create {}", path.display()))?;
        client
            .pull_blob(&parsed, layer, file)
            .await
            .with_context(|| format!("{reference}: cannot pull layer {i} ({})", layer.digest))?;
        let scan = scan_layer_file(&path, layer)
            .with_context(|| format!("{reference}: layer {i} ({})", layer.digest));
        let _ = std::fs::remove_file(&path);
        files.apply(scan?);
    }
    Ok(PulledImage {
        config,
        passwd: files.passwd,
        group: files.group,
    })
}

fn scan_layer_file(path: &Path, layer: &OciDescriptor) -> Result<LayerFiles> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let media = layer.media_type.as_str();
    if media.ends_with("+zstd") || media.ends_with(".zstd") {
        bail!("zstd-compressed layers ({media}) are not supported yet; use a gzip image");
    }
    if media.ends_with("gzip") || media.ends_with("+gzip") {
        scan_layer(flate2::read::GzDecoder::new(f))
    } else if media.ends_with("tar") || media.ends_with(".tar") {
        scan_layer(f)
    } else {
        bail!("unknown layer media type {media}")
    }
}

/// What a single layer says about the two account files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LayerFiles {
    passwd: Change,
    group: Change,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Change {
    #[default]
    Untouched,
    Removed,
    Written(String),
}

#[derive(Debug, Default)]
struct AccountFiles {
    passwd: Option<String>,
    group: Option<String>,
}

impl AccountFiles {
    fn apply(&mut self, layer: LayerFiles) {
        for (slot, change) in [
            (&mut self.passwd, layer.passwd),
            (&mut self.group, layer.group),
        ] {
            match change {
                Change::Untouched => {}
                Change::Removed => *slot = None,
                Change::Written(s) => *slot = Some(s),
            }
        }
    }
}

/// Scans one (uncompressed) layer tar for `etc/passwd`, `etc/group` and their whiteouts.
pub fn scan_layer(reader: impl Read) -> Result<LayerFiles> {
    let mut out = LayerFiles::default();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("not a tar archive")? {
        let mut entry = entry.context("corrupt tar entry")?;
        let path = entry.path().context("tar entry path")?.into_owned();
        let name = normalise(&path);
        let slot = match name.as_str() {
            "etc/passwd" | "etc/.wh.passwd" => &mut out.passwd,
            "etc/group" | "etc/.wh.group" => &mut out.group,
            "etc/.wh..wh..opq" | "etc" | ".wh.etc" => {
                // An opaque /etc or a replaced /etc hides everything from lower layers.
                if name != "etc" {
                    out.passwd = Change::Removed;
                    out.group = Change::Removed;
                }
                continue;
            }
            _ => continue,
        };
        if name.contains(".wh.") {
            *slot = Change::Removed;
            continue;
        }
        if !entry.header().entry_type().is_file() {
            // A symlink or hard link as /etc/passwd is rare; treat it as unknown, not empty.
            *slot = Change::Removed;
            continue;
        }
        if entry.size() > MAX_ACCOUNT_FILE {
            bail!(
                "{name} is {} bytes, more than the 1 MiB limit",
                entry.size()
            );
        }
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .with_context(|| format!("{name} is not UTF-8 text"))?;
        *slot = Change::Written(text);
    }
    Ok(out)
}

fn normalise(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// The registry host part of a reference, for credentials (Docker Hub's is special).
fn credential_server(reference: &Reference) -> String {
    match reference.resolve_registry() {
        "index.docker.io" | "docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

/// Credentials from `~/.docker/config.json` (or `$DOCKER_CONFIG`), else anonymous.
fn auth_for(reference: &Reference) -> RegistryAuth {
    match docker_credential::get_credential(&credential_server(reference)) {
        Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
            RegistryAuth::Basic(u, p)
        }
        Ok(docker_credential::DockerCredential::IdentityToken(t)) => RegistryAuth::Bearer(t),
        Err(_) => RegistryAuth::Anonymous,
    }
}

/// Adds `pulled` images to the image-info file at `path` (created if absent), keeping the
/// entries already there.
pub fn merge_into_file(path: &Path, pulled: Vec<(String, PulledImage)>) -> Result<()> {
    let mut doc = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .with_context(|| format!("{} is not JSON", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({"images": {}}),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let images = doc
        .get_mut("images")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow!("{}: no \"images\" object", path.display()))?;
    for (reference, img) in pulled {
        images.insert(
            reference,
            serde_json::json!({"config": img.config, "passwd": img.passwd, "group": img.group}),
        );
    }
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    crate::files::write_atomic(path, &bytes)
}

/// Pulls every image in `references` (sorted, deduplicated) and merges them into `image_info`.
pub fn pull_all(
    references: &BTreeSet<String>,
    image_info: &Path,
    insecure_registries: Vec<String>,
) -> Result<usize> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure_registries),
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        ..Default::default()
    });
    let scratch = tempfile_dir(image_info)?;
    let mut pulled = Vec::new();
    for reference in references {
        eprintln!("pulling {reference}");
        let parsed: Reference = reference
            .parse()
            .with_context(|| format!("{reference:?} is not an image reference"))?;
        let auth = auth_for(&parsed);
        let img = rt.block_on(pull(&client, reference, &auth, scratch.path()))?;
        pulled.push((reference.clone(), img));
    }
    let n = pulled.len();
    merge_into_file(image_info, pulled)?;
    Ok(n)
}

fn tempfile_dir(near: &Path) -> Result<tempfile::TempDir> {
    let dir: PathBuf = match near.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tempfile::Builder::new()
        .prefix(".nunki-layers-")
        .tempdir_in(&dir)
        .with_context(|| format!("cannot create a scratch directory in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn later_layers_win_and_whiteouts_remove() {
        let mut files = AccountFiles::default();
        files.apply(
            scan_layer(
                &layer(&[
                    ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
                    ("etc/group", b"root:x:0:\n"),
                ])[..],
            )
            .unwrap(),
        );
        assert_eq!(files.passwd.as_deref(), Some("root:x:0:0::/root:/bin/sh\n"));
        files.apply(
            scan_layer(&layer(&[("./etc/passwd", b"app:x:1000:1000::/:/bin/sh\n")])[..]).unwrap(),
        );
        assert_eq!(
            files.passwd.as_deref(),
            Some("app:x:1000:1000::/:/bin/sh\n")
        );
        assert_eq!(files.group.as_deref(), Some("root:x:0:\n"));
        files.apply(scan_layer(&layer(&[("etc/.wh.group", b"")])[..]).unwrap());
        assert_eq!(files.group, None);
        files.apply(scan_layer(&layer(&[("etc/.wh..wh..opq", b"")])[..]).unwrap());
        assert_eq!(files.passwd, None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // A 512-byte header block of 0xff has a wrong checksum.
        assert!(scan_layer(&[0xffu8; 1024][..]).is_err());
    }

    #[test]
    fn merge_keeps_existing_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.json");
        std::fs::write(
            &path,
            r#"{"images": {"a": {"config": {}, "passwd": null, "group": null}}}"#,
        )
        .unwrap();
        merge_into_file(
            &path,
            vec![(
                "b".into(),
                PulledImage {
                    config: serde_json::json!({"config": {"User": "1"}}),
                    passwd: Some("p".into()),
                    group: None,
                },
            )],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert!(v["images"]["a"].is_object());
        assert_eq!(v["images"]["b"]["passwd"], "p");
    }
}
