//! Set-up shared by the integration tests of several crates: a simulated deployment (policies
//! and the manifest that lists them), setting it on a Coordinator over attested TLS, and
//! checking issued certificates with rustls. A dev-dependency only; test code, so failures
//! panic with the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_api::userapi::{SetManifestRequest, SetManifestResponse};
use nunki_atls::grpc::{Target, connect};
use nunki_atls::verify::system_clock;
use nunki_atls::{ClientIdentity, HostDataRule, ReferenceVerifier, ServerVerification};
use nunki_manifest::{
    HostData, Manifest, PolicyEntry, PolicyHash, ReferenceValues, Role, Sha256Fingerprint,
    SimulatedReferenceValues,
};
use rustls::pki_types::CertificateDer;

/// SHA-256 of `b`.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    nunki_manifest::sha256(b)
}

/// A deployment on one simulated platform: the Coordinator's policy, the workloads' policies
/// with their manifest entries, and the owner keys (none unless added: updates disabled).
#[derive(Debug, Clone)]
pub struct SimDeployment {
    reference_values: SimulatedReferenceValues,
    /// The Coordinator's policy document.
    pub coordinator_policy: Vec<u8>,
    /// Each workload's policy document and its manifest entry.
    pub workloads: Vec<(Vec<u8>, PolicyEntry)>,
    /// `WorkloadOwnerKeyDigests` (empty: updates disabled).
    pub workload_owners: Vec<Sha256Fingerprint>,
    /// `SeedshareOwnerPubKeys` (hex PKCS#1).
    pub seedshare_owners: Vec<String>,
}

impl SimDeployment {
    /// A deployment whose Coordinator runs `coordinator_policy` on the platform with these
    /// reference values.
    pub fn new(reference_values: SimulatedReferenceValues, coordinator_policy: &[u8]) -> Self {
        Self {
            reference_values,
            coordinator_policy: coordinator_policy.to_vec(),
            workloads: Vec::new(),
            workload_owners: Vec::new(),
            seedshare_owners: Vec::new(),
        }
    }

    /// Lets the key with this SPKI digest update the manifest.
    pub fn workload_owner(mut self, digest: Sha256Fingerprint) -> Self {
        self.workload_owners.push(digest);
        self
    }

    /// Adds a seed-share owner (public key, PKCS#1 DER).
    pub fn seedshare_owner(mut self, public_key: &[u8]) -> Self {
        self.seedshare_owners.push(hex_lower(public_key));
        self
    }

    /// Adds a workload policy whose pods get these SANs and (if not empty) this workload
    /// secret ID.
    pub fn workload(mut self, policy: &[u8], sans: &[&str], secret_id: &str) -> Self {
        self.workloads.push((
            policy.to_vec(),
            PolicyEntry {
                sans: sans.iter().map(|s| s.to_string()).collect(),
                workload_secret_id: secret_id.to_string(),
                role: Role::None,
            },
        ));
        self
    }

    /// The Coordinator's HOST_DATA (its policy's hash).
    pub fn coordinator_host(&self) -> HostData {
        HostData(sha256(&self.coordinator_policy))
    }

    /// The manifest listing the Coordinator and every workload.
    pub fn manifest(&self) -> Manifest {
        let mut policies = BTreeMap::new();
        policies.insert(
            PolicyHash(sha256(&self.coordinator_policy)),
            PolicyEntry {
                sans: vec!["coordinator".into()],
                workload_secret_id: String::new(),
                role: Role::Coordinator,
            },
        );
        for (doc, entry) in &self.workloads {
            policies.insert(PolicyHash(sha256(doc)), entry.clone());
        }
        Manifest {
            policies,
            reference_values: ReferenceValues {
                snp: vec![],
                tdx: vec![],
                simulated: vec![self.reference_values.clone()],
            },
            workload_owner_key_digests: self.workload_owners.clone(),
            seedshare_owner_pub_keys: self.seedshare_owners.clone(),
        }
    }

    /// Every policy document, the Coordinator's first.
    pub fn policies(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.coordinator_policy.clone())
            .chain(self.workloads.iter().map(|(doc, _)| doc.clone()))
            .collect()
    }

    /// Sets the manifest on the Coordinator whose user API is at `user_api`, after attesting
    /// it against this deployment's reference values and Coordinator policy; returns its answer
    /// (root and mesh CA).
    pub async fn set(&self, user_api: SocketAddr) -> SetManifestResponse {
        let verifier = Arc::new(
            ReferenceVerifier::new(
                &[],
                std::slice::from_ref(&self.reference_values),
                HostDataRule::OneOf(vec![self.coordinator_host()]),
                system_clock(),
            )
            .unwrap(),
        );
        let ch = connect(&Target::new(
            user_api.to_string(),
            ServerVerification::Verify(verifier),
            ClientIdentity::None,
        ))
        .await
        .unwrap();
        UserApiClient::new(ch.channel())
            .set_manifest(SetManifestRequest {
                manifest: self.manifest().to_json_bytes(),
                policies: self.policies(),
                previous_transition: vec![],
            })
            .await
            .unwrap()
            .into_inner()
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The certificates of a PEM (or DER) document.
pub fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    nunki_attestation::snp::certs::pem_or_der_certs(pem)
        .unwrap()
        .into_iter()
        .map(Into::into)
        .collect()
}

/// Verifies a server leaf for `name` (chain: leaf first, then intermediates) against `root`
/// with rustls/webpki, as a TLS client of the workload would.
pub fn verify_server_leaf(chain_pem: &[u8], root_pem: &[u8], name: &str) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(root_pem) {
        roots.add(c).unwrap();
    }
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        nunki_atls::provider(),
    )
    .build()
    .unwrap();
    let chain = pem_certs(chain_pem);
    v.verify_server_cert(
        &chain[0],
        &chain[1..],
        &rustls::pki_types::ServerName::try_from(name.to_string()).unwrap(),
        &[],
        rustls::pki_types::UnixTime::now(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}
