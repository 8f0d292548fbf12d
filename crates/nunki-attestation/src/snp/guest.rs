//! The SEV-SNP guest side: requesting a report from the PSP through the kernel's configfs-tsm
//! interface (`/sys/kernel/config/tsm/report`), and parsing the certificate table the host
//! attaches to an extended report (GHCB spec 56421).
//!
//! configfs-tsm is plain file I/O (create a directory, write `inblob`, read `outblob` and
//! `auxblob`), so no `unsafe` and no ioctl are needed.

use std::fs;
use std::path::{Path, PathBuf};

use super::report::REPORT_LEN;

/// Default configfs-tsm report directory.
pub const TSM_REPORT_DIR: &str = "/sys/kernel/config/tsm/report";

/// GUID of the VCEK entry in the certificate table.
pub const GUID_VCEK: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
/// GUID of the VLEK entry.
pub const GUID_VLEK: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";
/// GUID of the ASK (or ASVK) entry.
pub const GUID_ASK: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
/// GUID of the ARK entry.
pub const GUID_ARK: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";

/// A guest-side problem.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// File system problem.
    #[error("configfs-tsm {path}: {reason}")]
    Io {
        /// Path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The kernel returned something that is not an SNP report.
    #[error("configfs-tsm: {0}")]
    Report(String),
    /// The certificate table is malformed.
    #[error("certificate table: {0}")]
    CertTable(String),
}

/// Parses a GUID in its text form into the byte order used in the certificate table
/// (the first three fields little-endian, as in EFI GUIDs).
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut raw = [0u8; 16];
    hex::decode_to_slice(&hex, &mut raw).ok()?;
    let mut out = raw;
    out.get_mut(0..4)?.reverse();
    out.get_mut(4..6)?.reverse();
    out.get_mut(6..8)?.reverse();
    Some(out)
}

/// Certificates from an extended report's certificate table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertTable {
    /// VCEK (DER).
    pub vcek: Option<Vec<u8>>,
    /// VLEK (DER).
    pub vlek: Option<Vec<u8>>,
    /// ASK or ASVK (DER).
    pub ask: Option<Vec<u8>>,
    /// ARK (DER).
    pub ark: Option<Vec<u8>>,
}

impl CertTable {
    /// Parses the table: entries of GUID (16) + offset (u32 LE) + length (u32 LE), ended by an
    /// all-zero entry; offsets are relative to the start of the table.
    pub fn parse(table: &[u8]) -> Result<Self, GuestError> {
        let err = |m: String| GuestError::CertTable(m);
        let ids =
            [GUID_VCEK, GUID_VLEK, GUID_ASK, GUID_ARK].map(|g| guid_bytes(g).unwrap_or([0; 16]));
        let mut out = CertTable::default();
        let mut pos = 0usize;
        loop {
            let entry = table.get(pos..pos + 24).ok_or_else(|| {
                err(format!(
                    "entry at offset {pos} is truncated (no terminating zero entry)"
                ))
            })?;
            let (guid, rest) = entry.split_at(16);
            if entry.iter().all(|b| *b == 0) {
                break;
            }
            let off = u32::from_le_bytes(
                rest.get(0..4)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 4]),
            ) as usize;
            let len = u32::from_le_bytes(
                rest.get(4..8)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 4]),
            ) as usize;
            let data = off
                .checked_add(len)
                .and_then(|end| table.get(off..end))
                .ok_or_else(|| {
                    err(format!(
                        "entry at offset {pos} points outside the table ({off}+{len} > {})",
                        table.len()
                    ))
                })?
                .to_vec();
            let slot = if guid == ids[0] {
                &mut out.vcek
            } else if guid == ids[1] {
                &mut out.vlek
            } else if guid == ids[2] {
                &mut out.ask
            } else if guid == ids[3] {
                &mut out.ark
            } else {
                pos += 24;
                continue;
            };
            if slot.is_some() {
                return Err(err(format!("duplicate entry at offset {pos}")));
            }
            *slot = Some(data);
            pos += 24;
        }
        Ok(out)
    }
}

/// A report obtained from the PSP, with the host-provided certificates.
#[derive(Debug, Clone)]
pub struct GuestReport {
    /// The raw report.
    pub report: Vec<u8>,
    /// The certificate table, when the host attached one.
    pub certs: CertTable,
}

/// Requests a report for `report_data` at `vmpl` through configfs-tsm under `base`.
pub fn tsm_report(
    base: &Path,
    report_data: &[u8; 64],
    vmpl: u32,
) -> Result<GuestReport, GuestError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| GuestError::Io {
            path: path.clone(),
            reason: e.to_string(),
        }
    };
    let name = format!("nunki-{}-{}", std::process::id(), unique());
    let dir = base.join(name);
    fs::create_dir(&dir).map_err(io(&dir))?;
    let result = (|| {
        let provider = fs::read_to_string(dir.join("provider")).unwrap_or_default();
        if !provider.trim().is_empty() && provider.trim() != "sev_guest" {
            return Err(GuestError::Report(format!(
                "provider is {:?}, not sev_guest: this is not an SEV-SNP guest",
                provider.trim()
            )));
        }
        let privlevel = dir.join("privlevel");
        if privlevel.exists() {
            fs::write(&privlevel, vmpl.to_string()).map_err(io(&privlevel))?;
        }
        let inblob = dir.join("inblob");
        fs::write(&inblob, report_data).map_err(io(&inblob))?;
        let outblob = dir.join("outblob");
        let report = fs::read(&outblob).map_err(io(&outblob))?;
        if report.len() < REPORT_LEN {
            return Err(GuestError::Report(format!(
                "outblob has {} bytes, an SNP report has {REPORT_LEN}",
                report.len()
            )));
        }
        let auxblob = dir.join("auxblob");
        let certs = match fs::read(&auxblob) {
            Ok(table) if !table.is_empty() => CertTable::parse(&table)?,
            _ => CertTable::default(),
        };
        Ok(GuestReport {
            report: report.get(..REPORT_LEN).unwrap_or_default().to_vec(),
            certs,
        })
    })();
    let _ = fs::remove_dir(&dir);
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(guid: &str, off: u32, len: u32) -> Vec<u8> {
        let mut e = guid_bytes(guid).unwrap().to_vec();
        e.extend(off.to_le_bytes());
        e.extend(len.to_le_bytes());
        e
    }

    #[test]
    fn guid_byte_order_is_mixed_endian() {
        assert_eq!(
            hex::encode(guid_bytes(GUID_VCEK).unwrap()),
            "8d75da6364e66445adc5f4b93be8accd"
        );
        assert!(guid_bytes("zz").is_none());
    }

    #[test]
    fn parses_a_table_with_vcek_ask_ark() {
        let header_len = 4 * 24;
        let (vcek, ask, ark) = (vec![1u8; 10], vec![2u8; 20], vec![3u8; 30]);
        let mut t = Vec::new();
        t.extend(entry(GUID_VCEK, header_len, 10));
        t.extend(entry(GUID_ASK, header_len + 10, 20));
        t.extend(entry(GUID_ARK, header_len + 30, 30));
        t.extend([0u8; 24]);
        t.extend(&vcek);
        t.extend(&ask);
        t.extend(&ark);
        let c = CertTable::parse(&t).unwrap();
        assert_eq!(
            (c.vcek, c.ask, c.ark, c.vlek),
            (Some(vcek), Some(ask), Some(ark), None)
        );
    }

    #[test]
    fn malformed_tables_are_errors_not_panics() {
        assert!(CertTable::parse(&[]).is_err());
        assert!(CertTable::parse(&[1u8; 30]).is_err());
        let mut t = entry(GUID_VCEK, 48, u32::MAX);
        t.extend([0u8; 24]);
        assert!(CertTable::parse(&t).is_err());
        let mut dup = entry(GUID_VCEK, 72, 1);
        dup.extend(entry(GUID_VCEK, 72, 1));
        dup.extend([0u8; 24]);
        dup.push(9);
        assert!(CertTable::parse(&dup).is_err());
    }

    #[test]
    fn tsm_report_reads_outblob_and_auxblob() {
        // A directory standing in for configfs: on real configfs the kernel creates the files
        // when the report directory is made; here a pre-made entry with a fixed name is not
        // possible, so exercise the error path and the parsing pieces.
        let dir = tempfile::tempdir().unwrap();
        let err = tsm_report(dir.path(), &[0; 64], 0).unwrap_err();
        assert!(err.to_string().contains("outblob"), "{err}");
        let err = tsm_report(Path::new("/nonexistent/tsm"), &[0; 64], 0).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tsm"), "{err}");
    }
}
