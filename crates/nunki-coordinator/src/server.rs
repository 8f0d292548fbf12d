//! The TLS side of the user and mesh APIs: accept loops that complete the aTLS handshake and
//! feed the streams, with what was learnt about the peer, into tonic.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use nunki_api::meshapi::mesh_api_server::MeshApiServer;
use nunki_api::userapi::user_api_server::UserApiServer;
use nunki_atls::coalesce::CoalescingIo;
use nunki_atls::verify::AtlsError;
use nunki_atls::{
    AttestingCertResolver, FixedCert, PeerSlot, VerifiedPeer, mutual_server_config,
    user_server_config,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::api::{MeshApi, UserApi};
use crate::state::Coordinator;

/// How long a TLS handshake (including evidence verification) may take after the ClientHello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Handshakes in progress at once per API. Beyond this, connections wait (unaccepted work
/// costs nothing) instead of all progressing in lockstep until they time out together.
const MAX_CONCURRENT_HANDSHAKES: usize = 64;

/// What the handshake established about the peer; available to handlers as a request extension.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The client certificate's SubjectPublicKeyInfo (user API: the workload owner key).
    pub peer_spki: Option<Vec<u8>>,
    /// The attested peer (mesh API).
    pub peer: Option<VerifiedPeer>,
    /// Manifest generation the peer was verified under (mesh API).
    pub generation: u64,
}

/// How long a client may stay silent after the TLS handshake: an HTTP/2 client sends its
/// preface at once, so a connection without it holds a connection slot (and would keep a
/// graceful shutdown waiting) for nothing.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// A finished TLS stream with its [`ConnInfo`].
#[derive(Debug)]
pub struct AtlsIo {
    /// Writes gathered per batch of HTTP/2 frames, the first held until the client speaks and,
    /// when it spoke with a request, until the answer (see [`CoalescingIo::held_until_answer`]).
    inner: CoalescingIo<TlsStream<TcpStream>>,
    info: ConnInfo,
    /// Released when the connection ends (bounds live connections).
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Connected for AtlsIo {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for AtlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AtlsIo {
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
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Short metric label for a refused attestation.
pub fn reason(e: &AtlsError) -> &'static str {
    match e {
        AtlsError::Cert(nunki_atls::cert::CertError::NoEvidence) => "no_evidence",
        AtlsError::Cert(_) => "bad_certificate",
        AtlsError::CertTime { .. } => "certificate_time",
        AtlsError::Evidence(_) | AtlsError::TdxEvidence(_) => "evidence",
        AtlsError::Binding { .. } => "binding",
        AtlsError::HostData { .. } => "host_data",
        AtlsError::ReferenceValues(_) | AtlsError::TdxReferenceValues(_) => "reference_values",
        AtlsError::Protocol(_) => "protocol",
    }
}

/// Live connections per API; beyond this new connections wait in the kernel backlog.
pub const MAX_CONNECTIONS: usize = 4096;

/// How long a client may take to send its ClientHello (before it costs us anything).
const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Limits that keep one (possibly unauthenticated) connection from pinning the Coordinator.
fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(8)
        .concurrency_limit_per_connection(8)
        .timeout(Duration::from_secs(60))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_connection_age(Duration::from_secs(3600))
}

/// Largest gRPC message either API accepts or sends.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// What one API does with a connection after the ClientHello.
trait ApiTls: Send + Sync + 'static {
    /// Builds the per-connection configuration around the prepared certificate.
    fn config(
        &self,
        cert: Arc<rustls::sign::CertifiedKey>,
    ) -> Result<(rustls::ServerConfig, ConnInfo, Option<PeerSlot>), String>;
    /// Called when the handshake failed, with the verification result if any.
    fn failed(&self, addr: std::net::SocketAddr, slot: Option<PeerSlot>, error: String);
    /// Completes the connection info once the handshake succeeded.
    fn finish(
        &self,
        tls: &TlsStream<TcpStream>,
        info: ConnInfo,
        slot: Option<PeerSlot>,
    ) -> ConnInfo;
}

struct UserTls;

impl ApiTls for UserTls {
    fn config(
        &self,
        cert: Arc<rustls::sign::CertifiedKey>,
    ) -> Result<(rustls::ServerConfig, ConnInfo, Option<PeerSlot>), String> {
        let c = user_server_config(Arc::new(FixedCert(cert))).map_err(|e| e.to_string())?;
        Ok((c, ConnInfo::default(), None))
    }
    fn failed(&self, addr: std::net::SocketAddr, _slot: Option<PeerSlot>, error: String) {
        tracing::info!(%addr, %error, "user API handshake failed");
    }
    fn finish(
        &self,
        tls: &TlsStream<TcpStream>,
        mut info: ConnInfo,
        _slot: Option<PeerSlot>,
    ) -> ConnInfo {
        info.peer_spki = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| nunki_atls::cert::parse_peer(c).ok())
            .map(|p| p.spki);
        info
    }
}

struct MeshTls {
    coord: Arc<Coordinator>,
}

impl ApiTls for MeshTls {
    fn config(
        &self,
        cert: Arc<rustls::sign::CertifiedKey>,
    ) -> Result<(rustls::ServerConfig, ConnInfo, Option<PeerSlot>), String> {
        let Some((verifier, generation)) = self.coord.mesh_verifier() else {
            self.coord.metrics().attestation_failed("no_manifest");
            return Err("no manifest set yet".into());
        };
        let (c, slot) =
            mutual_server_config(Arc::new(FixedCert(cert)), verifier).map_err(|e| e.to_string())?;
        Ok((
            c,
            ConnInfo {
                peer_spki: None,
                peer: None,
                generation,
            },
            Some(slot),
        ))
    }
    fn failed(&self, addr: std::net::SocketAddr, slot: Option<PeerSlot>, error: String) {
        let why = match slot.and_then(|s| s.get()) {
            Some(Err(a)) => {
                self.coord.metrics().attestation_failed(reason(&a));
                a.to_string()
            }
            _ => {
                self.coord.metrics().attestation_failed("handshake");
                error
            }
        };
        tracing::info!(%addr, error = %why, "mesh API attestation refused");
    }
    fn finish(
        &self,
        _tls: &TlsStream<TcpStream>,
        mut info: ConnInfo,
        slot: Option<PeerSlot>,
    ) -> ConnInfo {
        info.peer = slot.and_then(|s| s.verified());
        info
    }
}

/// Accepts connections: reads the ClientHello under a short timeout without holding a slot,
/// then takes a handshake slot, prepares the (possibly attested) certificate off the async
/// workers and completes the handshake.
fn accept_loop(
    listener: TcpListener,
    resolver: Arc<AttestingCertResolver>,
    api: Arc<dyn ApiTls>,
    tx: mpsc::Sender<io::Result<AtlsIo>>,
    stop: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            // On shutdown the listener closes at once (new clients are refused and can try
            // another replica) while tonic drains the connections it has.
            let conn_permit = tokio::select! {
                () = stop.clone() => break,
                p = connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                () = stop.clone() => break,
                a = listener.accept() => a,
            };
            let (tcp, addr) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (resolver, api, tx, handshakes) = (
                resolver.clone(),
                api.clone(),
                tx.clone(),
                handshakes.clone(),
            );
            tokio::spawn(async move {
                let acceptor =
                    tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let start = match tokio::time::timeout(CLIENT_HELLO_TIMEOUT, acceptor).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        return api.failed(addr, None, format!("reading the ClientHello: {e}"));
                    }
                    Err(_) => return api.failed(addr, None, "no ClientHello in time".into()),
                };
                let nonce = start
                    .client_hello()
                    .alpn()
                    .and_then(nunki_atls::nonce::from_alpn);
                let Ok(permit) = handshakes.acquire_owned().await else {
                    return;
                };
                // Boxed: the thousands of connections that may wait above hold only their
                // ClientHello, not the state of the handshake's later steps (kilobytes each).
                Box::pin(complete_handshake(
                    start,
                    nonce,
                    addr,
                    resolver,
                    api,
                    tx,
                    conn_permit,
                    permit,
                ))
                .await;
            });
        }
    })
}

/// The handshake after the ClientHello, while holding a handshake slot (`_slot`): prepares the
/// certificate, completes TLS with the API's configuration and hands the stream to the server.
#[allow(clippy::too_many_arguments)]
async fn complete_handshake(
    start: tokio_rustls::StartHandshake<TcpStream>,
    nonce: Option<[u8; 32]>,
    addr: std::net::SocketAddr,
    resolver: Arc<AttestingCertResolver>,
    api: Arc<dyn ApiTls>,
    tx: mpsc::Sender<io::Result<AtlsIo>>,
    conn_permit: tokio::sync::OwnedSemaphorePermit,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    // Only evidence may block (hardware issuers); the plain certificate is cached.
    let cert = match nonce {
        Some(_) => {
            let r = resolver.clone();
            tokio::task::spawn_blocking(move || r.certified_for(nonce))
                .await
                .map_err(|e| e.to_string())
                .and_then(|c| c.map_err(|e| e.to_string()))
        }
        None => resolver.certified_for(None).map_err(|e| e.to_string()),
    };
    let cert = match cert {
        Ok(c) => c,
        Err(e) => return api.failed(addr, None, e),
    };
    let (config, info, slot) = match api.config(cert) {
        Ok(x) => x,
        Err(e) => return api.failed(addr, None, e),
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(Arc::new(config))).await {
        Ok(Ok(tls)) => {
            let info = api.finish(&tls, info, slot);
            let _ = tx
                .send(Ok(AtlsIo {
                    inner: CoalescingIo::held_until_answer(tls, FIRST_BYTES_TIMEOUT),
                    info,
                    _permit: conn_permit,
                }))
                .await;
        }
        Ok(Err(e)) => api.failed(addr, slot, e.to_string()),
        Err(_) => api.failed(addr, slot, "handshake timed out".into()),
    }
}

/// The shutdown signal, shared by the accept loop and tonic's graceful drain.
type Shutdown = futures_util::future::Shared<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>;

fn shared_shutdown(shutdown: impl Future<Output = ()> + Send + 'static) -> Shutdown {
    use futures_util::FutureExt as _;
    (Box::pin(shutdown) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>).shared()
}

/// Stops an accept loop and waits until its listener is closed, so that a restart in the same
/// process can bind the port again at once.
async fn stop_accepting(accept: tokio::task::JoinHandle<()>) {
    accept.abort();
    let _ = accept.await;
}

/// Serves the user API on `listener` until `shutdown` completes.
pub async fn serve_user_api(
    listener: TcpListener,
    coord: Arc<Coordinator>,
    resolver: Arc<AttestingCertResolver>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<io::Result<AtlsIo>>(256);
    let shutdown = shared_shutdown(shutdown);
    let accept = accept_loop(listener, resolver, Arc::new(UserTls), tx, shutdown.clone());
    let svc = UserApiServer::new(UserApi::new(coord))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let r = grpc_server()
        .add_service(svc)
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await
        .map_err(|e| e.to_string());
    stop_accepting(accept).await;
    r
}

/// Serves the mesh API on `listener` until `shutdown` completes.
pub async fn serve_mesh_api(
    listener: TcpListener,
    coord: Arc<Coordinator>,
    resolver: Arc<AttestingCertResolver>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<io::Result<AtlsIo>>(1024);
    let shutdown = shared_shutdown(shutdown);
    let accept = accept_loop(
        listener,
        resolver,
        Arc::new(MeshTls {
            coord: coord.clone(),
        }),
        tx,
        shutdown.clone(),
    );
    let r = grpc_server()
        .add_service(MeshApiServer::new(MeshApi::new(coord)))
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await
        .map_err(|e| e.to_string());
    stop_accepting(accept).await;
    r
}
