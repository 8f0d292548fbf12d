//! The TLS side of the user and mesh APIs: accept loops that complete the aTLS handshake and
//! feed the streams, with what was learnt about the peer, into tonic.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use nunki_api::meshapi::mesh_api_server::MeshApiServer;
use nunki_api::userapi::user_api_server::UserApiServer;
use nunki_atls::verify::AtlsError;
use nunki_atls::{AttestingCertResolver, VerifiedPeer, mutual_server_config, user_server_config};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::api::{MeshApi, UserApi};
use crate::state::Coordinator;

/// How long a TLS handshake (including evidence verification) may take once started.
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

/// A finished TLS stream with its [`ConnInfo`].
#[derive(Debug)]
pub struct AtlsIo {
    inner: TlsStream<TcpStream>,
    info: ConnInfo,
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
        AtlsError::Evidence(_) => "evidence",
        AtlsError::Binding { .. } => "binding",
        AtlsError::HostData { .. } => "host_data",
        AtlsError::ReferenceValues(_) => "reference_values",
        AtlsError::Protocol(_) => "protocol",
    }
}

/// Serves the user API on `listener` until `shutdown` completes.
pub async fn serve_user_api(
    listener: TcpListener,
    coord: Arc<Coordinator>,
    resolver: Arc<AttestingCertResolver>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let config = Arc::new(user_server_config(resolver).map_err(|e| e.to_string())?);
    let (tx, rx) = mpsc::channel::<io::Result<AtlsIo>>(256);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    let accept = tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let Ok((tcp, addr)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(tls)) => {
                        let peer_spki = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| nunki_atls::cert::parse_peer(c).ok())
                            .map(|p| p.spki);
                        let info = ConnInfo {
                            peer_spki,
                            peer: None,
                            generation: 0,
                        };
                        let _ = tx.send(Ok(AtlsIo { inner: tls, info })).await;
                    }
                    Ok(Err(e)) => tracing::info!(%addr, error = %e, "user API handshake failed"),
                    Err(_) => tracing::info!(%addr, "user API handshake timed out"),
                }
            });
        }
    });
    let r = tonic::transport::Server::builder()
        .add_service(UserApiServer::new(UserApi::new(coord)))
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await
        .map_err(|e| e.to_string());
    accept.abort();
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
    let c = coord.clone();
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    let accept = tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let Ok((tcp, addr)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let Some((verifier, generation)) = c.mesh_verifier() else {
                tracing::info!(%addr, "mesh API connection refused: no manifest set");
                c.metrics().attestation_failed("no_manifest");
                continue;
            };
            let (config, slot) = match mutual_server_config(resolver.clone(), verifier) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "mesh API TLS configuration");
                    continue;
                }
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            let tx = tx.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(tls)) => {
                        let info = ConnInfo {
                            peer_spki: None,
                            peer: slot.verified(),
                            generation,
                        };
                        let _ = tx.send(Ok(AtlsIo { inner: tls, info })).await;
                    }
                    Ok(Err(e)) => {
                        let why = match slot.get() {
                            Some(Err(a)) => {
                                c.metrics().attestation_failed(reason(&a));
                                a.to_string()
                            }
                            _ => {
                                c.metrics().attestation_failed("handshake");
                                e.to_string()
                            }
                        };
                        tracing::info!(%addr, error = %why, "mesh API attestation refused");
                    }
                    Err(_) => {
                        c.metrics().attestation_failed("timeout");
                        tracing::info!(%addr, "mesh API handshake timed out");
                    }
                }
            });
        }
    });
    let r = tonic::transport::Server::builder()
        .add_service(MeshApiServer::new(MeshApi::new(coord)))
        .serve_with_incoming_shutdown(ReceiverStream::new(rx), shutdown)
        .await
        .map_err(|e| e.to_string());
    accept.abort();
    r
}
