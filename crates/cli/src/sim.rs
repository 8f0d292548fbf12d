//! `nunki sim`: the simulated SEV-SNP platform.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use nunki_attestation::sim::{SimPlatform, SimReportRequest, default_sim_dir};
use nunki_attestation::snp::certs::to_pem;
use nunki_manifest::{HostData, Measurement, ReportData, SnpProduct};
use serde_json::json;

/// Simulated-platform subcommands.
#[derive(Debug, Subcommand)]
pub enum SimCmd {
    /// Print the simulated root's fingerprint and the reference values a manifest needs to
    /// trust it. Creates the platform on first use.
    Show {
        /// Platform directory [default: $NUNKI_SIM_DIR, else $XDG_DATA_HOME/nunki/sim, else
        /// ~/.local/share/nunki/sim].
        #[arg(long, env = "NUNKI_SIM_DIR")]
        dir: Option<PathBuf>,
        /// Product to imitate when the platform is created (later runs keep the first choice).
        #[arg(long, default_value = "genoa")]
        product: SnpProduct,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issue a simulated report and write report.bin, vcek.pem and ask_ark.pem into --out.
    Issue {
        /// Platform directory (as for `sim show`).
        #[arg(long, env = "NUNKI_SIM_DIR")]
        dir: Option<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// REPORT_DATA (128 hex characters) [default: zero].
        #[arg(long, value_name = "HEX")]
        report_data: Option<ReportData>,
        /// HOST_DATA (64 hex characters) [default: zero].
        #[arg(long, value_name = "HEX")]
        host_data: Option<HostData>,
        /// MEASUREMENT (96 hex characters) [default: the platform's].
        #[arg(long, value_name = "HEX")]
        measurement: Option<Measurement>,
        /// Report version, 3 or 5.
        #[arg(long, default_value_t = 5)]
        report_version: u32,
        /// Set the DEBUG guest-policy bit (to see validation refuse it).
        #[arg(long)]
        debug_policy: bool,
        /// Then verify the written files exactly as `nunki report verify` does, pinning this
        /// platform's root and its reference values.
        #[arg(long)]
        verify: bool,
    },
}

fn open(dir: Option<PathBuf>, product: SnpProduct) -> Result<SimPlatform> {
    let dir = match dir {
        Some(d) => d,
        None => default_sim_dir()?,
    };
    Ok(SimPlatform::open_or_create_product(&dir, product)?)
}

/// Runs a sim subcommand.
pub fn run(cmd: SimCmd) -> Result<ExitCode> {
    match cmd {
        SimCmd::Show { dir, product, json } => {
            let p = open(dir, product)?;
            show(&p, json)?;
            Ok(ExitCode::SUCCESS)
        }
        SimCmd::Issue {
            dir,
            out,
            report_data,
            host_data,
            measurement,
            report_version,
            debug_policy,
            verify,
        } => {
            let p = open(dir, SnpProduct::Genoa)?;
            let req = SimReportRequest {
                version: report_version,
                report_data: report_data.unwrap_or(ReportData([0; 64])),
                host_data: host_data.unwrap_or(HostData([0; 32])),
                measurement,
                policy: if debug_policy { 0xb0000 } else { 0x30000 },
                ..Default::default()
            };
            issue(&p, &req, &out, verify)
        }
    }
}

fn show(p: &SimPlatform, json: bool) -> Result<()> {
    let rv = p.reference_values();
    let dir = p.dir().map(|d| d.display().to_string()).unwrap_or_default();
    if json {
        let out = json!({
            "Directory": dir,
            "RootFingerprint": p.root_fingerprint(),
            "ReferenceValues": { "simulated": [rv] },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "Simulated SEV-SNP platform (a software stand-in: it proves the protocol, not isolation)"
    );
    println!("  directory         {dir}");
    println!("  imitates          {}", p.config().product);
    println!(
        "  root fingerprint  {}  (SHA-256 of the simulated ARK)",
        p.root_fingerprint()
    );
    println!("  chip id           {}", p.config().chip_id);
    println!();
    println!("Reference values that trust it (manifest.json):");
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "ReferenceValues": { "simulated": [rv] } }))?
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn issue(p: &SimPlatform, req: &SimReportRequest, out: &Path, verify: bool) -> Result<ExitCode> {
    let e = p.issue(req)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let report = out.join("report.bin");
    let vcek = out.join("vcek.pem");
    let chain = out.join("ask_ark.pem");
    write(&report, &e.report)?;
    write(&vcek, to_pem(&e.vcek).as_bytes())?;
    let bundle: String = e.chain.iter().map(|c| to_pem(c)).collect();
    write(&chain, bundle.as_bytes())?;
    write(
        &out.join("root-fingerprint"),
        format!("{}\n", p.root_fingerprint()).as_bytes(),
    )?;
    let rv = p.reference_values();
    println!(
        "SIMULATED report (v{}, {}) written to {} (not AMD hardware: a software stand-in)",
        req.version,
        p.config().product,
        out.display()
    );
    let tcb = rv.minimum_tcb;
    let mut args: Vec<String> = vec![
        "report".into(),
        "verify".into(),
        report.display().to_string(),
        "--cert".into(),
        vcek.display().to_string(),
        "--chain".into(),
        chain.display().to_string(),
        "--sim-root-fingerprint".into(),
        p.root_fingerprint().to_hex(),
        "--measurement".into(),
        rv.trusted_measurement.to_hex(),
        "--host-data".into(),
        req.host_data.to_hex(),
        "--report-data".into(),
        req.report_data.to_hex(),
        "--min-tcb".into(),
        format!(
            "bootloader={},tee={},snp={},microcode={}{}",
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode,
            tcb.fmc.map(|f| format!(",fmc={f}")).unwrap_or_default()
        ),
        "--vmpl".into(),
        "0".into(),
    ];
    println!("verify it with:\n  nunki {}", args.join(" "));
    if !verify {
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    args.insert(0, "nunki".into());
    use clap::Parser as _;
    let cli = crate::Cli::try_parse_from(&args).context("internal: building the verify command")?;
    match cli.command {
        crate::Command::Report(cmd) => crate::report::run(cmd),
        _ => Ok(ExitCode::FAILURE),
    }
}
