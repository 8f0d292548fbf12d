//! The simulated SEV-SNP platform: a software stand-in for AMD hardware.
//!
//! It keeps an ARK → ASK → VCEK hierarchy with AMD's certificate profile (RSA-4096 keys,
//! RSASSA-PSS SHA-384 signatures, P-384 VCEK with AMD's TCB and hwID extensions) and issues
//! byte-exact v3 or v5 reports. Its reports take exactly the same verification path as real
//! ones; only the root differs, and that root is trusted only where its SHA-256 fingerprint is
//! pinned. **A simulation proves the protocol, not isolation**: whoever can read the key files
//! can forge reports for it.

mod certgen;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use nunki_manifest::{
    ChipId, HostData, IdKeyDigest, Measurement, ReportData, Sha256Fingerprint,
    SimulatedReferenceValues, SnpGuestPolicy, SnpMinimumTcb, SnpProduct,
};
use serde::{Deserialize, Serialize};

use crate::snp::certs::fingerprint;
use crate::snp::report::{
    Cpuid, FirmwareVersion, GuestPolicy, KeyInfo, PlatformInfo, Report, ReportSignature,
    SIG_ALGO_ECDSA_P384_SHA384, SIGNED_LEN,
};
use crate::snp::tcb::{TcbLayout, TcbVersion};

pub use store::default_sim_dir;

/// A simulated-platform problem.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// File system problem, naming the path.
    #[error("simulated platform at {path}: {reason}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Crypto or encoding failure.
    #[error("simulated platform: {0}")]
    Crypto(String),
    /// A request the simulated platform cannot serve.
    #[error("simulated platform: {0}")]
    Request(String),
}

/// Persistent parameters of a simulated platform (`platform.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Product the simulation imitates.
    pub product: SnpProduct,
    /// CHIP_ID of the simulated processor.
    pub chip_id: ChipId,
    /// Default launch measurement of simulated guests.
    pub measurement: Measurement,
    /// The TCB of the simulated firmware.
    pub tcb: SimTcb,
    /// Creation time (Unix seconds); certificates are valid from one day before.
    pub created: i64,
}

/// TCB components as stored in `platform.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTcb {
    /// FMC (Turin only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    /// Boot loader.
    pub bootloader: u8,
    /// TEE.
    pub tee: u8,
    /// SNP firmware.
    pub snp: u8,
    /// Microcode.
    pub microcode: u8,
}

impl From<SimTcb> for TcbVersion {
    fn from(t: SimTcb) -> Self {
        TcbVersion {
            fmc: t.fmc,
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        }
    }
}

impl From<TcbVersion> for SimTcb {
    fn from(t: TcbVersion) -> Self {
        SimTcb {
            fmc: t.fmc,
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        }
    }
}

/// A realistic TCB for each product (values seen on real machines).
pub fn default_tcb(product: SnpProduct) -> TcbVersion {
    match product {
        SnpProduct::Milan => TcbVersion {
            fmc: None,
            bootloader: 4,
            tee: 0,
            snp: 24,
            microcode: 219,
        },
        SnpProduct::Genoa => TcbVersion {
            fmc: None,
            bootloader: 10,
            tee: 0,
            snp: 23,
            microcode: 84,
        },
        SnpProduct::Turin => TcbVersion {
            fmc: Some(0),
            bootloader: 1,
            tee: 0,
            snp: 2,
            microcode: 71,
        },
    }
}

fn cpuid_for(product: SnpProduct) -> Cpuid {
    match product {
        SnpProduct::Milan => Cpuid {
            family: 0x19,
            model: 0x01,
            stepping: 1,
        },
        SnpProduct::Genoa => Cpuid {
            family: 0x19,
            model: 0x11,
            stepping: 1,
        },
        SnpProduct::Turin => Cpuid {
            family: 0x1A,
            model: 0x02,
            stepping: 1,
        },
    }
}

/// What to put into a simulated report. Unset fields take the platform's defaults.
#[derive(Debug, Clone)]
pub struct SimReportRequest {
    /// Report version: 3 or 5.
    pub version: u32,
    /// REPORT_DATA.
    pub report_data: ReportData,
    /// HOST_DATA.
    pub host_data: HostData,
    /// MEASUREMENT (default: the platform's).
    pub measurement: Option<Measurement>,
    /// TCB (default: the platform's), used for all four TCB fields.
    pub tcb: Option<TcbVersion>,
    /// CHIP_ID override (default: the platform's). The VCEK's hwID always matches the platform.
    pub chip_id: Option<ChipId>,
    /// Guest policy (default 0x30000: SMT allowed, ABI 0.0).
    pub policy: u64,
    /// VMPL (default 0).
    pub vmpl: u32,
    /// ID_KEY_DIGEST (default zero).
    pub id_key_digest: IdKeyDigest,
}

impl Default for SimReportRequest {
    fn default() -> Self {
        Self {
            version: 3,
            report_data: ReportData([0; 64]),
            host_data: HostData([0; 32]),
            measurement: None,
            tcb: None,
            chip_id: None,
            policy: 0x30000,
            vmpl: 0,
            id_key_digest: IdKeyDigest([0; 48]),
        }
    }
}

/// Evidence produced by the simulated platform, shaped like what a real guest gathers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvidence {
    /// The 0x4A0-byte report.
    pub report: Vec<u8>,
    /// VCEK certificate (DER).
    pub vcek: Vec<u8>,
    /// ASK then ARK (DER), as KDS serves them.
    pub chain: Vec<Vec<u8>>,
}

/// A loaded simulated platform.
pub struct SimPlatform {
    dir: Option<PathBuf>,
    config: SimConfig,
    ark_key: RsaKeyPair,
    ark_der: Vec<u8>,
    ask_key: RsaKeyPair,
    ask_der: Vec<u8>,
    vcek_key: EcdsaKeyPair,
    vceks: Mutex<HashMap<[u8; 8], Vec<u8>>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPlatform")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("root_fingerprint", &self.root_fingerprint())
            .finish_non_exhaustive()
    }
}

impl SimPlatform {
    /// Generates a fresh hierarchy in memory (not persisted).
    pub fn generate(product: SnpProduct, now: SystemTime) -> Result<Self, SimError> {
        let rng = SystemRandom::new();
        let mut chip = [0u8; 64];
        rng.fill(&mut chip)
            .map_err(|_| SimError::Crypto("random CHIP_ID".into()))?;
        if product.has_fmc() {
            // Turin CHIP_IDs carry 8 significant bytes.
            for b in chip.iter_mut().skip(8) {
                *b = 0;
            }
        }
        let measurement = {
            let d =
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, b"nunki simulated guest v1");
            Measurement::from_slice(d.as_ref()).map_err(|e| SimError::Crypto(e.to_string()))?
        };
        let config = SimConfig {
            product,
            chip_id: ChipId(chip),
            measurement,
            tcb: default_tcb(product).into(),
            created: crate::time_util::unix_seconds(now),
        };
        let ark_key = certgen::generate_rsa()?;
        let ask_key = certgen::generate_rsa()?;
        let vcek_key = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
            .map_err(|_| SimError::Crypto("VCEK key generation failed".into()))?;
        let ark_der = certgen::ark_cert(&config, &ark_key)?;
        let ask_der = certgen::ask_cert(&config, &ask_key, &ark_key)?;
        Ok(Self {
            dir: None,
            config,
            ark_key,
            ark_der,
            ask_key,
            ask_der,
            vcek_key,
            vceks: Mutex::new(HashMap::new()),
            rng,
        })
    }

    /// Loads the platform from `dir`, creating and persisting a new Genoa-like one on first use.
    pub fn open_or_create(dir: &Path) -> Result<Self, SimError> {
        store::open_or_create(dir, SnpProduct::Genoa)
    }

    /// Like [`SimPlatform::open_or_create`], choosing the product for a new platform.
    pub fn open_or_create_product(dir: &Path, product: SnpProduct) -> Result<Self, SimError> {
        store::open_or_create(dir, product)
    }

    /// Directory the platform is persisted in, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Persistent parameters.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// SHA-256 of the simulated ARK: what a manifest pins to trust this platform.
    pub fn root_fingerprint(&self) -> Sha256Fingerprint {
        fingerprint(&self.ark_der)
    }

    /// The ARK certificate (DER).
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }

    /// The ASK certificate (DER).
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }

    /// Reference values that accept this platform's default guests.
    pub fn reference_values(&self) -> SimulatedReferenceValues {
        let tcb: TcbVersion = self.config.tcb.into();
        SimulatedReferenceValues {
            root_fingerprint: self.root_fingerprint(),
            product: self.config.product,
            trusted_measurement: self.config.measurement,
            minimum_tcb: SnpMinimumTcb {
                bootloader: tcb.bootloader,
                tee: tcb.tee,
                snp: tcb.snp,
                microcode: tcb.microcode,
                fmc: tcb.fmc,
            },
            guest_policy: SnpGuestPolicy::default(),
            allowed_chip_ids: Vec::new(),
            allowed_id_key_digests: Vec::new(),
            vmpl: 0,
        }
    }

    /// The VCEK certificate for a TCB (issued on first use, then cached).
    pub fn vcek_for(&self, tcb: TcbVersion) -> Result<Vec<u8>, SimError> {
        let layout = TcbLayout::for_product(self.config.product);
        if layout == TcbLayout::Turin && tcb.fmc.is_none() {
            return Err(SimError::Request(
                "a Turin TCB needs an FMC component".into(),
            ));
        }
        let raw = tcb.encode(layout).0;
        let mut cache = self
            .vceks
            .lock()
            .map_err(|_| SimError::Crypto("VCEK cache lock poisoned".into()))?;
        if let Some(der) = cache.get(&raw) {
            return Ok(der.clone());
        }
        let der = certgen::vcek_cert(
            &self.config,
            tcb,
            self.vcek_key.public_key().as_ref(),
            &self.ask_key,
        )?;
        cache.insert(raw, der.clone());
        Ok(der)
    }

    /// Issues a signed report with its VCEK and chain.
    pub fn issue(&self, req: &SimReportRequest) -> Result<SimEvidence, SimError> {
        if req.version != 3 && req.version != 5 {
            return Err(SimError::Request(format!(
                "report version {} cannot be simulated; choose 3 or 5",
                req.version
            )));
        }
        let product = self.config.product;
        let layout = TcbLayout::for_product(product);
        let tcb = req.tcb.unwrap_or_else(|| self.config.tcb.into());
        let raw_tcb = tcb.encode(layout);
        let mut report_id = [0u8; 32];
        self.rng
            .fill(&mut report_id)
            .map_err(|_| SimError::Crypto("random REPORT_ID".into()))?;
        let fw = FirmwareVersion {
            major: 1,
            minor: 55,
            build: 42,
        };
        let mut report = Report {
            version: req.version,
            guest_svn: 0,
            policy: GuestPolicy(req.policy),
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: req.vmpl,
            signature_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: raw_tcb,
            platform_info: PlatformInfo(0x25),
            key_info: KeyInfo(0),
            report_data: req.report_data,
            measurement: req.measurement.unwrap_or(self.config.measurement),
            host_data: req.host_data,
            id_key_digest: req.id_key_digest,
            author_key_digest: IdKeyDigest([0; 48]),
            report_id,
            report_id_ma: [0xff; 32],
            reported_tcb: raw_tcb,
            cpuid: Some(cpuid_for(product)),
            chip_id: req.chip_id.unwrap_or(self.config.chip_id),
            committed_tcb: raw_tcb,
            current_version: fw,
            committed_version: fw,
            launch_tcb: raw_tcb,
            launch_mit_vector: (req.version >= 5).then_some(0),
            current_mit_vector: (req.version >= 5).then_some(0),
            signature: ReportSignature {
                r: [0; 72],
                s: [0; 72],
            },
        };
        let unsigned = report.encode();
        let signed = unsigned
            .get(..SIGNED_LEN)
            .ok_or_else(|| SimError::Crypto("report buffer too short".into()))?;
        let sig = self
            .vcek_key
            .sign(&self.rng, signed)
            .map_err(|_| SimError::Crypto("ECDSA signing failed".into()))?;
        let fixed: [u8; 96] = sig
            .as_ref()
            .try_into()
            .map_err(|_| SimError::Crypto("unexpected ECDSA signature length".into()))?;
        report.signature = ReportSignature::from_fixed_p384(&fixed);
        Ok(SimEvidence {
            report: report.encode().to_vec(),
            vcek: self.vcek_for(tcb)?,
            chain: vec![self.ask_der.clone(), self.ark_der.clone()],
        })
    }

    /// Issues a CRL signed by the simulated ARK, revoking the given serials (big-endian bytes).
    /// `next_update: None` makes a CRL without nextUpdate (which verifiers must refuse).
    pub fn issue_crl(
        &self,
        revoked: &[Vec<u8>],
        this_update: SystemTime,
        next_update: Option<SystemTime>,
    ) -> Result<Vec<u8>, SimError> {
        certgen::crl(
            &self.config,
            &self.ark_key,
            revoked,
            this_update,
            next_update,
        )
    }
}
