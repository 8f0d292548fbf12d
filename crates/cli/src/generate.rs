//! `nunki generate`: rewrite Kubernetes resources for Nunki, generate a Kata agent policy per
//! pod template, and create or update the manifest.
//!
//! Nothing is written unless every workload got its policy: errors are collected first, then
//! the manifest, the owner key and the YAML are written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use nunki_kube::{Resources, RewriteOptions, WorkloadRef};
use nunki_manifest::draft::{self, GeneratedWorkload, OwnerKeys, ReferenceChoice};
use nunki_manifest::{Role, SnpProduct};
use nunki_policy::{
    ImageInfo, PolicyDocument, PolicyFormat, PolicyGenerator, Settings, reference_has_digest,
};

use crate::builtin_images;

/// Which reference values a new manifest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReferencePlatform {
    /// The local simulated SEV-SNP platform (no TEE: proves the protocol, not isolation).
    Simulated,
    /// AMD EPYC Milan (placeholders for the launch measurement and minimum TCB).
    SnpMilan,
    /// AMD EPYC Genoa (placeholders for the launch measurement and minimum TCB).
    SnpGenoa,
    /// AMD EPYC Turin (placeholders for the launch measurement and minimum TCB).
    SnpTurin,
}

/// Flags of `nunki generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The manifest to create or update.
    #[arg(short = 'm', long = "manifest", default_value = "manifest.json")]
    pub manifest: PathBuf,
    /// Reference values for the manifest. Default: keep the existing manifest's, or
    /// `simulated` for a new manifest.
    #[arg(long = "reference-values", value_enum)]
    pub reference_values: Option<ReferencePlatform>,
    /// Runtime class for every pod. Default: keep a `kata-*` class already set, else
    /// kata-cc-isolation.
    #[arg(long = "runtime-class", value_name = "NAME")]
    pub runtime_class: Option<String>,
    /// Image of the Initializer init container.
    #[arg(long = "initializer-image", value_name = "REF", default_value = builtin_images::INITIALIZER)]
    pub initializer_image: String,
    /// Image-info file with the configs of the images the pods use (default: images.json next
    /// to the manifest). Fill it with `nunki images pull`.
    #[arg(long = "image-info", value_name = "FILE")]
    pub image_info: Option<PathBuf>,
    /// Deliver policies in the seed-era annotation io.katacontainers.config.agent.policy
    /// (base64 of the policy; hash = SHA-256 of the policy) instead of initdata.
    #[arg(long = "policy-annotation")]
    pub policy_annotation: bool,
    /// Workload owner key (P-384, PEM) allowed to update the manifest; created if absent
    /// (default: workload-owner.pem next to the manifest).
    #[arg(
        long = "workload-owner-key",
        value_name = "PEM",
        conflicts_with = "disable_updates"
    )]
    pub workload_owner_key: Option<PathBuf>,
    /// List no workload owner keys: the deployment can never be updated.
    #[arg(long = "disable-updates")]
    pub disable_updates: bool,
    /// Seed-share owner key (RSA, PEM) whose public key is listed in SeedshareOwnerPubKeys, so
    /// its holder can recover a restarted Coordinator; created (RSA-4096) if absent. Repeat for
    /// several owners (default: seedshare-owner.pem next to the manifest). The list cannot change
    /// after the first `nunki set`.
    #[arg(long = "seedshare-owner-key", value_name = "PEM")]
    pub seedshare_owner_keys: Vec<PathBuf>,
    /// Write all resources into this one file instead of rewriting the inputs in place.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Refuse image references without a digest (default: warn).
    #[arg(long = "require-digests")]
    pub require_digests: bool,
    /// Simulated platform directory, for `--reference-values simulated`.
    #[arg(long = "sim-dir", env = "NUNKI_SIM_DIR", value_name = "DIR")]
    pub sim_dir: Option<PathBuf>,
    /// Kubernetes YAML files, or directories of *.yaml / *.yml files.
    #[arg(value_name = "PATHS", required = true)]
    pub paths: Vec<PathBuf>,
}

/// What `generate` did, for the summary and for callers such as the demo.
#[derive(Debug, Clone)]
pub struct Generated {
    /// One entry per workload, in input order.
    pub workloads: Vec<GeneratedWorkload>,
    /// What changed in the manifest.
    pub report: draft::DraftReport,
    /// Files written.
    pub written: Vec<PathBuf>,
}

/// Runs `nunki generate`.
pub fn run(args: GenerateArgs) -> Result<ExitCode> {
    let g = generate(&args)?;
    for w in &g.workloads {
        let state = if g.report.added.iter().any(|(h, _)| *h == w.policy_hash) {
            "new"
        } else {
            "kept"
        };
        println!(
            "{:<44} policy {}  ({state}{})",
            w.source,
            w.policy_hash,
            if w.role == Role::Coordinator {
                ", coordinator"
            } else {
                ""
            }
        );
    }
    for r in &g.report.removed {
        println!("removed from the manifest (its resource is gone): {r}");
    }
    for f in &g.written {
        println!("wrote {}", f.display());
    }
    if !g.report.placeholders.is_empty() {
        println!(
            "\nThe manifest has {} placeholder(s) that only you can fill in before `nunki set`:",
            g.report.placeholders.len()
        );
        for p in &g.report.placeholders {
            println!("  {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sibling(manifest: &Path, name: &str) -> PathBuf {
    match manifest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join(name),
        _ => PathBuf::from(name),
    }
}

/// Does the work of `nunki generate` and returns what it did.
pub fn generate(a: &GenerateArgs) -> Result<Generated> {
    let mut resources = Resources::read(&a.paths).map_err(anyhow::Error::msg)?;
    for w in resources.warnings() {
        eprintln!("warning: {w}");
    }
    let options = RewriteOptions {
        initializer_image: a.initializer_image.clone(),
        runtime_class: a.runtime_class.clone(),
        ..RewriteOptions::new(a.initializer_image.clone())
    };
    resources.rewrite(&options).map_err(anyhow::Error::msg)?;

    let image_info_path = a
        .image_info
        .clone()
        .unwrap_or_else(|| sibling(&a.manifest, "images.json"));
    let images = load_images(
        &image_info_path,
        a.image_info.is_some(),
        &a.initializer_image,
    )?;

    let workloads = resources.workloads();
    if workloads.is_empty() {
        bail!(
            "no Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job or CronJob in {}",
            a.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    check_digests(&workloads, a.require_digests)?;

    let format = if a.policy_annotation {
        PolicyFormat::Legacy
    } else {
        PolicyFormat::Initdata
    };
    let generator = PolicyGenerator::new(Settings::default())?;
    let mut generated = Vec::new();
    let mut errors = Vec::new();
    let mut documents = Vec::new();
    // Policies are independent: spread them over the cores (most of the time is gzip).
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = workloads.len().div_ceil(threads).max(1);
    let results: Vec<Result<PolicyDocument>> = std::thread::scope(|scope| {
        let handles: Vec<_> = workloads
            .chunks(chunk)
            .map(|part| {
                let (generator, resources, images) = (&generator, &resources, &images);
                scope.spawn(move || {
                    part.iter()
                        .map(|w| policy_document(generator, w, resources, images, format))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(anyhow::anyhow!("policy generation panicked"))])
            })
            .collect()
    });
    for (w, result) in workloads.iter().zip(results) {
        match result {
            Ok(doc) => {
                generated.push(GeneratedWorkload {
                    policy_hash: doc.hash,
                    name: w.name().to_string(),
                    workload_secret_id: w.workload_secret_id(),
                    role: if w.is_coordinator() {
                        Role::Coordinator
                    } else {
                        Role::None
                    },
                    source: w.describe(),
                });
                documents.push((w.clone(), doc));
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!(
            "no policy for {} of {} workloads (nothing was written):\n  {}",
            errors.len(),
            workloads.len(),
            errors.join("\n  ")
        );
    }
    if !generated.iter().any(|w| w.role == Role::Coordinator) {
        eprintln!(
            "warning: no pod template is annotated {}: {}; the manifest needs the Coordinator's policy before `nunki set`",
            nunki_kube::POD_ROLE_ANNOTATION,
            nunki_kube::COORDINATOR_ROLE
        );
    }

    // Manifest.
    let existing = match std::fs::read(&a.manifest) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", a.manifest.display())),
    };
    let reference = match (a.reference_values, &existing) {
        (Some(p), _) => reference_choice(p, a.sim_dir.as_deref())?,
        (None, Some(_)) => ReferenceChoice::Keep,
        (None, None) => reference_choice(ReferencePlatform::Simulated, a.sim_dir.as_deref())?,
    };
    let mut written = Vec::new();
    let owner_keys = if a.disable_updates {
        OwnerKeys::Disabled
    } else {
        let path = a
            .workload_owner_key
            .clone()
            .unwrap_or_else(|| sibling(&a.manifest, "workload-owner.pem"));
        let (digest, created) = ensure_owner_key(&path)?;
        if created {
            written.push(path);
        }
        OwnerKeys::Add(vec![digest])
    };
    let seedshare_paths = if a.seedshare_owner_keys.is_empty() {
        vec![sibling(&a.manifest, "seedshare-owner.pem")]
    } else {
        a.seedshare_owner_keys.clone()
    };
    let mut seedshare_owners = Vec::with_capacity(seedshare_paths.len());
    for path in seedshare_paths {
        let (public, created) = crate::recover::ensure_seedshare_owner_key(&path)?;
        if created {
            written.push(path);
        }
        seedshare_owners.push(public);
    }
    let (manifest_bytes, report) = draft::update(
        existing.as_deref(),
        &generated,
        &reference,
        &owner_keys,
        &seedshare_owners,
    )
    .map_err(anyhow::Error::msg)?;

    for (w, doc) in &documents {
        resources
            .set_policy_annotation(w, doc.annotation_key, doc.annotation_value.clone())
            .map_err(anyhow::Error::msg)?;
    }
    // Every resource as it will be written, through the typed Kubernetes structs: a field that
    // does not survive is a typo or a wrong type that Kubernetes would drop or refuse.
    for d in resources.typed_round_trip() {
        eprintln!("warning: {d}");
    }
    if existing.as_deref() != Some(manifest_bytes.as_slice()) {
        crate::files::write_atomic(&a.manifest, &manifest_bytes)?;
        written.push(a.manifest.clone());
    }
    match &a.output {
        Some(out) => {
            let yaml = resources.to_combined_yaml().map_err(anyhow::Error::msg)?;
            crate::files::write_atomic(out, yaml.as_bytes())?;
            written.push(out.clone());
        }
        None => written.extend(resources.write_in_place().map_err(anyhow::Error::msg)?),
    }
    Ok(Generated {
        workloads: generated,
        report,
        written,
    })
}

fn reference_choice(p: ReferencePlatform, sim_dir: Option<&Path>) -> Result<ReferenceChoice> {
    Ok(match p {
        ReferencePlatform::Simulated => {
            let dir = match sim_dir {
                Some(d) => d.to_path_buf(),
                None => nunki_attestation::sim::default_sim_dir()?,
            };
            let sim = nunki_attestation::sim::SimPlatform::open_or_create(&dir)
                .with_context(|| format!("simulated platform in {}", dir.display()))?;
            ReferenceChoice::Simulated(Box::new(sim.reference_values()))
        }
        ReferencePlatform::SnpMilan => ReferenceChoice::Snp(SnpProduct::Milan),
        ReferencePlatform::SnpGenoa => ReferenceChoice::Snp(SnpProduct::Genoa),
        ReferencePlatform::SnpTurin => ReferenceChoice::Snp(SnpProduct::Turin),
    })
}

/// The image-info file plus Nunki's built-in images. A missing file is fine as long as every
/// image is built in (the error for a missing image names the pull command).
fn load_images(path: &Path, explicit: bool, initializer_image: &str) -> Result<ImageInfo> {
    let mut images = if path.exists() || explicit {
        ImageInfo::read(path).map_err(anyhow::Error::msg)?
    } else {
        ImageInfo::new()
    };
    for (reference, config) in builtin_images::configs(initializer_image) {
        images.add_builtin(reference, config);
    }
    Ok(images)
}

fn check_digests(workloads: &[WorkloadRef], require: bool) -> Result<()> {
    let mut undigested = BTreeSet::new();
    for w in workloads {
        let spec = &w.input().spec;
        let all = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter());
        for c in all {
            if let Some(image) = c.image.as_deref()
                && !reference_has_digest(image)
                && !builtin_images::is_builtin(image)
            {
                undigested.insert(format!("{} ({})", image, w.describe()));
            }
        }
    }
    if undigested.is_empty() {
        return Ok(());
    }
    let list = undigested.into_iter().collect::<Vec<_>>().join("\n  ");
    if require {
        bail!(
            "image references without a digest (a tag can be moved to other content after you reviewed it; pin them as name@sha256:…):\n  {list}"
        );
    }
    eprintln!(
        "warning: image references without a digest; the policy pins what the tag points to today only through the image config (use --require-digests to refuse):\n  {list}"
    );
    Ok(())
}

fn policy_document(
    generator: &PolicyGenerator,
    w: &WorkloadRef,
    resources: &Resources,
    images: &ImageInfo,
    format: PolicyFormat,
) -> Result<PolicyDocument> {
    let input = w.input();
    let text = generator
        .policy(input, images, resources.config_sources())
        .with_context(|| w.describe())?;
    let doc = PolicyDocument::new(format, &text).with_context(|| w.describe())?;
    doc.check_annotations_size(&input.annotations)
        .with_context(|| w.describe())?;
    Ok(doc)
}

/// Creates a P-384 workload owner key at `path` if there is none; returns its digest and
/// whether it was created.
pub fn ensure_owner_key(path: &Path) -> Result<(nunki_manifest::Sha256Fingerprint, bool)> {
    let created = if path.exists() {
        false
    } else {
        let pkcs8 = nunki_ca::generate_p384_pkcs8().map_err(anyhow::Error::msg)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_slice());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        write_private(path, pem.as_bytes())?;
        true
    };
    let key = crate::set::load_owner_key(path)?;
    Ok((crate::set::owner_key_digest(&key), created))
}

/// Creates `path` with mode 0600 (fails if it exists) and writes `bytes`.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
