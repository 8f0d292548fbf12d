//! Manifest history: each manifest set on a Coordinator is a transition hash-chained to the one
//! before, so a client holding the latest transition hash can check the whole history.
//!
//! `transition = manifest hash (32) || previous transition hash (32)`, and its hash is
//! SHA-256 over those 64 bytes; the first transition's previous hash is 32 zero bytes.

use crate::digest::{ManifestHash, TransitionHash, sha256};

impl TransitionHash {
    /// The "previous" of the first transition: 32 zero bytes.
    pub const GENESIS: TransitionHash = TransitionHash([0; 32]);
}

/// One step of the manifest history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transition {
    /// SHA-256 of the exact bytes of the manifest set by this step.
    pub manifest_hash: ManifestHash,
    /// Hash of the transition before, or [`TransitionHash::GENESIS`].
    pub previous: TransitionHash,
}

/// A transition encoding of the wrong length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a transition is {expected} bytes (manifest hash || previous transition hash), got {actual}"
)]
pub struct TransitionLengthError {
    /// Required length.
    pub expected: usize,
    /// Length received.
    pub actual: usize,
}

impl Transition {
    /// Length of the binary encoding.
    pub const LEN: usize = ManifestHash::LEN + TransitionHash::LEN;

    /// The first transition of a history.
    pub fn genesis(manifest_hash: ManifestHash) -> Transition {
        Transition {
            manifest_hash,
            previous: TransitionHash::GENESIS,
        }
    }

    /// The binary encoding: `manifest_hash || previous`.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let parts = self.manifest_hash.0.iter().chain(self.previous.0.iter());
        for (o, b) in out.iter_mut().zip(parts) {
            *o = *b;
        }
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output; any other length is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Transition, TransitionLengthError> {
        let err = TransitionLengthError {
            expected: Self::LEN,
            actual: bytes.len(),
        };
        if bytes.len() != Self::LEN {
            return Err(err);
        }
        let (m, p) = bytes.split_at(ManifestHash::LEN);
        Ok(Transition {
            manifest_hash: ManifestHash::from_slice(m).map_err(|_| err)?,
            previous: TransitionHash::from_slice(p).map_err(|_| err)?,
        })
    }

    /// SHA-256 of the binary encoding.
    pub fn hash(&self) -> TransitionHash {
        TransitionHash(sha256(&self.to_bytes()))
    }
}

/// One manifest of a reconstructed history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainEntry {
    /// Position in the history, 0 for the oldest manifest.
    pub index: usize,
    /// SHA-256 of the manifest's exact bytes.
    pub manifest_hash: ManifestHash,
    /// Hash of the transition that set this manifest.
    pub transition_hash: TransitionHash,
}

/// Rebuilds the transition chain of `manifests`, given oldest first.
pub fn transition_chain(manifests: &[&[u8]]) -> Vec<ChainEntry> {
    let mut previous = TransitionHash::GENESIS;
    manifests
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let manifest_hash = ManifestHash::of_manifest_bytes(raw);
            let transition_hash = Transition {
                manifest_hash,
                previous,
            }
            .hash();
            previous = transition_hash;
            ChainEntry {
                index,
                manifest_hash,
                transition_hash,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Independently computed with coreutils:
    //   m1=$(printf 'first manifest\n' | sha256sum | cut -d' ' -f1)
    //   t1=$( (echo -n $m1 | xxd -r -p; head -c 32 /dev/zero) | sha256sum | cut -d' ' -f1)
    //   m2=$(printf 'second manifest\n' | sha256sum | cut -d' ' -f1)
    //   t2=$( (echo -n $m2 | xxd -r -p; echo -n $t1 | xxd -r -p) | sha256sum | cut -d' ' -f1)
    const M1: &str = "e84df6e31e3d4c3d8523693e1c363a417bce8ded58e77dafd2fe7c5bf4befd77";
    const T1: &str = "11534d6abf37605af3f37c492cc756668a8522075d8c21612f31dfb0b910e961";
    const M2: &str = "d954f7585871a898b909e4282dd7f984f8be096ea5a0224e115993017f647c98";
    const T2: &str = "8c4bd3ecdca378b4579cdc68e3fd12aa9e9923d4bd5a93244c785b7e04a92e9a";

    #[test]
    fn genesis_is_zero() {
        assert!(TransitionHash::GENESIS.is_zero());
        assert_eq!(
            Transition::genesis(ManifestHash([1; 32])).previous,
            TransitionHash::GENESIS
        );
    }

    #[test]
    fn known_vector_single_transition() {
        let m1 = ManifestHash::of_manifest_bytes(b"first manifest\n");
        assert_eq!(m1.to_hex(), M1);
        assert_eq!(Transition::genesis(m1).hash().to_hex(), T1);
    }

    #[test]
    fn known_vector_chain() {
        let chain = transition_chain(&[b"first manifest\n", b"second manifest\n"]);
        assert_eq!(
            chain,
            vec![
                ChainEntry {
                    index: 0,
                    manifest_hash: M1.parse().unwrap(),
                    transition_hash: T1.parse().unwrap(),
                },
                ChainEntry {
                    index: 1,
                    manifest_hash: M2.parse().unwrap(),
                    transition_hash: T2.parse().unwrap(),
                },
            ]
        );
        assert!(transition_chain(&[]).is_empty());
    }

    #[test]
    fn bytes_layout_and_round_trip() {
        let t = Transition {
            manifest_hash: ManifestHash([0x11; 32]),
            previous: TransitionHash([0x22; 32]),
        };
        let bytes = t.to_bytes();
        assert_eq!(&bytes[..32], &[0x11; 32]);
        assert_eq!(&bytes[32..], &[0x22; 32]);
        assert_eq!(Transition::from_bytes(&bytes).unwrap(), t);
    }

    #[test]
    fn wrong_length_is_an_error() {
        for len in [0, 32, 63, 65, 128] {
            let err = Transition::from_bytes(&vec![0; len]).unwrap_err();
            assert_eq!(
                err,
                TransitionLengthError {
                    expected: 64,
                    actual: len
                }
            );
        }
        assert_eq!(
            Transition::from_bytes(&[0; 63]).unwrap_err().to_string(),
            "a transition is 64 bytes (manifest hash || previous transition hash), got 63"
        );
    }

    #[test]
    fn order_matters() {
        let a: &[u8] = b"a";
        let b: &[u8] = b"b";
        let ab = transition_chain(&[a, b]);
        let ba = transition_chain(&[b, a]);
        assert_ne!(ab[1].transition_hash, ba[1].transition_hash);
        assert_eq!(ab[0].manifest_hash, ba[1].manifest_hash);
    }
}
