//! Helpers shared by the integration tests: keys, CAs and rustls verifiers.

#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test helpers; a panic is a failed test"
)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use nunki_ca::{Ca, Leaf, generate_p384_pkcs8};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use zeroize::Zeroizing;

/// SANs like a manifest would give (including the default bare `*`).
pub const SANS: &[&str] = &[
    "web",
    "web.default.svc.cluster.local",
    "*.web.default.svc.cluster.local",
    "*",
    "10.1.2.3",
    "fd00::1",
    "spiffe://nunki/ns/default/web",
];

pub fn sans() -> Vec<String> {
    SANS.iter().map(|s| s.to_string()).collect()
}

/// The two CA keys of one deployment.
pub struct CaKeys {
    pub root: Zeroizing<Vec<u8>>,
    pub mesh: Zeroizing<Vec<u8>>,
}

impl CaKeys {
    pub fn generate() -> Self {
        Self {
            root: generate_p384_pkcs8().unwrap(),
            mesh: generate_p384_pkcs8().unwrap(),
        }
    }

    pub fn ca(&self, now: SystemTime) -> Ca {
        Ca::new(&self.root, &self.mesh, now).unwrap()
    }
}

/// A pod's TLS key, as the Initializer would generate it.
pub struct PodKey {
    pub spki: Vec<u8>,
    pub pkcs8: Vec<u8>,
}

impl PodKey {
    pub fn generate() -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        Self {
            spki: key.public_key().as_der().unwrap().as_ref().to_vec(),
            pkcs8: key.to_pkcs8v1().unwrap().as_ref().to_vec(),
        }
    }

    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }
}

/// A fresh CA and a leaf for a fresh P-256 key with [`SANS`].
pub fn ca_and_leaf(now: SystemTime) -> (Ca, Leaf) {
    let ca = CaKeys::generate().ca(now);
    let leaf = ca
        .issue_leaf(&PodKey::generate().spki, &sans(), now)
        .unwrap();
    (ca, leaf)
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn der(bytes: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from(bytes.to_vec())
}

pub fn roots(anchors: &[&[u8]]) -> Arc<RootCertStore> {
    let mut store = RootCertStore::empty();
    for anchor in anchors {
        store.add(der(anchor)).unwrap();
    }
    Arc::new(store)
}

pub fn server_verifier(anchors: &[&[u8]]) -> Arc<WebPkiServerVerifier> {
    WebPkiServerVerifier::builder_with_provider(roots(anchors), provider())
        .build()
        .unwrap()
}

pub fn client_verifier(anchors: &[&[u8]]) -> Arc<dyn ClientCertVerifier> {
    WebPkiClientVerifier::builder_with_provider(roots(anchors), provider())
        .build()
        .unwrap()
}

pub fn unix_time(t: SystemTime) -> UnixTime {
    UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).unwrap())
}
