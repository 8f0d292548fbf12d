//! Shared by the Initializer's integration tests: a simulated platform, a manifest, an
//! in-process Coordinator, the binary, and an independent check of what a workload reads.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nunki_atls::SimIssuer;
use nunki_attestation::sim::SimPlatform;
use nunki_coordinator::run::{Options, Running, start};
use nunki_manifest::{HostData, Manifest};
use nunki_testkit::SimDeployment;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// The four files, in the Initializer's order.
pub const FILES: [&str; 4] = [
    "mesh-ca.pem",
    "certChain.pem",
    "key.pem",
    "coordinator-root-ca.pem",
];

pub fn sha256(b: &[u8]) -> [u8; 32] {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .try_into()
        .unwrap()
}

/// A simulated platform on disk (the binary opens it too) and a manifest admitting the
/// Coordinator's and `web`'s policies.
pub struct World {
    pub work: tempfile::TempDir,
    pub sim_dir: PathBuf,
    pub platform: Arc<SimPlatform>,
    pub coordinator_policy: Vec<u8>,
    pub web_policy: Vec<u8>,
}

impl World {
    pub fn new(tag: &str) -> Self {
        let work = tempfile::tempdir().unwrap();
        let sim_dir = work.path().join("sim");
        let platform = Arc::new(SimPlatform::open_or_create(&sim_dir).unwrap());
        Self {
            work,
            sim_dir,
            platform,
            coordinator_policy: format!("coordinator policy ({tag})").into_bytes(),
            web_policy: format!("web policy ({tag})").into_bytes(),
        }
    }

    pub fn coordinator_host(&self) -> HostData {
        HostData(sha256(&self.coordinator_policy))
    }

    pub fn web_host(&self) -> HostData {
        HostData(sha256(&self.web_policy))
    }

    /// The issuer a `web` pod's Initializer uses.
    pub fn web_issuer(&self) -> Arc<SimIssuer> {
        Arc::new(SimIssuer::new(self.platform.clone(), self.web_host()))
    }

    /// The deployment: the Coordinator and a `web` workload.
    pub fn deployment(&self) -> SimDeployment {
        SimDeployment::new(self.platform.reference_values(), &self.coordinator_policy).workload(
            &self.web_policy,
            &["web"],
            "",
        )
    }

    pub fn manifest(&self) -> Manifest {
        self.deployment().manifest()
    }

    /// Starts a Coordinator whose mesh API listens on `mesh_api` (port 0: any).
    pub async fn start_coordinator(&self, mesh_api: SocketAddr) -> Running {
        start(Options {
            mesh_api,
            ..Options::loopback(Arc::new(SimIssuer::new(
                self.platform.clone(),
                self.coordinator_host(),
            )))
        })
        .await
        .unwrap()
    }

    /// Sets the manifest over the user API (attesting the Coordinator); returns the root CA PEM.
    pub async fn set_manifest(&self, c: &Running) -> Vec<u8> {
        self.deployment().set(c.user_api).await.root_ca
    }

    /// The Initializer binary as a `web` pod runs it (logs without colours).
    pub fn initializer(&self, coordinator: &str, out: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nunki-initializer"));
        cmd.env("COORDINATOR_HOST", coordinator)
            .env("NUNKI_PLATFORM", "simulated")
            .env("NUNKI_SIM_DIR", &self.sim_dir)
            .env("NUNKI_SIM_HOST_DATA", hex::encode(self.web_host().0))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("NUNKI_COORDINATOR_ROOT")
            .env_remove("NUNKI_TLS_DIR")
            .arg("--out")
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }
}

/// A port on loopback with nothing listening (bound once, then released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Collects a child's stderr in the background.
#[derive(Clone)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    pub fn capture(child: &mut Child) -> Self {
        let buf = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr must be piped");
        let b = buf.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut g = b.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        Self(buf)
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the log, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if pred(&self.text()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        pred(&self.text())
    }
}

/// The `attempt=N` values the Initializer logged.
pub fn attempts(log: &str) -> Vec<u32> {
    log.split("attempt=")
        .skip(1)
        .filter_map(|s| {
            s.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

/// What a workload finds in `dir`.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// None of the four files can be read.
    Nothing,
    /// All four are readable, and they are a complete, valid set; the leaf's key (DER SPKI).
    Complete(Vec<u8>),
}

/// Reads `dir` like a workload and checks, independently of the Initializer's own checks
/// (with rustls' verifiers), that what is readable is all or nothing and valid: the key
/// matches the leaf, the leaf verifies as a client certificate through the intermediate to
/// the root and as a server certificate for `web` against the mesh CA alone. Panics otherwise.
pub fn inspect(dir: &Path) -> Seen {
    let read: Vec<Option<Vec<u8>>> = FILES
        .iter()
        .map(|f| std::fs::read(dir.join(f)).ok())
        .collect();
    if read.iter().all(Option::is_none) {
        return Seen::Nothing;
    }
    assert!(
        read.iter().all(Option::is_some),
        "partial set in {}: {:?}",
        dir.display(),
        FILES
            .iter()
            .zip(&read)
            .map(|(f, r)| (f, r.is_some()))
            .collect::<Vec<_>>()
    );
    let [mesh, chain, key, root] = [0, 1, 2, 3].map(|i| read[i].clone().unwrap());

    let (label, key_der) = der::pem::decode_vec(&key).expect("key.pem is PEM");
    assert_eq!(label, "PRIVATE KEY");
    let key = nunki_atls::cert::AttestingKey::from_pkcs8(&key_der).expect("key.pem is PKCS#8");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<_, _>>()
        .expect("certChain.pem is PEM");
    assert_eq!(chain.len(), 2, "certChain.pem: leaf and intermediate");
    let leaf = nunki_atls::cert::parse_peer(&chain[0]).unwrap();
    assert_eq!(leaf.spki, key.spki_der(), "key.pem belongs to the leaf");

    let provider = nunki_atls::provider();
    let store = |pem: &[u8]| {
        let mut s = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pem) {
            s.add(c.unwrap()).unwrap();
        }
        assert_eq!(s.len(), 1);
        Arc::new(s)
    };
    rustls::server::WebPkiClientVerifier::builder_with_provider(store(&root), provider.clone())
        .build()
        .unwrap()
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .expect("leaf → intermediate → coordinator-root-ca.pem");
    rustls::client::WebPkiServerVerifier::builder_with_provider(store(&mesh), provider)
        .build()
        .unwrap()
        .verify_server_cert(
            &chain[0],
            &[],
            &ServerName::try_from("web").unwrap(),
            &[],
            UnixTime::now(),
        )
        .expect("leaf → mesh-ca.pem, for the name web");
    Seen::Complete(leaf.spki)
}

/// Entries of `dir` other than the visible files and `..data` (generation directories and
/// leftovers).
pub fn hidden(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !FILES.contains(&n.as_str()) && n != "..data")
        .collect();
    v.sort();
    v
}
