//! The Initializer refuses a reply that does not chain to the root: a fake mesh API (tonic over
//! mutual TLS on loopback, challenging the Initializer for its attested client certificate like
//! the Coordinator does) answers with a chain from another CA, a leaf for another key, or
//! garbage; the Initializer writes nothing and says why. A real Coordinator with a pinned root
//! (`--coordinator-root`) is accepted for its own root and refused for another.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use common::{Log, Seen, World, attempts, inspect};
use nunki_api::meshapi::mesh_api_server::{MeshApi, MeshApiServer};
use nunki_api::meshapi::{NewMeshCertRequest, NewMeshCertResponse};
use nunki_atls::cert::AttestingKey;
use nunki_atls::verify::system_clock;
use nunki_atls::{FixedCert, HostDataRule, ReferenceVerifier, mutual_server_config};
use nunki_ca::Ca;
use nunki_initializer::{AttemptError, InitError, ReplyError, RequestOptions};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

/// What the fake Coordinator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A correct reply (the control: the harness itself works).
    Good,
    /// Leaf and intermediate from one CA, mesh CA and root from another.
    OtherCa,
    /// A correct chain, but for a key that is not the caller's.
    OtherKey,
    /// Not PEM.
    Garbage,
}

/// The caller's attested key, as the handshake established it.
#[derive(Debug, Clone)]
struct Caller {
    spki: Vec<u8>,
}

struct Io {
    inner: TlsStream<TcpStream>,
    caller: Caller,
}

impl Connected for Io {
    type ConnectInfo = Caller;
    fn connect_info(&self) -> Caller {
        self.caller.clone()
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

struct Fake {
    answer: Answer,
    ca: Ca,
    other: Ca,
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl MeshApi for Fake {
    async fn get_seed(
        &self,
        _req: Request<nunki_api::meshapi::GetSeedRequest>,
    ) -> Result<Response<nunki_api::meshapi::GetSeedResponse>, Status> {
        Err(Status::unimplemented("not a Coordinator"))
    }

    async fn new_mesh_cert(
        &self,
        req: Request<NewMeshCertRequest>,
    ) -> Result<Response<NewMeshCertResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let caller = req
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no caller"))?;
        let now = SystemTime::now();
        let sans = ["web".to_string()];
        let r = match self.answer {
            Answer::Good => {
                let leaf = self.ca.issue_leaf(&caller.spki, &sans, now).unwrap();
                NewMeshCertResponse {
                    mesh_ca: self.ca.mesh_ca_pem().into(),
                    cert_chain: self.ca.chain_pem(&leaf).into(),
                    root_ca: self.ca.root_pem().into(),
                    workload_secret: Vec::new(),
                }
            }
            Answer::OtherCa => {
                let leaf = self.other.issue_leaf(&caller.spki, &sans, now).unwrap();
                NewMeshCertResponse {
                    mesh_ca: self.ca.mesh_ca_pem().into(),
                    cert_chain: self.other.chain_pem(&leaf).into(),
                    root_ca: self.ca.root_pem().into(),
                    workload_secret: Vec::new(),
                }
            }
            Answer::OtherKey => {
                let stranger = AttestingKey::generate().unwrap().spki_der();
                let leaf = self.ca.issue_leaf(&stranger, &sans, now).unwrap();
                NewMeshCertResponse {
                    mesh_ca: self.ca.mesh_ca_pem().into(),
                    cert_chain: self.ca.chain_pem(&leaf).into(),
                    root_ca: self.ca.root_pem().into(),
                    workload_secret: Vec::new(),
                }
            }
            Answer::Garbage => NewMeshCertResponse {
                mesh_ca: b"garbage".to_vec(),
                cert_chain:
                    b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
                        .to_vec(),
                root_ca: b"\x00\x01\x02".to_vec(),
                workload_secret: Vec::new(),
            },
        };
        Ok(Response::new(r))
    }
}

fn new_ca() -> Ca {
    let root = nunki_ca::generate_p384_pkcs8().unwrap();
    let mesh = nunki_ca::generate_p384_pkcs8().unwrap();
    Ca::new(&root, &mesh, SystemTime::now()).unwrap()
}

/// Starts the fake mesh API on loopback; returns its address and its call counter.
async fn fake_coordinator(world: &World, answer: Answer) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts the simulated platform's evidence with any HOST_DATA: the test is about what
    // the Initializer does with the answer, not about who may ask.
    let verifier = Arc::new(
        ReferenceVerifier::new(
            &[],
            &[world.platform.reference_values()],
            HostDataRule::Any,
            system_clock(),
        )
        .unwrap(),
    );
    // A plain self-signed server certificate: the Initializer does not attest the Coordinator.
    let server_cert = AttestingKey::generate()
        .unwrap()
        .certify(None, None, SystemTime::now())
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Io>>(16);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            let (verifier, server_cert, tx) = (verifier.clone(), server_cert.clone(), tx.clone());
            tokio::spawn(async move {
                let (config, slot) =
                    mutual_server_config(Arc::new(FixedCert(server_cert)), verifier).unwrap();
                let Ok(tls) = tokio_rustls::TlsAcceptor::from(Arc::new(config))
                    .accept(tcp)
                    .await
                else {
                    return;
                };
                let peer = slot.verified().expect("the client was attested");
                let _ = tx
                    .send(Ok(Io {
                        inner: tls,
                        caller: Caller { spki: peer.spki },
                    }))
                    .await;
            });
        }
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let fake = Fake {
        answer,
        ca: new_ca(),
        other: new_ca(),
        calls: calls.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MeshApiServer::new(fake))
            .serve_with_incoming(ReceiverStream::new(rx)),
    );
    (addr, calls)
}

fn quick(attempts: u32) -> RequestOptions {
    RequestOptions {
        attempts: Some(attempts),
        base_delay: Duration::from_millis(10),
        ..RequestOptions::default()
    }
}

/// The library: each bad answer is refused with its reason, after the configured attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replies_are_refused_with_the_reason() {
    let world = World::new("fake");
    for answer in [
        Answer::Good,
        Answer::OtherCa,
        Answer::OtherKey,
        Answer::Garbage,
    ] {
        let (addr, calls) = fake_coordinator(&world, answer).await;
        let r = nunki_initializer::request(&addr.to_string(), world.web_issuer(), &quick(2)).await;
        match (answer, r) {
            (Answer::Good, Ok(files)) => {
                let out = world.work.path().join("good");
                nunki_initializer::write_files(&out, &files).unwrap();
                assert!(matches!(inspect(&out), Seen::Complete(_)));
                assert_eq!(calls.load(Ordering::SeqCst), 1);
                continue;
            }
            (
                Answer::OtherCa,
                Err(InitError::GaveUp {
                    attempts: 2,
                    last: AttemptError::Reply(ReplyError::RootPath { reason, .. }),
                }),
            ) => assert!(reason.contains("signature"), "{reason}"),
            (
                Answer::OtherKey,
                Err(InitError::GaveUp {
                    attempts: 2,
                    last: AttemptError::Reply(ReplyError::ForeignKey),
                }),
            ) => {}
            (
                Answer::Garbage,
                Err(InitError::GaveUp {
                    attempts: 2,
                    last: AttemptError::Reply(ReplyError::Pem { file, .. }),
                }),
            ) => assert_eq!(file, "certChain.pem"),
            (a, r) => panic!("{a:?}: unexpected {r:?}"),
        }
        // The fake answered every attempt: the refusals are the Initializer's.
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{answer:?}");
    }
}

/// The binary: retries each bad answer with a log line naming the reason, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_writes_nothing_for_a_bad_reply() {
    let world = World::new("fake-bin");
    for (answer, reason) in [
        (
            Answer::OtherCa,
            "does not verify as a TLS server certificate along leaf → intermediate → \
             coordinator-root-ca.pem: bad signature",
        ),
        (
            Answer::OtherKey,
            "the leaf certifies a different public key than this Initializer's",
        ),
        (Answer::Garbage, "certChain.pem: not a PEM certificate list"),
    ] {
        let (addr, calls) = fake_coordinator(&world, answer).await;
        let out = world.work.path().join(format!("{answer:?}"));
        let mut child = world
            .initializer(&addr.to_string(), &out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::capture(&mut child);
        let refused = "the Coordinator's reply was refused, nothing written";
        let ok = tokio::task::spawn_blocking({
            let log = log.clone();
            move || log.wait_for(Duration::from_secs(60), |l| l.matches(refused).count() >= 2)
        })
        .await
        .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let text = log.text();
        assert!(ok, "{answer:?}: no two refusals logged:\n{text}");
        assert!(text.contains(reason), "{answer:?}: reason missing:\n{text}");
        assert!(attempts(&text).len() >= 2, "{text}");
        assert!(calls.load(Ordering::SeqCst) >= 2);
        assert_eq!(inspect(&out), Seen::Nothing, "{answer:?}");
        assert!(
            !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
            "{answer:?}: something was written to {}",
            out.display()
        );
    }
}

/// A real Coordinator: with `--coordinator-root` set to its root the binary succeeds; with
/// another Coordinator's root it refuses every reply and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_root_is_enforced() {
    let world = World::new("pinned");
    let c = world
        .start_coordinator("127.0.0.1:0".parse().unwrap())
        .await;
    let root = world.set_manifest(&c).await;
    let coordinator = c.mesh_api.to_string();

    let right = world.work.path().join("right-root.pem");
    std::fs::write(&right, &root).unwrap();
    let out = world.work.path().join("ok");
    let o = world
        .initializer(&coordinator, &out)
        .env("NUNKI_COORDINATOR_ROOT", &right)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(matches!(inspect(&out), Seen::Complete(_)));

    let wrong = world.work.path().join("wrong-root.pem");
    std::fs::write(&wrong, new_ca().root_pem()).unwrap();
    let out = world.work.path().join("refused");
    let mut child = world
        .initializer(&coordinator, &out)
        .arg("--coordinator-root")
        .arg(&wrong)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::capture(&mut child);
    let want = "coordinator-root-ca.pem is not the root CA given with --coordinator-root: key";
    let ok = tokio::task::spawn_blocking({
        let log = log.clone();
        move || log.wait_for(Duration::from_secs(60), |l| l.matches(want).count() >= 2)
    })
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ok, "{}", log.text());
    assert_eq!(inspect(&out), Seen::Nothing);

    // A file that is not a certificate is a usage error, reported before any attempt.
    let o = world
        .initializer(&coordinator, &out)
        .arg("--coordinator-root")
        .arg(world.work.path().join("missing.pem"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(text.contains("--coordinator-root"), "{text}");
    assert!(!text.contains("attempt="), "{text}");
    c.shutdown().await;
}
