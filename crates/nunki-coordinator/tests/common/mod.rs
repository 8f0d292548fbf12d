//! Set-up shared by the Coordinator's integration tests: the simulated platform, a deployment
//! (manifest + policies), an in-process Coordinator on loopback, user and pod connections.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use nunki_api::meshapi::NewMeshCertRequest;
use nunki_api::meshapi::mesh_api_client::MeshApiClient;
use nunki_api::userapi::SetManifestRequest;
use nunki_atls::cert::AttestingKey;
use nunki_atls::grpc::{AtlsChannel, ConnectError, Target, connect};
use nunki_atls::verify::system_clock;
use nunki_atls::{
    ClientIdentity, HostDataRule, Issuer, ReferenceVerifier, ServerVerification, SimIssuer,
};
use nunki_attestation::sim::SimPlatform;
use nunki_coordinator::run::{Options, Running, StoreChoice, start};
use nunki_manifest::{HostData, Sha256Fingerprint, SnpProduct};

pub fn sim() -> Arc<SimPlatform> {
    static P: OnceLock<Arc<SimPlatform>> = OnceLock::new();
    P.get_or_init(|| Arc::new(SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap()))
        .clone()
}

pub use nunki_testkit::sha256;

pub struct Deployment {
    pub coordinator_policy: Vec<u8>,
    pub web_policy: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Deployment {
    pub fn new(owner: Arc<AttestingKey>, extra_san: &str) -> Self {
        Self::build(
            vec![Sha256Fingerprint(sha256(&owner.spki_der()))],
            vec![],
            extra_san,
        )
    }

    /// A deployment with these workload owner digests and seed-share owner keys (hex PKCS#1).
    pub fn build(
        owner_digests: Vec<Sha256Fingerprint>,
        seedshare_owner_pub_keys: Vec<String>,
        extra_san: &str,
    ) -> Self {
        Self::build_for(
            sim().reference_values(),
            owner_digests,
            seedshare_owner_pub_keys,
            extra_san,
        )
    }

    /// Like [`Deployment::build`] for another simulated platform.
    pub fn build_for(
        rv: nunki_manifest::SimulatedReferenceValues,
        owner_digests: Vec<Sha256Fingerprint>,
        seedshare_owner_pub_keys: Vec<String>,
        extra_san: &str,
    ) -> Self {
        let coordinator_policy = b"package agent_policy\n# coordinator\n".to_vec();
        let web_policy = format!("package agent_policy\n# web {extra_san}\n").into_bytes();
        let mut d = nunki_testkit::SimDeployment::new(rv, &coordinator_policy).workload(
            &web_policy,
            &["web", "*", "127.0.0.1", extra_san],
            "apps/v1/Deployment/default/web",
        );
        d.workload_owners = owner_digests;
        d.seedshare_owners = seedshare_owner_pub_keys;
        let m = d.manifest();
        Self {
            coordinator_policy,
            web_policy,
            manifest: m.to_json_bytes(),
        }
    }

    pub fn coordinator_host_data(&self) -> HostData {
        HostData(sha256(&self.coordinator_policy))
    }

    pub fn web_host_data(&self) -> HostData {
        HostData(sha256(&self.web_policy))
    }

    pub fn request(&self, previous: Option<[u8; 32]>) -> SetManifestRequest {
        SetManifestRequest {
            manifest: self.manifest.clone(),
            policies: vec![self.coordinator_policy.clone(), self.web_policy.clone()],
            previous_transition: previous.map(|p| p.to_vec()).unwrap_or_default(),
        }
    }
}

/// A deployment with a fresh owner key and a Coordinator (in-memory store) that runs its
/// coordinator policy: how most tests start.
pub async fn deployment_and_coordinator(extra_san: &str) -> (Deployment, Running) {
    let owner = Arc::new(AttestingKey::generate().unwrap());
    let d = Deployment::new(owner, extra_san);
    let c = coordinator(StoreChoice::Memory, d.coordinator_host_data())
        .await
        .unwrap();
    (d, c)
}

pub async fn coordinator(store: StoreChoice, host: HostData) -> Result<Running, String> {
    start(Options {
        store,
        ..Options::loopback(Arc::new(SimIssuer::new(sim(), host)))
    })
    .await
}

pub async fn user_channel(
    addr: SocketAddr,
    host: HostData,
    key: Option<Arc<AttestingKey>>,
) -> Result<AtlsChannel, ConnectError> {
    user_channel_for(addr, host, key, sim().reference_values()).await
}

/// Like [`user_channel`] for a Coordinator on another simulated platform.
pub async fn user_channel_for(
    addr: SocketAddr,
    host: HostData,
    key: Option<Arc<AttestingKey>>,
    rv: nunki_manifest::SimulatedReferenceValues,
) -> Result<AtlsChannel, ConnectError> {
    let verifier = Arc::new(
        ReferenceVerifier::new(&[], &[rv], HostDataRule::OneOf(vec![host]), system_clock())
            .unwrap(),
    );
    let identity = key.map_or(ClientIdentity::None, ClientIdentity::Key);
    // Bounded, so that a test polling for a Coordinator cannot hang on a port someone else got.
    connect(
        &Target::new(
            addr.to_string(),
            ServerVerification::Verify(verifier),
            identity,
        )
        .tcp_timeout(std::time::Duration::from_secs(5))
        .handshake_timeout(std::time::Duration::from_secs(20))
        .rpc_timeout(std::time::Duration::from_secs(60)),
    )
    .await
}

pub async fn pod(
    addr: SocketAddr,
    issuer: Arc<dyn Issuer>,
) -> Result<(Arc<AttestingKey>, nunki_api::meshapi::NewMeshCertResponse), String> {
    let key = Arc::new(AttestingKey::generate().unwrap());
    let ch = connect(&Target::new(
        addr.to_string(),
        ServerVerification::None,
        ClientIdentity::Attested {
            key: key.clone(),
            issuer,
        },
    ))
    .await
    .map_err(|e| e.to_string())?;
    let resp = MeshApiClient::new(ch.channel())
        .new_mesh_cert(NewMeshCertRequest {})
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    Ok((key, resp.into_inner()))
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, out)
}
