//! End-to-end tests of the `nunki` binary's report and sim commands.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn testdata() -> PathBuf {
    std::env::var_os("NUNKI_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
        })
}

fn snp(p: &str) -> String {
    testdata().join("snp").join(p).display().to_string()
}

fn nunki(args: &[&str], sim_dir: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nunki"));
    c.args(args);
    match sim_dir {
        Some(d) => c.env("NUNKI_SIM_DIR", d),
        None => c.env(
            "NUNKI_SIM_DIR",
            "/nonexistent/nunki-test-should-not-be-used",
        ),
    };
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed_lines(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter(|l| l.starts_with("FAILED "))
        .map(String::from)
        .collect()
}

#[test]
fn show_prints_every_field_for_binary_and_hex() {
    let o = nunki(&["report", "show", &snp("genoa-oak-v5/report.bin")], None);
    assert!(o.status.success());
    let out = stdout(&o);
    for field in [
        "VERSION",
        "MEASUREMENT",
        "HOST_DATA",
        "REPORTED_TCB",
        "CHIP_ID",
        "LAUNCH_MIT_VECTOR",
        "SIGNATURE_R",
        "CPUID",
    ] {
        assert!(out.contains(field), "{field} missing:\n{out}");
    }
    assert!(out.contains("c5772901"), "{out}");
    let o = nunki(
        &[
            "report",
            "show",
            "--json",
            &snp("milan-virtee-v2/report.hex"),
        ],
        None,
    );
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["report"]["version"], 2);
    assert!(
        v["report"]["measurement"]
            .as_str()
            .unwrap()
            .starts_with("7a1e5c26")
    );
    let o = nunki(&["report", "show", &snp("turin-oak-v5/report.bin")], None);
    assert!(
        stdout(&o).contains("fmc=0 bootloader=1 tee=0 snp=2 microcode=71"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn verify_real_report_passes_and_names_failed_checks() {
    let report = snp("genoa-oak-v5/report.bin");
    let cert = snp("genoa-oak-v5/vcek.der");
    let base = [
        "report",
        "verify",
        &report,
        "--cert",
        &cert,
        "--at",
        "2025-09-01T00:00:00Z",
    ];
    let o = nunki(&base, None);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("OK: all checks passed"));

    let mut args = base.to_vec();
    args.extend([
        "--min-tcb",
        "bootloader=10,tee=0,snp=30,microcode=84",
        "--vmpl",
        "1",
        "--product",
        "milan",
    ]);
    let o = nunki(&args, None);
    assert_eq!(o.status.code(), Some(1));
    let failed = failed_lines(&o);
    assert_eq!(failed.len(), 6, "{failed:?}");
    assert!(
        failed.contains(
            &"FAILED MinimumTCB.SNPVersion: reported TCB has 25, manifest needs >= 30".to_string()
        ),
        "{failed:?}"
    );
    assert!(failed.iter().any(|l| l.starts_with("FAILED VMPL")));
    assert!(failed.iter().any(|l| l.starts_with("FAILED ProductName")));

    let zero = "00".repeat(48);
    let mut args = base.to_vec();
    args.extend(["--json", "--measurement", &zero]);
    let o = nunki(&args, None);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["failures"][0]
            .as_str()
            .unwrap()
            .starts_with("TrustedMeasurement")
    );
    assert_eq!(v["product"], "Genoa");
}

#[test]
fn verify_refuses_debug_unless_allowed() {
    let report = snp("milan-gsg-v2/report.bin");
    let cert = snp("milan-gsg-v2/vcek.der");
    let base = [
        "report",
        "verify",
        &report,
        "--cert",
        &cert,
        "--at",
        "2023-01-15T00:00:00Z",
    ];
    let o = nunki(&base, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(failed_lines(&o)[0].contains("DEBUG"));
    let mut args = base.to_vec();
    args.push("--allow-debug");
    assert!(nunki(&args, None).status.success());
    // And with the real 2022 Milan CRL, current at that time.
    let crl = snp("amd/crl_milan_2022-05-09.der");
    args.extend(["--crl", &crl]);
    let o = nunki(&args, None);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("CRL"));
}

#[test]
fn verify_chain_and_time_failures() {
    let report = snp("milan-oak-v3/report.bin");
    let cert = snp("milan-oak-v3/vcek.der");
    let genoa = snp("amd/ask_ark_genoa.pem");
    let o = nunki(
        &[
            "report",
            "verify",
            &report,
            "--cert",
            &cert,
            "--chain",
            &genoa,
            "--at",
            "2025-09-01T00:00:00Z",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        failed_lines(&o)[0].contains("product mismatch"),
        "{}",
        stdout(&o)
    );

    let vlek_report = snp("milan-aws-vlek-v3/report.bin");
    let vlek = snp("milan-aws-vlek-v3/vlek.der");
    let o = nunki(
        &[
            "report",
            "verify",
            &vlek_report,
            "--cert",
            &vlek,
            "--at",
            "2026-11-27T00:00:00Z",
            "--vmpl",
            "1",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        failed_lines(&o)[0].contains("VLEK: not valid at 2026-11-27"),
        "{}",
        stdout(&o)
    );
    let o = nunki(
        &[
            "report",
            "verify",
            &vlek_report,
            "--cert",
            &vlek,
            "--at",
            "2025-06-01T00:00:00Z",
            "--vmpl",
            "1",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stdout(&o));
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"definitely not a report").unwrap();
    let cert = snp("genoa-oak-v5/vcek.der");
    let o = nunki(
        &["report", "verify", junk.to_str().unwrap(), "--cert", &cert],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is not an SNP report") && !err.contains("panicked"),
        "{err}"
    );
    let mut v4 = std::fs::read(snp("genoa-oak-v5/report.bin")).unwrap();
    v4[0] = 4;
    std::fs::write(&junk, &v4).unwrap();
    let o = nunki(&["report", "show", junk.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("VERSION 4 is not supported"));
    let o = nunki(
        &[
            "report",
            "verify",
            &snp("genoa-oak-v5/report.bin"),
            "--cert",
            junk.to_str().unwrap(),
            "--at",
            "2025-09-01T00:00:00Z",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        failed_lines(&o)[0].contains("not a valid X.509 certificate"),
        "{}",
        stdout(&o)
    );
    let o = nunki(
        &[
            "report",
            "verify",
            &snp("genoa-oak-v5/report.bin"),
            "--cert",
            &cert,
            "--min-tcb",
            "snp=1",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing bootloader"));
}

#[test]
fn simulated_reports_need_their_pinned_root() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    let o = nunki(&["sim", "show", "--json"], Some(&sim));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fp = shown["RootFingerprint"].as_str().unwrap().to_string();
    assert_eq!(
        shown["ReferenceValues"]["simulated"][0]["RootFingerprint"],
        fp.as_str()
    );

    let out = dir.path().join("out");
    let host = "ab".repeat(32);
    let o = nunki(
        &[
            "sim",
            "issue",
            "--out",
            out.to_str().unwrap(),
            "--host-data",
            &host,
            "--verify",
        ],
        Some(&sim),
    );
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("OK: all checks passed"));
    assert_eq!(
        std::fs::read_to_string(out.join("root-fingerprint"))
            .unwrap()
            .trim(),
        fp
    );

    let report = out.join("report.bin");
    let vcek = out.join("vcek.pem");
    let chain = out.join("ask_ark.pem");
    let base = [
        "report",
        "verify",
        report.to_str().unwrap(),
        "--cert",
        vcek.to_str().unwrap(),
        "--chain",
        chain.to_str().unwrap(),
        "--host-data",
        &host,
    ];
    // Not pinned.
    let o = nunki(&base, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        failed_lines(&o)[0].contains("is not trusted"),
        "{}",
        stdout(&o)
    );
    // Another root pinned.
    let mut args = base.to_vec();
    let other = "00".repeat(32);
    args.extend(["--sim-root-fingerprint", &other]);
    assert_eq!(nunki(&args, None).status.code(), Some(1));
    // Its own root pinned.
    let mut args = base.to_vec();
    args.extend(["--sim-root-fingerprint", &fp]);
    assert!(nunki(&args, None).status.success());
    // A different HOST_DATA expectation fails naming the field.
    let mut args = args.clone();
    let wrong = "cd".repeat(32);
    args[8] = &wrong;
    let o = nunki(&args, None);
    assert!(
        failed_lines(&o)[0].starts_with("FAILED HOST_DATA"),
        "{}",
        stdout(&o)
    );
}

fn tdx(p: &str) -> String {
    testdata().join("tdx").join(p).display().to_string()
}

#[test]
fn tdx_report_verify_exit_codes() {
    let q = tdx("dcap-qvl/tdx_quote");
    let c = tdx("dcap-qvl/tdx_quote_collateral.json");
    let base = ["report", "verify", &q, "--kind", "tdx", "--collateral", &c];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        nunki(&a, None)
    };
    let o = with(&["--at", "2025-07-01T00:00:00Z"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("TCB status  UpToDate"), "{out}");
    // A wrong MRTD fails naming the field.
    let o = with(&["--at", "2025-07-01T00:00:00Z", "--mrtd", &"00".repeat(48)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAILED MrTd: quote has 91eb2b44"), "{out}");
    // Outside the collateral window: one FAILED line naming the item.
    let o = with(&["--at", "2025-08-01T00:00:00Z", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(
        v["failures"][0]
            .as_str()
            .unwrap()
            .starts_with("the TCB Info is not valid"),
        "{v}"
    );
    // The debug TD is refused whatever is allowed.
    let o = nunki(
        &[
            "report",
            "verify",
            &tdx("trustee/tdx_quote_4.dat"),
            "--kind",
            "tdx",
            "--collateral",
            &c,
            "--at",
            "2025-07-01T00:00:00Z",
            "--allow-tcb-status",
            "OutOfDate",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("DEBUG is set"));
    // Input errors exit 2: no collateral, SNP flags, unknown status names.
    for bad in [
        vec!["report", "verify", &q, "--kind", "tdx"],
        vec![
            "report",
            "verify",
            &q,
            "--kind",
            "tdx",
            "--collateral",
            &c,
            "--vmpl",
            "0",
        ],
        vec![
            "report",
            "verify",
            &q,
            "--kind",
            "tdx",
            "--collateral",
            &c,
            "--allow-tcb-status",
            "Stale",
        ],
        vec!["report", "verify", &q, "--collateral", &c],
    ] {
        assert_eq!(nunki(&bad, None).status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn tdx_report_show_prints_every_field() {
    let o = nunki(
        &[
            "report",
            "show",
            &tdx("trustee/tdx_quote_6.dat"),
            "--kind",
            "tdx",
        ],
        None,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("MRTD                   21e8dead92d6c69d"),
        "{out}"
    );
    assert!(out.contains("no policy hash"), "{out}");
    let o = nunki(
        &[
            "report",
            "show",
            &tdx("go-tdx-guest/quote_v5_sample.dat"),
            "--kind",
            "tdx",
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["header"]["version"], 5);
    assert_eq!(v["body"], "TDX 1.5");
}

/// The in-cluster entry points share one main: `--help` succeeds, a usage error exits with 2.
#[test]
fn in_cluster_entry_points_share_exit_codes() {
    for cmd in ["run-coordinator", "run-initializer", "run-demo-service"] {
        let help = nunki(&[cmd, "--help"], None);
        assert_eq!(help.status.code(), Some(0), "{cmd} --help: {help:?}");
        assert!(stdout(&help).contains("Usage"), "{cmd} --help: {help:?}");
        let bad = nunki(&[cmd, "--no-such-flag"], None);
        assert_eq!(bad.status.code(), Some(2), "{cmd} --no-such-flag: {bad:?}");
    }
}
