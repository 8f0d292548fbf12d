//! `CachingFetcher` over `HttpFetcher` against the fake KDS, with real files in a temp dir.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use nunki_attestation::SignerKind;
use nunki_attestation::snp::kds::{FetchError, GetFuture, HttpGet, Kds};
use nunki_collateral::{CachePolicy, CachingFetcher, HttpFetcher, RetryPolicy};
use nunki_manifest::SnpProduct;

use crate::server::Fault;
use crate::{fast_config, fetcher, fetcher_with, kds_server, report, snp_file};

/// A fetcher that must never be reached: proves an answer came from disk.
#[derive(Debug)]
struct Offline;

impl HttpGet for Offline {
    fn get<'a>(&'a self, url: &'a str) -> GetFuture<'a> {
        Box::pin(async move {
            Err(FetchError::Transport {
                url: url.to_string(),
                reason: "offline".into(),
            })
        })
    }
}

fn age(path: &Path, by: Duration) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

#[tokio::test]
async fn second_request_is_served_from_disk() {
    let (server, objects) = kds_server();
    let dir = tempfile::tempdir().unwrap();
    let cache = CachingFetcher::new(fetcher(), dir.path());
    let o = &objects[0];
    assert_eq!(cache.get(&o.url).await.unwrap(), o.body);
    assert_eq!(cache.get(&o.url).await.unwrap(), o.body);
    assert_eq!(server.hits(), 1);
    let entry = cache.entry_path(&o.url);
    assert_eq!(entry.parent(), Some(dir.path()));
    assert_eq!(entry.file_name().unwrap().len(), 64);
    assert_eq!(fs::read(&entry).unwrap(), o.body);
    // Only the entry itself: temp files are renamed away.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn cache_survives_a_new_instance() {
    let (server, objects) = kds_server();
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = CachingFetcher::new(fetcher(), dir.path());
        for o in &objects {
            assert_eq!(cache.get(&o.url).await.unwrap(), o.body, "{}", o.file);
        }
    }
    let hits = server.hits();
    assert_eq!(hits, objects.len());
    // CRLs expire by default, so keep everything for this check.
    let reopened = CachingFetcher::new(Offline, dir.path()).with_max_age(None);
    for o in &objects {
        assert_eq!(reopened.get(&o.url).await.unwrap(), o.body, "{}", o.file);
    }
    let again = CachingFetcher::new(fetcher(), dir.path()).with_max_age(None);
    for o in &objects {
        again.get(&o.url).await.unwrap();
    }
    assert_eq!(server.hits(), hits);
}

#[tokio::test]
async fn kds_client_over_the_cache() {
    let (server, _) = kds_server();
    let dir = tempfile::tempdir().unwrap();
    let kds = Kds::with_base(server.base(), CachingFetcher::new(fetcher(), dir.path()));
    let report = report("genoa-oak-v5");
    for _ in 0..2 {
        assert_eq!(
            kds.fetch_vcek(SnpProduct::Genoa, &report).await.unwrap(),
            snp_file("genoa-oak-v5/vcek.der")
        );
        assert_eq!(
            kds.fetch_cert_chain(SnpProduct::Genoa, SignerKind::Vcek)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            kds.fetch_crl(SnpProduct::Genoa, SignerKind::Vcek)
                .await
                .unwrap(),
            snp_file("amd/crl_genoa_2022-10-31.der")
        );
    }
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn expired_entries_are_refetched() {
    let (server, objects) = kds_server();
    let dir = tempfile::tempdir().unwrap();
    let cache =
        CachingFetcher::new(fetcher(), dir.path()).with_max_age(Some(Duration::from_secs(3600)));
    let o = &objects[0];
    cache.get(&o.url).await.unwrap();
    age(&cache.entry_path(&o.url), Duration::from_secs(1800));
    cache.get(&o.url).await.unwrap();
    assert_eq!(server.hits(), 1, "still within max-age");
    age(&cache.entry_path(&o.url), Duration::from_secs(7200));
    assert_eq!(cache.get(&o.url).await.unwrap(), o.body);
    assert_eq!(server.hits(), 2, "expired entry refetched");
    // The refetch rewrote the entry, so it is fresh again.
    cache.get(&o.url).await.unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn default_policy_expires_crls_but_keeps_certificates() {
    let (server, _) = kds_server();
    let dir = tempfile::tempdir().unwrap();
    let cache = CachingFetcher::new(fetcher(), dir.path());
    assert_eq!(*cache.policy(), CachePolicy::default());
    let kds = Kds::with_base(server.base(), fetcher());
    let crl = kds.crl_url(SnpProduct::Milan, SignerKind::Vcek);
    let chain = kds.cert_chain_url(SnpProduct::Milan, SignerKind::Vcek);
    cache.get(&crl).await.unwrap();
    cache.get(&chain).await.unwrap();
    let two_days = Duration::from_secs(2 * 24 * 3600);
    age(&cache.entry_path(&crl), two_days);
    age(&cache.entry_path(&chain), two_days);
    cache.get(&crl).await.unwrap();
    cache.get(&chain).await.unwrap();
    assert_eq!(server.hits(), 3, "only the CRL was refetched");
    assert!(server.seen().last().unwrap().target.ends_with("/crl"));
}

#[tokio::test]
async fn expired_entry_is_not_used_when_the_refetch_fails() {
    let (server, objects) = kds_server();
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_config();
    config.retry = RetryPolicy {
        attempts: 2,
        ..config.retry
    };
    let cache = CachingFetcher::new(fetcher_with(config), dir.path())
        .with_max_age(Some(Duration::from_secs(60)));
    let o = &objects[0];
    cache.get(&o.url).await.unwrap();
    let entry = cache.entry_path(&o.url);
    age(&entry, Duration::from_secs(120));
    server.fail_next(2, Fault::Status(503, None));
    let err = cache.get(&o.url).await.unwrap_err();
    assert_eq!(
        err,
        FetchError::Status {
            url: o.url.clone(),
            status: 503
        }
    );
    assert_eq!(server.hits(), 3);
    // Fail closed on a permanent error too.
    let gone = CachingFetcher::new(Offline, dir.path()).with_max_age(Some(Duration::from_secs(60)));
    assert!(gone.get(&o.url).await.is_err());
    // The stale entry is kept (not served) and replaced once the server recovers.
    assert_eq!(fs::read(&entry).unwrap(), o.body);
    assert_eq!(cache.get(&o.url).await.unwrap(), o.body);
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn corrupt_entries_are_refetched() {
    let (server, objects) = kds_server();
    let dir = tempfile::tempdir().unwrap();
    let cache = CachingFetcher::new(fetcher(), dir.path());
    let (a, b, c) = (&objects[0], &objects[1], &objects[2]);

    // An empty directory where the file should be: unreadable, replaced by the refetched file.
    fs::create_dir_all(cache.entry_path(&a.url)).unwrap();
    assert_eq!(cache.get(&a.url).await.unwrap(), a.body);
    assert_eq!(fs::read(cache.entry_path(&a.url)).unwrap(), a.body);

    // An empty file (what a torn write without fsync could leave behind).
    fs::write(cache.entry_path(&b.url), b"").unwrap();
    assert_eq!(cache.get(&b.url).await.unwrap(), b.body);
    assert_eq!(fs::read(cache.entry_path(&b.url)).unwrap(), b.body);
    assert_eq!(server.hits(), 2);

    // Both are now served from disk.
    cache.get(&a.url).await.unwrap();
    cache.get(&b.url).await.unwrap();
    assert_eq!(server.hits(), 2);

    // A non-empty directory cannot be replaced: every call refetches, but none fails.
    let blocked = cache.entry_path(&c.url);
    fs::create_dir_all(blocked.join("x")).unwrap();
    assert_eq!(cache.get(&c.url).await.unwrap(), c.body);
    assert_eq!(cache.get(&c.url).await.unwrap(), c.body);
    assert_eq!(server.hits(), 4);
    assert!(blocked.join("x").is_dir());
}

#[tokio::test]
async fn errors_are_not_cached() {
    let (server, objects) = kds_server();
    let dir = tempfile::tempdir().unwrap();
    let cache = CachingFetcher::new(fetcher(), dir.path());
    let url = format!("{}/vcek/v1/Milan/later", server.base());
    let err = cache.get(&url).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert!(!cache.entry_path(&url).exists());
    server.route("/vcek/v1/Milan/later", objects[0].body.clone());
    assert_eq!(cache.get(&url).await.unwrap(), objects[0].body);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unwritable_cache_dir_does_not_break_fetching() {
    let (server, objects) = kds_server();
    let dir = tempfile::tempdir().unwrap();
    // A file where the cache directory should be: create_dir_all fails even as root.
    let not_a_dir = dir.path().join("file");
    fs::write(&not_a_dir, b"x").unwrap();
    let cache = CachingFetcher::new(fetcher(), not_a_dir.join("cache"));
    assert_eq!(cache.get(&objects[0].url).await.unwrap(), objects[0].body);
    assert_eq!(server.hits(), 1);
}

#[test]
fn fetcher_types_are_shareable() {
    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_send_sync::<HttpFetcher>();
    assert_send_sync::<CachingFetcher<HttpFetcher>>();
}
