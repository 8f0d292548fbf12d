//! The connection to the Coordinator's user API: `HOST:PORT` arguments, the timeouts and
//! wording the CLI uses, and retrying with a countdown while the Coordinator is unreachable.
//!
//! Dialing, attestation and the classification of failures are
//! [`nunki_atls::grpc`]'s: a channel makes exactly one attested connection and does not
//! reconnect, so every answer provably came over the connection whose peer was attested.

use std::fmt;
use std::time::{Duration, Instant};

use nunki_atls::grpc::{self, AtlsChannel, ConnectError, Target};
use nunki_atls::{ClientIdentity, ServerVerification};
use tonic::transport::Uri;

/// How messages name the server.
const PEER_NAME: &str = "the Coordinator";
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

/// The Coordinator at `addr`: attested per `mode`, presenting `identity`, each gRPC call
/// limited to `rpc_timeout`.
pub fn target(
    addr: String,
    mode: ServerVerification,
    identity: ClientIdentity,
    rpc_timeout: Duration,
) -> Target {
    Target::new(addr, mode, identity)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .rpc_timeout(rpc_timeout)
        .peer_name(PEER_NAME)
}

/// Why [`connect_retrying`] returned no channel.
#[derive(Debug, Clone)]
pub enum ConnectFailure {
    /// The Coordinator answered but attestation or the handshake failed: never retried.
    Failed(ConnectError),
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

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Failed(e) => e.fmt(f),
            ConnectFailure::GaveUp { addr, waited, last } => write!(
                f,
                "the Coordinator at {addr} was not reachable within {} s (last attempt: {last}); \
                 is it running and is the address right? (--timeout waits longer)",
                waited.as_secs()
            ),
        }
    }
}

impl std::error::Error for ConnectFailure {}

/// Describes a failed call: the gRPC code and message, or, when the call failed because the
/// connection broke, why.
pub fn explain(ch: &AtlsChannel, status: &tonic::Status) -> String {
    match ch.failure() {
        Some(ConnectError::ConnectionLost { .. }) => "the connection to the Coordinator broke; \
            not reconnecting (every answer must come over the attested connection): run the \
            command again"
            .into(),
        Some(other) => other.to_string(),
        None => grpc::describe_status(status),
    }
}

/// Connects, retrying while the Coordinator is unreachable, for up to `timeout`, with a
/// countdown on stderr. Attestation and other handshake failures end at once.
pub async fn connect_retrying(
    target: &Target,
    timeout: Duration,
) -> Result<AtlsChannel, ConnectFailure> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut waiting = Waiting::new(&target.addr);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let tcp_timeout = left.clamp(Duration::from_millis(500), TCP_TIMEOUT);
        match grpc::connect(&target.clone().tcp_timeout(tcp_timeout)).await {
            Err(ConnectError::Unreachable { reason, .. }) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    waiting.finish();
                    return Err(ConnectFailure::GaveUp {
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
                return other.map_err(ConnectFailure::Failed);
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

    #[tokio::test]
    async fn refused_is_retried_until_the_deadline() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let t = target(
            addr.clone(),
            ServerVerification::Capture,
            ClientIdentity::None,
            Duration::from_secs(5),
        );
        let start = Instant::now();
        let err = connect_retrying(&t, Duration::from_millis(1500))
            .await
            .unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(1400));
        match &err {
            ConnectFailure::GaveUp { last, .. } => assert_eq!(last, "connection refused"),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
