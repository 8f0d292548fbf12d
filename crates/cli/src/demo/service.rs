//! The built-in demo image: a small HTTPS service that serves with its mesh certificate and,
//! when given an upstream, calls it over mesh mTLS and includes the answer.
//!
//! It reads what the Initializer wrote (`certChain.pem`, `key.pem`, `mesh-ca.pem`) and nothing
//! else, exactly as a real workload would. Clients of a service with an upstream may connect
//! without a certificate (the demo's `curl`); a service without upstream (the backend) requires
//! a client certificate from the mesh.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Flags of `nunki run-demo-service` (the entry point of the demo image).
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Address to listen on.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Name this service answers with.
    #[arg(long)]
    pub name: String,
    /// Service to call for every request, as NAME:PORT (NAME must be a SAN of its certificate).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Directory the Initializer wrote to.
    #[arg(long, env = "NUNKI_TLS_DIR", default_value = "/tls-config")]
    pub tls_dir: PathBuf,
    /// Listen on this IP instead of the one in --listen (set by the local runner, which keeps
    /// the demo on loopback).
    #[arg(long, env = "NUNKI_DEMO_BIND_IP")]
    pub bind_ip: Option<std::net::IpAddr>,
    /// NAME=IP pairs standing in for cluster DNS (set by the local runner).
    #[arg(long, env = "NUNKI_DEMO_HOSTS", value_delimiter = ',')]
    pub hosts: Vec<String>,
}

struct Mesh {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<rustls::RootCertStore>,
}

fn load(dir: &Path) -> Result<Mesh> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| {
            format!(
                "cannot read {}: did the Initializer run?",
                dir.join(name).display()
            )
        })
    };
    let chain = CertificateDer::pem_slice_iter(&read("certChain.pem")?)
        .collect::<Result<Vec<_>, _>>()
        .context("certChain.pem")?;
    let key = PrivateKeyDer::from_pem_slice(&read("key.pem")?).context("key.pem")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read("mesh-ca.pem")?) {
        roots
            .add(c.context("mesh-ca.pem")?)
            .context("mesh-ca.pem")?;
    }
    Ok(Mesh {
        chain,
        key,
        roots: Arc::new(roots),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Runs the service until the process is stopped.
pub async fn run(a: ServiceArgs) -> Result<()> {
    let mesh = load(&a.tls_dir)?;
    let client_verifier = {
        let b = WebPkiClientVerifier::builder_with_provider(mesh.roots.clone(), provider());
        // The front service also serves people (curl) who have no mesh certificate.
        let b = if a.upstream.is_some() {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build().context("client verifier")?
    };
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(mesh.chain.clone(), mesh.key.clone_key())
        .context("mesh certificate and key")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(mesh.roots.clone())
        .with_client_auth_cert(mesh.chain.clone(), mesh.key.clone_key())
        .context("mesh client certificate")?;
    let ctx = Arc::new(Ctx {
        name: a.name.clone(),
        upstream: a.upstream.clone(),
        hosts: a.hosts.clone(),
        connector: TlsConnector::from(Arc::new(client)),
    });
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listen = match a.bind_ip {
        Some(ip) => SocketAddr::new(ip, a.listen.port()),
        None => a.listen,
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("demo service {} listening on {listen}", a.name);
    loop {
        let (tcp, peer) = listener.accept().await.context("accept")?;
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    eprintln!(
                        "demo service {}: TLS handshake with {peer} failed: {e}",
                        ctx.name
                    );
                    return;
                }
            };
            let client_id = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| common_name(c))
                .unwrap_or_else(|| "anonymous client".to_string());
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                let client_id = client_id.clone();
                async move { ctx.handle(req, &client_id).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

struct Ctx {
    name: String,
    upstream: Option<String>,
    hosts: Vec<String>,
    connector: TlsConnector,
}

impl Ctx {
    async fn handle(
        &self,
        req: Request<Incoming>,
        client: &str,
    ) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
        let mut body = format!(
            "hello from {} (path {}, caller: {client})\n",
            self.name,
            req.uri().path()
        );
        let status = match &self.upstream {
            None => 200,
            Some(up) => match self.call(up).await {
                Ok(answer) => {
                    body.push_str(&format!("{up} answered over mesh mTLS: {answer}"));
                    200
                }
                Err(e) => {
                    body.push_str(&format!("calling {up} failed: {e:#}\n"));
                    502
                }
            },
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        Ok(resp)
    }

    async fn call(&self, upstream: &str) -> Result<String> {
        let (name, port) = upstream
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("upstream {upstream:?} is not NAME:PORT"))?;
        let ip = self
            .hosts
            .iter()
            .find_map(|h| h.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or(name);
        let tcp = TcpStream::connect(format!("{ip}:{port}"))
            .await
            .with_context(|| format!("connect to {ip}:{port}"))?;
        let server_name = ServerName::try_from(name.to_string())
            .with_context(|| format!("{name:?} is not a valid server name"))?;
        let tls = self
            .connector
            .connect(server_name, tcp)
            .await
            .context("mesh mTLS handshake")?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", name)
            .body(Empty::<Bytes>::new())
            .context("request")?;
        let resp = sender.send_request(req).await.context("request")?;
        if !resp.status().is_success() {
            bail!("status {}", resp.status());
        }
        let bytes = resp.into_body().collect().await.context("body")?.to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
