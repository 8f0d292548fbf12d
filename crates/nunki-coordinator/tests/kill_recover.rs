//! The `nunki-coordinator` binary is SIGKILLed at random moments while 200 `SetManifest` calls
//! run one after another. After every restart it is in recovery mode, `Recover` with the seed
//! share brings it back, and the history it serves verifies: every transition recomputes, the
//! latest is signed by the history key, every manifest that was acknowledged is in it, and
//! nothing else but attempted manifests, in order.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_api::userapi::{GetManifestsRequest, GetManifestsResponse, RecoverRequest};
use nunki_atls::cert::AttestingKey;
use nunki_attestation::sim::SimPlatform;
use nunki_manifest::{ManifestHash, Sha256Fingerprint, SimulatedReferenceValues, transition_chain};

mod common;
use common::*;

/// Number of SetManifest calls.
const CALLS: usize = 200;

/// xorshift64*: reproducible randomness without a dependency; the seed is printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc {
    child: Child,
    user: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Proc {
    /// A failing test must not leave a Coordinator running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(state: &Path, sim: &Path, d: &Deployment) -> Proc {
    let (u, m, x) = (free_port(), free_port(), free_port());
    // Each start logs to its own file so that a failed start can be explained.
    let log = state.with_extension(format!("log-{u}"));
    let stderr = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_nunki-coordinator"))
        .args(["--platform", "simulated", "--state-dir"])
        .arg(state)
        .arg("--sim-dir")
        .arg(sim)
        .args([
            "--sim-host-data",
            &hex::encode(d.coordinator_host_data().0),
            "--user-api",
            &format!("127.0.0.1:{u}"),
            "--mesh-api",
            &format!("127.0.0.1:{m}"),
            "--metrics",
            &format!("127.0.0.1:{x}"),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Proc {
        child,
        user: format!("127.0.0.1:{u}").parse().unwrap(),
        log,
    }
}

/// Starts the binary and waits until its user API answers. Ports come from `free_port`, which
/// can race with another socket taking the port before the binary binds it; a start that fails
/// with "address in use" is retried on fresh ports, any other early exit fails the test with the
/// binary's log.
async fn start(state: &Path, sim: &Path, d: &Deployment, rv: &SimulatedReferenceValues) -> Proc {
    for _ in 0..5 {
        let mut p = spawn(state, sim, d);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                if log.to_ascii_lowercase().contains("in use") {
                    break;
                }
                panic!(
                    "the Coordinator exited ({status}) before serving at {}:\n{log}",
                    p.user
                );
            }
            if user_channel_for(p.user, d.coordinator_host_data(), None, rv.clone())
                .await
                .is_ok()
            {
                return p;
            }
            if Instant::now() > deadline {
                panic!(
                    "the Coordinator did not come up at {} within 30 s:\n{}",
                    p.user,
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("five starts of the Coordinator found their ports taken");
}

/// Checks the served history; returns its manifest hashes.
fn check_history(h: &GetManifestsResponse) -> Vec<ManifestHash> {
    let refs: Vec<&[u8]> = h.manifests.iter().map(Vec::as_slice).collect();
    let chain = transition_chain(&refs);
    assert_eq!(chain.len(), h.transition_hashes.len());
    for (e, stored) in chain.iter().zip(&h.transition_hashes) {
        assert_eq!(e.transition_hash.0.as_slice(), stored.as_slice());
    }
    assert_eq!(
        chain.last().unwrap().transition_hash.0.as_slice(),
        h.latest_transition.as_slice()
    );
    nunki_ca::verify_history_signature(
        &h.history_public_key,
        nunki_ca::Signed::LatestTransition,
        &h.latest_transition.clone().try_into().unwrap(),
        &h.latest_transition_signature,
    )
    .unwrap();
    for m in &h.manifests {
        nunki_manifest::ParsedManifest::parse(m).unwrap();
    }
    chain.iter().map(|e| e.manifest_hash).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_200_set_manifest_calls() {
    let seed = std::env::var("NUNKI_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("NUNKI_KILL_SEED={seed}");
    let mut rng = Rng(seed);

    let tmp = tempfile::tempdir().unwrap();
    let sim_dir = tmp.path().join("sim");
    let rv = SimPlatform::open_or_create(&sim_dir)
        .unwrap()
        .reference_values();
    let state = tmp.path().join("state");
    let owner = Arc::new(AttestingKey::generate().unwrap());
    let digest = Sha256Fingerprint(sha256(&owner.spki_der()));
    let (ss_private, ss_public) = nunki_ca::generate_seedshare_owner_key().unwrap();
    let ss_tls = Arc::new(AttestingKey::from_pkcs8(&ss_private).unwrap());
    let deployment = |i: usize| {
        Deployment::build_for(
            rv.clone(),
            vec![digest],
            vec![hex::encode(&ss_public)],
            &format!("v{i}"),
        )
    };
    let d0 = deployment(0);
    let host = d0.coordinator_host_data();

    let mut p = start(&state, &sim_dir, &d0, &rv).await;
    let ch = user_channel_for(p.user, host, None, rv.clone())
        .await
        .unwrap();
    let first = UserApiClient::new(ch.channel())
        .set_manifest(d0.request(None))
        .await
        .unwrap()
        .into_inner();
    let shares = nunki_ca::SeedShareDocument::parse(&first.seed_share_document).unwrap();
    let (s, t) = shares.decrypt(&ss_private).unwrap();

    let mut attempted = vec![ManifestHash::of_manifest_bytes(&d0.manifest)];
    let mut acknowledged = attempted.clone();
    let mut kills = 0;
    for i in 1..=CALLS {
        let d = deployment(i);
        attempted.push(ManifestHash::of_manifest_bytes(&d.manifest));
        // A quarter of the calls race a SIGKILL sent after 0-40 ms.
        let killer = (rng.below(4) == 0).then(|| {
            let pid = p.child.id();
            let delay = Duration::from_millis(rng.below(40));
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                // kill(2) through libc needs `unsafe`; the `kill` command does not.
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            })
        });
        let result = async {
            let ch = user_channel_for(p.user, host, Some(owner.clone()), rv.clone())
                .await
                .map_err(|e| e.to_string())?;
            UserApiClient::new(ch.channel())
                .set_manifest(d.request(None))
                .await
                .map_err(|s| s.to_string())
        }
        .await;
        if result.is_ok() {
            acknowledged.push(*attempted.last().unwrap());
        }
        let Some(killer) = killer else {
            assert!(result.is_ok(), "call {i} failed without a kill: {result:?}");
            continue;
        };
        killer.join().unwrap();
        let status = p.child.wait().unwrap();
        assert!(!status.success());
        kills += 1;

        // Restart: recovery mode until the seed is given back.
        p = start(&state, &sim_dir, &d0, &rv).await;
        let ch = user_channel_for(p.user, host, Some(ss_tls.clone()), rv.clone())
            .await
            .unwrap();
        let st = UserApiClient::new(ch.channel())
            .get_manifests(GetManifestsRequest {})
            .await
            .unwrap_err();
        assert!(st.message().contains("recovery mode"), "{}", st.message());
        UserApiClient::new(ch.channel())
            .recover(RecoverRequest {
                seed: s.as_bytes().to_vec(),
                salt: t.as_bytes().to_vec(),
                force: false,
            })
            .await
            .unwrap_or_else(|e| panic!("recovery after kill {kills} (call {i}): {e}"));
        let h = UserApiClient::new(ch.channel())
            .get_manifests(GetManifestsRequest {})
            .await
            .unwrap()
            .into_inner();
        let served = check_history(&h);
        // Only attempted manifests, in order; every acknowledged one is there.
        let mut it = attempted.iter();
        for m in &served {
            assert!(it.any(|a| a == m), "unexpected manifest {m} in the history");
        }
        for a in &acknowledged {
            assert!(served.contains(a), "acknowledged manifest {a} was lost");
        }
        assert!(!h.root_ca.is_empty());
    }
    assert!(kills >= 20, "only {kills} kills with seed {seed}");
    let ch = user_channel_for(p.user, host, None, rv.clone())
        .await
        .unwrap();
    let h = UserApiClient::new(ch.channel())
        .get_manifests(GetManifestsRequest {})
        .await
        .unwrap()
        .into_inner();
    let served = check_history(&h);
    assert!(served.len() >= acknowledged.len());
    eprintln!(
        "{CALLS} calls, {kills} kills, {} acknowledged, {} in the history",
        acknowledged.len(),
        served.len()
    );
}
