//! gRPC over attested TLS to the Coordinator's user API.
//!
//! A tonic [`Channel`] whose connector dials `HOST:PORT` itself: per connection it builds an
//! [`AttestedClientConfig`] (so every connection has a fresh nonce), completes the aTLS
//! handshake and hands the TLS stream to tonic, which speaks HTTP/2 over it (prior knowledge;
//! ALPN `h2` is negotiated as well). The configuration of the connection stays available, so the
//! caller can read the verified peer or, in capture mode, verify the peer later.
//!
//! tonic wraps connector errors in a generic "transport error"; the connector therefore records
//! why it failed (unreachable, attestation failed with the failing check, other handshake
//! problem) and the caller reports that instead.
//!
//! A channel makes exactly one connection: if it drops, the channel does not reconnect, so every
//! answer provably came over the connection whose peer was attested.

use std::fmt;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use nunki_api::userapi::user_api_client::UserApiClient;
use nunki_atls::{
    AtlsError, AttestedClientConfig, ClientIdentity, ServerVerification, VerifiedPeer,
};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// The name the client puts into SNI (the Coordinator's certificate is checked by its evidence,
/// not by name).
pub const SERVER_NAME: &str = "nunki-coordinator";

/// Longest wait for a TCP connection in one attempt.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the TLS handshake (the Coordinator produces fresh evidence for it).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between attempts while the Coordinator is unreachable.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Parses and checks a `HOST:PORT` argument.
pub fn parse_addr(s: &str) -> Result<String, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected HOST:PORT, e.g. 127.0.0.1:1313"))?;
    if host.is_empty() {
        return Err(format!("{s:?}: the host is missing (HOST:PORT)"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
    Uri::try_from(format!("http://{s}")).map_err(|e| {
        format!("{s:?}: not a valid HOST:PORT ({e}); write IPv6 addresses as [::1]:1313")
    })?;
    Ok(s.to_string())
}

/// Why no attested connection could be made.
#[derive(Debug, Clone)]
pub enum ConnectError {
    /// Nothing answered (refused, timed out, closed before the handshake finished): retried.
    Unreachable(String),
    /// The Coordinator answered, but its attestation failed: the failing check. Never retried.
    Attestation(AtlsError),
    /// TLS or HTTP/2 failed for another reason. Never retried.
    Handshake(String),
    /// Still unreachable when the time was up.
    GaveUp {
        /// `HOST:PORT`.
        addr: String,
        /// How long we tried.
        waited: Duration,
        /// The last reason.
        last: String,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Unreachable(r) => write!(f, "the Coordinator is not reachable: {r}"),
            ConnectError::Attestation(e) => write!(f, "attestation of the Coordinator failed: {e}"),
            ConnectError::Handshake(r) => f.write_str(r),
            ConnectError::GaveUp { addr, waited, last } => write!(
                f,
                "the Coordinator at {addr} was not reachable within {} s (last attempt: {last}); \
                 is it running and is the address right? (--timeout waits longer)",
                waited.as_secs()
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Whom to connect to and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// `HOST:PORT`.
    pub addr: String,
    /// How to treat the Coordinator's certificate.
    pub mode: ServerVerification,
    /// The client certificate (a workload owner key) or none.
    pub identity: ClientIdentity,
    /// Timeout of each gRPC call.
    pub rpc_timeout: Duration,
}

#[derive(Debug, Default)]
struct DialRecord {
    dials: u32,
    config: Option<AttestedClientConfig>,
    failure: Option<ConnectError>,
}

#[derive(Debug)]
struct DialState {
    target: Target,
    tcp_timeout: Duration,
    record: Mutex<DialRecord>,
}

impl DialState {
    fn lock(&self) -> MutexGuard<'_, DialRecord> {
        self.record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An HTTP/2 channel over one attested TLS connection to the Coordinator.
#[derive(Debug, Clone)]
pub struct AttestedChannel {
    channel: Channel,
    atls: AttestedClientConfig,
    state: Arc<DialState>,
}

impl AttestedChannel {
    /// A user API client on this channel.
    pub fn user_api(&self) -> UserApiClient<Channel> {
        UserApiClient::new(self.channel.clone())
    }

    /// The aTLS configuration of the connection: its slot holds the verification result;
    /// in capture mode, [`AttestedClientConfig::verify_captured`] verifies the peer now.
    pub fn atls(&self) -> &AttestedClientConfig {
        &self.atls
    }

    /// The verified Coordinator, once verification succeeded.
    pub fn verified_peer(&self) -> Option<VerifiedPeer> {
        self.atls.slot.verified()
    }

    /// Describes a failed call: the gRPC code and message, or, when the call failed because the
    /// connection broke, why.
    pub fn explain(&self, status: &tonic::Status) -> String {
        if let Some(f) = self.state.lock().failure.clone() {
            return f.to_string();
        }
        describe_status(status)
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

/// Every message of an error's source chain, joined with `: `.
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

/// Makes one attempt to connect.
pub async fn connect(
    target: &Target,
    tcp_timeout: Duration,
) -> Result<AttestedChannel, ConnectError> {
    let endpoint = Endpoint::from_shared(format!("http://{}", target.addr))
        .map_err(|e| {
            ConnectError::Handshake(format!("{}: not a valid HOST:PORT: {e}", target.addr))
        })?
        .timeout(target.rpc_timeout);
    let state = Arc::new(DialState {
        target: target.clone(),
        tcp_timeout,
        record: Mutex::new(DialRecord::default()),
    });
    let s = state.clone();
    let connector = tower::service_fn(move |_uri: Uri| {
        let s = s.clone();
        async move {
            let r = dial(&s).await;
            r.map_err(|e| {
                s.lock().failure = Some(e.clone());
                std::io::Error::other(e)
            })
        }
    });
    match endpoint.connect_with_connector(connector).await {
        Ok(channel) => {
            let atls = state.lock().config.clone().ok_or_else(|| {
                ConnectError::Handshake("internal: connected without an aTLS configuration".into())
            })?;
            Ok(AttestedChannel {
                channel,
                atls,
                state,
            })
        }
        Err(e) => {
            let recorded = state.lock().failure.take();
            Err(recorded.unwrap_or_else(|| {
                ConnectError::Handshake(format!(
                    "cannot talk gRPC to {}: {}",
                    target.addr,
                    error_chain(&e)
                ))
            }))
        }
    }
}

async fn dial(s: &DialState) -> Result<TokioIo<TlsStream<TcpStream>>, ConnectError> {
    {
        let mut r = s.lock();
        r.dials += 1;
        if r.dials > 1 {
            return Err(ConnectError::Handshake(
                "the connection to the Coordinator broke; not reconnecting (every answer must \
                 come over the attested connection): run the command again"
                    .into(),
            ));
        }
    }
    let t = &s.target;
    let cfg = AttestedClientConfig::with_mode(t.mode.clone(), t.identity.clone())
        .map_err(|e| ConnectError::Handshake(format!("aTLS client configuration: {e}")))?;
    s.lock().config = Some(cfg.clone());
    let tcp = match tokio::time::timeout(s.tcp_timeout, TcpStream::connect(&t.addr)).await {
        Err(_) => {
            return Err(ConnectError::Unreachable(format!(
                "no answer within {} s",
                s.tcp_timeout.as_secs_f32().ceil()
            )));
        }
        Ok(Err(e)) => return Err(ConnectError::Unreachable(io_reason(&e))),
        Ok(Ok(t)) => t,
    };
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| ConnectError::Handshake(format!("server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(cfg.config.clone());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
        Err(_) => {
            return Err(ConnectError::Unreachable(format!(
                "the TLS handshake did not complete within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) => return Err(classify_handshake_error(&cfg, &e)),
        Ok(Ok(tls)) => tls,
    };
    if matches!(t.mode, ServerVerification::Verify(_)) && cfg.slot.verified().is_none() {
        return Err(ConnectError::Handshake(
            "internal: the handshake completed without a verified Coordinator".into(),
        ));
    }
    Ok(TokioIo::new(tls))
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
fn classify_handshake_error(cfg: &AttestedClientConfig, e: &std::io::Error) -> ConnectError {
    if let Some(Err(atls)) = cfg.slot.get() {
        return ConnectError::Attestation(atls);
    }
    if let Some(atls) = atls_error_in(e) {
        return ConnectError::Attestation(atls);
    }
    match e.kind() {
        ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::UnexpectedEof
        | ErrorKind::BrokenPipe => ConnectError::Unreachable(format!(
            "the connection closed during the TLS handshake ({})",
            io_reason(e)
        )),
        _ => ConnectError::Handshake(format!("TLS handshake with the Coordinator failed: {e}")),
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

/// Connects, retrying while the Coordinator is unreachable, for up to `timeout`, with a
/// countdown on stderr. Attestation and other handshake failures end at once.
pub async fn connect_retrying(
    target: &Target,
    timeout: Duration,
) -> Result<AttestedChannel, ConnectError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut waiting = Waiting::new(&target.addr);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let tcp_timeout = left.clamp(Duration::from_millis(500), TCP_TIMEOUT);
        match connect(target, tcp_timeout).await {
            Err(ConnectError::Unreachable(reason)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    waiting.finish();
                    return Err(ConnectError::GaveUp {
                        addr: target.addr.clone(),
                        waited: start.elapsed(),
                        last: reason,
                    });
                }
                waiting.update(left, &reason);
                tokio::time::sleep(left.min(RETRY_DELAY)).await;
            }
            other => {
                waiting.finish();
                return other;
            }
        }
    }
}

/// The countdown while waiting: a spinner on a terminal, else a line every few seconds.
struct Waiting {
    addr: String,
    bar: Option<indicatif::ProgressBar>,
    tty: bool,
    last_line: Option<Instant>,
}

impl Waiting {
    fn new(addr: &str) -> Self {
        use std::io::IsTerminal as _;
        Self {
            addr: addr.to_string(),
            bar: None,
            tty: std::io::stderr().is_terminal(),
            last_line: None,
        }
    }

    fn update(&mut self, left: Duration, reason: &str) {
        let msg = format!(
            "waiting for the Coordinator at {} ({} s left): {reason}",
            self.addr,
            left.as_secs_f64().ceil()
        );
        if self.tty {
            let bar = self.bar.get_or_insert_with(|| {
                let b = indicatif::ProgressBar::new_spinner();
                b.enable_steady_tick(Duration::from_millis(120));
                b
            });
            bar.set_message(msg);
        } else if self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            eprintln!("{msg}");
            self.last_line = Some(Instant::now());
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("127.0.0.1:1313").unwrap(), "127.0.0.1:1313");
        assert!(parse_addr("coordinator.nunki.svc:1313").is_ok());
        assert!(parse_addr("[::1]:1313").is_ok());
        assert!(parse_addr("127.0.0.1").unwrap_err().contains("HOST:PORT"));
        assert!(parse_addr(":1313").unwrap_err().contains("host is missing"));
        assert!(parse_addr("host:99999").unwrap_err().contains("not a port"));
        assert!(parse_addr("a b:1").is_err());
    }

    #[test]
    fn status_lists_every_line() {
        let s = tonic::Status::invalid_argument("manifest has 2 problems:\n$.a: x\n$.b: y");
        let d = describe_status(&s);
        assert!(d.starts_with("InvalidArgument"), "{d}");
        assert!(d.contains("\n  $.a: x\n  $.b: y"), "{d}");
    }

    #[tokio::test]
    async fn refused_is_retried_until_the_deadline() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let t = Target {
            addr: addr.clone(),
            mode: ServerVerification::Capture,
            identity: ClientIdentity::None,
            rpc_timeout: Duration::from_secs(5),
        };
        let start = Instant::now();
        let err = connect_retrying(&t, Duration::from_millis(1500))
            .await
            .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(1400));
        match &err {
            ConnectError::GaveUp { last, .. } => assert_eq!(last, "connection refused"),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
