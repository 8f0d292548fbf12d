//! The SEV-SNP ATTESTATION_REPORT (AMD SEV-SNP ABI spec 56860): a 0x4A0-byte little-endian
//! structure, versions 2, 3 and 5.
//!
//! [`Report::parse`] keeps the exact input bytes; verification signs-checks those, never a
//! re-encoding. [`Report::encode`] exists for the simulated platform and for codec tests.

use nunki_manifest::{ChipId, HostData, IdKeyDigest, Measurement, ReportData, SnpProduct};
use serde::Serialize;

use super::tcb::{RawTcb, TcbLayout, TcbVersion};

/// Size of a report in bytes.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed region: the signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
/// The only defined SIGNATURE_ALGO: ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Report versions this parser accepts.
pub const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];

/// Why bytes are not an SNP report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Wrong length.
    #[error("SNP report must be exactly {REPORT_LEN} (0x4A0) bytes, got {0}")]
    Length(usize),
    /// A version this parser does not know.
    #[error("SNP report VERSION {0} is not supported (supported: 2, 3, 5)")]
    UnsupportedVersion(u32),
    /// Hex text that did not decode.
    #[error("SNP report text is not valid hex: {0}")]
    Hex(String),
    /// The CPUID fields name a CPU with no known SEV-SNP root.
    #[error(
        "SNP report CPUID family 0x{family:02x} model 0x{model:02x} is not a known EPYC product (Milan, Genoa, Turin)"
    )]
    UnknownCpu {
        /// CPUID_FAM_ID.
        family: u8,
        /// CPUID_MOD_ID.
        model: u8,
    },
}

/// GUEST POLICY (report offset 0x08).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// Minimum ABI minor version required by the guest.
    pub fn abi_minor(self) -> u8 {
        (self.0 & 0xff) as u8
    }
    /// Minimum ABI major version required by the guest.
    pub fn abi_major(self) -> u8 {
        ((self.0 >> 8) & 0xff) as u8
    }
    /// SMT allowed.
    pub fn smt(self) -> bool {
        self.bit(16)
    }
    /// Association with a migration agent allowed.
    pub fn migrate_ma(self) -> bool {
        self.bit(18)
    }
    /// Debugging allowed (host can read guest memory).
    pub fn debug(self) -> bool {
        self.bit(19)
    }
    /// Single socket required.
    pub fn single_socket(self) -> bool {
        self.bit(20)
    }
    /// CXL allowed.
    pub fn cxl_allow(self) -> bool {
        self.bit(21)
    }
    /// AES-256-XTS memory encryption required.
    pub fn mem_aes_256_xts(self) -> bool {
        self.bit(22)
    }
    /// RAPL must be disabled.
    pub fn rapl_dis(self) -> bool {
        self.bit(23)
    }
    /// Ciphertext hiding required.
    pub fn ciphertext_hiding(self) -> bool {
        self.bit(24)
    }
    /// Page swap disabled (v5).
    pub fn page_swap_disable(self) -> bool {
        self.bit(25)
    }
    fn bit(self, n: u32) -> bool {
        (self.0 >> n) & 1 == 1
    }
}

/// PLATFORM_INFO (report offset 0x40).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    /// SMT enabled on the host.
    pub fn smt_enabled(self) -> bool {
        self.0 & 1 == 1
    }
    /// Transparent SME enabled.
    pub fn tsme_enabled(self) -> bool {
        (self.0 >> 1) & 1 == 1
    }
    /// ECC memory in use.
    pub fn ecc_enabled(self) -> bool {
        (self.0 >> 2) & 1 == 1
    }
    /// RAPL disabled.
    pub fn rapl_disabled(self) -> bool {
        (self.0 >> 3) & 1 == 1
    }
    /// Ciphertext hiding enabled.
    pub fn ciphertext_hiding_enabled(self) -> bool {
        (self.0 >> 4) & 1 == 1
    }
    /// Alias check completed (v3+).
    pub fn alias_check_complete(self) -> bool {
        (self.0 >> 5) & 1 == 1
    }
    /// SEV-TIO enabled (v5).
    pub fn tio_enabled(self) -> bool {
        (self.0 >> 7) & 1 == 1
    }
}

/// Which key signed the report (KEY_INFO bits 4:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
    /// No key: the report is unsigned.
    None,
    /// A reserved encoding.
    Reserved(u8),
}

/// KEY_INFO (report offset 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct KeyInfo(pub u32);

impl KeyInfo {
    /// AUTHOR_KEY_EN: the ID block was signed by an author key.
    pub fn author_key_en(self) -> bool {
        self.0 & 1 == 1
    }
    /// MASK_CHIP_KEY: the firmware was told not to sign with the chip key (the report is unsigned).
    pub fn mask_chip_key(self) -> bool {
        (self.0 >> 1) & 1 == 1
    }
    /// SIGNING_KEY.
    pub fn signing_key(self) -> SigningKey {
        match (self.0 >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            n => SigningKey::Reserved(n as u8),
        }
    }
}

/// CPUID fields of v3+ reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Cpuid {
    /// Combined family (0x19 Zen 3/4, 0x1A Zen 5).
    pub family: u8,
    /// Combined model.
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
}

impl Cpuid {
    /// The product these CPUID values identify.
    pub fn product(self) -> Result<SnpProduct, ReportError> {
        match (self.family, self.model) {
            (0x19, 0x00..=0x0F) => Ok(SnpProduct::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Ok(SnpProduct::Genoa),
            (0x1A, 0x00..=0x11) => Ok(SnpProduct::Turin),
            (family, model) => Err(ReportError::UnknownCpu { family, model }),
        }
    }
}

/// Firmware version triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FirmwareVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Build.
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// The report signature: R and S as stored (72-byte little-endian each).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReportSignature {
    /// R, little-endian, zero-extended.
    pub r: [u8; 72],
    /// S, little-endian, zero-extended.
    pub s: [u8; 72],
}

impl std::fmt::Debug for ReportSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ReportSignature(r={}, s={})",
            hex::encode(self.r),
            hex::encode(self.s)
        )
    }
}

impl ReportSignature {
    /// R || S as 96 big-endian bytes (the "fixed" ECDSA encoding), or `None` when either value
    /// does not fit into 48 bytes (then it cannot be a P-384 scalar).
    pub fn to_fixed_p384(&self) -> Option<[u8; 96]> {
        let mut out = [0u8; 96];
        for (half, src) in [&self.r, &self.s].into_iter().enumerate() {
            let (low, high) = src.split_at(48);
            if high.iter().any(|b| *b != 0) {
                return None;
            }
            let dst = out.get_mut(half * 48..half * 48 + 48)?;
            for (d, s) in dst.iter_mut().zip(low.iter().rev()) {
                *d = *s;
            }
        }
        Some(out)
    }

    /// Builds the stored form from a 96-byte big-endian R || S.
    pub fn from_fixed_p384(fixed: &[u8; 96]) -> Self {
        let mut r = [0u8; 72];
        let mut s = [0u8; 72];
        let (fr, fs) = fixed.split_at(48);
        for (d, v) in r.iter_mut().zip(fr.iter().rev()) {
            *d = *v;
        }
        for (d, v) in s.iter_mut().zip(fs.iter().rev()) {
            *d = *v;
        }
        Self { r, s }
    }
}

impl Serialize for ReportSignature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = serializer.serialize_struct("ReportSignature", 2)?;
        st.serialize_field("r", &hex::encode(self.r))?;
        st.serialize_field("s", &hex::encode(self.s))?;
        st.end()
    }
}

fn hex_ser<S: serde::Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v.as_ref()))
}

/// A parsed SEV-SNP attestation report. Every field of versions 2, 3 and 5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// VERSION (2, 3 or 5).
    pub version: u32,
    /// GUEST_SVN from the ID block.
    pub guest_svn: u32,
    /// Guest policy.
    pub policy: GuestPolicy,
    /// FAMILY_ID from the ID block.
    #[serde(serialize_with = "hex_ser")]
    pub family_id: [u8; 16],
    /// IMAGE_ID from the ID block.
    #[serde(serialize_with = "hex_ser")]
    pub image_id: [u8; 16],
    /// VMPL of the request.
    pub vmpl: u32,
    /// SIGNATURE_ALGO (1 = ECDSA P-384/SHA-384).
    pub signature_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: RawTcb,
    /// PLATFORM_INFO.
    pub platform_info: PlatformInfo,
    /// KEY_INFO (author key, chip-id masking, signing key).
    pub key_info: KeyInfo,
    /// REPORT_DATA chosen by the guest.
    pub report_data: ReportData,
    /// Launch MEASUREMENT.
    pub measurement: Measurement,
    /// HOST_DATA chosen by the host at launch (Nunki: the policy hash).
    pub host_data: HostData,
    /// ID_KEY_DIGEST.
    pub id_key_digest: IdKeyDigest,
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: IdKeyDigest,
    /// REPORT_ID.
    #[serde(serialize_with = "hex_ser")]
    pub report_id: [u8; 32],
    /// REPORT_ID_MA (all 0xFF without a migration agent).
    #[serde(serialize_with = "hex_ser")]
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB: the TCB the VCEK is derived from.
    pub reported_tcb: RawTcb,
    /// CPUID family/model/stepping (v3 and later).
    pub cpuid: Option<Cpuid>,
    /// CHIP_ID (zero when masked; Turin: 8 significant bytes).
    pub chip_id: ChipId,
    /// COMMITTED_TCB.
    pub committed_tcb: RawTcb,
    /// Current firmware version.
    pub current_version: FirmwareVersion,
    /// Committed firmware version.
    pub committed_version: FirmwareVersion,
    /// LAUNCH_TCB.
    pub launch_tcb: RawTcb,
    /// LAUNCH_MIT_VECTOR (v5).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (v5).
    pub current_mit_vector: Option<u64>,
    /// Signature R and S.
    pub signature: ReportSignature,
}

impl Serialize for RawTcb {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

/// A little-endian reader over the fixed-size report; every offset is a compile-time constant
/// inside the buffer, so reads cannot fail once the length was checked.
struct Reader<'a>(&'a [u8; REPORT_LEN]);

impl Reader<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(off..off + N) {
            out.copy_from_slice(src);
        }
        out
    }
    fn u8(&self, off: usize) -> u8 {
        self.0.get(off).copied().unwrap_or(0)
    }
    fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.arr(off))
    }
    fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.arr(off))
    }
}

struct Writer([u8; REPORT_LEN]);

impl Writer {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        if let Some(dst) = self.0.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
}

/// Byte ranges that are reserved (must be zero) in a report of `version`.
pub fn reserved_ranges(version: u32) -> Vec<std::ops::Range<usize>> {
    let mut r = Vec::with_capacity(6);
    r.push(0x04C..0x050);
    if version >= 3 {
        r.push(0x18B..0x1A0);
    } else {
        r.push(0x188..0x1A0);
    }
    r.push(0x1EB..0x1EC);
    r.push(0x1EF..0x1F0);
    if version >= 5 {
        r.push(0x208..SIGNED_LEN);
    } else {
        r.push(0x1F8..SIGNED_LEN);
    }
    r.push(0x330..REPORT_LEN);
    r
}

impl Report {
    /// Parses raw report bytes (exactly 0x4A0 bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, ReportError> {
        let raw: &[u8; REPORT_LEN] = bytes
            .try_into()
            .map_err(|_| ReportError::Length(bytes.len()))?;
        let r = Reader(raw);
        let version = r.u32(0x000);
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(ReportError::UnsupportedVersion(version));
        }
        let cpuid = (version >= 3).then(|| Cpuid {
            family: r.u8(0x188),
            model: r.u8(0x189),
            stepping: r.u8(0x18A),
        });
        let (launch_mit_vector, current_mit_vector) = if version >= 5 {
            (Some(r.u64(0x1F8)), Some(r.u64(0x200)))
        } else {
            (None, None)
        };
        Ok(Report {
            version,
            guest_svn: r.u32(0x004),
            policy: GuestPolicy(r.u64(0x008)),
            family_id: r.arr(0x010),
            image_id: r.arr(0x020),
            vmpl: r.u32(0x030),
            signature_algo: r.u32(0x034),
            current_tcb: RawTcb(r.arr(0x038)),
            platform_info: PlatformInfo(r.u64(0x040)),
            key_info: KeyInfo(r.u32(0x048)),
            report_data: ReportData(r.arr(0x050)),
            measurement: Measurement(r.arr(0x090)),
            host_data: HostData(r.arr(0x0C0)),
            id_key_digest: IdKeyDigest(r.arr(0x0E0)),
            author_key_digest: IdKeyDigest(r.arr(0x110)),
            report_id: r.arr(0x140),
            report_id_ma: r.arr(0x160),
            reported_tcb: RawTcb(r.arr(0x180)),
            cpuid,
            chip_id: ChipId(r.arr(0x1A0)),
            committed_tcb: RawTcb(r.arr(0x1E0)),
            current_version: FirmwareVersion {
                build: r.u8(0x1E8),
                minor: r.u8(0x1E9),
                major: r.u8(0x1EA),
            },
            committed_version: FirmwareVersion {
                build: r.u8(0x1EC),
                minor: r.u8(0x1ED),
                major: r.u8(0x1EE),
            },
            launch_tcb: RawTcb(r.arr(0x1F0)),
            launch_mit_vector,
            current_mit_vector,
            signature: ReportSignature {
                r: r.arr(0x2A0),
                s: r.arr(0x2E8),
            },
        })
    }

    /// Parses a report given either as raw bytes or as hex text (whitespace ignored).
    pub fn parse_binary_or_hex(input: &[u8]) -> Result<(Self, Vec<u8>), ReportError> {
        if input.len() == REPORT_LEN {
            return Ok((Self::parse(input)?, input.to_vec()));
        }
        let text: Vec<u8> = input
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if text.len() == 2 * REPORT_LEN && text.iter().all(u8::is_ascii_hexdigit) {
            let bytes = hex::decode(&text).map_err(|e| ReportError::Hex(e.to_string()))?;
            return Ok((Self::parse(&bytes)?, bytes));
        }
        if text.iter().all(u8::is_ascii_hexdigit) && !text.is_empty() {
            return Err(ReportError::Hex(format!(
                "{} hex characters, a report needs exactly {} (0x4A0 bytes)",
                text.len(),
                2 * REPORT_LEN
            )));
        }
        Err(ReportError::Length(input.len()))
    }

    /// Encodes all fields into the binary form; reserved bytes are zero. For reports produced
    /// by [`Report::parse`] from zero-reserved input this returns the input bytes exactly.
    pub fn encode(&self) -> [u8; REPORT_LEN] {
        let mut w = Writer([0u8; REPORT_LEN]);
        w.put(0x000, &self.version.to_le_bytes());
        w.put(0x004, &self.guest_svn.to_le_bytes());
        w.put(0x008, &self.policy.0.to_le_bytes());
        w.put(0x010, &self.family_id);
        w.put(0x020, &self.image_id);
        w.put(0x030, &self.vmpl.to_le_bytes());
        w.put(0x034, &self.signature_algo.to_le_bytes());
        w.put(0x038, &self.current_tcb.0);
        w.put(0x040, &self.platform_info.0.to_le_bytes());
        w.put(0x048, &self.key_info.0.to_le_bytes());
        w.put(0x050, &self.report_data.0);
        w.put(0x090, &self.measurement.0);
        w.put(0x0C0, &self.host_data.0);
        w.put(0x0E0, &self.id_key_digest.0);
        w.put(0x110, &self.author_key_digest.0);
        w.put(0x140, &self.report_id);
        w.put(0x160, &self.report_id_ma);
        w.put(0x180, &self.reported_tcb.0);
        if let Some(c) = self.cpuid {
            w.put(0x188, &[c.family, c.model, c.stepping]);
        }
        w.put(0x1A0, &self.chip_id.0);
        w.put(0x1E0, &self.committed_tcb.0);
        let cv = self.current_version;
        w.put(0x1E8, &[cv.build, cv.minor, cv.major]);
        let mv = self.committed_version;
        w.put(0x1EC, &[mv.build, mv.minor, mv.major]);
        w.put(0x1F0, &self.launch_tcb.0);
        if let Some(v) = self.launch_mit_vector {
            w.put(0x1F8, &v.to_le_bytes());
        }
        if let Some(v) = self.current_mit_vector {
            w.put(0x200, &v.to_le_bytes());
        }
        w.put(0x2A0, &self.signature.r);
        w.put(0x2E8, &self.signature.s);
        w.0
    }

    /// The product named by the CPUID fields (v3+); `None` for v2 reports.
    pub fn cpuid_product(&self) -> Option<Result<SnpProduct, ReportError>> {
        self.cpuid.map(Cpuid::product)
    }

    /// The TCB layout to use when the product is not known yet: from CPUID when present,
    /// otherwise Milan/Genoa (v2 firmware predates Turin).
    pub fn guessed_layout(&self) -> TcbLayout {
        match self.cpuid_product() {
            Some(Ok(p)) => TcbLayout::for_product(p),
            _ => TcbLayout::MilanGenoa,
        }
    }

    /// The four TCB vectors decoded with `layout`: (current, committed, reported, launch).
    pub fn tcbs(&self, layout: TcbLayout) -> [(&'static str, TcbVersion); 4] {
        [
            ("current", self.current_tcb.decode(layout)),
            ("committed", self.committed_tcb.decode(layout)),
            ("reported", self.reported_tcb.decode(layout)),
            ("launch", self.launch_tcb.decode(layout)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_tcb() -> impl Strategy<Value = RawTcb> {
        any::<[u8; 8]>().prop_map(RawTcb)
    }

    prop_compose! {
        fn arb_report()(
            version in prop::sample::select(SUPPORTED_VERSIONS.to_vec()),
            guest_svn in any::<u32>(), policy in any::<u64>(),
            family_id in any::<[u8; 16]>(), image_id in any::<[u8; 16]>(),
            vmpl in any::<u32>(), signature_algo in any::<u32>(),
            current_tcb in arb_tcb(), platform_info in any::<u64>(), key_info in any::<u32>(),
            report_data in prop::collection::vec(any::<u8>(), 64),
            measurement in prop::collection::vec(any::<u8>(), 48),
            host_data in any::<[u8; 32]>(),
            idk in prop::collection::vec(any::<u8>(), 48),
            ak in prop::collection::vec(any::<u8>(), 48),
            report_id in any::<[u8; 32]>(), report_id_ma in any::<[u8; 32]>(),
            reported_tcb in arb_tcb(), cpuid in any::<[u8; 3]>(),
            chip_id in prop::collection::vec(any::<u8>(), 64),
            committed_tcb in arb_tcb(), fw in any::<[u8; 6]>(), launch_tcb in arb_tcb(),
            mit in any::<[u64; 2]>(),
            r in prop::collection::vec(any::<u8>(), 72), s in prop::collection::vec(any::<u8>(), 72),
        ) -> Report {
            Report {
                version, guest_svn, policy: GuestPolicy(policy), family_id, image_id, vmpl,
                signature_algo, current_tcb, platform_info: PlatformInfo(platform_info),
                key_info: KeyInfo(key_info),
                report_data: ReportData::from_slice(&report_data).unwrap(),
                measurement: Measurement::from_slice(&measurement).unwrap(),
                host_data: HostData(host_data),
                id_key_digest: IdKeyDigest::from_slice(&idk).unwrap(),
                author_key_digest: IdKeyDigest::from_slice(&ak).unwrap(),
                report_id, report_id_ma, reported_tcb,
                cpuid: (version >= 3).then_some(Cpuid { family: cpuid[0], model: cpuid[1], stepping: cpuid[2] }),
                chip_id: ChipId::from_slice(&chip_id).unwrap(),
                committed_tcb,
                current_version: FirmwareVersion { build: fw[0], minor: fw[1], major: fw[2] },
                committed_version: FirmwareVersion { build: fw[3], minor: fw[4], major: fw[5] },
                launch_tcb,
                launch_mit_vector: (version >= 5).then_some(mit[0]),
                current_mit_vector: (version >= 5).then_some(mit[1]),
                signature: ReportSignature { r: r.try_into().unwrap(), s: s.try_into().unwrap() },
            }
        }
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_identity(report in arb_report()) {
            let bytes = report.encode();
            let parsed = Report::parse(&bytes).unwrap();
            prop_assert_eq!(&parsed, &report);
            prop_assert_eq!(parsed.encode(), bytes);
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1300)) {
            let _ = Report::parse(&bytes);
            let _ = Report::parse_binary_or_hex(&bytes);
        }

        #[test]
        fn parse_then_encode_is_identity_when_reserved_bytes_are_zero(
            mut bytes in prop::collection::vec(any::<u8>(), REPORT_LEN),
            v in prop::sample::select(vec![2u32, 3, 5]),
        ) {
            bytes[..4].copy_from_slice(&v.to_le_bytes());
            for range in reserved_ranges(v) {
                bytes[range].fill(0);
            }
            let r = Report::parse(&bytes).unwrap();
            prop_assert_eq!(r.version, v);
            prop_assert_eq!(&r.encode()[..], &bytes[..]);
        }

        #[test]
        fn signature_fixed_roundtrip(fixed in prop::collection::vec(any::<u8>(), 96)) {
            let fixed: [u8; 96] = fixed.try_into().unwrap();
            let sig = ReportSignature::from_fixed_p384(&fixed);
            prop_assert_eq!(sig.to_fixed_p384(), Some(fixed));
        }
    }

    #[test]
    fn rejects_other_versions() {
        for v in [0u32, 1, 4, 6, u32::MAX] {
            let mut b = [0u8; REPORT_LEN];
            b[..4].copy_from_slice(&v.to_le_bytes());
            assert_eq!(
                Report::parse(&b).unwrap_err(),
                ReportError::UnsupportedVersion(v)
            );
        }
    }

    #[test]
    fn rejects_wrong_length() {
        assert_eq!(
            Report::parse(&[0u8; 10]).unwrap_err(),
            ReportError::Length(10)
        );
    }

    #[test]
    fn signature_with_high_bytes_is_not_p384() {
        let mut sig = ReportSignature {
            r: [0; 72],
            s: [0; 72],
        };
        sig.r[50] = 1;
        assert_eq!(sig.to_fixed_p384(), None);
    }

    #[test]
    fn cpuid_products() {
        let c = |family, model| {
            Cpuid {
                family,
                model,
                stepping: 1,
            }
            .product()
        };
        assert_eq!(c(0x19, 0x01).unwrap(), SnpProduct::Milan);
        assert_eq!(c(0x19, 0x11).unwrap(), SnpProduct::Genoa);
        assert_eq!(c(0x19, 0xA0).unwrap(), SnpProduct::Genoa);
        assert_eq!(c(0x1A, 0x02).unwrap(), SnpProduct::Turin);
        assert!(c(0x17, 0x31).is_err());
    }
}
