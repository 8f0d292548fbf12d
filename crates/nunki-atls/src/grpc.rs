//! gRPC (tonic) over aTLS.
//!
//! [`connect`] dials `HOST:PORT` itself: it builds an [`AttestedClientConfig`] (so every
//! connection has a fresh nonce), completes the aTLS handshake and speaks HTTP/2 over the TLS
//! stream with hyper's connection-level client; [`AtlsChannel::channel`] is the service that
//! generated tonic clients call. The configuration of the connection stays available, so the
//! caller can read the verified peer or, in capture mode, verify the peer later.
//!
//! One channel is exactly one connection: there is no pool, no reconnect and no request
//! buffer task (tonic's `Channel` has all three). If the connection drops, calls fail and
//! [`AtlsChannel::failure`] says why, so every answer provably came over the connection whose
//! peer was attested. Without the buffer task and the reconnect machinery a call is a direct
//! write to the HTTP/2 connection, which matters when thousands of Initializers start at once.

use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::client::{AttestedClientConfig, ClientIdentity, ServerVerification};
use crate::coalesce::{CoalescingIo, FlightHold, Gate};
use crate::verify::{AtlsError, VerifiedPeer};

/// The name the client puts into SNI (the server's certificate is checked by its evidence,
/// not by name).
pub const SERVER_NAME: &str = "nunki-coordinator";

/// Whom to connect to and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// `HOST:PORT`.
    pub addr: String,
    /// How to treat the server's certificate.
    pub mode: ServerVerification,
    /// The client certificate, if any.
    pub identity: ClientIdentity,
    /// Longest wait for the TCP connection (none: as long as the operating system tries).
    pub tcp_timeout: Option<Duration>,
    /// Longest wait for the TLS handshake (none: no limit).
    pub handshake_timeout: Option<Duration>,
    /// Timeout of each gRPC call (none: no limit).
    pub rpc_timeout: Option<Duration>,
    /// How error messages name the server, e.g. "the Coordinator" (none: by its address).
    pub peer_name: Option<String>,
}

impl Target {
    /// A target without timeouts, named by its address in messages.
    pub fn new(
        addr: impl Into<String>,
        mode: ServerVerification,
        identity: ClientIdentity,
    ) -> Self {
        Self {
            addr: addr.into(),
            mode,
            identity,
            tcp_timeout: None,
            handshake_timeout: None,
            rpc_timeout: None,
            peer_name: None,
        }
    }

    /// Sets the longest wait for the TCP connection.
    #[must_use]
    pub fn tcp_timeout(mut self, t: Duration) -> Self {
        self.tcp_timeout = Some(t);
        self
    }

    /// Sets the longest wait for the TLS handshake.
    #[must_use]
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = Some(t);
        self
    }

    /// Sets the timeout of each gRPC call.
    #[must_use]
    pub fn rpc_timeout(mut self, t: Duration) -> Self {
        self.rpc_timeout = Some(t);
        self
    }

    /// Sets how error messages name the server.
    #[must_use]
    pub fn peer_name(mut self, name: impl Into<String>) -> Self {
        self.peer_name = Some(name.into());
        self
    }

    fn peer(&self) -> &str {
        self.peer_name.as_deref().unwrap_or(&self.addr)
    }

    fn unreachable(&self, reason: String) -> ConnectError {
        ConnectError::Unreachable {
            addr: self.addr.clone(),
            reason,
        }
    }

    fn handshake(&self, reason: String) -> ConnectError {
        ConnectError::Handshake {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// Why no attested connection could be made (or the channel's connection is gone).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The server answered, but its attestation failed: the failing check. Not worth retrying.
    #[error("attestation of {addr} failed: {error}")]
    Attestation {
        /// `HOST:PORT`.
        addr: String,
        /// The failing check.
        error: AtlsError,
    },
    /// Nothing answered (refused, timed out, closed before the handshake finished): retrying
    /// may help.
    #[error("cannot connect to {addr}: {reason}")]
    Unreachable {
        /// `HOST:PORT`.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// TLS or HTTP/2 failed for another reason, or the address or the aTLS configuration is
    /// invalid. Not worth retrying.
    #[error("{reason}")]
    Handshake {
        /// `HOST:PORT`.
        addr: String,
        /// What failed (a complete message).
        reason: String,
    },
    /// The channel's connection broke and the channel does not make another one.
    #[error(
        "the connection to {addr} broke; not reconnecting (every answer must come over the \
         attested connection)"
    )]
    ConnectionLost {
        /// `HOST:PORT`.
        addr: String,
    },
}

impl ConnectError {
    /// True when retrying may help (nothing was refused on attestation or protocol grounds).
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

/// Why the connection of a channel ended, once it did.
type Failure = Arc<Mutex<Option<ConnectError>>>;

/// An HTTP/2 connection over one attested TLS connection.
#[derive(Debug, Clone)]
pub struct AtlsChannel {
    service: GrpcConnection,
    config: AttestedClientConfig,
    failure: Failure,
}

impl AtlsChannel {
    /// The service for generated clients (`MeshApiClient::new(ch.channel())`).
    pub fn channel(&self) -> GrpcConnection {
        self.service.clone()
    }

    /// The aTLS configuration of the connection: its slot holds the verification result;
    /// in capture mode, [`AttestedClientConfig::verify_captured`] verifies the peer now.
    pub fn config(&self) -> &AttestedClientConfig {
        &self.config
    }

    /// The verified server, once verification succeeded.
    pub fn verified_peer(&self) -> Option<VerifiedPeer> {
        self.config.slot.verified()
    }

    /// Why the channel can no longer make calls (its connection broke), if it cannot.
    pub fn failure(&self) -> Option<ConnectError> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The gRPC service over one HTTP/2 connection: sets the request's origin, applies the call
/// timeout and hands the request to the connection.
#[derive(Debug, Clone)]
pub struct GrpcConnection {
    send: SendRequest<tonic::body::Body>,
    authority: http::uri::Authority,
    timeout: Option<Duration>,
    failure: Failure,
    addr: String,
    /// Releases the writes held since the handshake (see [`CoalescingIo::held`]).
    gate: Gate,
}

/// Records that the connection to `addr` is gone (unless a reason is recorded already) and
/// returns the error calls fail with: `Unavailable`, saying that no new connection is made.
fn connection_lost(failure: &Failure, addr: &str) -> CallError {
    let mut f = failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let e = f.get_or_insert_with(|| ConnectError::ConnectionLost {
        addr: addr.to_string(),
    });
    Box::new(tonic::Status::unavailable(e.to_string()))
}

/// What a call on a [`GrpcConnection`] fails with (tonic turns it into a `Status`).
pub type CallError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<tonic::body::Body>> for GrpcConnection {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = CallError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A closed connection is reported by `call` (tonic turns readiness errors into
        // `Unknown`, call errors keep their status): ready either way.
        match self.send.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        // Generated clients send only the path; HTTP/2 needs :scheme and :authority as well.
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(http::uri::Scheme::HTTPS);
        parts.authority = Some(self.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        let uri = match http::Uri::from_parts(parts) {
            Ok(u) => u,
            Err(e) => return Box::pin(async move { Err(e.into()) }),
        };
        *req.uri_mut() = uri;
        self.gate.release();
        let call = self.send.send_request(req);
        let timeout = self.timeout;
        let (send, failure, addr) = (self.send.clone(), self.failure.clone(), self.addr.clone());
        // A call that failed because the connection is gone says so (not hyper's "closed").
        let failed = move |e: hyper::Error| -> CallError {
            if send.is_closed() {
                connection_lost(&failure, &addr)
            } else {
                e.into()
            }
        };
        Box::pin(async move {
            match timeout {
                None => call.await.map_err(failed),
                Some(t) => match tokio::time::timeout(t, call).await {
                    Ok(r) => r.map_err(failed),
                    Err(_) => Err(Box::new(tonic::Status::deadline_exceeded(format!(
                        "no answer within {} s",
                        t.as_secs_f32()
                    ))) as CallError),
                },
            }
        })
    }
}

/// `Code: message`, with the message's lines indented, and the transport cause if any.
pub fn describe_status(status: &tonic::Status) -> String {
    let code = status.code();
    let msg = status.message().trim();
    let mut out = if msg.is_empty() {
        format!("{code:?} ({code})")
    } else {
        format!("{code:?}")
    };
    if msg.contains('\n') {
        for line in msg.lines() {
            out.push_str("\n  ");
            out.push_str(line);
        }
    } else if !msg.is_empty() {
        out.push_str(": ");
        out.push_str(msg);
    }
    if let Some(src) = std::error::Error::source(status) {
        out.push_str(": ");
        out.push_str(&error_chain(src));
    }
    out
}

/// Every message of an error's source chain, joined with `: ` (messages already contained in
/// an earlier one are left out).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Makes one attempt to connect, eagerly, so unreachable servers and attestation failures
/// surface here.
pub async fn connect(target: &Target) -> Result<AtlsChannel, ConnectError> {
    let authority: http::uri::Authority = target
        .addr
        .parse()
        .map_err(|e| target.handshake(format!("{}: not a valid HOST:PORT: {e}", target.addr)))?;
    let (io, config, gate) = dial(target).await?;
    let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(io)
        .await
        .map_err(|e| {
            target.handshake(format!(
                "cannot talk gRPC to {}: {}",
                target.addr,
                error_chain(&e)
            ))
        })?;
    let failure: Failure = Arc::default();
    let record = failure.clone();
    let addr = target.addr.clone();
    tokio::spawn(async move {
        // Ends when the server closes, the connection breaks, or every handle is dropped (then
        // nobody asks any more).
        if let Err(e) = connection.await {
            tracing::debug!(%addr, error = %error_chain(&e), "gRPC connection ended");
        }
        record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(ConnectError::ConnectionLost { addr });
    });
    Ok(AtlsChannel {
        service: GrpcConnection {
            send,
            authority,
            timeout: target.rpc_timeout,
            failure: failure.clone(),
            addr: target.addr.clone(),
            gate,
        },
        config,
        failure,
    })
}

/// Runs `f`, for at most `limit` if there is one; `None` when time ran out.
async fn within<F: Future>(limit: Option<Duration>, f: F) -> Option<F::Output> {
    match limit {
        Some(t) => tokio::time::timeout(t, f).await.ok(),
        None => Some(f.await),
    }
}

/// How long a refused handshake may take to send its closing alert.
const ALERT_WRITE_LIMIT: Duration = Duration::from_millis(500);

type Io = TokioIo<CoalescingIo<TlsStream<FlightHold<TcpStream>>>>;

async fn dial(t: &Target) -> Result<(Io, AttestedClientConfig, Gate), ConnectError> {
    let cfg = AttestedClientConfig::with_mode(t.mode.clone(), t.identity.clone())
        .map_err(|e| t.handshake(format!("aTLS client configuration: {e}")))?;
    let tcp = match within(t.tcp_timeout, TcpStream::connect(t.addr.as_str())).await {
        None => {
            let secs = t.tcp_timeout.unwrap_or_default().as_secs_f32().ceil();
            return Err(t.unreachable(format!("no answer within {secs} s")));
        }
        Some(Err(e)) => return Err(t.unreachable(io_reason(&e))),
        Some(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    let name =
        ServerName::try_from(SERVER_NAME).map_err(|e| t.handshake(format!("server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(cfg.config.clone());
    // The client's last handshake flight is kept below TLS until the first call (or the hold
    // limit), so it leaves in one write with the first request.
    let (tcp, gate) = FlightHold::new(tcp);
    let handshake = connector.connect(name, tcp).into_fallible();
    let tls = match within(t.handshake_timeout, handshake).await {
        None => {
            let secs = t.handshake_timeout.unwrap_or_default().as_secs();
            return Err(t.unreachable(format!(
                "the TLS handshake did not complete within {secs} s"
            )));
        }
        Some(Err((e, mut io))) => {
            // What the handshake left kept goes out before the connection closes: the alert
            // that tells the server why we refused it (its evidence did not verify, say).
            use tokio::io::AsyncWriteExt as _;
            let _ = tokio::time::timeout(ALERT_WRITE_LIMIT, io.shutdown()).await;
            return Err(classify_handshake_error(t, &cfg, &e));
        }
        Some(Ok(tls)) => tls,
    };
    if matches!(t.mode, ServerVerification::Verify(_)) && cfg.slot.verified().is_none() {
        return Err(t.handshake(format!(
            "internal: the handshake with {} completed without verifying its attestation",
            t.peer()
        )));
    }
    // Held until the first call: the client's preface and SETTINGS then leave together with
    // the first request (one record and one system call less, one wake-up less for the server),
    // and with the handshake's last flight kept below TLS by the same gate.
    let io = CoalescingIo::held_by(tls, gate.clone());
    Ok((TokioIo::new(io), cfg, gate))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::TimedOut => "timed out".into(),
        ErrorKind::ConnectionReset => "connection reset".into(),
        ErrorKind::HostUnreachable => "host unreachable".into(),
        ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

/// Why the TLS handshake failed: the attestation error from the slot (or inside the rustls
/// error), a connection that closed early (retryable), or something else.
fn classify_handshake_error(
    t: &Target,
    cfg: &AttestedClientConfig,
    e: &std::io::Error,
) -> ConnectError {
    let attestation = |error| ConnectError::Attestation {
        addr: t.addr.clone(),
        error,
    };
    if let Some(Err(atls)) = cfg.slot.get() {
        return attestation(atls);
    }
    if let Some(atls) = atls_error_in(e) {
        return attestation(atls);
    }
    match e.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::UnexpectedEof
        | ErrorKind::BrokenPipe => t.unreachable(format!(
            "the connection closed during the TLS handshake ({})",
            io_reason(e)
        )),
        _ => t.handshake(format!("TLS handshake with {} failed: {e}", t.peer())),
    }
}

/// The [`AtlsError`] a certificate verifier put into a rustls error, if any.
fn atls_error_in(e: &std::io::Error) -> Option<AtlsError> {
    let inner = e.get_ref()?;
    let rustls_err = inner.downcast_ref::<rustls::Error>()?;
    match rustls_err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<AtlsError>().cloned()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_every_line() {
        let s = tonic::Status::invalid_argument("manifest has 2 problems:\n$.a: x\n$.b: y");
        let d = describe_status(&s);
        assert!(d.starts_with("InvalidArgument"), "{d}");
        assert!(d.contains("\n  $.a: x\n  $.b: y"), "{d}");
    }

    #[test]
    fn error_chain_skips_repeated_messages() {
        let inner = std::io::Error::other("connection refused");
        let outer = ChainErr("tcp connect error: connection refused", inner);
        let top = ChainErr("transport error", std::io::Error::other(outer));
        assert_eq!(
            error_chain(&top),
            "transport error: tcp connect error: connection refused"
        );
    }

    #[derive(Debug)]
    struct ChainErr(&'static str, std::io::Error);

    impl std::fmt::Display for ChainErr {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for ChainErr {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    fn free_addr() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        addr
    }

    #[tokio::test]
    async fn refused_is_unreachable_and_transient() {
        let addr = free_addr();
        let t = Target::new(&addr, ServerVerification::Capture, ClientIdentity::None)
            .tcp_timeout(Duration::from_secs(5));
        let err = connect(&t).await.unwrap_err();
        match &err {
            ConnectError::Unreachable { addr: a, reason } => {
                assert_eq!(a, &addr);
                assert_eq!(reason, "connection refused");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_transient());
        assert_eq!(
            err.to_string(),
            format!("cannot connect to {addr}: connection refused")
        );
    }

    #[tokio::test]
    async fn a_server_without_tls_is_a_handshake_error_named_by_peer_name() {
        use tokio::io::AsyncWriteExt as _;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            // Keep the socket until the client gives up, so it reads the answer, not a reset.
            while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let t = Target::new(&addr, ServerVerification::Capture, ClientIdentity::None)
            .handshake_timeout(Duration::from_secs(10))
            .peer_name("the server");
        let err = connect(&t).await.unwrap_err();
        assert!(matches!(err, ConnectError::Handshake { .. }), "{err:?}");
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .starts_with("TLS handshake with the server failed: "),
            "{err}"
        );
    }
}
