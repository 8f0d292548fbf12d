//! `nunki report show` and `nunki report verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use nunki_attestation::snp::certs::pem_or_der_certs;
use nunki_attestation::snp::crl::crl_der_from_pem_or_der;
use nunki_attestation::snp::report::Report;
use nunki_attestation::snp::tcb::TcbLayout;
use nunki_attestation::snp::validate::{SnpPolicy, validate};
use nunki_attestation::snp::verify::{Evidence, SnpVerifier, TrustStore, VerifiedReport};
use nunki_attestation::time_util::{parse_rfc3339, rfc3339, unix_seconds};
use nunki_manifest::{
    HostData, Measurement, ReportData, Sha256Fingerprint, SnpMinimumTcb, SnpProduct,
};
use serde_json::json;

/// Which kind of evidence a report file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportKind {
    /// An AMD SEV-SNP attestation report.
    #[default]
    Snp,
    /// An Intel TDX quote (v4 or v5).
    Tdx,
}

/// Report subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Parse a report (raw binary or hex text) or a TDX quote and print every field.
    Show {
        /// Report file: 1184 raw bytes or 2368 hex characters; with --kind tdx a quote.
        file: PathBuf,
        /// Evidence kind.
        #[arg(long, value_enum, default_value_t = ReportKind::Snp)]
        kind: ReportKind,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify a report's signature and certificate chain, then check the given reference values.
    /// Exit status 0 only when every check passed.
    Verify(Box<VerifyArgs>),
}

/// Arguments of `nunki report verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Report file: 1184 raw bytes or 2368 hex characters; with --kind tdx a quote.
    file: PathBuf,
    /// Evidence kind.
    #[arg(long, value_enum, default_value_t = ReportKind::Snp)]
    kind: ReportKind,
    /// SNP: the VCEK or VLEK that signed the report (DER or PEM). Required for SNP.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// TDX: the quote's collateral, in the JSON form of dcap-qvl's vectors
    /// (`QuoteCollateralV3`). Required for TDX.
    #[arg(long, value_name = "COLLATERAL.json")]
    collateral: Option<PathBuf>,
    /// TDX: accept this TCB status besides UpToDate (e.g. OutOfDate); repeatable.
    #[arg(long = "allow-tcb-status", value_name = "NAME")]
    allow_tcb_status: Vec<nunki_manifest::TdxTcbStatus>,
    /// TDX: allowed MRTD (96 hex characters); repeat to allow several.
    #[arg(long = "mrtd", value_name = "HEX")]
    mrtd: Vec<Measurement>,
    /// ASK (or ASVK) and ARK as PEM, as served by AMD KDS `cert_chain`. Without it the
    /// built-in AMD roots are used.
    #[arg(long)]
    chain: Option<PathBuf>,
    /// A CRL signed by the ARK (DER or PEM); revoked ASK/VCEK serials are rejected.
    #[arg(long)]
    crl: Option<PathBuf>,
    /// Require this product (milan, genoa, turin).
    #[arg(long)]
    product: Option<SnpProduct>,
    /// Verification time (RFC 3339), default now.
    #[arg(long)]
    at: Option<String>,
    /// Allowed launch measurement (96 hex characters); repeat to allow several.
    #[arg(long = "measurement", value_name = "HEX")]
    measurements: Vec<Measurement>,
    /// Expected HOST_DATA (64 hex characters).
    #[arg(long, value_name = "HEX")]
    host_data: Option<HostData>,
    /// Expected REPORT_DATA (128 hex characters).
    #[arg(long, value_name = "HEX")]
    report_data: Option<ReportData>,
    /// Minimum TCB, e.g. bootloader=10,tee=0,snp=23,microcode=84 (Turin: add fmc=N).
    #[arg(long, value_name = "LIST", value_parser = parse_min_tcb)]
    min_tcb: Option<SnpMinimumTcb>,
    /// Accept a guest launched with the DEBUG policy bit.
    #[arg(long)]
    allow_debug: bool,
    /// Required VMPL.
    #[arg(long)]
    vmpl: Option<u32>,
    /// Trust the simulated platform whose ARK has this SHA-256 fingerprint (see `nunki sim show`).
    #[arg(long = "sim-root-fingerprint", value_name = "HEX")]
    sim_root_fingerprints: Vec<Sha256Fingerprint>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_min_tcb(s: &str) -> Result<SnpMinimumTcb, String> {
    let mut tcb = SnpMinimumTcb::default();
    let mut seen = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected NAME=N, e.g. snp=23"))?;
        let n: u8 = v
            .trim()
            .parse()
            .map_err(|_| format!("{part:?}: {v:?} is not a number 0..=255"))?;
        let key = k.trim().to_ascii_lowercase();
        if seen.contains(&key) {
            return Err(format!("{key} given twice"));
        }
        match key.as_str() {
            "bootloader" | "bl" => tcb.bootloader = n,
            "tee" => tcb.tee = n,
            "snp" => tcb.snp = n,
            "microcode" | "ucode" => tcb.microcode = n,
            "fmc" => tcb.fmc = Some(n),
            other => {
                return Err(format!(
                    "unknown TCB component {other:?}: use bootloader, tee, snp, microcode, fmc"
                ));
            }
        }
        seen.push(key);
    }
    for required in ["bootloader", "tee", "snp", "microcode"] {
        let alias = match required {
            "bootloader" => "bl",
            "microcode" => "ucode",
            other => other,
        };
        if !seen.iter().any(|k| k == required || k == alias) {
            return Err(format!(
                "missing {required}=N: give all of bootloader, tee, snp and microcode"
            ));
        }
    }
    Ok(tcb)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// Runs a report subcommand.
pub fn run(cmd: ReportCmd) -> Result<ExitCode> {
    match cmd {
        ReportCmd::Show {
            file,
            kind: ReportKind::Snp,
            json,
        } => show(&file, json),
        ReportCmd::Show {
            file,
            kind: ReportKind::Tdx,
            json,
        } => crate::report_tdx::show(&file, json),
        ReportCmd::Verify(args) if args.kind == ReportKind::Tdx => crate::report_tdx::verify(
            &args.file,
            crate::report_tdx::VerifyOptions {
                collateral: args.collateral.as_deref(),
                at: args.at.as_deref(),
                allow_tcb_status: &args.allow_tcb_status,
                mrtd: &args.mrtd,
                json: args.json,
                snp_only_flags: snp_only_flags(&args),
            },
        ),
        ReportCmd::Verify(args) => verify(&args),
    }
}

fn load_report(file: &Path) -> Result<(Report, Vec<u8>)> {
    let raw = read(file, "report")?;
    Report::parse_binary_or_hex(&raw)
        .with_context(|| format!("{} is not an SNP report", file.display()))
}

fn show(file: &Path, json: bool) -> Result<ExitCode> {
    let (report, bytes) = load_report(file)?;
    let nonzero_reserved: Vec<String> =
        nunki_attestation::snp::report::reserved_ranges(report.version)
            .into_iter()
            .filter(|r| {
                bytes
                    .get(r.clone())
                    .is_some_and(|b| b.iter().any(|x| *x != 0))
            })
            .map(|r| format!("{:#05x}..{:#05x}", r.start, r.end))
            .collect();
    let layout = report.guessed_layout();
    if json {
        let tcbs: serde_json::Map<String, serde_json::Value> = report
            .tcbs(layout)
            .iter()
            .map(|(name, t)| (format!("{name}_tcb_decoded"), json!(t)))
            .collect();
        let product = report
            .cpuid_product()
            .map(|p| p.map(|p| p.to_string()).map_err(|e| e.to_string()));
        let out = json!({
            "report": report,
            "tcb_layout": layout,
            "product_from_cpuid": product.map(|r| r.unwrap_or_else(|e| e)),
            "decoded": tcbs,
            "nonzero_reserved_ranges": nonzero_reserved,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_report(&report, layout));
    if nonzero_reserved.is_empty() {
        println!("{:<22} all zero", "RESERVED");
    } else {
        println!(
            "{:<22} NON-ZERO at {} (not produced by AMD firmware)",
            "RESERVED",
            nonzero_reserved.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn render_report(r: &Report, layout: TcbLayout) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line("VERSION", r.version.to_string());
    line("GUEST_SVN", r.guest_svn.to_string());
    let p = r.policy;
    line(
        "POLICY",
        format!(
            "{:#x} (ABI {}.{}, SMT {}, MIGRATE_MA {}, DEBUG {}, SINGLE_SOCKET {})",
            p.0,
            p.abi_major(),
            p.abi_minor(),
            p.smt(),
            p.migrate_ma(),
            p.debug(),
            p.single_socket()
        ),
    );
    line("FAMILY_ID", hex::encode(r.family_id));
    line("IMAGE_ID", hex::encode(r.image_id));
    line("VMPL", r.vmpl.to_string());
    line("SIGNATURE_ALGO", r.signature_algo.to_string());
    let pi = r.platform_info;
    line(
        "PLATFORM_INFO",
        format!(
            "{:#x} (SMT {}, TSME {}, ECC {}, RAPL_DIS {}, CIPHERTEXT_HIDING {}, ALIAS_CHECK {}, TIO {})",
            pi.0,
            pi.smt_enabled(),
            pi.tsme_enabled(),
            pi.ecc_enabled(),
            pi.rapl_disabled(),
            pi.ciphertext_hiding_enabled(),
            pi.alias_check_complete(),
            pi.tio_enabled()
        ),
    );
    let ki = r.key_info;
    line(
        "KEY_INFO",
        format!(
            "{:#x} (SIGNING_KEY {:?}, MASK_CHIP_KEY {}, AUTHOR_KEY_EN {})",
            ki.0,
            ki.signing_key(),
            ki.mask_chip_key(),
            ki.author_key_en()
        ),
    );
    line("REPORT_DATA", r.report_data.to_hex());
    line("MEASUREMENT", r.measurement.to_hex());
    line("HOST_DATA", r.host_data.to_hex());
    line("ID_KEY_DIGEST", r.id_key_digest.to_hex());
    line("AUTHOR_KEY_DIGEST", r.author_key_digest.to_hex());
    line("REPORT_ID", hex::encode(r.report_id));
    line("REPORT_ID_MA", hex::encode(r.report_id_ma));
    match r.cpuid {
        Some(c) => line(
            "CPUID",
            format!(
                "family {:#04x} model {:#04x} stepping {} ({})",
                c.family,
                c.model,
                c.stepping,
                c.product()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|e| e.to_string())
            ),
        ),
        None => line(
            "CPUID",
            "(not in v2 reports; product comes from the VCEK)".into(),
        ),
    }
    line("CHIP_ID", r.chip_id.to_hex());
    let layout_name = match layout {
        TcbLayout::MilanGenoa => "Milan/Genoa layout",
        TcbLayout::Turin => "Turin layout",
    };
    for (name, raw, t) in [
        ("CURRENT_TCB", r.current_tcb, r.current_tcb.decode(layout)),
        (
            "COMMITTED_TCB",
            r.committed_tcb,
            r.committed_tcb.decode(layout),
        ),
        (
            "REPORTED_TCB",
            r.reported_tcb,
            r.reported_tcb.decode(layout),
        ),
        ("LAUNCH_TCB", r.launch_tcb, r.launch_tcb.decode(layout)),
    ] {
        line(name, format!("{} ({t}; {layout_name})", hex::encode(raw.0)));
    }
    line("CURRENT_VERSION", r.current_version.to_string());
    line("COMMITTED_VERSION", r.committed_version.to_string());
    let mit = |m: Option<u64>| m.map_or_else(|| "(v5 only)".to_string(), |v| format!("{v:#x}"));
    line("LAUNCH_MIT_VECTOR", mit(r.launch_mit_vector));
    line("CURRENT_MIT_VECTOR", mit(r.current_mit_vector));
    line("SIGNATURE_R", hex::encode(r.signature.r));
    line("SIGNATURE_S", hex::encode(r.signature.s));
    out
}

/// The SNP flags that were given (refused with --kind tdx), and vice versa.
fn snp_only_flags(a: &VerifyArgs) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (set, name) in [
        (a.cert.is_some(), "--cert"),
        (a.chain.is_some(), "--chain"),
        (a.crl.is_some(), "--crl"),
        (a.product.is_some(), "--product"),
        (!a.measurements.is_empty(), "--measurement"),
        (a.host_data.is_some(), "--host-data"),
        (a.report_data.is_some(), "--report-data"),
        (a.min_tcb.is_some(), "--min-tcb"),
        (a.allow_debug, "--allow-debug"),
        (a.vmpl.is_some(), "--vmpl"),
        (
            !a.sim_root_fingerprints.is_empty(),
            "--sim-root-fingerprint",
        ),
    ] {
        if set {
            out.push(name);
        }
    }
    out
}

fn verify(a: &VerifyArgs) -> Result<ExitCode> {
    for (set, name) in [
        (a.collateral.is_some(), "--collateral"),
        (!a.allow_tcb_status.is_empty(), "--allow-tcb-status"),
        (!a.mrtd.is_empty(), "--mrtd"),
    ] {
        if set {
            bail!("{name} is a TDX flag: add --kind tdx");
        }
    }
    let Some(cert_path) = &a.cert else {
        bail!("--cert is required for an SNP report: the VCEK or VLEK that signed it");
    };
    let raw = read(&a.file, "report")?;
    let (_, report_bytes) = Report::parse_binary_or_hex(&raw)
        .with_context(|| format!("{} is not an SNP report", a.file.display()))?;
    let cert = pem_or_der_certs(&read(cert_path, "certificate")?)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}", cert_path.display()))?;
    let [cert] = cert.as_slice() else {
        bail!(
            "{}: expected exactly one certificate (the VCEK or VLEK), found {}",
            cert_path.display(),
            cert.len()
        );
    };
    let chain = match &a.chain {
        Some(p) => Some(
            pem_or_der_certs(&read(p, "chain")?)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{}", p.display()))?,
        ),
        None => None,
    };
    let crl = match &a.crl {
        Some(p) => Some(
            crl_der_from_pem_or_der(&read(p, "CRL")?)
                .with_context(|| format!("{}", p.display()))?,
        ),
        None => None,
    };
    let now = match &a.at {
        Some(s) => parse_rfc3339(s)
            .map_err(anyhow::Error::msg)
            .context("--at")?,
        None => SystemTime::now(),
    };
    let mut trust = TrustStore::amd();
    for fp in &a.sim_root_fingerprints {
        trust = trust.with_simulated_root(*fp);
    }
    let verifier = SnpVerifier::new(trust);
    let evidence = Evidence {
        report: &report_bytes,
        endorsement_key: cert,
        chain: chain.as_deref(),
        crl: crl.as_deref(),
    };
    let policy = SnpPolicy {
        root: None,
        product: a.product,
        measurements: (!a.measurements.is_empty()).then(|| a.measurements.clone()),
        host_data: a.host_data,
        report_data: a.report_data,
        minimum_tcb: a.min_tcb,
        allow_debug: a.allow_debug,
        minimum_abi: None,
        vmpl: a.vmpl,
        allowed_chip_ids: Vec::new(),
        allowed_id_key_digests: Vec::new(),
    };
    let (verified, failures) = match verifier.verify(&evidence, now) {
        Ok(v) => {
            let failures = match validate(&v, &policy) {
                Ok(()) => Vec::new(),
                Err(errs) => errs.0.iter().map(ToString::to_string).collect(),
            };
            (Some(v), failures)
        }
        Err(e) => (None, vec![format!("verification: {e}")]),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_result(verified.as_ref(), &failures, now))?
        );
    } else {
        print_result(verified.as_ref(), &failures, now, crl.is_some());
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn json_result(
    v: Option<&VerifiedReport>,
    failures: &[String],
    now: SystemTime,
) -> serde_json::Value {
    json!({
        "ok": failures.is_empty(),
        "verified_at": rfc3339(unix_seconds(now)),
        "failures": failures,
        "product": v.map(|v| v.product().to_string()),
        "signer": v.map(|v| v.signer()),
        "root": v.map(|v| v.root()),
        "root_fingerprint": v.map(|v| v.root_fingerprint()),
        "crl_checked": v.map(|v| v.crl_checked()),
        "endorsement_key": v.map(|v| v.endorsement()),
        "report": v.map(|v| v.report()),
    })
}

fn print_result(v: Option<&VerifiedReport>, failures: &[String], now: SystemTime, crl: bool) {
    if let Some(v) = v {
        let root = match v.root() {
            nunki_attestation::RootKind::Amd => format!("AMD ARK-{}", v.product()),
            nunki_attestation::RootKind::Simulated => {
                format!("SIMULATED ARK-{} (pinned; not AMD hardware)", v.product())
            }
        };
        println!("verified at {}:", rfc3339(unix_seconds(now)));
        println!(
            "  ok  report signature (ECDSA P-384 over 0x000..0x2A0) by the {}",
            v.signer()
        );
        println!(
            "  ok  chain {} -> {} -> {root} ({})",
            v.signer(),
            if v.signer() == nunki_attestation::SignerKind::Vlek {
                "ASVK"
            } else {
                "ASK"
            },
            v.root_fingerprint()
        );
        println!("  ok  certificate validity windows");
        println!(
            "  ok  {} TCB extensions = REPORTED_TCB ({})",
            v.signer(),
            v.report().reported_tcb.decode(v.layout())
        );
        if v.signer() == nunki_attestation::SignerKind::Vcek {
            println!("  ok  VCEK hwID = CHIP_ID");
        }
        if crl {
            println!(
                "  ok  CRL signed by the ARK, current, intermediate and {} not revoked",
                v.signer()
            );
        }
        println!("  measurement {}", v.report().measurement);
        println!("  host data   {}", v.report().host_data);
    }
    if failures.is_empty() {
        println!("OK: all checks passed");
    } else {
        for f in failures {
            println!("FAILED {f}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_tcb_parses_and_rejects() {
        let t = parse_min_tcb("bootloader=10,tee=0,snp=23,microcode=84").unwrap();
        assert_eq!(
            (t.bootloader, t.tee, t.snp, t.microcode, t.fmc),
            (10, 0, 23, 84, None)
        );
        let t = parse_min_tcb("bl=1, tee=0, snp=2, ucode=71, fmc=0").unwrap();
        assert_eq!(t.fmc, Some(0));
        assert!(
            parse_min_tcb("snp=23")
                .unwrap_err()
                .contains("missing bootloader")
        );
        assert!(
            parse_min_tcb("bootloader=1,tee=0,snp=300,microcode=1")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            parse_min_tcb("bootloader=1,tee=0,snp=3,microcode=1,xyz=2")
                .unwrap_err()
                .contains("unknown")
        );
        assert!(
            parse_min_tcb("bootloader=1,bootloader=2")
                .unwrap_err()
                .contains("twice")
        );
    }
}
