//! Seed shares: the [`Seed`] and [`Salt`] encrypted to each seed-share owner's RSA key, so that a
//! restarted Coordinator can be recovered by any one owner.
//!
//! An owner key is an RSA key of at least [`MIN_SEEDSHARE_OWNER_KEY_BITS`] bits (we create
//! [`SEEDSHARE_OWNER_KEY_BITS`]); the manifest's `SeedshareOwnerPubKeys` lists each public key as
//! hex of its DER PKCS#1 `RSAPublicKey`.
//!
//! Ciphertext format (version 1): RSA-OAEP with SHA-256 and MGF1-SHA-256, OAEP label
//! [`SEED_SHARE_OAEP_LABEL`], over the 97-byte plaintext
//!
//! ```text
//!   0x01 (format version) ‖ seed (64 bytes) ‖ salt (32 bytes)
//! ```
//!
//! A [`SeedShare`] serialises to JSON (one entry of `seed-shares.json`) as
//! `{"OwnerKeyDigest": "<hex SHA-256 of the owner's PKCS#1 public key DER>",
//!   "EncryptedSeed": "<standard base64 of the ciphertext>"}`.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeyPair as RsaKeyPair, KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey, PublicKey as RsaPublicKey,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::seed::{SALT_LEN, SEED_LEN, Salt, Seed};

/// Smallest accepted seed-share owner key (RSA modulus bits).
pub const MIN_SEEDSHARE_OWNER_KEY_BITS: usize = 3072;
/// Size of the owner keys [`generate_seedshare_owner_key`] creates.
pub const SEEDSHARE_OWNER_KEY_BITS: usize = 4096;
/// The OAEP label binding the ciphertext to this use and format version.
pub const SEED_SHARE_OAEP_LABEL: &[u8] = b"nunki/seed-share/v1";
/// The first plaintext byte: the format version.
pub const SEED_SHARE_FORMAT_VERSION: u8 = 1;

const PLAINTEXT_LEN: usize = 1 + SEED_LEN + SALT_LEN;

/// Errors of seed-share encryption, decryption and owner key handling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeedShareError {
    /// The owner public key is not DER PKCS#1 `RSAPublicKey` (or `SubjectPublicKeyInfo`).
    #[error(
        "invalid seed-share owner public key: {detail}; expected DER of a PKCS#1 RSAPublicKey (the hex in SeedshareOwnerPubKeys)"
    )]
    InvalidPublicKey {
        /// aws-lc's reason.
        detail: String,
    },
    /// The owner private key is neither PKCS#8 nor PKCS#1 RSA private key DER.
    #[error(
        "invalid seed-share owner private key: {detail}; expected DER of an RSA PKCS#8 PrivateKeyInfo or PKCS#1 RSAPrivateKey"
    )]
    InvalidPrivateKey {
        /// aws-lc's reason.
        detail: String,
    },
    /// The RSA key is too small.
    #[error(
        "seed-share owner key has {bits} bits; at least {min} are required (create a new one with `nunki generate`)"
    )]
    KeyTooSmall {
        /// The key's modulus size.
        bits: usize,
        /// [`MIN_SEEDSHARE_OWNER_KEY_BITS`].
        min: usize,
    },
    /// aws-lc failed to generate or export an RSA key.
    #[error("cannot generate the seed-share owner key: aws-lc failed to {step}")]
    KeyGeneration {
        /// What failed.
        step: &'static str,
    },
    /// RSA-OAEP encryption failed.
    #[error("RSA-OAEP-SHA256 encryption of the seed share failed")]
    Encrypt,
    /// The share was made for another owner key.
    #[error(
        "this seed share is for the owner key with SHA-256 {share_owner}, but the given key is {key_owner}; use the matching seed-share owner key or seed share"
    )]
    WrongOwner {
        /// The share's `OwnerKeyDigest`.
        share_owner: String,
        /// The digest of the given private key's public key.
        key_owner: String,
    },
    /// A seed-share document has no share for the given key.
    #[error(
        "the seed shares hold no share for the owner key with SHA-256 {key_owner} (shares are for: {present}); use the seedshare-owner.pem listed in the manifest"
    )]
    NoShareForKey {
        /// The owner digests present.
        present: String,
        /// The digest of the given key.
        key_owner: String,
    },
    /// RSA-OAEP decryption failed.
    #[error(
        "RSA-OAEP-SHA256 decryption of the seed share failed: the ciphertext was altered or made for another key"
    )]
    Decrypt,
    /// The decrypted plaintext is not a version-1 seed share.
    #[error("decrypted seed share is malformed: {detail}")]
    MalformedPlaintext {
        /// What is wrong.
        detail: String,
    },
}

/// The seed and salt encrypted to one seed-share owner (an entry of `seed-shares.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SeedShare {
    /// Lower-case hex SHA-256 of the owner's DER PKCS#1 `RSAPublicKey` (see
    /// [`seedshare_owner_key_digest`]).
    pub owner_key_digest: String,
    /// RSA-OAEP-SHA256 ciphertext (see the module docs), base64 in JSON.
    #[serde(with = "base64_bytes")]
    pub encrypted_seed: Vec<u8>,
}

/// Current [`SeedShareDocument::version`].
pub const SEED_SHARE_DOCUMENT_VERSION: u32 = 1;

/// `seed-shares.json`: the seed shares the Coordinator returns for the first manifest, one per
/// `SeedshareOwnerPubKeys` entry. Any one owner can recover the Coordinator with theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SeedShareDocument {
    /// Format version ([`SEED_SHARE_DOCUMENT_VERSION`]).
    pub version: u32,
    /// One share per owner key.
    pub seed_shares: Vec<SeedShare>,
}

impl SeedShareDocument {
    /// Encrypts `seed` and `salt` to every owner key (hex of PKCS#1 DER, as the manifest lists
    /// them).
    ///
    /// # Errors
    /// The first key that cannot be used, with its position.
    pub fn encrypt(
        owner_keys_hex: &[String],
        seed: &Seed,
        salt: &Salt,
    ) -> Result<Self, SeedShareError> {
        let mut seed_shares = Vec::with_capacity(owner_keys_hex.len());
        for (i, k) in owner_keys_hex.iter().enumerate() {
            let der = hex::decode(k).map_err(|e| SeedShareError::InvalidPublicKey {
                detail: format!("SeedshareOwnerPubKeys[{i}] is not hex: {e}"),
            })?;
            seed_shares.push(encrypt_seed_share(&der, seed, salt)?);
        }
        Ok(Self {
            version: SEED_SHARE_DOCUMENT_VERSION,
            seed_shares,
        })
    }

    /// Parses `seed-shares.json`.
    ///
    /// # Errors
    /// A description of what is wrong (unknown fields and versions are errors).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let doc: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if doc.version != SEED_SHARE_DOCUMENT_VERSION {
            return Err(format!(
                "Version {} is not supported (expected {SEED_SHARE_DOCUMENT_VERSION})",
                doc.version
            ));
        }
        Ok(doc)
    }

    /// Finds the share for the owner key `private_der` and decrypts it.
    ///
    /// # Errors
    /// [`SeedShareError::NoShareForKey`] (listing the digests present) when no share is for this
    /// key, or the errors of [`decrypt_seed_share`].
    pub fn decrypt(&self, private_der: &[u8]) -> Result<(Seed, Salt), SeedShareError> {
        let mine = hex_sha256(&public_pkcs1(&parse_private(private_der)?)?);
        match self
            .seed_shares
            .iter()
            .find(|s| s.owner_key_digest.eq_ignore_ascii_case(&mine))
        {
            Some(share) => decrypt_seed_share(private_der, share),
            None => Err(SeedShareError::NoShareForKey {
                present: self
                    .seed_shares
                    .iter()
                    .map(|s| s.owner_key_digest.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                key_owner: mine,
            }),
        }
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Parses an owner public key (PKCS#1 `RSAPublicKey` DER; `SubjectPublicKeyInfo` DER is also
/// accepted) and returns it as canonical PKCS#1 DER with the OAEP encryption key.
fn parse_public(owner_der: &[u8]) -> Result<(Vec<u8>, PublicEncryptingKey), SeedShareError> {
    let invalid = |detail: String| SeedShareError::InvalidPublicKey { detail };
    let public = RsaPublicKey::from_der(owner_der).map_err(|e| invalid(e.to_string()))?;
    let spki: PublicKeyX509Der<'static> = public
        .as_der()
        .map_err(|_| invalid("cannot re-encode as SubjectPublicKeyInfo".to_string()))?;
    let key = PublicEncryptingKey::from_der(spki.as_ref()).map_err(|e| invalid(e.to_string()))?;
    check_size(key.key_size_bits())?;
    Ok((public.as_ref().to_vec(), key))
}

fn check_size(bits: usize) -> Result<(), SeedShareError> {
    if bits < MIN_SEEDSHARE_OWNER_KEY_BITS {
        return Err(SeedShareError::KeyTooSmall {
            bits,
            min: MIN_SEEDSHARE_OWNER_KEY_BITS,
        });
    }
    Ok(())
}

/// Parses an owner private key from PKCS#8 or PKCS#1 DER.
fn parse_private(private_der: &[u8]) -> Result<PrivateDecryptingKey, SeedShareError> {
    let key = match PrivateDecryptingKey::from_pkcs8(private_der) {
        Ok(key) => key,
        Err(pkcs8_err) => {
            let pair = RsaKeyPair::from_der(private_der).map_err(|pkcs1_err| {
                SeedShareError::InvalidPrivateKey {
                    detail: format!("as PKCS#8: {pkcs8_err}; as PKCS#1: {pkcs1_err}"),
                }
            })?;
            let pkcs8: Pkcs8V1Der<'static> =
                pair.as_der()
                    .map_err(|_| SeedShareError::InvalidPrivateKey {
                        detail: "cannot convert the PKCS#1 key to PKCS#8".to_string(),
                    })?;
            PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref()).map_err(|e| {
                SeedShareError::InvalidPrivateKey {
                    detail: e.to_string(),
                }
            })?
        }
    };
    check_size(key.key_size_bits())?;
    Ok(key)
}

/// PKCS#1 `RSAPublicKey` DER of a private key's public half.
fn public_pkcs1(key: &PrivateDecryptingKey) -> Result<Vec<u8>, SeedShareError> {
    let invalid = |detail: &str| SeedShareError::InvalidPrivateKey {
        detail: detail.to_string(),
    };
    let spki: PublicKeyX509Der<'static> = key
        .public_key()
        .as_der()
        .map_err(|_| invalid("cannot encode the public key"))?;
    let public = RsaPublicKey::from_der(spki.as_ref())
        .map_err(|_| invalid("cannot re-parse the public key"))?;
    Ok(public.as_ref().to_vec())
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes).as_ref())
}

/// The owner key digest a [`SeedShare`] names: lower-case hex SHA-256 of the DER PKCS#1
/// `RSAPublicKey` (the bytes the manifest lists in hex).
///
/// # Errors
/// [`SeedShareError::InvalidPublicKey`] if the bytes are not an RSA public key.
pub fn seedshare_owner_key_digest(owner_public_der: &[u8]) -> Result<String, SeedShareError> {
    let public =
        RsaPublicKey::from_der(owner_public_der).map_err(|e| SeedShareError::InvalidPublicKey {
            detail: e.to_string(),
        })?;
    Ok(hex_sha256(public.as_ref()))
}

/// The DER PKCS#1 `RSAPublicKey` of an owner private key (PKCS#8 or PKCS#1 DER), e.g. for
/// `nunki recover` to say which owner it is, or for `nunki generate` to list the key.
///
/// # Errors
/// [`SeedShareError::InvalidPrivateKey`] or [`SeedShareError::KeyTooSmall`].
pub fn seedshare_owner_public_key(owner_private_der: &[u8]) -> Result<Vec<u8>, SeedShareError> {
    public_pkcs1(&parse_private(owner_private_der)?)
}

/// Creates a seed-share owner key: RSA-[`SEEDSHARE_OWNER_KEY_BITS`], returned as (PKCS#8 v1
/// private key DER, PKCS#1 `RSAPublicKey` DER). The caller writes `seedshare-owner.pem` and
/// lists the hex of the public key in `SeedshareOwnerPubKeys`.
///
/// # Errors
/// [`SeedShareError::KeyGeneration`] if aws-lc fails.
pub fn generate_seedshare_owner_key() -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), SeedShareError> {
    let key = PrivateDecryptingKey::generate(KeySize::Rsa4096)
        .map_err(|_| SeedShareError::KeyGeneration { step: "generate" })?;
    let pkcs8: Pkcs8V1Der<'static> = key.as_der().map_err(|_| SeedShareError::KeyGeneration {
        step: "export PKCS#8",
    })?;
    let public = public_pkcs1(&key).map_err(|_| SeedShareError::KeyGeneration {
        step: "export the public key",
    })?;
    Ok((Zeroizing::new(pkcs8.as_ref().to_vec()), public))
}

/// Encrypts the seed and salt to one owner (RSA-OAEP-SHA256, format in the module docs).
///
/// # Errors
/// [`SeedShareError::InvalidPublicKey`], [`SeedShareError::KeyTooSmall`] (under 3072 bits), or
/// [`SeedShareError::Encrypt`].
pub fn encrypt_seed_share(
    owner_public_der: &[u8],
    seed: &Seed,
    salt: &Salt,
) -> Result<SeedShare, SeedShareError> {
    let (pkcs1, key) = parse_public(owner_public_der)?;
    let key = OaepPublicEncryptingKey::new(key).map_err(|_| SeedShareError::Encrypt)?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(PLAINTEXT_LEN));
    plaintext.push(SEED_SHARE_FORMAT_VERSION);
    plaintext.extend_from_slice(seed.as_bytes());
    plaintext.extend_from_slice(salt.as_bytes());
    let mut ciphertext = vec![0u8; key.ciphertext_size()];
    let written = key
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            &plaintext,
            &mut ciphertext,
            Some(SEED_SHARE_OAEP_LABEL),
        )
        .map_err(|_| SeedShareError::Encrypt)?
        .len();
    ciphertext.truncate(written);
    Ok(SeedShare {
        owner_key_digest: hex_sha256(&pkcs1),
        encrypted_seed: ciphertext,
    })
}

/// Decrypts a seed share with the owner's private key (PKCS#8 or PKCS#1 DER).
///
/// # Errors
/// [`SeedShareError::InvalidPrivateKey`], [`SeedShareError::KeyTooSmall`],
/// [`SeedShareError::WrongOwner`] if the share names another key, [`SeedShareError::Decrypt`]
/// if the ciphertext does not decrypt (altered, or another key), or
/// [`SeedShareError::MalformedPlaintext`].
pub fn decrypt_seed_share(
    owner_private_der: &[u8],
    share: &SeedShare,
) -> Result<(Seed, Salt), SeedShareError> {
    let key = parse_private(owner_private_der)?;
    let key_owner = hex_sha256(&public_pkcs1(&key)?);
    if !key_owner.eq_ignore_ascii_case(&share.owner_key_digest) {
        return Err(SeedShareError::WrongOwner {
            share_owner: share.owner_key_digest.clone(),
            key_owner,
        });
    }
    let key = OaepPrivateDecryptingKey::new(key).map_err(|_| SeedShareError::Decrypt)?;
    let mut output = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let plaintext = key
        .decrypt(
            &OAEP_SHA256_MGF1SHA256,
            &share.encrypted_seed,
            &mut output,
            Some(SEED_SHARE_OAEP_LABEL),
        )
        .map_err(|_| SeedShareError::Decrypt)?;
    let malformed = |detail: String| SeedShareError::MalformedPlaintext { detail };
    if plaintext.len() != PLAINTEXT_LEN {
        return Err(malformed(format!(
            "{} bytes, expected {PLAINTEXT_LEN}",
            plaintext.len()
        )));
    }
    let (version, rest) = plaintext
        .split_first()
        .ok_or_else(|| malformed("empty".to_string()))?;
    if *version != SEED_SHARE_FORMAT_VERSION {
        return Err(malformed(format!(
            "format version {version}, expected {SEED_SHARE_FORMAT_VERSION}"
        )));
    }
    let (seed, salt) = rest
        .split_at_checked(SEED_LEN)
        .ok_or_else(|| malformed("too short".to_string()))?;
    let seed = Seed::from_bytes(seed).map_err(|e| malformed(e.to_string()))?;
    let salt = Salt::from_bytes(salt).map_err(|e| malformed(e.to_string()))?;
    Ok((seed, salt))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3072-bit key (the smallest accepted; faster to generate than 4096).
    fn key() -> (Vec<u8>, PrivateDecryptingKey) {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa3072).unwrap();
        (public_pkcs1(&key).unwrap(), key)
    }

    /// A share whose plaintext is `plaintext` (bypassing the format `encrypt_seed_share` writes).
    fn share_of(public: &[u8], plaintext: &[u8], label: &[u8]) -> SeedShare {
        let (_, key) = parse_public(public).unwrap();
        let key = OaepPublicEncryptingKey::new(key).unwrap();
        let mut out = vec![0u8; key.ciphertext_size()];
        let len = key
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, Some(label))
            .unwrap()
            .len();
        out.truncate(len);
        SeedShare {
            owner_key_digest: hex_sha256(public),
            encrypted_seed: out,
        }
    }

    #[test]
    fn malformed_plaintexts_are_refused() {
        let (public, key) = key();
        let private: Pkcs8V1Der<'_> = key.as_der().unwrap();
        let mut good = vec![SEED_SHARE_FORMAT_VERSION];
        good.extend_from_slice(&[5; SEED_LEN + SALT_LEN]);
        let (seed, salt) = decrypt_seed_share(
            private.as_ref(),
            &share_of(&public, &good, SEED_SHARE_OAEP_LABEL),
        )
        .unwrap();
        assert_eq!(seed.as_bytes(), &[5; SEED_LEN]);
        assert_eq!(salt.as_bytes(), &[5; SALT_LEN]);

        let mut wrong_version = good.clone();
        wrong_version[0] = 2;
        let short = &good[..good.len() - 1];
        let mut long = good.clone();
        long.push(0);
        for plaintext in [&wrong_version[..], short, &long[..], &[][..]] {
            let share = share_of(&public, plaintext, SEED_SHARE_OAEP_LABEL);
            assert!(matches!(
                decrypt_seed_share(private.as_ref(), &share).unwrap_err(),
                SeedShareError::MalformedPlaintext { .. }
            ));
        }
        // A ciphertext made with another OAEP label (another use of the key) is refused.
        let share = share_of(&public, &good, b"some other protocol");
        assert_eq!(
            decrypt_seed_share(private.as_ref(), &share).unwrap_err(),
            SeedShareError::Decrypt
        );
    }

    #[test]
    fn document_round_trip_and_key_lookup() {
        let a = PrivateDecryptingKey::generate(KeySize::Rsa3072).unwrap();
        let b = PrivateDecryptingKey::generate(KeySize::Rsa3072).unwrap();
        let stranger = PrivateDecryptingKey::generate(KeySize::Rsa3072).unwrap();
        let der = |k: &PrivateDecryptingKey| {
            let d: Pkcs8V1Der<'static> = k.as_der().unwrap();
            d.as_ref().to_vec()
        };
        let keys = [
            hex::encode(public_pkcs1(&a).unwrap()),
            hex::encode(public_pkcs1(&b).unwrap()),
        ];
        let seed = Seed::from_bytes(&[3; SEED_LEN]).unwrap();
        let salt = Salt::from_bytes(&[4; SALT_LEN]).unwrap();
        let doc = SeedShareDocument::encrypt(&keys, &seed, &salt).unwrap();
        let json = serde_json::to_vec(&doc).unwrap();
        let parsed = SeedShareDocument::parse(&json).unwrap();
        assert_eq!(parsed, doc);
        for k in [&a, &b] {
            let (s, t) = parsed.decrypt(&der(k)).unwrap();
            assert_eq!(s.as_bytes(), seed.as_bytes());
            assert_eq!(t.as_bytes(), salt.as_bytes());
        }
        assert!(matches!(
            parsed.decrypt(&der(&stranger)).unwrap_err(),
            SeedShareError::NoShareForKey { .. }
        ));
        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["Version"] = 2.into();
        assert!(SeedShareDocument::parse(&serde_json::to_vec(&v).unwrap()).is_err());
        v["Version"] = 1.into();
        v["Extra"] = true.into();
        assert!(SeedShareDocument::parse(&serde_json::to_vec(&v).unwrap()).is_err());
        assert!(SeedShareDocument::encrypt(&["zz".into()], &seed, &salt).is_err());
    }
}
