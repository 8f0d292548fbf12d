#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The Kubernetes store against the fake API server (the real `kube` client over loopback
//! HTTP): the shared store contract, then what is specific to ConfigMaps: object layout and
//! limits, 409 conflicts, 410 on watches, failures and tampering.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use nunki_kube::KubeStore;
use nunki_kube::store::fake::{FakeApiServer, MAX_CONFIGMAP_DATA};
use nunki_kube::store::names;
use nunki_store::contract::{Backend, key, next_value, pattern};
use nunki_store::{Store, StoreError, StoreKey};
use serde_json::{Value, json};

const NS: &str = "nunki-test";

struct Kube {
    server: FakeApiServer,
    store: Arc<KubeStore>,
}

impl Kube {
    async fn new() -> Kube {
        let server = FakeApiServer::start().await.unwrap();
        let store = Arc::new(server.store(NS).unwrap());
        Kube { server, store }
    }
}

#[async_trait::async_trait]
impl Backend for Kube {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    /// Another replica: its own client on the same API server.
    async fn reopen(&self) -> Arc<dyn Store> {
        Arc::new(self.server.store(NS).unwrap())
    }
}

mod contract {
    use super::*;
    nunki_store::store_contract!(Kube::new());
}

fn data_size(cm: &Value) -> usize {
    cm.get("binaryData")
        .and_then(Value::as_object)
        .map(|d| {
            d.values()
                .map(|v| v.as_str().unwrap().len() / 4 * 3)
                .sum::<usize>()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn entries_are_labelled_configmaps_named_after_their_key() {
    let k = Kube::new().await;
    let latest = StoreKey::latest_transition();
    k.store
        .compare_and_swap(&latest, None, b"v1")
        .await
        .unwrap();
    let cm = k
        .server
        .object(NS, "nunki-store.transitions.latest")
        .expect("the entry ConfigMap");
    assert_eq!(cm["binaryData"]["value"], json!("djE="));
    assert_eq!(
        cm["metadata"]["labels"],
        json!({
            "app.kubernetes.io/managed-by": "nunki-coordinator",
            "nunki.edgeless.systems/store-object": "entry",
            "nunki.edgeless.systems/store-dir": "transitions",
        })
    );
    assert_eq!(
        cm["metadata"]["annotations"],
        json!({"nunki.edgeless.systems/store-key": "transitions/latest"})
    );
    assert!(cm.get("data").is_none());
    // A key that is no valid object name as such gets a hashed name.
    let odd = key("a-b-0/Name-With-Caps-9");
    k.store.set(&odd, b"x").await.unwrap();
    let name = names::entry_name(&odd);
    assert!(name.starts_with("nunki-store-h."), "{name}");
    let cm = k.server.object(NS, &name).unwrap();
    assert_eq!(
        cm["metadata"]["annotations"]["nunki.edgeless.systems/store-key"],
        json!("a-b-0/Name-With-Caps-9")
    );
    assert!(
        k.store.location(&odd).contains(&name) && k.store.location(&odd).contains(NS),
        "{}",
        k.store.location(&odd)
    );
    // Other namespaces see nothing.
    let other = k.server.store("elsewhere").unwrap();
    assert_eq!(other.get(&latest).await.unwrap(), None);
}

#[tokio::test]
async fn large_values_are_chunked_within_the_object_limit() {
    let k = Kube::new().await;
    let policy = key("policies/big");
    let value = pattern(5 * nunki_kube::store::CHUNK_BYTES / 2, 3);
    k.store.set(&policy, &value).await.unwrap();
    let objects = k.server.objects(NS);
    let digest = names::sha256_hex(&value);
    let entry = &objects["nunki-store.policies.big"];
    assert_eq!(
        entry["metadata"]["annotations"]["nunki.edgeless.systems/store-chunks"],
        json!("3")
    );
    assert_eq!(
        entry["metadata"]["annotations"]["nunki.edgeless.systems/store-sha256"],
        json!(digest)
    );
    assert!(entry.get("binaryData").is_none());
    let mut joined = Vec::new();
    for i in 0..3 {
        let chunk = &objects[&names::chunk_name(&digest, i)];
        assert!(data_size(chunk) <= MAX_CONFIGMAP_DATA);
        assert_eq!(
            chunk["metadata"]["labels"]["nunki.edgeless.systems/store-object"],
            json!("chunk")
        );
        let b64 = chunk["binaryData"]["value"].as_str().unwrap();
        use base64::Engine as _;
        joined.extend(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        );
    }
    assert_eq!(joined, value);
    assert_eq!(objects.len(), 4);
    // The same value again writes nothing.
    let before = k.server.requests().len();
    k.store.set(&policy, &value).await.unwrap();
    let writes = k.server.requests()[before..]
        .iter()
        .filter(|r| r.starts_with("PUT") || r.starts_with("POST"))
        .count();
    assert_eq!(writes, 0, "{:?}", &k.server.requests()[before..]);
    // The fake enforces the API server's limit: an unchunked value that large is refused.
    let too_big = pattern(MAX_CONFIGMAP_DATA + 1, 0);
    use base64::Engine as _;
    let raw = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "raw", "namespace": NS},
        "binaryData": {"value": base64::engine::general_purpose::STANDARD.encode(&too_big)},
    });
    let client = k.server.client(NS).unwrap();
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, NS);
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(raw).unwrap();
    let e = api
        .create(&kube::api::PostParams::default(), &cm)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Too long"), "{e}");
}

#[tokio::test]
async fn a_write_between_read_and_replace_is_a_conflict() {
    let k = Kube::new().await;
    let latest = StoreKey::latest_transition();
    k.store
        .compare_and_swap(&latest, None, b"v1")
        .await
        .unwrap();
    // Another replica writes v2 after this one read v1 and before it replaces it: the
    // resourceVersion no longer matches and the API server answers 409.
    let mut concurrent = k
        .server
        .object(NS, "nunki-store.transitions.latest")
        .unwrap();
    concurrent["binaryData"]["value"] = json!("djI="); // "v2"
    k.server
        .interleave_write("nunki-store.transitions.latest", concurrent);
    let e = k
        .store
        .compare_and_swap(&latest, Some(b"v1"), b"mine")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("expected 2 bytes starting 7631, found 2 bytes starting 7632"),
        "{e}"
    );
    assert!(
        e.to_string().contains("nunki-store.transitions.latest"),
        "{e}"
    );
    let puts: Vec<String> = k
        .server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT"))
        .collect();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(
        k.store.get(&latest).await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );

    // The same for a create that loses: another replica creates the entry first.
    let other = key("transitions/other");
    k.server.interleave_write(
        "nunki-store.transitions.other",
        json!({
            "metadata": {"name": "nunki-store.transitions.other",
                         "annotations": {"nunki.edgeless.systems/store-key": "transitions/other"}},
            "binaryData": {"value": "dGhlaXJz"},
        }),
    );
    let e = k
        .store
        .compare_and_swap(&other, None, b"mine")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("expected absent, found 6 bytes starting 7468656972"),
        "{e}"
    );

    // A plain 409 from the server with the value unchanged is still a conflict.
    k.server.fail_next("PUT", "transitions.latest", 409, 1);
    let e = k
        .store
        .compare_and_swap(&latest, Some(b"v2"), b"v3")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    k.store
        .compare_and_swap(&latest, Some(b"v2"), b"v3")
        .await
        .unwrap();

    // set retries past conflicts and ends with its value.
    k.server.fail_next("PUT", "transitions.latest", 409, 3);
    k.store.set(&latest, b"set").await.unwrap();
    assert_eq!(
        k.store.get(&latest).await.unwrap().as_deref(),
        Some(&b"set"[..])
    );
    // ... but not forever.
    k.server.fail_next("PUT", "transitions.latest", 409, 100);
    let e = k.store.set(&latest, b"never").await.unwrap_err();
    assert!(e.to_string().contains("changed concurrently"), "{e}");
}

#[tokio::test]
async fn api_errors_name_the_object_and_the_fix() {
    let k = Kube::new().await;
    let latest = StoreKey::latest_transition();
    k.server.fail_next("GET", "transitions.latest", 403, 1);
    let e = k.store.get(&latest).await.unwrap_err();
    assert!(matches!(e, StoreError::Backend { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "ConfigMap {NS}/nunki-store.transitions.latest (store key transitions/latest): cannot read the ConfigMap: the API server answered 403 Forbidden"
        )),
        "{msg}"
    );
    assert!(msg.contains("get, list, watch, create and update"), "{msg}");
    k.server.fail_next("POST", "configmaps", 500, 1);
    let e = k.store.set(&latest, b"x").await.unwrap_err();
    assert!(e.to_string().contains("cannot write the ConfigMap"), "{e}");
    // Nothing was written by the failed attempt; the next one works.
    assert_eq!(k.store.get(&latest).await.unwrap(), None);
    k.store.set(&latest, b"x").await.unwrap();

    // An unreachable API server.
    let url = k.server.url();
    drop(k);
    let mut config = kube::Config::new(url.parse().unwrap());
    config.connect_timeout = Some(Duration::from_secs(2));
    let gone = KubeStore::new(kube::Client::try_from(config).unwrap(), NS);
    let e = gone.get(&latest).await.unwrap_err();
    assert!(e.to_string().contains("reachable"), "{e}");
}

#[tokio::test]
async fn tampered_objects_are_reported_not_believed() {
    let k = Kube::new().await;
    let latest = StoreKey::latest_transition();
    k.store.set(&latest, b"genuine").await.unwrap();
    let name = "nunki-store.transitions.latest";
    let original = k.server.object(NS, name).unwrap();

    // The object claims another key.
    let mut other = original.clone();
    other["metadata"]["annotations"]["nunki.edgeless.systems/store-key"] =
        json!("transitions/other");
    k.server.put_object(NS, other);
    let e = k.store.get(&latest).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("holds store key \"transitions/other\""),
        "{e}"
    );

    // Not written by the store at all.
    k.server.put_object(
        NS,
        json!({"metadata": {"name": name}, "data": {"value": "hello"}}),
    );
    let e = k.store.get(&latest).await.unwrap_err();
    assert!(
        e.to_string().contains("not written by the Nunki store"),
        "{e}"
    );

    // Extra data next to the value.
    let mut extra = original.clone();
    extra["binaryData"]["more"] = json!("AA==");
    k.server.put_object(NS, extra);
    let e = k.store.get(&latest).await.unwrap_err();
    assert!(e.to_string().contains("exactly one binaryData key"), "{e}");

    // set repairs the entry (as the directory store overwrites a broken file), even with a
    // value that looks like what the broken entry seems to hold.
    let mut emptied = original.clone();
    emptied["metadata"]["annotations"] = json!({});
    emptied.as_object_mut().unwrap().remove("binaryData");
    k.server.put_object(NS, emptied);
    assert!(k.store.get(&latest).await.is_err());
    k.store.set(&latest, b"").await.unwrap();
    assert_eq!(
        k.store.get(&latest).await.unwrap().as_deref(),
        Some(&b""[..])
    );
    k.store.set(&latest, b"genuine").await.unwrap();
    assert_eq!(
        k.store.get(&latest).await.unwrap().as_deref(),
        Some(&b"genuine"[..])
    );

    // A chunk modified or deleted.
    let big_key = key("manifests/big");
    let big = pattern(nunki_kube::store::CHUNK_BYTES + 1, 4);
    k.store.set(&big_key, &big).await.unwrap();
    let digest = names::sha256_hex(&big);
    let chunk = names::chunk_name(&digest, 1);
    let mut cm = k.server.object(NS, &chunk).unwrap();
    cm["binaryData"]["value"] = json!("AQ=="); // one byte, but not the right one
    k.server.put_object(NS, cm);
    let e = k.store.get(&big_key).await.unwrap_err();
    assert!(e.to_string().contains("a chunk was modified"), "{e}");
    k.server.delete_object(NS, &chunk);
    let e = k.store.get(&big_key).await.unwrap_err();
    assert!(e.to_string().contains("chunk 1 of 2"), "{e}");
    assert!(e.to_string().contains(&chunk), "{e}");
    // Writing the value again restores the chunk.
    k.store.set(&big_key, &big).await.unwrap();
    assert_eq!(k.store.get(&big_key).await.unwrap().unwrap(), big);

    // Absurd chunk annotations are refused before anything is fetched.
    let mut cm = k.server.object(NS, "nunki-store.manifests.big").unwrap();
    cm["metadata"]["annotations"]["nunki.edgeless.systems/store-chunks"] = json!("100000");
    k.server.put_object(NS, cm);
    let e = k.store.get(&big_key).await.unwrap_err();
    assert!(e.to_string().contains("expected a number from 1 to"), "{e}");
}

/// The watch uses the API's watch, not polling: a change arrives as an event, without more
/// list or get requests for the entry.
#[tokio::test]
async fn watch_is_a_kubernetes_watch() {
    let k = Kube::new().await;
    let latest = StoreKey::latest_transition();
    let writer = k.server.store(NS).unwrap();
    let mut w = k.store.watch(&latest);
    assert_eq!(next_value(&mut w).await, None);
    writer
        .compare_and_swap(&latest, None, b"one")
        .await
        .unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"one"[..]));
    let requests = k.server.requests();
    let lists = requests
        .iter()
        .filter(|r| {
            r.starts_with("GET") && r.contains("fieldSelector") && !r.contains("watch=true")
        })
        .count();
    let watches = requests.iter().filter(|r| r.contains("watch=true")).count();
    assert_eq!((lists, watches), (1, 1), "{requests:?}");
    let watch = requests.iter().find(|r| r.contains("watch=true")).unwrap();
    assert!(
        watch.contains("fieldSelector=metadata.name%3Dnunki-store.transitions.latest"),
        "{watch}"
    );
}

/// 410 Gone on a running watch (an `ERROR` event) and on a watch request (HTTP status): the
/// watch lists again and reports what changed meanwhile, once.
#[tokio::test]
async fn watch_relists_after_410() {
    let k = Kube::new().await;
    let latest = StoreKey::latest_transition();
    let writer = k.server.store(NS).unwrap();
    let mut w = k.store.watch(&latest);
    assert_eq!(next_value(&mut w).await, None);
    writer
        .compare_and_swap(&latest, None, b"one")
        .await
        .unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"one"[..]));

    // The running watch expires; meanwhile the value changes.
    k.server.expire_watches();
    writer
        .compare_and_swap(&latest, Some(b"one"), b"two")
        .await
        .unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"two"[..]));

    // The server ends the watch (timeout) and history is compacted before it resumes: the
    // resumed watch request gets HTTP 410 and the watch lists again.
    let lists_before = count(&k.server, |r| {
        r.starts_with("GET") && r.contains("fieldSelector") && !r.contains("watch=true")
    });
    k.server.compact();
    k.server.fail_next("GET", "watch=true", 410, 1);
    k.server.close_watches();
    writer
        .compare_and_swap(&latest, Some(b"two"), b"three")
        .await
        .unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"three"[..]));
    let lists_after = count(&k.server, |r| {
        r.starts_with("GET") && r.contains("fieldSelector") && !r.contains("watch=true")
    });
    assert!(lists_after > lists_before, "no new list after 410");

    // Expired with no change: nothing is reported twice; the next change is.
    k.server.expire_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    writer
        .compare_and_swap(&latest, Some(b"three"), b"four")
        .await
        .unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"four"[..]));
}

fn count(server: &FakeApiServer, f: impl Fn(&str) -> bool) -> usize {
    server.requests().iter().filter(|r| f(r)).count()
}

/// A watch the server ends is resumed from the last version: changes made while no watch was
/// open are not lost, and nothing is listed again.
#[tokio::test]
async fn watch_resumes_after_the_server_ends_it() {
    let k = Kube::new().await;
    let latest = StoreKey::latest_transition();
    let writer = k.server.store(NS).unwrap();
    writer.set(&latest, b"a").await.unwrap();
    let mut w = k.store.watch(&latest);
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"a"[..]));
    for (i, next) in ["b", "c", "d"].iter().enumerate() {
        k.server.close_watches();
        writer.set(&latest, next.as_bytes()).await.unwrap();
        assert_eq!(
            next_value(&mut w).await.as_deref(),
            Some(next.as_bytes()),
            "{i}"
        );
    }
    let lists = count(&k.server, |r| {
        r.starts_with("GET") && r.contains("fieldSelector") && !r.contains("watch=true")
    });
    assert_eq!(lists, 1);
}

/// Failures while watching are reported as items and retried; deletion reports "absent";
/// a broken entry is reported and the watch goes on.
#[tokio::test]
async fn watch_reports_errors_and_goes_on() {
    let k = Kube::new().await;
    let latest = StoreKey::latest_transition();
    // 503 (and 429, 504) the client retries by itself.
    k.server.fail_next("GET", "fieldSelector", 503, 1);
    let mut w = k.store.watch(&latest);
    assert_eq!(next_value(&mut w).await, None);
    drop(w);
    k.server.fail_next("GET", "fieldSelector", 500, 1);
    let mut w = k.store.watch(&latest);
    let first = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap();
    let e = first.unwrap_err();
    assert!(e.to_string().contains("500"), "{e}");
    assert_eq!(next_value(&mut w).await, None);
    k.store.set(&latest, b"x").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"x"[..]));

    // A watch request refused.
    k.server.fail_next("GET", "watch=true", 500, 1);
    k.server.close_watches();
    let e = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("cannot watch the ConfigMap"), "{e}");
    k.store.set(&latest, b"y").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"y"[..]));

    // Tampered entry: an error item, then the repaired value.
    let mut cm = k
        .server
        .object(NS, "nunki-store.transitions.latest")
        .unwrap();
    cm["metadata"]["annotations"] = json!({});
    k.server.put_object(NS, cm);
    let e = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    k.store.set(&latest, b"z").await.unwrap();
    assert_eq!(next_value(&mut w).await.as_deref(), Some(&b"z"[..]));

    // Deleted.
    k.server.delete_object(NS, "nunki-store.transitions.latest");
    assert_eq!(next_value(&mut w).await, None);
}
