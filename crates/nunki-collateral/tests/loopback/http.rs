//! `HttpFetcher` against the fake KDS.

use std::time::{Duration, Instant};

use nunki_attestation::SignerKind;
use nunki_attestation::snp::certs::{CertInfo, EndorsementExtensions, pem_or_der_certs};
use nunki_attestation::snp::kds::{FetchError, HttpGet, Kds};
use nunki_collateral::{HttpConfig, RetryPolicy};
use nunki_manifest::SnpProduct;

use crate::server::{Fault, TestServer};
use crate::{VCEK_VECTORS, fast_config, fetcher, fetcher_with, kds_server, report, snp_file};

#[tokio::test]
async fn serves_every_kds_object_byte_for_byte() {
    let (server, objects) = kds_server();
    let f = fetcher();
    for o in &objects {
        let body = f
            .get(&o.url)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", o.file));
        assert_eq!(body, o.body, "{} from {}", o.file, o.url);
    }
    assert_eq!(server.hits(), objects.len());
    assert_eq!(objects.len(), 6 + 2 + 2);
    for seen in server.seen() {
        let ua = seen.user_agent.unwrap();
        assert_eq!(
            ua,
            format!("nunki/{}", env!("CARGO_PKG_VERSION")),
            "{}",
            seen.target
        );
    }
}

#[tokio::test]
async fn kds_client_over_http_fetcher() {
    let (server, _) = kds_server();
    let kds = Kds::with_base(server.base(), fetcher());
    for p in SnpProduct::ALL {
        let name = format!("{p:?}").to_lowercase();
        for (signer, prefix) in [(SignerKind::Vcek, "ask"), (SignerKind::Vlek, "asvk")] {
            let chain = kds.fetch_cert_chain(p, signer).await.unwrap();
            let expected =
                pem_or_der_certs(&snp_file(&format!("amd/{prefix}_ark_{name}.pem"))).unwrap();
            assert_eq!(chain, expected, "{p:?} {signer:?}");
        }
    }
    let milan = kds
        .fetch_crl(SnpProduct::Milan, SignerKind::Vcek)
        .await
        .unwrap();
    assert_eq!(milan, snp_file("amd/crl_milan_2022-05-09.der"));
    let genoa = kds
        .fetch_crl(SnpProduct::Genoa, SignerKind::Vcek)
        .await
        .unwrap();
    assert_eq!(genoa, snp_file("amd/crl_genoa_2022-10-31.der"));
    // Turin has no CRL vector, so the fake KDS answers 404 and that surfaces as a status error.
    let missing = kds
        .fetch_crl(SnpProduct::Turin, SignerKind::Vcek)
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("404"), "{missing}");
}

#[tokio::test]
async fn fetched_vceks_parse_and_match_the_chip() {
    let (server, _) = kds_server();
    let kds = Kds::with_base(server.base(), fetcher());
    for (product, dir) in VCEK_VECTORS {
        let report = report(dir);
        let der = kds.fetch_vcek(product, &report).await.unwrap();
        assert_eq!(der, snp_file(&format!("{dir}/vcek.der")));
        let cert = CertInfo::from_der("VCEK", &der).unwrap();
        let ext = EndorsementExtensions::from_cert(&cert).unwrap();
        assert_eq!(ext.product, product);
        let chip = report.chip_id.as_bytes();
        let hwid = ext.hwid.unwrap();
        // Turin VCEKs carry only the first 8 bytes of CHIP_ID.
        let expected = if product == SnpProduct::Turin {
            &chip[..8]
        } else {
            &chip[..]
        };
        assert_eq!(hwid, expected, "{dir}");
    }
    let turin_url = kds.vcek_url(SnpProduct::Turin, &report("turin-oak-v5"));
    let hwid = turin_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    assert_eq!(hwid.len(), 16, "{turin_url}");
    assert!(turin_url.contains("?fmcSPL="), "{turin_url}");
    let genoa_url = kds.vcek_url(SnpProduct::Genoa, &report("genoa-oak-v5"));
    assert!(!genoa_url.contains("fmcSPL"), "{genoa_url}");
}

#[tokio::test]
async fn retries_two_503s_then_succeeds() {
    let (server, objects) = kds_server();
    server.fail_next(2, Fault::Status(503, None));
    let body = fetcher().get(&objects[0].url).await.unwrap();
    assert_eq!(body, objects[0].body);
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn retries_429_and_500() {
    let (server, objects) = kds_server();
    server.fail_next(1, Fault::Status(429, None));
    server.fail_next(1, Fault::Status(500, None));
    assert_eq!(
        fetcher().get(&objects[0].url).await.unwrap(),
        objects[0].body
    );
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn gives_up_after_the_configured_attempts() {
    let (server, objects) = kds_server();
    server.fail_next(10, Fault::Status(503, None));
    let err = fetcher().get(&objects[0].url).await.unwrap_err();
    assert_eq!(
        err,
        FetchError::Status {
            url: objects[0].url.clone(),
            status: 503
        }
    );
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let server = TestServer::start();
    let url = format!("{}/vcek/v1/Milan/nope", server.base());
    let err = fetcher().get(&url).await.unwrap_err();
    assert_eq!(err, FetchError::Status { url, status: 404 });
    assert!(!err.is_transient());
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn honours_retry_after() {
    let (server, objects) = kds_server();
    server.fail_next(1, Fault::Status(429, Some("1")));
    let start = Instant::now();
    fetcher().get(&objects[0].url).await.unwrap();
    let waited = start.elapsed();
    // The backoff alone would be 5 ms; only Retry-After explains a full second.
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn caps_retry_after() {
    let (server, objects) = kds_server();
    server.fail_next(1, Fault::Status(503, Some("3600")));
    let mut config = fast_config();
    config.retry.max_retry_after = Duration::from_millis(50);
    let start = Instant::now();
    fetcher_with(config).get(&objects[0].url).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.hits(), 2);
}

fn short_timeout(attempts: u32) -> HttpConfig {
    HttpConfig {
        timeout: Duration::from_millis(300),
        retry: RetryPolicy {
            attempts,
            ..fast_config().retry
        },
        ..fast_config()
    }
}

#[tokio::test]
async fn slow_server_times_out() {
    let (server, objects) = kds_server();
    server.fail_next(1, Fault::Delay(Duration::from_secs(2)));
    let start = Instant::now();
    let err = fetcher_with(short_timeout(1))
        .get(&objects[0].url)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Timeout { url, seconds: 1 } if *url == objects[0].url),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn timeouts_are_retried() {
    let (server, objects) = kds_server();
    server.fail_next(1, Fault::Delay(Duration::from_secs(2)));
    let body = fetcher_with(short_timeout(2))
        .get(&objects[0].url)
        .await
        .unwrap();
    assert_eq!(body, objects[0].body);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_naming_the_url() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/vcek/v1/Milan/crl");
    let mut config = fast_config();
    config.retry.attempts = 2;
    let err = fetcher_with(config).get(&url).await.unwrap_err();
    assert!(
        matches!(&err, FetchError::Transport { url: u, .. } if *u == url),
        "{err:?}"
    );
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test]
async fn oversized_bodies_are_rejected_without_retry() {
    let server = TestServer::start();
    server.route("/sized", vec![b'x'; 2048]);
    server.route_unsized("/unsized", vec![b'x'; 2048]);
    server.route("/fits", vec![b'x'; 1024]);
    let mut config = fast_config();
    config.max_body_bytes = 1024;
    let f = fetcher_with(config);
    for path in ["/sized", "/unsized"] {
        let url = format!("{}{path}", server.base());
        let err = f.get(&url).await.unwrap_err();
        assert!(
            matches!(&err, FetchError::Transport { url: u, reason } if *u == url && reason.contains("1024")),
            "{err:?}"
        );
    }
    assert_eq!(server.hits(), 2);
    assert_eq!(
        f.get(&format!("{}/fits", server.base()))
            .await
            .unwrap()
            .len(),
        1024
    );
}
