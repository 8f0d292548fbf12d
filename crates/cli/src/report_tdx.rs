//! `nunki report show --kind tdx` and `nunki report verify --kind tdx`.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use nunki_attestation::tdx::validate::validate;
use nunki_attestation::tdx::{TdQuote, TdxCollateral, TdxPolicy, TdxVerifier, VerifiedQuote};
use nunki_attestation::time_util::{parse_rfc3339, rfc3339, unix_seconds};
use nunki_manifest::{Measurement, TdxTcbStatus};
use serde_json::json;

/// The flags of `report verify --kind tdx`.
#[derive(Debug)]
pub struct VerifyOptions<'a> {
    /// `--collateral`.
    pub collateral: Option<&'a Path>,
    /// `--at`.
    pub at: Option<&'a str>,
    /// `--allow-tcb-status`.
    pub allow_tcb_status: &'a [TdxTcbStatus],
    /// `--mrtd`.
    pub mrtd: &'a [Measurement],
    /// `--json`.
    pub json: bool,
    /// SNP flags that were given (refused).
    pub snp_only_flags: Vec<&'static str>,
}

/// A quote file: raw bytes, or hex text (whitespace ignored).
fn load_quote(file: &Path) -> Result<Vec<u8>> {
    let raw =
        std::fs::read(file).with_context(|| format!("cannot read quote {}", file.display()))?;
    let text: Option<String> = std::str::from_utf8(&raw)
        .ok()
        .map(|t| t.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    if let Some(t) = text
        && !t.is_empty()
        && t.len() % 2 == 0
        && t.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return hex::decode(&t).with_context(|| format!("{}: bad hex", file.display()));
    }
    Ok(raw)
}

fn parse(file: &Path) -> Result<(Vec<u8>, TdQuote)> {
    let raw = load_quote(file)?;
    let q =
        TdQuote::parse(&raw).with_context(|| format!("{} is not a TDX quote", file.display()))?;
    Ok((raw, q))
}

/// `report show --kind tdx`.
pub fn show(file: &Path, json: bool) -> Result<ExitCode> {
    let (_, q) = parse(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&q)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(&q));
    Ok(ExitCode::SUCCESS)
}

fn render(q: &TdQuote) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    let h = &q.header;
    line("VERSION", format!("{} ({:?} body)", h.version, q.body));
    line("TEE_TYPE", format!("{:#x}", h.tee_type));
    line("QE_VENDOR_ID", hex::encode(h.qe_vendor_id));
    let td = &q.td;
    line("TEE_TCB_SVN", hex::encode(td.tee_tcb_svn));
    line("MRSEAM", td.mr_seam.to_hex());
    line("MRSIGNERSEAM", td.mr_signer_seam.to_hex());
    line("SEAMATTRIBUTES", hex::encode(td.seam_attributes));
    line(
        "TDATTRIBUTES",
        format!("{} (DEBUG {})", td.td_attributes, td.debug()),
    );
    line("XFAM", td.xfam.to_hex());
    line("MRTD", td.mr_td.to_hex());
    line(
        "MRCONFIGID",
        match td.policy_hash() {
            Ok(h) => format!("{} (policy hash {h})", td.mr_config_id),
            Err(_) => format!(
                "{} (no policy hash: bytes 32..48 not zero)",
                td.mr_config_id
            ),
        },
    );
    line("MROWNER", td.mr_owner.to_hex());
    line("MROWNERCONFIG", td.mr_owner_config.to_hex());
    for (i, r) in td.rtmrs.iter().enumerate() {
        line(&format!("RTMR{i}"), r.to_hex());
    }
    line("REPORTDATA", td.report_data.to_hex());
    if let Some(s) = td.tee_tcb_svn2 {
        line("TEE_TCB_SVN2", hex::encode(s));
    }
    if let Some(m) = td.mr_service_td {
        line("MRSERVICETD", m.to_hex());
    }
    let qe = &q.qe_report;
    line("QE MRSIGNER", hex::encode(qe.mr_signer));
    line(
        "QE ISVPRODID/ISVSVN",
        format!("{}/{}", qe.isv_prod_id, qe.isv_svn),
    );
    line("PCK CHAIN", format!("{} certificates", q.pck_chain.len()));
    line("TRAILING BYTES", q.trailing_bytes.to_string());
    out
}

/// `report verify --kind tdx`: exit 0 only when every check passed.
pub fn verify(file: &Path, o: VerifyOptions<'_>) -> Result<ExitCode> {
    if let Some(flag) = o.snp_only_flags.first() {
        bail!(
            "{flag} is an SNP flag; with --kind tdx use --collateral, --at, --allow-tcb-status, --mrtd, --json"
        );
    }
    let Some(cpath) = o.collateral else {
        bail!(
            "--collateral is required with --kind tdx: the quote's TCB Info, QE Identity, CRLs and issuer chains as JSON"
        );
    };
    let (raw, _) = parse(file)?;
    let cbytes = std::fs::read(cpath)
        .with_context(|| format!("cannot read collateral {}", cpath.display()))?;
    let collateral =
        TdxCollateral::from_json(&cbytes).with_context(|| format!("{}", cpath.display()))?;
    let now = match o.at {
        Some(s) => parse_rfc3339(s).map_err(anyhow::Error::msg)?,
        None => SystemTime::now(),
    };
    let mut failures = Vec::new();
    let verified = match TdxVerifier::intel().verify(&raw, &collateral, now) {
        Ok(v) => Some(v),
        Err(e) => {
            failures.push(e.to_string());
            None
        }
    };
    if let Some(v) = &verified {
        let policy = TdxPolicy {
            mr_td: (!o.mrtd.is_empty()).then(|| o.mrtd.to_vec()),
            allowed_tcb_statuses: o.allow_tcb_status.to_vec(),
            ..TdxPolicy::default()
        };
        if let Err(errs) = validate(v, &policy) {
            failures.extend(errs.0.iter().map(ToString::to_string));
        }
    }
    if o.json {
        let out = json!({
            "ok": failures.is_empty(),
            "verified_at": rfc3339(unix_seconds(now)),
            "failures": failures,
            "verified": verified,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_result(verified.as_ref(), &failures, now);
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_result(v: Option<&VerifiedQuote>, failures: &[String], now: SystemTime) {
    println!("verified at {}", rfc3339(unix_seconds(now)));
    if let Some(v) = v {
        let t = v.tcb();
        println!(
            "  quote       v{} ({:?}), PCK chain to the Intel SGX Root CA {}",
            v.quote().header.version,
            v.quote().body,
            v.root_fingerprint()
        );
        println!(
            "  TCB status  {} (platform {}, QE {}), tcbDate {}, evaluation data number {}",
            t.status, t.platform_status, t.qe_status, t.tcb_date, t.tcb_evaluation_data_number
        );
        if !t.advisory_ids.is_empty() {
            println!("  advisories  {}", t.advisory_ids.join(", "));
        }
        println!("  FMSPC       {}", v.pck().fmspc);
        println!("  MRTD        {}", v.quote().td.mr_td);
        println!("  collateral valid until {}", v.valid_until());
    }
    if failures.is_empty() {
        println!("OK: every check passed");
    } else {
        for f in failures {
            println!("FAILED {f}");
        }
    }
}
