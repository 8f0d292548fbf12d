//! `nunki set` and `nunki verify` against an in-process user API server that attests itself
//! with the simulated platform over aTLS and answers with canned data.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use nunki_api::userapi::user_api_server::{UserApi, UserApiServer};
use nunki_api::userapi::{
    GetAuditLogRequest, GetAuditLogResponse, GetManifestsRequest, GetManifestsResponse,
    RecoverRequest, RecoverResponse, SetManifestRequest, SetManifestResponse,
};
use nunki_atls::cert::AttestingKey;
use nunki_atls::issuer::Issuer;
use nunki_atls::verify::system_clock;
use nunki_atls::{AttestingCertResolver, SimIssuer, user_server_config};
use nunki_attestation::sim::SimPlatform;
use nunki_manifest::{HostData, ManifestHash, PolicyHash, SnpProduct, transition_chain};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

const COORDINATOR_POLICY: &[u8] = b"package agent_policy\n# the coordinator\n";
const WEB_POLICY: &[u8] = b"package agent_policy\n# web\n";
const ANNOTATION: &str = "io.katacontainers.config.agent.policy";

fn sim() -> Arc<SimPlatform> {
    static P: OnceLock<Arc<SimPlatform>> = OnceLock::new();
    P.get_or_init(|| Arc::new(SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap()))
        .clone()
}

fn other_sim() -> Arc<SimPlatform> {
    static P: OnceLock<Arc<SimPlatform>> = OnceLock::new();
    P.get_or_init(|| Arc::new(SimPlatform::generate(SnpProduct::Genoa, SystemTime::now()).unwrap()))
        .clone()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .try_into()
        .unwrap()
}

fn hash(policy: &[u8]) -> PolicyHash {
    PolicyHash(sha256(policy))
}

/// A manifest trusting `sim()`, with the coordinator and web policies. `note` varies the bytes.
fn manifest(note: &str) -> Vec<u8> {
    manifest_with(note, sim().reference_values())
}

fn manifest_with(note: &str, rv: nunki_manifest::SimulatedReferenceValues) -> Vec<u8> {
    let v = serde_json::json!({
        "Policies": {
            hash(COORDINATOR_POLICY).to_hex(): { "SANs": ["coordinator"], "Role": "coordinator" },
            hash(WEB_POLICY).to_hex(): { "SANs": ["web"], "WorkloadSecretID": note },
        },
        "ReferenceValues": { "simulated": [rv] },
    });
    let mut out = serde_json::to_vec_pretty(&v).unwrap();
    out.push(b'\n');
    out
}

fn pem_cert() -> Vec<u8> {
    let key = AttestingKey::generate().unwrap();
    let ck = key.certify(None, None, SystemTime::now()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(ck.cert.first().unwrap());
    format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n").into_bytes()
}

/// What the fake Coordinator holds and saw.
#[derive(Debug, Default)]
struct State {
    manifests: Vec<Vec<u8>>,
    policies: Vec<Vec<u8>>,
    root_ca: Vec<u8>,
    mesh_ca: Vec<u8>,
    /// Reported instead of the real latest transition.
    wrong_transition: Option<Vec<u8>>,
    /// Returned by SetManifest instead of success.
    refuse: Option<Status>,
    /// Client certificates seen by SetManifest (None: none presented).
    set_clients: Vec<Option<Vec<u8>>>,
    /// Served instead of the manifest at this index (the transition hashes stay the real ones).
    swapped: Option<(usize, Vec<u8>)>,
    /// Signs the latest transition after flipping a bit of the hash.
    bad_signature: bool,
}

/// The fake's history key (a fixed seed).
fn history_key() -> nunki_ca::HistoryKey {
    let seed = nunki_ca::Seed::from_bytes(&[5; 64]).unwrap();
    let salt = nunki_ca::Salt::from_bytes(&[6; 32]).unwrap();
    let der = nunki_ca::SeedEngine::new(&seed, &salt)
        .history_signing_key()
        .unwrap();
    nunki_ca::HistoryKey::from_pkcs8(&der).unwrap()
}

#[derive(Debug, Clone)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn new() -> Self {
        Fake(Arc::new(Mutex::new(State {
            root_ca: pem_cert(),
            mesh_ca: pem_cert(),
            ..State::default()
        })))
    }

    fn with_history(manifests: Vec<Vec<u8>>) -> Self {
        let f = Fake::new();
        {
            let mut s = f.0.lock().unwrap();
            s.manifests = manifests;
            s.policies = vec![WEB_POLICY.to_vec(), COORDINATOR_POLICY.to_vec()];
        }
        f
    }
}

#[tonic::async_trait]
impl UserApi for Fake {
    async fn set_manifest(
        &self,
        req: Request<SetManifestRequest>,
    ) -> Result<Response<SetManifestResponse>, Status> {
        let client = req.extensions().get::<ClientCert>().cloned();
        let mut s = self.0.lock().unwrap();
        s.set_clients.push(client.and_then(|c| c.0));
        if let Some(st) = s.refuse.clone() {
            return Err(st);
        }
        let r = req.into_inner();
        s.manifests.push(r.manifest);
        for p in r.policies {
            if !s.policies.contains(&p) {
                s.policies.push(p);
            }
        }
        Ok(Response::new(SetManifestResponse {
            root_ca: s.root_ca.clone(),
            mesh_ca: s.mesh_ca.clone(),
            seed_share_document: Vec::new(),
        }))
    }

    async fn get_manifests(
        &self,
        _req: Request<GetManifestsRequest>,
    ) -> Result<Response<GetManifestsResponse>, Status> {
        let s = self.0.lock().unwrap();
        let refs: Vec<&[u8]> = s.manifests.iter().map(Vec::as_slice).collect();
        let chain = transition_chain(&refs);
        let latest = s.wrong_transition.clone().unwrap_or_else(|| {
            chain
                .last()
                .map(|e| e.transition_hash.0.to_vec())
                .unwrap_or_default()
        });
        let key = history_key();
        let mut signed: [u8; 32] = latest.clone().try_into().unwrap_or([0; 32]);
        if s.bad_signature {
            signed[0] ^= 1;
        }
        let mut manifests = s.manifests.clone();
        if let Some((i, m)) = &s.swapped {
            manifests[*i] = m.clone();
        }
        Ok(Response::new(GetManifestsResponse {
            manifests,
            policies: s.policies.clone(),
            root_ca: s.root_ca.clone(),
            mesh_ca: s.mesh_ca.clone(),
            latest_transition: latest,
            latest_transition_signature: key
                .sign(nunki_ca::Signed::LatestTransition, &signed)
                .unwrap(),
            history_public_key: key.public_key_der().to_vec(),
            transition_hashes: chain.iter().map(|e| e.transition_hash.0.to_vec()).collect(),
        }))
    }

    async fn recover(
        &self,
        _req: Request<RecoverRequest>,
    ) -> Result<Response<RecoverResponse>, Status> {
        Err(Status::unimplemented("the fake does not recover"))
    }

    async fn get_seed_shares(
        &self,
        _req: Request<nunki_api::userapi::GetSeedSharesRequest>,
    ) -> Result<Response<nunki_api::userapi::GetSeedSharesResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn get_audit_log(
        &self,
        _req: Request<GetAuditLogRequest>,
    ) -> Result<Response<GetAuditLogResponse>, Status> {
        Ok(Response::new(GetAuditLogResponse::default()))
    }
}

/// The client certificate (DER) of a connection, if any.
#[derive(Debug, Clone)]
struct ClientCert(Option<Vec<u8>>);

/// A server-side TLS stream tonic can serve.
struct Tls(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for Tls {
    type ConnectInfo = ClientCert;
    fn connect_info(&self) -> ClientCert {
        ClientCert(
            self.0
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec()),
        )
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Serves `fake` over aTLS on `listener`, attesting with `issuer`.
fn serve(listener: TcpListener, fake: Fake, issuer: Arc<dyn Issuer>) {
    let resolver = Arc::new(AttestingCertResolver::new(issuer, system_clock()).unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(user_server_config(resolver).unwrap()));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Tls, std::io::Error>>(16);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                // A client that refuses our attestation aborts the handshake: just drop it.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok(Tls(tls))).await;
                }
            });
        }
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(UserApiServer::new(fake))
            .serve_with_incoming(ReceiverStream::new(rx)),
    );
}

fn coordinator_issuer() -> Arc<dyn Issuer> {
    Arc::new(SimIssuer::new(sim(), HostData(sha256(COORDINATOR_POLICY))))
}

async fn start(fake: Fake, issuer: Arc<dyn Issuer>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    serve(listener, fake, issuer);
    addr
}

/// Runs the binary; its output is printed (and shown by the test harness on failure).
async fn nunki(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let o = Command::new(env!("CARGO_BIN_EXE_nunki"))
            .args(&args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        eprintln!(
            "$ nunki {}\n[exit {:?}]\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    })
    .await
    .unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A workspace with manifest.json, app.yaml (both policies as annotations) and a P-384 key.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(manifest: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), manifest).unwrap();
        let b64 = |p: &[u8]| base64::engine::general_purpose::STANDARD.encode(p);
        let yaml = format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: coordinator\nspec:\n  template:\n    metadata:\n      annotations:\n        {ANNOTATION}: {}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n      annotations:\n        {ANNOTATION}: {}\n",
            b64(COORDINATOR_POLICY),
            b64(WEB_POLICY)
        );
        std::fs::create_dir(dir.path().join("resources")).unwrap();
        std::fs::write(dir.path().join("resources/app.yaml"), yaml).unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        std::fs::write(dir.path().join("key.der"), pkcs8.as_ref()).unwrap();
        let b = b64(pkcs8.as_ref());
        let lines: Vec<&str> = b
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        std::fs::write(
            dir.path().join("workload-owner.pem"),
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                lines.join("\n")
            ),
        )
        .unwrap();
        Workspace { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn owner_spki(&self) -> Vec<u8> {
        AttestingKey::from_pkcs8(&std::fs::read(self.path("key.der")).unwrap())
            .unwrap()
            .spki_der()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_then_verify_writes_everything() {
    let m = manifest("v1");
    let ws = Workspace::new(&m);
    let fake = Fake::new();
    let addr = start(fake.clone(), coordinator_issuer()).await;

    let o = nunki(args(&[
        "set",
        "-c",
        &addr,
        "-m",
        &s(&ws.path("manifest.json")),
        "--workload-owner-key",
        &s(&ws.path("workload-owner.pem")),
        "--workspace",
        &s(&ws.path("out")),
        &s(&ws.path("resources")),
    ]))
    .await;
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&ManifestHash(sha256(&m)).to_hex()),
        "{}",
        stdout(&o)
    );
    {
        let st = fake.0.lock().unwrap();
        assert_eq!(st.manifests, vec![m.clone()], "sent exactly as on disk");
        let mut got = st.policies.clone();
        got.sort();
        let mut want = vec![COORDINATOR_POLICY.to_vec(), WEB_POLICY.to_vec()];
        want.sort();
        assert_eq!(got, want);
        let cert = st.set_clients[0].clone().expect("a client certificate");
        let peer =
            nunki_atls::cert::parse_peer(&rustls::pki_types::CertificateDer::from(cert)).unwrap();
        assert_eq!(peer.spki, ws.owner_spki());
        assert_eq!(
            std::fs::read(ws.path("out/coordinator-root.pem")).unwrap(),
            st.root_ca
        );
        assert_eq!(
            std::fs::read(ws.path("out/mesh-root.pem")).unwrap(),
            st.mesh_ca
        );
    }
    // The key is not in the manifest's WorkloadOwnerKeyDigests: warned.
    assert!(
        stderr(&o).contains("WorkloadOwnerKeyDigests"),
        "{}",
        stderr(&o)
    );

    // Without -m, a Coordinator whose own manifest trusts the simulated platform is refused
    // unless the user says this is a simulation.
    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "-o",
        &s(&ws.path("refused")),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("--allow-simulated"), "{}", stderr(&o));
    // Without -m: attested against its own latest manifest, with a warning.
    let out = ws.path("verify");
    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "-o",
        &s(&out),
        "--allow-simulated",
    ]))
    .await;
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("verified against its own latest"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(out.join("manifests/manifest.0.json")).unwrap(),
        m
    );
    assert_eq!(
        std::fs::read(out.join("policies").join(hash(WEB_POLICY).to_hex())).unwrap(),
        WEB_POLICY
    );
    assert_eq!(
        std::fs::read(out.join("policies").join(hash(COORDINATOR_POLICY).to_hex())).unwrap(),
        COORDINATOR_POLICY
    );
    let hist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("history.json")).unwrap()).unwrap();
    assert_eq!(hist[0]["index"], 0);
    assert_eq!(hist[0]["manifest_hash"], ManifestHash(sha256(&m)).to_hex());
    assert!(out.join("coordinator-root.pem").exists());
    assert!(out.join("mesh-root.pem").exists());

    // With -m and the same manifest: no warning.
    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "-m",
        &s(&ws.path("manifest.json")),
        "-o",
        &s(&ws.path("verify2")),
    ]))
    .await;
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    assert!(ws.path("verify2/history.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_attested_by_another_root_is_refused() {
    let m = manifest("v1");
    let ws = Workspace::new(&m);
    let foreign: Arc<dyn Issuer> = Arc::new(SimIssuer::new(
        other_sim(),
        HostData(sha256(COORDINATOR_POLICY)),
    ));
    let fake = Fake::with_history(vec![m.clone()]);
    let addr = start(fake.clone(), foreign).await;
    let start = Instant::now();
    let o = nunki(args(&[
        "set",
        "-c",
        &addr,
        "-m",
        &s(&ws.path("manifest.json")),
        "--workspace",
        &s(&ws.path("out")),
        &s(&ws.path("resources")),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("failed attestation"), "{err}");
    assert!(err.contains("not trusted"), "{err}");
    assert!(
        !err.contains("waiting for the Coordinator"),
        "not retried: {err}"
    );
    assert!(!err.contains("transport error"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!ws.path("out/coordinator-root.pem").exists());
    assert!(
        fake.0.lock().unwrap().set_clients.is_empty(),
        "nothing sent"
    );

    // verify without -m: the captured certificate does not match its own manifest's root.
    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "-o",
        &s(&ws.path("v")),
        "--allow-simulated",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("failed attestation against its own latest manifest"),
        "{err}"
    );
    assert!(err.contains("not trusted"), "{err}");
    assert!(!ws.path("v/manifests/manifest.0.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_check_is_named() {
    let mut rv = sim().reference_values();
    rv.minimum_tcb.snp += 1;
    let ws = Workspace::new(&manifest_with("v1", rv));
    let fake = Fake::new();
    let addr = start(fake.clone(), coordinator_issuer()).await;
    let o = nunki(args(&[
        "set",
        "-c",
        &addr,
        "-m",
        &s(&ws.path("manifest.json")),
        "--workspace",
        &s(&ws.path("out")),
        &s(&ws.path("resources")),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("failed attestation"), "{err}");
    assert!(err.contains("MinimumTCB.SNPVersion"), "{err}");
    assert!(
        fake.0.lock().unwrap().set_clients.is_empty(),
        "nothing sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_latest_transition_is_refused() {
    let m0 = manifest("v1");
    let m1 = manifest("v2");
    let ws = Workspace::new(&m1);
    let fake = Fake::with_history(vec![m0.clone(), m1.clone()]);
    // The Coordinator claims the history ended after the first manifest.
    let first = transition_chain(&[&m0])[0].transition_hash;
    fake.0.lock().unwrap().wrong_transition = Some(first.0.to_vec());
    let addr = start(fake, coordinator_issuer()).await;
    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "-o",
        &s(&ws.path("v")),
        "--allow-simulated",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("does not match the Coordinator's latest transition"),
        "{err}"
    );
    assert!(err.contains(&first.to_hex()), "{err}");
    let real = transition_chain(&[&m0, &m1])[1].transition_hash;
    assert!(err.contains(&real.to_hex()), "{err}");
    assert!(!ws.path("v/history.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_manifest_and_bad_signature_are_refused() {
    let m0 = manifest("v1");
    let m1 = manifest("v2");
    let m2 = manifest("v3");
    let ws = Workspace::new(&m2);
    // Manifest #1 swapped for another one: the error names index 1.
    let fake = Fake::with_history(vec![m0.clone(), m1.clone(), m2.clone()]);
    fake.0.lock().unwrap().swapped = Some((1, manifest("evil")));
    let addr = start(fake, coordinator_issuer()).await;
    let out = s(&ws.path("v"));
    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "-o",
        &out,
        "--allow-simulated",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("manifest #1 "), "{err}");
    assert!(err.contains("swapped or altered"), "{err}");
    assert!(!ws.path("v/history.json").exists());

    // The chain is right but the latest transition's signature is not.
    let fake = Fake::with_history(vec![m0.clone(), m1.clone(), m2.clone()]);
    fake.0.lock().unwrap().bad_signature = true;
    let addr = start(fake, coordinator_issuer()).await;
    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "-o",
        &out,
        "--allow-simulated",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("does not verify with the history key"),
        "{err}"
    );
    assert!(!ws.path("v/history.json").exists());

    // Untouched: verified, signature and key written.
    let fake = Fake::with_history(vec![m0, m1, m2]);
    let addr = start(fake, coordinator_issuer()).await;
    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "-o",
        &out,
        "--allow-simulated",
    ]))
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(ws.path("v/history-key.pem").exists());
    let sig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("v/latest-transition.json")).unwrap())
            .unwrap();
    assert!(!sig["signature"].as_str().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_local_manifest_is_refused() {
    let theirs = manifest("theirs");
    let mine = manifest("mine");
    let ws = Workspace::new(&mine);
    let addr = start(
        Fake::with_history(vec![theirs.clone()]),
        coordinator_issuer(),
    )
    .await;
    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "-m",
        &s(&ws.path("manifest.json")),
        "-o",
        &s(&ws.path("v")),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("latest manifest is not"), "{err}");
    assert!(err.contains(&ManifestHash(sha256(&mine)).to_hex()), "{err}");
    assert!(
        err.contains(&ManifestHash(sha256(&theirs)).to_hex()),
        "{err}"
    );
    assert!(!ws.path("v/history.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_errors_are_printed_with_code_and_every_line() {
    let m = manifest("v1");
    let ws = Workspace::new(&m);
    let fake = Fake::new();
    fake.0.lock().unwrap().refuse = Some(Status::invalid_argument(
        "manifest has 2 problems:\n$.Policies[\"aa\"].SANs: must list at least one SAN\n$.ReferenceValues: no reference values",
    ));
    let addr = start(fake.clone(), coordinator_issuer()).await;
    let o = nunki(args(&[
        "set",
        "-c",
        &addr,
        "-m",
        &s(&ws.path("manifest.json")),
        "--policies",
        &s(&ws.path("resources")),
        &s(&ws.path("resources/app.yaml")),
        "--workspace",
        &s(&ws.path("out")),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("InvalidArgument"), "{err}");
    assert!(err.contains("must list at least one SAN"), "{err}");
    assert!(err.contains("no reference values"), "{err}");
    assert_eq!(
        fake.0.lock().unwrap().set_clients,
        vec![None],
        "asked once, no key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_errors_exit_2_before_connecting() {
    let ws = Workspace::new(b"{\"Policies\": {}}");
    let o = nunki(args(&[
        "set",
        "-c",
        "127.0.0.1:9",
        "-m",
        &s(&ws.path("manifest.json")),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a valid manifest"),
        "{}",
        stderr(&o)
    );

    // Valid manifest, but only the coordinator's policy document is available.
    let ws = Workspace::new(&manifest("v1"));
    std::fs::create_dir(ws.path("pol")).unwrap();
    std::fs::write(ws.path("pol/anything"), COORDINATOR_POLICY).unwrap();
    let o = nunki(args(&[
        "set",
        "-c",
        "127.0.0.1:9",
        "-m",
        &s(&ws.path("manifest.json")),
        "--policies",
        &s(&ws.path("pol")),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&hash(WEB_POLICY).to_hex()), "{err}");
    assert!(!err.contains(&hash(COORDINATOR_POLICY).to_hex()), "{err}");

    let o = nunki(args(&["verify", "-c", "no-port"])).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_late_coordinator_and_gives_up_in_time() {
    let ws = Workspace::new(&manifest("v1"));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);

    let o = nunki(args(&[
        "verify",
        "-c",
        &addr,
        "--timeout",
        "1",
        "-o",
        &s(&ws.path("v")),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("waiting for the Coordinator at"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("not reachable within"), "{err}");

    let cli = tokio::spawn(nunki(args(&[
        "verify",
        "-c",
        &addr,
        "--timeout",
        "30",
        "-o",
        &s(&ws.path("v")),
        "--allow-simulated",
    ])));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listener = TcpListener::bind(&addr).await.unwrap();
    serve(
        listener,
        Fake::with_history(vec![manifest("v1")]),
        coordinator_issuer(),
    );
    let o = cli.await.unwrap();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("waiting for the Coordinator at"),
        "{}",
        stderr(&o)
    );
    assert!(ws.path("v/history.json").exists());
}
