//! Loopback tests: `HttpFetcher` and `CachingFetcher` against a local fake KDS serving the
//! shipped AMD vectors from `shared/testdata`. No internet access.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod cache;
mod http;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use nunki_attestation::Report;
use nunki_attestation::SignerKind;
use nunki_attestation::snp::kds::Kds;
use nunki_collateral::{HttpConfig, HttpFetcher, RetryPolicy};
use nunki_manifest::SnpProduct;
use server::TestServer;

/// `$NUNKI_TESTDATA`, else `shared/testdata` beside the checkout.
pub fn testdata() -> PathBuf {
    if let Some(d) = std::env::var_os("NUNKI_TESTDATA") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata")
}

pub fn snp_file(rel: &str) -> Vec<u8> {
    let p = testdata().join("snp").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn report(vector: &str) -> Report {
    Report::parse(&snp_file(&format!("{vector}/report.bin"))).unwrap()
}

/// Short timeouts and near-zero backoff so failure tests stay fast; no proxy for loopback.
pub fn fast_config() -> HttpConfig {
    HttpConfig {
        timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(10),
        },
        env_proxy: false,
        ..HttpConfig::default()
    }
}

pub fn fetcher_with(config: HttpConfig) -> HttpFetcher {
    HttpFetcher::with_config(config).unwrap()
}

pub fn fetcher() -> HttpFetcher {
    fetcher_with(fast_config())
}

/// One KDS object the fake server serves.
#[derive(Debug, Clone)]
pub struct Served {
    pub url: String,
    pub file: &'static str,
    pub body: Vec<u8>,
}

pub const VCEK_VECTORS: [(SnpProduct, &str); 2] = [
    (SnpProduct::Genoa, "genoa-oak-v5"),
    (SnpProduct::Turin, "turin-oak-v5"),
];

fn product_lower(p: SnpProduct) -> &'static str {
    match p {
        SnpProduct::Milan => "milan",
        SnpProduct::Genoa => "genoa",
        SnpProduct::Turin => "turin",
    }
}

/// Everything KDS would serve for our vectors, with URLs rooted at `base`.
pub fn kds_objects(base: &str) -> Vec<Served> {
    let kds = Kds::with_base(base, fetcher());
    let mut out = Vec::new();
    let mut add = |url: String, file: &'static str| {
        let body = snp_file(file);
        out.push(Served { url, file, body });
    };
    for p in SnpProduct::ALL {
        let ask: &'static str = format!("amd/ask_ark_{}.pem", product_lower(p)).leak();
        let asvk: &'static str = format!("amd/asvk_ark_{}.pem", product_lower(p)).leak();
        add(kds.cert_chain_url(p, SignerKind::Vcek), ask);
        add(kds.cert_chain_url(p, SignerKind::Vlek), asvk);
    }
    add(
        kds.crl_url(SnpProduct::Milan, SignerKind::Vcek),
        "amd/crl_milan_2022-05-09.der",
    );
    add(
        kds.crl_url(SnpProduct::Genoa, SignerKind::Vcek),
        "amd/crl_genoa_2022-10-31.der",
    );
    for (p, dir) in VCEK_VECTORS {
        let vcek: &'static str = format!("{dir}/vcek.der").leak();
        add(kds.vcek_url(p, &report(dir)), vcek);
    }
    out
}

/// A fake KDS with every object of [`kds_objects`] routed.
pub fn kds_server() -> (TestServer, Vec<Served>) {
    let server = TestServer::start();
    let objects = kds_objects(server.base());
    for o in &objects {
        server.route(o.url.strip_prefix(server.base()).unwrap(), o.body.clone());
    }
    (server, objects)
}
