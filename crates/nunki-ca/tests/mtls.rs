//! Two pods with leaves from the same CA talk mutual TLS over a loopback socket: the server
//! trusts only the mesh CA, the client trusts the root and gets the intermediate from the server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test helpers outside #[test] fns; a panic is a failed test"
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{CaKeys, PodKey, client_verifier, der, roots};
use nunki_ca::{Ca, Leaf};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const LIMIT: Duration = Duration::from_secs(20);

struct Pod {
    key: PodKey,
    leaf: Leaf,
}

impl Pod {
    fn new(ca: &Ca, sans: &[&str]) -> Self {
        let key = PodKey::generate();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let leaf = ca.issue_leaf(&key.spki, &sans, SystemTime::now()).unwrap();
        Self { key, leaf }
    }

    /// What a workload loads from `certChain.pem`: leaf then intermediate.
    fn chain(&self, ca: &Ca) -> Vec<CertificateDer<'static>> {
        vec![der(&self.leaf.der), der(ca.intermediate_der())]
    }
}

fn server_config(ca: &Ca, pod: &Pod) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(common::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier(&[ca.mesh_ca_der()]))
        .with_single_cert(pod.chain(ca), pod.key.private_key_der())
        .unwrap();
    Arc::new(config)
}

fn client_config(
    trust_root: &[u8],
    chain: Vec<CertificateDer<'static>>,
    key: &PodKey,
) -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(common::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&[trust_root]))
        .with_client_auth_cert(chain, key.private_key_der())
        .unwrap();
    Arc::new(config)
}

#[tokio::test]
async fn two_pods_complete_mutual_tls() {
    let ca = CaKeys::generate().ca(SystemTime::now());
    let server_pod = Pod::new(&ca, &["server", "*", "127.0.0.1"]);
    let client_pod = Pod::new(&ca, &["client", "*"]);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server_config(&ca, &server_pod));
    let expected_client_leaf = client_pod.leaf.der.clone();

    // One connection per server name the client uses: a DNS SAN and the IP SAN.
    let server_names = ["server", "127.0.0.1"];
    let server = tokio::spawn(async move {
        for _ in server_names {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let peer = tls.get_ref().1.peer_certificates().unwrap().to_vec();
            assert_eq!(
                peer.first().unwrap().as_ref(),
                expected_client_leaf.as_slice()
            );
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            tls.write_all(b"pong").await.unwrap();
            tls.shutdown().await.unwrap();
        }
    });

    let connector = TlsConnector::from(client_config(
        ca.root_der(),
        client_pod.chain(&ca),
        &client_pod.key,
    ));
    for server_name in server_names {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from(server_name).unwrap();
        let mut tls = timeout(LIMIT, connector.connect(name, tcp))
            .await
            .unwrap()
            .unwrap();
        let peer = tls.get_ref().1.peer_certificates().unwrap().to_vec();
        assert_eq!(peer, server_pod.chain(&ca));
        tls.write_all(b"ping").await.unwrap();
        let mut buf = Vec::new();
        timeout(LIMIT, tls.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, b"pong");
    }
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn server_rejects_a_client_from_another_ca() {
    let ca = CaKeys::generate().ca(SystemTime::now());
    let other = CaKeys::generate().ca(SystemTime::now());
    let server_pod = Pod::new(&ca, &["server"]);
    let intruder = Pod::new(&other, &["client"]);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server_config(&ca, &server_pod));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(drop)
    });

    // The intruder trusts our root, so it accepts the server; the server must refuse it.
    let connector = TlsConnector::from(client_config(
        ca.root_der(),
        intruder.chain(&other),
        &intruder.key,
    ));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("server").unwrap();
    let client_side = match timeout(LIMIT, connector.connect(name, tcp)).await.unwrap() {
        // TLS 1.3: the client finishes first and learns of the rejection on its next read.
        Ok(mut tls) => {
            let mut buf = Vec::new();
            tls.write_all(b"ping").await.ok();
            tls.read_to_end(&mut buf).await.map(drop)
        }
        Err(e) => Err(e),
    };
    let server_side = timeout(LIMIT, server).await.unwrap().unwrap();
    let err = server_side.unwrap_err();
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    assert!(client_side.is_err());
}

#[tokio::test]
async fn client_rejects_a_server_from_another_root() {
    let ca = CaKeys::generate().ca(SystemTime::now());
    let other = CaKeys::generate().ca(SystemTime::now());
    let impostor = Pod::new(&other, &["server"]);
    let client_pod = Pod::new(&ca, &["client"]);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server_config(&other, &impostor));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(drop)
    });

    let connector = TlsConnector::from(client_config(
        ca.root_der(),
        client_pod.chain(&ca),
        &client_pod.key,
    ));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = timeout(
        LIMIT,
        connector.connect(ServerName::try_from("server").unwrap(), tcp),
    )
    .await
    .unwrap()
    .map(drop)
    .unwrap_err();
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    assert!(timeout(LIMIT, server).await.unwrap().unwrap().is_err());
}
