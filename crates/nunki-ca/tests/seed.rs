//! The seed engine (HKDF-SHA256 derivations) and seed shares (RSA-OAEP-SHA256).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::SystemTime;

use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use nunki_ca::{Ca, SALT_LEN, SEED_LEN, Salt, Seed, SeedEngine, SeedError, generate_p384_pkcs8};
use x509_parser::prelude::{FromDer, X509Certificate};

fn fixed_seed() -> Seed {
    Seed::from_bytes(&(0u8..64).collect::<Vec<_>>()).unwrap()
}

fn fixed_salt() -> Salt {
    Salt::from_bytes(&(0x80u8..0xa0).collect::<Vec<_>>()).unwrap()
}

fn engine(seed: &Seed, salt: &Salt) -> SeedEngine {
    SeedEngine::new(seed, salt)
}

fn p384(pkcs8: &[u8]) -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8).unwrap()
}

fn scalar_hex(pkcs8: &[u8]) -> String {
    let key = p384(pkcs8);
    let bin: EcPrivateKeyBin<'_> = key.private_key().as_be_bytes().unwrap();
    hex::encode(bin.as_ref())
}

/// (subject DER, SubjectPublicKeyInfo DER) of a certificate.
fn subject_and_spki(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    (
        cert.subject().as_raw().to_vec(),
        cert.public_key().raw.to_vec(),
    )
}

#[test]
fn seed_and_salt_lengths_are_checked() {
    assert_eq!(
        Seed::from_bytes(&[0; SEED_LEN - 1]).unwrap_err(),
        SeedError::InvalidLength {
            what: "seed",
            expected: 64,
            actual: 63
        }
    );
    assert!(Seed::from_bytes(&[0; SEED_LEN + 1]).is_err());
    assert!(Seed::from_bytes(&[0; SALT_LEN]).is_err());
    assert_eq!(
        Salt::from_bytes(&[0; SEED_LEN]).unwrap_err(),
        SeedError::InvalidLength {
            what: "salt",
            expected: 32,
            actual: 64
        }
    );
    let seed = Seed::from_bytes(&[3; SEED_LEN]).unwrap();
    assert_eq!(seed.as_bytes(), &[3; SEED_LEN]);
    let salt = Salt::from_bytes(&[4; SALT_LEN]).unwrap();
    assert_eq!(salt.as_bytes(), &[4; SALT_LEN]);
}

#[test]
fn generated_seeds_and_salts_are_random() {
    let (a, b) = (Seed::generate().unwrap(), Seed::generate().unwrap());
    assert_ne!(a.as_bytes(), b.as_bytes());
    assert_ne!(a.as_bytes(), &[0; SEED_LEN]);
    let (a, b) = (Salt::generate().unwrap(), Salt::generate().unwrap());
    assert_ne!(a.as_bytes(), b.as_bytes());
}

#[test]
fn debug_does_not_leak_secret_bytes() {
    let seed = Seed::from_bytes(&[0xab; SEED_LEN]).unwrap();
    let salt = Salt::from_bytes(&[0xcd; SALT_LEN]).unwrap();
    let engine = engine(&seed, &salt);
    for (text, byte) in [
        (format!("{seed:?}"), "ab"),
        (format!("{salt:?}"), "cd"),
        (format!("{engine:?}"), "ab"),
    ] {
        assert!(text.contains("[redacted]"), "{text}");
        assert!(!text.to_lowercase().contains(byte), "{text}");
        assert!(!text.contains("171") && !text.contains("205"), "{text}");
    }
}

/// Expected bytes computed independently with Python's `hmac`/`hashlib` (RFC 5869 HKDF-SHA256,
/// salt = 0x80..0x9f, IKM = 0x00..0x3f, info = label ‖ u32be(0) or label ‖ u32be(len) ‖ id).
/// A change of a label, of the encoding of `info`, or of the extract inputs breaks this test.
#[test]
fn known_answers() {
    let engine = engine(&fixed_seed(), &fixed_salt());
    assert_eq!(
        scalar_hex(&engine.root_ca_key().unwrap()),
        "557600456f756f5acf7ee8fd671aa66b56d04c6b6129153956bce1c484d12a3eebad58edace846f6b8b4ee2cf4468eb5"
    );
    assert_eq!(
        scalar_hex(&engine.history_signing_key().unwrap()),
        "a18bc10ba0cc60583d04f819d7c34bac76b8d89ce61e19e535289e84cf1e7e7a0bc1f3091bd86f805f8d22112ab01f72"
    );
    assert_eq!(
        hex::encode(*engine.workload_secret("coordinator").unwrap()),
        "f3f7893e7487ba88ae0fa8ddaca3051445fb98e2bf742e7f6156ec3fd26ddf2c\
         a557954b2f3042b31d940de41bdad4b269460c50568c4185f784f82cdac1eecf"
    );
}

#[test]
fn derivations_are_deterministic() {
    let seed = Seed::generate().unwrap();
    let salt = Salt::generate().unwrap();
    // A second engine from copies of the bytes (as after recovery).
    let a = engine(&seed, &salt);
    let b = engine(
        &Seed::from_bytes(seed.as_bytes()).unwrap(),
        &Salt::from_bytes(salt.as_bytes()).unwrap(),
    );
    assert_eq!(*a.root_ca_key().unwrap(), *b.root_ca_key().unwrap());
    assert_eq!(
        *a.history_signing_key().unwrap(),
        *b.history_signing_key().unwrap()
    );
    assert_eq!(
        *a.workload_secret("web").unwrap(),
        *b.workload_secret("web").unwrap()
    );
    assert_eq!(*a.root_ca_key().unwrap(), *a.root_ca_key().unwrap());
}

#[test]
fn root_ca_from_derived_key_survives_recovery() {
    let seed = Seed::generate().unwrap();
    let salt = Salt::generate().unwrap();
    let now = SystemTime::now();
    // Two Coordinator lifetimes: same seed, fresh mesh keys.
    let ca1 = Ca::new(
        &engine(&seed, &salt).root_ca_key().unwrap(),
        &generate_p384_pkcs8().unwrap(),
        now,
    )
    .unwrap();
    let ca2 = Ca::new(
        &engine(&seed, &salt).root_ca_key().unwrap(),
        &generate_p384_pkcs8().unwrap(),
        now,
    )
    .unwrap();
    assert_eq!(
        subject_and_spki(ca1.root_der()),
        subject_and_spki(ca2.root_der())
    );
    // The mesh CA is not derived: it differs.
    assert_ne!(
        subject_and_spki(ca1.mesh_ca_der()).1,
        subject_and_spki(ca2.mesh_ca_der()).1
    );
    // A different seed gives a different root key.
    let ca3 = Ca::new(
        &engine(&Seed::generate().unwrap(), &salt)
            .root_ca_key()
            .unwrap(),
        &generate_p384_pkcs8().unwrap(),
        now,
    )
    .unwrap();
    assert_ne!(
        subject_and_spki(ca1.root_der()).1,
        subject_and_spki(ca3.root_der()).1
    );
}

#[test]
fn different_inputs_give_unrelated_outputs() {
    let seed = fixed_seed();
    let salt = fixed_salt();
    let base = engine(&seed, &salt);
    let mut other_seed = *seed.as_bytes();
    other_seed[63] ^= 1;
    let mut other_salt = *salt.as_bytes();
    other_salt[0] ^= 1;
    let by_seed = engine(&Seed::from_bytes(&other_seed).unwrap(), &salt);
    let by_salt = engine(&seed, &Salt::from_bytes(&other_salt).unwrap());

    let root = scalar_hex(&base.root_ca_key().unwrap());
    let history = scalar_hex(&base.history_signing_key().unwrap());
    let outputs = [
        root.clone(),
        history.clone(),
        scalar_hex(&by_seed.root_ca_key().unwrap()),
        scalar_hex(&by_salt.root_ca_key().unwrap()),
        scalar_hex(&by_seed.history_signing_key().unwrap()),
        scalar_hex(&by_salt.history_signing_key().unwrap()),
        hex::encode(&base.workload_secret("a").unwrap()[..48]),
        hex::encode(&by_seed.workload_secret("a").unwrap()[..48]),
        hex::encode(&by_salt.workload_secret("a").unwrap()[..48]),
    ];
    assert_unrelated(&outputs);
}

#[test]
fn workload_ids_do_not_collide() {
    let engine = engine(&fixed_seed(), &fixed_salt());
    // Pairs that would collide under plain concatenation of label and id, or are near-equal.
    let ids = [
        "", "a", "b", "ab", "a\0", "\0a", "web", "web ", "Web", "0", "00",
    ];
    let secrets: Vec<String> = ids
        .iter()
        .map(|id| hex::encode(*engine.workload_secret(id).unwrap()))
        .collect();
    assert_unrelated(&secrets);
    // No workload secret equals (a prefix of) a key scalar.
    let root = scalar_hex(&engine.root_ca_key().unwrap());
    assert!(secrets.iter().all(|s| !s.starts_with(&root[..16])));
}

/// Asserts pairwise distinct hex strings that share no long common run of equal bytes
/// (unrelated outputs agree in about 1/256 of byte positions).
fn assert_unrelated(outputs: &[String]) {
    for (i, a) in outputs.iter().enumerate() {
        for b in &outputs[i + 1..] {
            assert_ne!(a, b);
            let (a, b) = (hex::decode(a).unwrap(), hex::decode(b).unwrap());
            let equal = a.iter().zip(&b).filter(|(x, y)| x == y).count();
            assert!(equal <= 6, "{equal} equal bytes in {a:02x?} and {b:02x?}");
        }
    }
}

#[test]
fn derived_keys_sign_and_verify() {
    let engine = engine(&Seed::generate().unwrap(), &Salt::generate().unwrap());
    let root = p384(&engine.root_ca_key().unwrap());
    let history = p384(&engine.history_signing_key().unwrap());
    let message = b"latest transition";
    for (signer, other) in [(&root, &history), (&history, &root)] {
        let signature = signer.sign(&SystemRandom::new(), message).unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, signer.public_key().as_ref());
        public.verify(message, signature.as_ref()).unwrap();
        assert!(public.verify(b"other message", signature.as_ref()).is_err());
        let wrong = UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, other.public_key().as_ref());
        assert!(wrong.verify(message, signature.as_ref()).is_err());
    }
    assert_ne!(root.public_key().as_ref(), history.public_key().as_ref());
}

// ---------------------------------------------------------------------------------------------
// Seed shares
// ---------------------------------------------------------------------------------------------

use std::sync::OnceLock;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use nunki_ca::{
    MIN_SEEDSHARE_OWNER_KEY_BITS, SeedShare, SeedShareError, decrypt_seed_share,
    encrypt_seed_share, generate_seedshare_owner_key, seedshare_owner_key_digest,
    seedshare_owner_public_key,
};
use zeroize::Zeroizing;

type OwnerKey = (Zeroizing<Vec<u8>>, Vec<u8>);

/// Two RSA-4096 owner keys, generated once per test binary (generation takes a while).
fn owners() -> &'static (OwnerKey, OwnerKey) {
    static OWNERS: OnceLock<(OwnerKey, OwnerKey)> = OnceLock::new();
    OWNERS.get_or_init(|| {
        (
            generate_seedshare_owner_key().unwrap(),
            generate_seedshare_owner_key().unwrap(),
        )
    })
}

/// (PKCS#8 private DER, PKCS#1 public DER) of a fresh RSA key of the given size.
fn rsa_key(size: KeySize) -> (Vec<u8>, Vec<u8>) {
    let key = PrivateDecryptingKey::generate(size).unwrap();
    let pkcs8: Pkcs8V1Der<'_> = key.as_der().unwrap();
    let pkcs8 = pkcs8.as_ref().to_vec();
    // Round trip through the library only after the size check, so derive the public key by
    // hand: PKCS#8 → SubjectPublicKeyInfo → its BIT STRING contents (= PKCS#1 RSAPublicKey).
    let spki = key.public_key().as_der().unwrap();
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki.as_ref()).unwrap();
    (pkcs8, info.subject_public_key.data.to_vec())
}

/// The PKCS#1 RSAPrivateKey inside a PKCS#8 PrivateKeyInfo (its `privateKey` OCTET STRING).
fn pkcs1_private_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    use x509_parser::der_parser::der::parse_der;
    let (_, info) = parse_der(pkcs8).unwrap();
    let fields = info.as_sequence().unwrap();
    fields[2].as_slice().unwrap().to_vec()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

#[test]
fn generated_owner_key_is_rsa_4096_with_matching_public_key() {
    let ((private, public), (_, other_public)) = owners();
    let parsed = PrivateDecryptingKey::from_pkcs8(private).unwrap();
    assert_eq!(parsed.key_size_bits(), 4096);
    // The returned public key is the PKCS#1 form of the private key's public half.
    let spki = parsed.public_key().as_der().unwrap();
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki.as_ref()).unwrap();
    assert_eq!(info.subject_public_key.data.as_ref(), public.as_slice());
    assert_eq!(seedshare_owner_public_key(private).unwrap(), *public);
    assert_ne!(public, other_public);
}

#[test]
fn seed_share_round_trip_and_json() {
    let ((private, public), _) = owners();
    let seed = Seed::generate().unwrap();
    let salt = Salt::generate().unwrap();
    let share = encrypt_seed_share(public, &seed, &salt).unwrap();
    assert_eq!(share.owner_key_digest, sha256_hex(public));
    assert_eq!(
        share.owner_key_digest,
        seedshare_owner_key_digest(public).unwrap()
    );
    assert_eq!(share.encrypted_seed.len(), 512);
    // The ciphertext does not contain the seed in the clear.
    assert!(
        !share
            .encrypted_seed
            .windows(16)
            .any(|w| w == &seed.as_bytes()[..16])
    );

    let json = serde_json::to_value(&share).unwrap();
    let object = json.as_object().unwrap();
    assert_eq!(object.len(), 2);
    assert_eq!(object["OwnerKeyDigest"], share.owner_key_digest.as_str());
    let b64 = object["EncryptedSeed"].as_str().unwrap();
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        share.encrypted_seed
    );
    let parsed: SeedShare = serde_json::from_value(json).unwrap();
    assert_eq!(parsed, share);

    let (seed2, salt2) = decrypt_seed_share(private, &parsed).unwrap();
    assert_eq!(seed2.as_bytes(), seed.as_bytes());
    assert_eq!(salt2.as_bytes(), salt.as_bytes());
    // And the recovered seed derives the same root CA key.
    assert_eq!(
        *SeedEngine::new(&seed2, &salt2).root_ca_key().unwrap(),
        *SeedEngine::new(&seed, &salt).root_ca_key().unwrap()
    );
}

#[test]
fn pkcs1_private_key_decrypts_too() {
    let ((private, public), _) = owners();
    let pkcs1 = pkcs1_private_from_pkcs8(private);
    assert_ne!(pkcs1, **private);
    let seed = fixed_seed();
    let salt = fixed_salt();
    let share = encrypt_seed_share(public, &seed, &salt).unwrap();
    let (seed2, salt2) = decrypt_seed_share(&pkcs1, &share).unwrap();
    assert_eq!(seed2.as_bytes(), seed.as_bytes());
    assert_eq!(salt2.as_bytes(), salt.as_bytes());
    assert_eq!(seedshare_owner_public_key(&pkcs1).unwrap(), *public);
}

#[test]
fn encryption_is_randomised_per_share() {
    let ((_, public), (_, other)) = owners();
    let (seed, salt) = (fixed_seed(), fixed_salt());
    let a = encrypt_seed_share(public, &seed, &salt).unwrap();
    let b = encrypt_seed_share(public, &seed, &salt).unwrap();
    let c = encrypt_seed_share(other, &seed, &salt).unwrap();
    assert_eq!(a.owner_key_digest, b.owner_key_digest);
    assert_ne!(a.encrypted_seed, b.encrypted_seed);
    assert_ne!(a.owner_key_digest, c.owner_key_digest);
}

#[test]
fn wrong_key_fails_to_decrypt() {
    let ((_, public), (other_private, other_public)) = owners();
    let share = encrypt_seed_share(public, &fixed_seed(), &fixed_salt()).unwrap();
    let err = decrypt_seed_share(other_private, &share).unwrap_err();
    assert_eq!(
        err,
        SeedShareError::WrongOwner {
            share_owner: sha256_hex(public),
            key_owner: sha256_hex(other_public),
        }
    );
    assert!(err.to_string().contains(&sha256_hex(public)));
    // Even with the owner digest rewritten to name the other key, RSA-OAEP refuses.
    let relabelled = SeedShare {
        owner_key_digest: sha256_hex(other_public),
        ..share
    };
    assert_eq!(
        decrypt_seed_share(other_private, &relabelled).unwrap_err(),
        SeedShareError::Decrypt
    );
}

#[test]
fn tampered_ciphertext_fails() {
    let ((private, public), _) = owners();
    let share = encrypt_seed_share(public, &fixed_seed(), &fixed_salt()).unwrap();
    for position in [0, 100, 511] {
        let mut tampered = share.clone();
        tampered.encrypted_seed[position] ^= 0x01;
        assert_eq!(
            decrypt_seed_share(private, &tampered).unwrap_err(),
            SeedShareError::Decrypt,
            "flipped byte {position}"
        );
    }
    let mut truncated = share.clone();
    truncated.encrypted_seed.pop();
    assert_eq!(
        decrypt_seed_share(private, &truncated).unwrap_err(),
        SeedShareError::Decrypt
    );
    // Untampered still decrypts (the failures above are due to the changes).
    decrypt_seed_share(private, &share).unwrap();
}

#[test]
fn short_rsa_keys_are_refused() {
    let (private, public) = rsa_key(KeySize::Rsa2048);
    let err = encrypt_seed_share(&public, &fixed_seed(), &fixed_salt()).unwrap_err();
    assert_eq!(
        err,
        SeedShareError::KeyTooSmall {
            bits: 2048,
            min: MIN_SEEDSHARE_OWNER_KEY_BITS
        }
    );
    assert!(err.to_string().contains("2048"), "{err}");
    let share = SeedShare {
        owner_key_digest: sha256_hex(&public),
        encrypted_seed: vec![0; 256],
    };
    assert!(matches!(
        decrypt_seed_share(&private, &share).unwrap_err(),
        SeedShareError::KeyTooSmall { bits: 2048, .. }
    ));
    assert!(matches!(
        seedshare_owner_public_key(&private).unwrap_err(),
        SeedShareError::KeyTooSmall { bits: 2048, .. }
    ));
}

#[test]
fn rsa_3072_is_the_smallest_accepted_key() {
    let (private, public) = rsa_key(KeySize::Rsa3072);
    let share = encrypt_seed_share(&public, &fixed_seed(), &fixed_salt()).unwrap();
    assert_eq!(share.encrypted_seed.len(), 384);
    let (seed, _) = decrypt_seed_share(&private, &share).unwrap();
    assert_eq!(seed.as_bytes(), fixed_seed().as_bytes());
}

#[test]
fn garbage_keys_are_rejected() {
    let (seed, salt) = (fixed_seed(), fixed_salt());
    for bytes in [&b""[..], b"not a key", b"\x30\x03\x02\x01\x00"] {
        assert!(matches!(
            encrypt_seed_share(bytes, &seed, &salt).unwrap_err(),
            SeedShareError::InvalidPublicKey { .. }
        ));
        assert!(matches!(
            seedshare_owner_key_digest(bytes).unwrap_err(),
            SeedShareError::InvalidPublicKey { .. }
        ));
    }
    // A P-384 key is not an RSA key.
    let ec = generate_p384_pkcs8().unwrap();
    let share = SeedShare {
        owner_key_digest: String::new(),
        encrypted_seed: vec![],
    };
    assert!(matches!(
        decrypt_seed_share(&ec, &share).unwrap_err(),
        SeedShareError::InvalidPrivateKey { .. }
    ));
}

#[test]
fn seed_share_json_rejects_bad_base64_and_unknown_fields() {
    assert!(
        serde_json::from_str::<SeedShare>(r#"{"OwnerKeyDigest":"ab","EncryptedSeed":"!!"}"#)
            .is_err()
    );
    assert!(
        serde_json::from_str::<SeedShare>(
            r#"{"OwnerKeyDigest":"ab","EncryptedSeed":"AAAA","Extra":1}"#
        )
        .is_err()
    );
    let share: SeedShare =
        serde_json::from_str(r#"{"OwnerKeyDigest":"ab","EncryptedSeed":"AAEC"}"#).unwrap();
    assert_eq!(share.encrypted_seed, vec![0, 1, 2]);
}
