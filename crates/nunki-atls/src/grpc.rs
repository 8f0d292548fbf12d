//! gRPC (tonic) channels over aTLS: every connection gets a fresh nonce and configuration.

use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::client::AttestedClientConfig;
use crate::verify::{AtlsError, VerifiedPeer};

/// Builds the configuration for each new connection.
pub type ConfigFactory = Arc<dyn Fn() -> Result<AttestedClientConfig, AtlsError> + Send + Sync>;

/// A tonic channel over aTLS plus the configuration of its most recent connection.
#[derive(Clone)]
pub struct AtlsChannel {
    /// The channel for generated clients.
    pub channel: Channel,
    last: Arc<Mutex<Option<AttestedClientConfig>>>,
}

impl std::fmt::Debug for AtlsChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtlsChannel").finish_non_exhaustive()
    }
}

/// Why a channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Attestation of the server failed: the failing check.
    #[error("attestation of {addr} failed: {error}")]
    Attestation {
        /// Address.
        addr: String,
        /// The failing check.
        error: AtlsError,
    },
    /// The server could not be reached or TLS failed for another reason.
    #[error("cannot connect to {addr}: {reason}")]
    Unreachable {
        /// Address.
        addr: String,
        /// What failed.
        reason: String,
    },
}

impl ConnectError {
    /// True when retrying may help (nothing was refused on attestation grounds).
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

impl AtlsChannel {
    /// The configuration (nonce, result slot) of the most recent connection.
    pub fn last_config(&self) -> Option<AttestedClientConfig> {
        self.last.lock().ok().and_then(|g| g.clone())
    }

    /// The verified server of the most recent connection.
    pub fn verified_peer(&self) -> Option<VerifiedPeer> {
        self.last_config().and_then(|c| c.slot.verified())
    }
}

/// Connects to `addr` (`host:port`) eagerly, so attestation errors surface here.
pub async fn connect(addr: &str, factory: ConfigFactory) -> Result<AtlsChannel, ConnectError> {
    let last: Arc<Mutex<Option<AttestedClientConfig>>> = Arc::new(Mutex::new(None));
    let unreachable = |reason: String| ConnectError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    let endpoint =
        Endpoint::from_shared(format!("http://{addr}")).map_err(|e| unreachable(e.to_string()))?;
    let target = addr.to_string();
    let l = last.clone();
    let connector = tower::service_fn(move |_: Uri| {
        let target = target.clone();
        let factory = factory.clone();
        let l = l.clone();
        async move {
            let cfg = factory().map_err(|e| std::io::Error::other(e.to_string()))?;
            if let Ok(mut g) = l.lock() {
                *g = Some(cfg.clone());
            }
            let stream = cfg.connect(&target).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    match endpoint.connect_with_connector(connector).await {
        Ok(channel) => Ok(AtlsChannel { channel, last }),
        Err(e) => {
            let attested = last
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .and_then(|c| c.slot.get());
            match attested {
                Some(Err(error)) => Err(ConnectError::Attestation {
                    addr: addr.to_string(),
                    error,
                }),
                _ => Err(unreachable(error_chain(&e))),
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
