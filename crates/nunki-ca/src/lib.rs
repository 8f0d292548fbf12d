//! The Nunki certificate authority: the Coordinator's root CA, the per-manifest mesh CA (as an
//! intermediate under the root and as a self-signed twin), and leaf certificates for workloads.
//!
//! ```text
//!  root CA  (CN "nunki root CA", O "Nunki", root key, self-signed, pathlen 1)
//!     │
//!     └── intermediate CA (CN "nunki mesh CA", O "Nunki", mesh key, pathlen 0)
//!            │                               ╲ same subject, same key
//!            │                      mesh CA (CN "nunki mesh CA", O "Nunki", mesh key, self-signed)
//!            │                               ╱
//!            └── leaf (the pod's own key; CN = first DNS SAN; serverAuth + clientAuth)
//! ```
//!
//! Whoever trusts the root trusts every future manifest and verifies
//! leaf → intermediate → root; whoever trusts only the mesh CA trusts just the manifest it
//! verified and verifies leaf → mesh CA directly. Both paths work because the intermediate and
//! the mesh CA share subject and key, and leaves name that subject as issuer.
//!
//! The root certificate is re-minted (new serial, new dates) each time a [`Ca`] is built, but
//! its subject and key depend only on the root key, so an old root PEM keeps validating chains
//! built by a later [`Ca`] with the same root key.
//!
//! With the seed engine ([`SeedEngine`]) the root key is derived from the Coordinator's
//! [`Seed`] and [`Salt`] instead of generated, so the root CA survives recovery; the mesh key stays
//! random per manifest. [`encrypt_seed_share`] / [`decrypt_seed_share`] carry the seed to and from
//! the seed-share owners.
//!
//! The crate does no I/O. Time is injected; serial numbers and ECDSA signatures are the only
//! non-deterministic parts of the output.
//!
//! ```
//! use std::time::SystemTime;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root_key = nunki_ca::generate_p384_pkcs8()?; // later: derived from the seed
//! let mesh_key = nunki_ca::generate_p384_pkcs8()?;
//! let ca = nunki_ca::Ca::new(&root_key, &mesh_key, SystemTime::now())?;
//!
//! # let pod_spki = ca_doc_spki();
//! // `pod_spki`: the workload's SubjectPublicKeyInfo DER (P-256 from the Initializer).
//! let sans = ["web".to_string(), "*".to_string(), "10.0.0.7".to_string()];
//! let leaf = ca.issue_leaf(&pod_spki, &sans, SystemTime::now())?;
//! let cert_chain_pem = ca.chain_pem(&leaf); // certChain.pem
//! let mesh_ca_pem = ca.mesh_ca_pem(); // mesh-ca.pem
//! let root_pem = ca.root_pem(); // coordinator-root-ca.pem
//! # assert!(cert_chain_pem.starts_with(&leaf.pem) && !mesh_ca_pem.is_empty() && !root_pem.is_empty());
//! # Ok(())
//! # }
//! # fn ca_doc_spki() -> Vec<u8> {
//! #     use aws_lc_rs::{encoding::AsDer, signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING}};
//! #     let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
//! #     key.public_key().as_der().unwrap().as_ref().to_vec()
//! # }
//! ```

mod ca;
mod error;
mod history_key;
mod keys;
mod san;
mod seed;
mod seedshare;
mod serial;
mod spki;
mod validity;

pub use ca::{
    Ca, DEFAULT_LEAF_COMMON_NAME, Leaf, MESH_CA_COMMON_NAME, ORGANIZATION, ROOT_CA_COMMON_NAME,
};
pub use error::{CaError, CaKeyRole};
pub use history_key::{
    AUDIT_HEAD_CONTEXT, HistoryKey, HistoryKeyError, LATEST_TRANSITION_CONTEXT, Signed,
    verify_history_signature,
};
pub use keys::generate_p384_pkcs8;
pub use seed::{
    HISTORY_SIGNING_KEY_LABEL, MESH_CA_WRAP_KEY_LABEL, ROOT_CA_KEY_LABEL, SALT_LEN, SEED_LEN, Salt,
    Seed, SeedEngine, SeedError, WORKLOAD_SECRET_LABEL, WORKLOAD_SECRET_LEN,
};
pub use seedshare::{
    MIN_SEEDSHARE_OWNER_KEY_BITS, SEED_SHARE_DOCUMENT_VERSION, SEED_SHARE_FORMAT_VERSION,
    SEED_SHARE_OAEP_LABEL, SEEDSHARE_OWNER_KEY_BITS, SeedShare, SeedShareDocument, SeedShareError,
    decrypt_seed_share, encrypt_seed_share, generate_seedshare_owner_key,
    seedshare_owner_key_digest, seedshare_owner_public_key,
};
