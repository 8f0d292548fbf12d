//! Load benchmark of the mesh API: N simulated Initializers at once against an in-process
//! Coordinator over real mutual aTLS on loopback, plus the cryptographic floor measured in the
//! same run. Run: `cargo bench -p nunki-coordinator --bench mesh_load [-- N... --trials=K]`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED,
    EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};
use nunki_api::meshapi::NewMeshCertRequest;
use nunki_api::meshapi::mesh_api_client::MeshApiClient;
use nunki_atls::cert::AttestingKey;
use nunki_atls::client::AttestedClientConfig;
use nunki_atls::grpc::{Target, connect};
use nunki_atls::{ClientIdentity, Issuer, ServerVerification, SimIssuer};
use nunki_attestation::sim::SimPlatform;
use nunki_coordinator::run::{Options, start};
use nunki_manifest::{HostData, SnpProduct};
use nunki_testkit::{SimDeployment, sha256};

/// The allocator the shipped binaries use (`nunki-coordinator`, `nunki`), so the Coordinator is
/// measured as it runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

/// Bytes and write system calls of this process so far (`/proc/self/io`: wchar, syscw).
fn io_counters() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("wchar:"), field("syscw:"))
}

/// CPU time of this process so far (all threads, user + system), in seconds.
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    for _ in 0..20 {
        f();
    }
    let n = 300;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n
}

/// One floor operation: what it is, the operation, how often one issuance needs it.
type FloorRow = (&'static str, fn(&FloorOps), u32);

/// The cryptographic operations of one issuance, with aws-lc-rs: keys made once, every
/// operation done for real each time.
struct FloorOps {
    /// Bytes one issuance puts on the wire (both sides), and those of the TLS handshakes alone;
    /// measured with the real client and server before the floor is taken.
    wire_bytes: usize,
    /// As many bytes as the handshakes put on the wire, for the transcript hash.
    handshake: Vec<u8>,
    x25519_peer: Vec<u8>,
    aead: aws_lc_rs::aead::LessSafeKey,
    rng: SystemRandom,
    p384: EcdsaKeyPair,
    p256: EcdsaKeyPair,
    msg: [u8; 0x2A0],
    sig256: Vec<u8>,
    pk256: Vec<u8>,
    report: Vec<u8>,
    report_sig: Vec<u8>,
    vcek: Vec<u8>,
}

impl FloorOps {
    fn new(
        platform: &Arc<SimPlatform>,
        host: HostData,
        wire_bytes: usize,
        handshake_bytes: usize,
    ) -> Self {
        use aws_lc_rs::agreement::{EphemeralPrivateKey, X25519};
        let rng = SystemRandom::new();
        let x25519_peer = EphemeralPrivateKey::generate(&X25519, &rng)
            .unwrap()
            .compute_public_key()
            .unwrap()
            .as_ref()
            .to_vec();
        let aead = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_128_GCM, &[9u8; 16]).unwrap(),
        );
        let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).unwrap();
        let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let msg = [7u8; 0x2A0];
        let sig256 = p256.sign(&rng, &msg).unwrap().as_ref().to_vec();
        let pk256 = p256.public_key().as_ref().to_vec();
        // The report signature of real evidence, checked with the VCEK key (chain cached).
        let nunki_atls::evidence::EvidenceDoc::Snp(e) = SimIssuer::new(platform.clone(), host)
            .issue(&[1u8; 64].into())
            .unwrap()
        else {
            panic!("the simulated platform issues SNP evidence");
        };
        let vcek = nunki_attestation::snp::certs::CertInfo::from_der("VCEK", &e.endorsement_key)
            .unwrap()
            .public_key;
        let report = nunki_attestation::Report::parse(&e.report).unwrap();
        let report_sig = report.signature.to_fixed_p384().unwrap().to_vec();
        Self {
            wire_bytes,
            handshake: vec![0x16; handshake_bytes],
            x25519_peer,
            aead,
            rng,
            p384,
            p256,
            msg,
            sig256,
            pk256,
            report: e.report[..0x2A0].to_vec(),
            report_sig,
            vcek,
        }
    }

    fn p384_sign(&self) {
        std::hint::black_box(self.p384.sign(&self.rng, &self.msg).unwrap());
    }
    fn p256_sign(&self) {
        std::hint::black_box(self.p256.sign(&self.rng, &self.msg).unwrap());
    }
    fn p384_verify_report(&self) {
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &self.vcek)
            .verify(&self.report, &self.report_sig)
            .unwrap();
    }
    fn p256_verify(&self) {
        UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1, &self.pk256)
            .verify(&self.msg, &self.sig256)
            .unwrap();
    }
    /// One side of the TLS key exchange: its key pair and the agreement with the peer's share.
    fn x25519_side(&self) {
        use aws_lc_rs::agreement::{
            EphemeralPrivateKey, UnparsedPublicKey as Peer, X25519, agree_ephemeral,
        };
        let k = EphemeralPrivateKey::generate(&X25519, &self.rng).unwrap();
        std::hint::black_box(k.compute_public_key().unwrap());
        agree_ephemeral(k, Peer::new(&X25519, &self.x25519_peer), (), |_| Ok(())).unwrap();
    }
    /// One side's TLS 1.3 key schedule (RFC 8446 §7.1, no PSK): the secrets, the traffic keys
    /// and IVs of the handshake and application phases, and both Finished MACs. HKDF-SHA256,
    /// as the AES-128-GCM/SHA-256 suite the aTLS connections negotiate.
    fn tls13_key_schedule(&self) {
        use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
        use aws_lc_rs::hmac;
        struct Len(usize);
        impl KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let expand = |prk: &aws_lc_rs::hkdf::Prk, label: &str, ctx: &[u8], len: usize| {
            let full = format!("tls13 {label}");
            let mut info = Vec::with_capacity(4 + full.len() + ctx.len());
            info.extend_from_slice(&(len as u16).to_be_bytes());
            info.push(full.len() as u8);
            info.extend_from_slice(full.as_bytes());
            info.push(ctx.len() as u8);
            info.extend_from_slice(ctx);
            let mut out = vec![0u8; len];
            prk.expand(&[&info], Len(len))
                .unwrap()
                .fill(&mut out)
                .unwrap();
            out
        };
        let th = [5u8; 32];
        let empty = sha256(b"");
        let early = Salt::new(HKDF_SHA256, &[0u8; 32]).extract(&[0u8; 32]);
        let derived = expand(&early, "derived", &empty, 32);
        let hs = Salt::new(HKDF_SHA256, &derived).extract(&[3u8; 32]);
        let c_hs = expand(&hs, "c hs traffic", &th, 32);
        let s_hs = expand(&hs, "s hs traffic", &th, 32);
        let derived = expand(&hs, "derived", &empty, 32);
        let master = Salt::new(HKDF_SHA256, &derived).extract(&[0u8; 32]);
        let c_ap = expand(&master, "c ap traffic", &th, 32);
        let s_ap = expand(&master, "s ap traffic", &th, 32);
        std::hint::black_box(expand(&master, "exp master", &th, 32));
        for secret in [&c_hs, &s_hs, &c_ap, &s_ap] {
            let prk = aws_lc_rs::hkdf::Prk::new_less_safe(HKDF_SHA256, secret);
            std::hint::black_box(expand(&prk, "key", &[], 16));
            std::hint::black_box(expand(&prk, "iv", &[], 12));
        }
        for secret in [&c_hs, &s_hs] {
            let prk = aws_lc_rs::hkdf::Prk::new_less_safe(HKDF_SHA256, secret);
            let finished = expand(&prk, "finished", &[], 32);
            let key = hmac::Key::new(hmac::HMAC_SHA256, &finished);
            std::hint::black_box(hmac::sign(&key, &th));
        }
    }
    /// One side's transcript hash: SHA-256 over the handshake's bytes.
    fn transcript_hash(&self) {
        std::hint::black_box(sha256(&self.handshake));
    }
    /// Record protection of everything one issuance sends: AES-128-GCM sealed by the sender
    /// and opened by the receiver, in records of at most 16 KiB (in place, in a buffer made
    /// once per thread: no allocation is timed).
    fn record_protection(&self) {
        use aws_lc_rs::aead::{Aad, Nonce};
        thread_local! {
            static RECORD: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        RECORD.with_borrow_mut(|rec| {
            let mut left = self.wire_bytes;
            while left > 0 {
                let n = left.min(16 * 1024);
                left -= n;
                rec.clear();
                rec.resize(n, 0x17);
                self.aead
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key([1; 12]),
                        Aad::empty(),
                        rec,
                    )
                    .unwrap();
                self.aead
                    .open_in_place(Nonce::assume_unique_for_key([1; 12]), Aad::empty(), rec)
                    .unwrap();
            }
        });
    }
    fn p256_keygen(&self) {
        drop(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap());
    }

    /// Each operation of the floor, how often one issuance needs it.
    fn table(&self) -> Vec<FloorRow> {
        vec![
            (
                "P-384 sign (report signature, evidence creation; x2 sides)",
                Self::p384_sign,
                2,
            ),
            (
                "P-256 sign (attested cert self-signature; x2 sides)",
                Self::p256_sign,
                2,
            ),
            (
                "P-384 verify (peer report signature; chain cached)",
                Self::p384_verify_report,
                1,
            ),
            ("P-384 sign (mesh leaf certificate)", Self::p384_sign, 1),
            (
                "P-256 sign (TLS 1.3 CertificateVerify; x2 sides)",
                Self::p256_sign,
                2,
            ),
            (
                "P-256 verify (TLS 1.3 CertificateVerify; x2 sides)",
                Self::p256_verify,
                2,
            ),
            (
                "X25519 key pair + agreement (TLS key exchange; x2 sides)",
                Self::x25519_side,
                2,
            ),
            (
                "TLS 1.3 key schedule: HKDF-SHA256 secrets, keys, Finished MACs (x2 sides)",
                Self::tls13_key_schedule,
                2,
            ),
            (
                "SHA-256 transcript hash over the handshake bytes (x2 sides)",
                Self::transcript_hash,
                2,
            ),
            (
                "AES-128-GCM seal + open of every byte sent (both sides)",
                Self::record_protection,
                1,
            ),
            (
                "P-256 key generation (Initializer key)",
                Self::p256_keygen,
                1,
            ),
        ]
    }

    /// One issuance's worth of every operation.
    fn issuance(&self) {
        for (_, op, k) in self.table() {
            for _ in 0..k {
                op(self);
            }
        }
    }
}

/// Per-operation cost on one core (the table printed once), and their sum.
fn floor_one_core(ops: &FloorOps) -> (Duration, Vec<(&'static str, Duration, u32)>) {
    let rows: Vec<_> = ops
        .table()
        .into_iter()
        .map(|(name, op, k)| (name, time(|| op(ops)), k))
        .collect();
    let total = rows.iter().map(|(_, d, n)| *d * *n).sum();
    (total, rows)
}

/// What the floor allows on all cores at once: every core runs whole issuances' worth of
/// cryptography; issuances per second. This is the fair baseline when cores share anything
/// (caches, a physical core, the host's clock), which a one-core measurement would hide.
fn floor_all_cores(ops: &Arc<FloorOps>, cores: usize) -> f64 {
    let per_thread = 100;
    ops.issuance();
    let start = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let ops = ops.clone();
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    ops.issuance();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (cores * per_thread) as f64 / start.elapsed().as_secs_f64()
}

async fn run_load(
    n: usize,
    mesh: SocketAddr,
    platform: Arc<SimPlatform>,
    host: HostData,
) -> (usize, Vec<Duration>, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let platform = platform.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let key = Arc::new(AttestingKey::generate().unwrap());
            let issuer: Arc<dyn Issuer> = Arc::new(SimIssuer::new(platform, host));
            let ch = connect(&Target::new(
                mesh.to_string(),
                ServerVerification::None,
                ClientIdentity::Attested { key, issuer },
            ))
            .await
            .map_err(|e| e.to_string())?;
            MeshApiClient::new(ch.channel())
                .new_mesh_cert(NewMeshCertRequest {})
                .await
                .map_err(|e| e.to_string())?;
            Ok::<Duration, String>(t.elapsed())
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut failures = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(d)) => lat.push(d),
            Ok(Err(e)) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("failure: {e}");
                }
            }
            Err(e) => {
                failures += 1;
                eprintln!("task: {e}");
            }
        }
    }
    (failures, lat, start.elapsed())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // Arguments: the N to run (default 100, 1000, 10000) and `--trials=K`: loads per N, each
    // between its own floor samples (default 5 for N <= 1000, 3 above), summarised by median.
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let trials: Option<usize> = std::env::args()
        .find_map(|a| a.strip_prefix("--trials=").map(str::to_owned))
        .map(|k| {
            k.parse()
                .ok()
                .filter(|k| *k > 0)
                .expect("--trials=K needs a whole number K >= 1")
        });
    let ns = if ns.is_empty() {
        vec![100, 1000, 10_000]
    } else {
        ns
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let platform = Arc::new(SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap());
        let pod_policy = b"pod policy".to_vec();
        let pod_host = HostData(sha256(&pod_policy));
        let deployment = SimDeployment::new(platform.reference_values(), b"coordinator policy")
            .workload(&pod_policy, &["pod", "*"], "");
        let c = start(Options::loopback(Arc::new(SimIssuer::new(platform.clone(), deployment.coordinator_host()))))
            .await
            .unwrap();
        deployment.set(c.user_api).await;

        // Warm-up: the verifier caches the simulated chain after the first pod.
        let _ = run_load(4, c.mesh_api, platform.clone(), pod_host).await;
        // What one issuance puts on the wire, and the handshakes alone (a connection whose
        // first call never comes writes only its handshake), for the floor's symmetric rows.
        let (b0, w0) = io_counters();
        let k = 16;
        let (failures, _, _) = run_load(k, c.mesh_api, platform.clone(), pod_host).await;
        assert_eq!(failures, 0);
        tokio::time::sleep(Duration::from_millis(200)).await; // the last closing alerts
        let (b1, w1) = io_counters();
        let wire_bytes = ((b1 - b0) / k as u64) as usize;
        let writes = (w1 - w0) as f64 / k as f64;
        // Each connection's handshake alone: a bare aTLS handshake (no HTTP/2 after it), counted
        // the moment it completes (the client has then written its last flight), then dropped.
        let mut handshakes = 0;
        for _ in 0..k {
            let issuer: Arc<dyn Issuer> = Arc::new(SimIssuer::new(platform.clone(), pod_host));
            let cfg = AttestedClientConfig::new(
                None,
                ClientIdentity::Attested { key: Arc::new(AttestingKey::generate().unwrap()), issuer },
            )
            .unwrap();
            let (before, _) = io_counters();
            let tls = cfg.connect(&c.mesh_api.to_string()).await.unwrap();
            handshakes += io_counters().0 - before;
            drop(tls);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let handshake_bytes = (handshakes / k as u64) as usize;
        tokio::time::sleep(Duration::from_millis(200)).await;

        let ops = Arc::new(FloorOps::new(&platform, pod_host, wire_bytes, handshake_bytes));
        let (floor_total, rows) = floor_one_core(&ops);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        println!("machine: {cores} cores; crypto backend aws-lc-rs");
        println!("one issuance on the wire: {wire_bytes} bytes, {writes:.1} write system calls (both sides, counting the runtime's eventfd wake-ups), of which the TLS handshakes {handshake_bytes} bytes");
        println!("floor per issuance (sum of the cryptographic operations, one core):");
        for (name, d, k) in &rows {
            println!("  {:>8.1} µs x{k}  {name}", d.as_secs_f64() * 1e6);
        }
        println!(
            "  = {:.1} µs per issuance -> {:.0} certificates/s if {cores} cores scaled perfectly",
            floor_total.as_secs_f64() * 1e6,
            cores as f64 / floor_total.as_secs_f64()
        );
        // The issue's floor counts an evidence creation and a CertificateVerify check on both
        // sides; the Coordinator makes no evidence for an Initializer that does not verify it
        // (no nonce in its ALPN), and that Initializer does not check the signature of a server
        // key it does not trust, so the work actually done lacks one P-384 and one P-256
        // signature and one P-256 verification. Both ratios are printed.
        let cost = |name: &str| {
            rows.iter()
                .find(|(n, _, _)| n.starts_with(name))
                .map(|(_, d, _)| *d)
                .unwrap()
        };
        let skipped = cost("P-384 sign (report signature")
            + cost("P-256 sign (attested cert")
            + cost("P-256 verify (TLS 1.3 CertificateVerify");
        let done_share = (floor_total - skipped).as_secs_f64() / floor_total.as_secs_f64();
        println!(
            "  of which done here: {:.1} µs ({:.0} %): the Coordinator makes no evidence for an Initializer that does not ask for it, and that Initializer does not check the server's CertificateVerify",
            (floor_total - skipped).as_secs_f64() * 1e6,
            100.0 * done_share
        );
        println!("floor on all {cores} cores at once: 5 samples right before and 5 right after each trial (the machine idle otherwise); their median is that trial's baseline");
        // Five samples of the all-cores floor once the process is quiet (connections closed).
        async fn samples(ops: &Arc<FloorOps>, cores: usize) -> Vec<f64> {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tokio::task::block_in_place(|| (0..5).map(|_| floor_all_cores(ops, cores)).collect())
        }
        for n in ns {
            let trials = trials.unwrap_or(if n <= 1000 { 5 } else { 3 });
            let mut ratios = Vec::with_capacity(trials);
            let mut done_ratios = Vec::with_capacity(trials);
            let mut walls = Vec::with_capacity(trials);
            let mut failed = 0;
            for t in 1..=trials {
                let mut floors = samples(&ops, cores).await;
                let cpu0 = cpu_seconds();
                let (failures, mut lat, wall) =
                    run_load(n, c.mesh_api, platform.clone(), pod_host).await;
                let cpu = cpu_seconds() - cpu0;
                let busy = cpu / (wall.as_secs_f64() * cores as f64);
                floors.extend(samples(&ops, cores).await);
                floors.sort_by(f64::total_cmp);
                let floor_rate = (floors[4] + floors[5]) / 2.0;
                let (before, after) = (floors[0], floors[9]);
                lat.sort();
                let rate = lat.len() as f64 / wall.as_secs_f64();
                ratios.push(100.0 * rate / floor_rate);
                done_ratios.push(100.0 * rate * done_share / floor_rate);
                walls.push(wall.as_secs_f64());
                failed += failures;
                println!(
                    "N={n} [trial {t}/{trials}]: {} ok, {failures} failed, wall {:.2} s, {:.0} certificates/s = {:.0}% of floor {:.0}/s (samples {:.0}-{:.0}; {:.0}% of the floor of the work done), p50 {:.1} ms, p99 {:.1} ms, peak RSS so far {} MiB, CPU busy {:.0}%, {:.0} µs of process CPU (Coordinator and Initializers) per certificate",
                    lat.len(),
                    wall.as_secs_f64(),
                    rate,
                    100.0 * rate / floor_rate,
                    floor_rate,
                    before,
                    after,
                    100.0 * rate * done_share / floor_rate,
                    pct(&lat, 0.5).as_secs_f64() * 1e3,
                    pct(&lat, 0.99).as_secs_f64() * 1e3,
                    peak_rss_kib() / 1024,
                    100.0 * busy,
                    1e6 * cpu / lat.len().max(1) as f64
                );
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                let m = v.len() / 2;
                if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
            };
            let (lo, hi) = (
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
            let (wlo, whi) = (
                walls.iter().copied().fold(f64::INFINITY, f64::min),
                walls.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
            println!(
                "N={n} over {trials} trials: {:.0}% of floor (median; {:.0}-{:.0}%; {:.0}% of the floor of the work done), wall {:.2} s (median; {:.2}-{:.2} s), {failed} failed",
                median(&mut ratios),
                lo,
                hi,
                median(&mut done_ratios),
                median(&mut walls),
                wlo,
                whi
            );
        }
        c.shutdown().await;
    });
}
