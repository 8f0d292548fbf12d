//! TCB_VERSION: the 8-byte security patch level vector, in the Milan/Genoa and Turin layouts.

use std::fmt;

use nunki_manifest::SnpProduct;
use serde::Serialize;

/// The raw 8 bytes of a TCB_VERSION as stored in a report (little-endian u64).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawTcb(pub [u8; 8]);

impl RawTcb {
    /// Decodes the components with the layout of `layout`.
    pub fn decode(self, layout: TcbLayout) -> TcbVersion {
        let b = self.0;
        match layout {
            TcbLayout::MilanGenoa => TcbVersion {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            TcbLayout::Turin => TcbVersion {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }

    /// The value as a little-endian u64 (the KDS and `sev` representation).
    pub fn as_u64(self) -> u64 {
        u64::from_le_bytes(self.0)
    }
}

impl fmt::Debug for RawTcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawTcb({})", hex::encode(self.0))
    }
}

/// Which byte layout a TCB_VERSION uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TcbLayout {
    /// Zen 3 / Zen 4: BL, TEE, 4 reserved, SNP, UCODE.
    MilanGenoa,
    /// Zen 5: FMC, BL, TEE, SNP, 3 reserved, UCODE.
    Turin,
}

impl TcbLayout {
    /// Layout used by a product.
    pub fn for_product(p: SnpProduct) -> Self {
        if p.has_fmc() {
            TcbLayout::Turin
        } else {
            TcbLayout::MilanGenoa
        }
    }
}

/// Decoded TCB components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TcbVersion {
    /// FMC SPL (Turin only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// TEE SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

impl TcbVersion {
    /// Encodes the components in `layout`; reserved bytes are zero.
    pub fn encode(&self, layout: TcbLayout) -> RawTcb {
        let mut b = [0u8; 8];
        match layout {
            TcbLayout::MilanGenoa => {
                b[0] = self.bootloader;
                b[1] = self.tee;
                b[6] = self.snp;
                b[7] = self.microcode;
            }
            TcbLayout::Turin => {
                b[0] = self.fmc.unwrap_or(0);
                b[1] = self.bootloader;
                b[2] = self.tee;
                b[3] = self.snp;
                b[7] = self.microcode;
            }
        }
        RawTcb(b)
    }
}

impl fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bootloader={} tee={} snp={} microcode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milan_example_from_attestation_notes() {
        let t = RawTcb([0x04, 0, 0, 0, 0, 0, 0x18, 0xdb]).decode(TcbLayout::MilanGenoa);
        assert_eq!(
            (t.bootloader, t.tee, t.snp, t.microcode, t.fmc),
            (4, 0, 24, 219, None)
        );
    }

    #[test]
    fn turin_example_from_attestation_notes() {
        let raw = RawTcb([0x00, 0x01, 0x00, 0x02, 0, 0, 0, 0x47]);
        let t = raw.decode(TcbLayout::Turin);
        assert_eq!(
            (t.fmc, t.bootloader, t.tee, t.snp, t.microcode),
            (Some(0), 1, 0, 2, 71)
        );
        assert_eq!(t.encode(TcbLayout::Turin), raw);
    }
}
