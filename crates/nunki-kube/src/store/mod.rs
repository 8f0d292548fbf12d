//! The manifest history in Kubernetes ConfigMaps ([`KubeStore`]), so that several Coordinator
//! replicas share it and it survives losing a node.
//!
//! - **Layout**: one ConfigMap per key ([`names::entry_name`]), value in `binaryData.value`,
//!   labelled `app.kubernetes.io/managed-by: nunki-coordinator` and annotated with its key.
//!   A value larger than [`CHUNK_BYTES`] (a Kubernetes object holds at most 1 MiB of data) is
//!   split into chunk ConfigMaps named after the value's SHA-256; the entry then lists the
//!   chunk count, size and digest, and a read checks them. Chunks are content-addressed and
//!   written before the entry that refers to them, so a reader never sees an entry whose chunks
//!   are not there yet; chunks of a replaced value are left behind (labelled
//!   `nunki.edgeless.systems/store-object: chunk`), since the Coordinator only replaces the small
//!   latest-transition pointer.
//! - **Compare-and-swap**: read the entry, compare the value, then create it (absent) or
//!   replace it with the `resourceVersion` that was read: the API server refuses the write with
//!   409 if anyone wrote in between, which becomes [`StoreError::Conflict`].
//! - **Watch**: list the entry by name, then watch from the list's `resourceVersion`; on
//!   410 Gone (the version was compacted away) list again; a watch the server closes is resumed
//!   from the last version seen.
//! - **Permissions**: `get`, `list`, `watch`, `create` and `update` on ConfigMaps in its own
//!   namespace (see `deploy/coordinator.yaml`).

#[cfg(feature = "fake-api")]
pub mod fake;
pub mod names;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use nunki_store::{Store, StoreError, StoreKey, WatchStream, conflict};

use names::{
    CHUNKS_ANNOTATION, DIR_LABEL, KEY_ANNOTATION, KIND_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
    SHA256_ANNOTATION, SIZE_ANNOTATION, VALUE_KEY, chunk_name, entry_name, is_label_value,
    sha256_hex,
};

/// Largest value kept in the entry itself, and the size of each chunk of a larger one: well
/// below the 1 MiB a ConfigMap may hold, leaving room for metadata.
pub const CHUNK_BYTES: usize = 768 * 1024;
/// Largest value the store writes or reads back (as for the directory store).
pub const MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;
/// Most chunks a value can have.
pub const MAX_CHUNKS: usize = MAX_VALUE_BYTES.div_ceil(CHUNK_BYTES);
/// How often [`Store::set`] retries when the entry keeps changing under it.
const SET_ATTEMPTS: usize = 8;
/// Where Kubernetes mounts the pod's service-account namespace.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// A [`Store`] in ConfigMaps of one namespace.
#[derive(Clone)]
pub struct KubeStore {
    api: Api<ConfigMap>,
    namespace: String,
    /// First delay after a failed watch request; doubled up to [`KubeStore::retry_max`].
    retry_min: Duration,
    retry_max: Duration,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// One entry as read: its `resourceVersion` and value.
#[derive(Debug)]
struct Entry {
    resource_version: Option<String>,
    value: Vec<u8>,
}

impl KubeStore {
    /// A store in `namespace`, through `client`.
    pub fn new(client: kube::Client, namespace: &str) -> KubeStore {
        KubeStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }

    /// A store for a Coordinator running in a pod: the API server and credentials from the
    /// pod's service account, in `namespace` or else the pod's own namespace (read from
    /// [`SERVICE_ACCOUNT_NAMESPACE_FILE`]).
    pub fn in_cluster(namespace: Option<&str>) -> Result<KubeStore, StoreError> {
        let config = kube::Config::incluster().map_err(|e| StoreError::Backend {
            location: "Kubernetes in-cluster configuration".to_owned(),
            reason: format!(
                "{e}; --store kubernetes needs the pod's service account (KUBERNETES_SERVICE_HOST/PORT and {SERVICE_ACCOUNT_NAMESPACE_FILE} with the token beside it); outside a cluster use --store dir"
            ),
        })?;
        let namespace = namespace
            .map(str::to_owned)
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|e| StoreError::Backend {
            location: "Kubernetes client".to_owned(),
            reason: format!("cannot set up the client from the in-cluster configuration: {e}"),
        })?;
        Ok(KubeStore::new(client, &namespace))
    }

    /// The same store with other delays between failed watch requests (tests).
    pub fn with_retry_delays(mut self, min: Duration, max: Duration) -> KubeStore {
        self.retry_min = min;
        self.retry_max = max.max(min);
        self
    }

    /// The namespace of the ConfigMaps.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn object_location(&self, name: &str) -> String {
        format!("ConfigMap {}/{name}", self.namespace)
    }

    /// A Kubernetes API error as a store error, with a hint for the usual causes.
    fn api_error(&self, location: String, what: &str, e: &kube::Error) -> StoreError {
        let hint = match e {
            kube::Error::Api(s) if s.is_forbidden() || s.code == 401 => format!(
                "; the Coordinator's service account needs get, list, watch, create and update on configmaps in namespace {} (the Role in deploy/coordinator.yaml)",
                self.namespace
            ),
            kube::Error::Api(s) if s.code == 413 || s.code == 422 => {
                "; the API server refused the object (too large or invalid)".to_owned()
            }
            kube::Error::Api(_) => String::new(),
            _ => "; is the Kubernetes API server reachable from the pod?".to_owned(),
        };
        StoreError::Backend {
            location,
            reason: format!("cannot {what}: {}{hint}", describe_kube_error(e)),
        }
    }

    /// The ConfigMap named `name`, or None.
    async fn get_object(
        &self,
        name: &str,
        key: &StoreKey,
    ) -> Result<Option<ConfigMap>, StoreError> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| self.api_error(self.location(key), "read the ConfigMap", &e))
    }

    /// The entry of `key`, with all chunks read and checked.
    async fn read(&self, key: &StoreKey) -> Result<Option<Entry>, StoreError> {
        let name = entry_name(key);
        match self.get_object(&name, key).await? {
            None => Ok(None),
            Some(cm) => {
                let value = self.decode(key, &cm).await?;
                Ok(Some(Entry {
                    resource_version: cm.metadata.resource_version,
                    value,
                }))
            }
        }
    }

    /// The value an entry ConfigMap holds (reading its chunks if it has any). Anything not in
    /// the shape this store writes is [`StoreError::Corrupt`], naming the object.
    async fn decode(&self, key: &StoreKey, cm: &ConfigMap) -> Result<Vec<u8>, StoreError> {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let corrupt = |reason: String| StoreError::Corrupt {
            location: format!("{} (store key {key})", self.object_location(&name)),
            reason,
        };
        let annotations = cm.metadata.annotations.clone().unwrap_or_default();
        match annotations.get(KEY_ANNOTATION) {
            Some(k) if *k == key.to_string() => {}
            Some(k) => {
                return Err(corrupt(format!(
                    "holds store key {k:?}, not {key}; the object was replaced or renamed"
                )));
            }
            None => {
                return Err(corrupt(format!(
                    "has no {KEY_ANNOTATION} annotation: not written by the Nunki store; remove or rename it"
                )));
            }
        }
        let Some(chunks) = annotations.get(CHUNKS_ANNOTATION) else {
            return single_value(cm).map_err(corrupt);
        };
        let chunks: usize = chunks
            .parse()
            .ok()
            .filter(|n| (1..=MAX_CHUNKS).contains(n))
            .ok_or_else(|| {
                corrupt(format!(
                    "{CHUNKS_ANNOTATION} is {chunks:?}, expected a number from 1 to {MAX_CHUNKS}"
                ))
            })?;
        let size: usize = annotations
            .get(SIZE_ANNOTATION)
            .and_then(|s| s.parse().ok())
            .filter(|s| *s <= chunks * CHUNK_BYTES && *s > (chunks - 1) * CHUNK_BYTES)
            .ok_or_else(|| {
                corrupt(format!(
                    "{SIZE_ANNOTATION} is missing or does not fit {chunks} chunks of {CHUNK_BYTES} bytes"
                ))
            })?;
        let digest = annotations
            .get(SHA256_ANNOTATION)
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|d| d.to_ascii_lowercase())
            .ok_or_else(|| corrupt(format!("{SHA256_ANNOTATION} is missing or not 64 hex")))?;
        if cm.binary_data.as_ref().is_some_and(|d| !d.is_empty())
            || cm.data.as_ref().is_some_and(|d| !d.is_empty())
        {
            return Err(corrupt(
                "a chunked entry carries data of its own".to_owned(),
            ));
        }
        let mut value = Vec::with_capacity(size);
        for index in 0..chunks {
            let chunk = chunk_name(&digest, index);
            let Some(cm) = self.get_object(&chunk, key).await? else {
                return Err(StoreError::Corrupt {
                    location: self.object_location(&chunk),
                    reason: format!(
                        "chunk {index} of {chunks} of store key {key} is missing (deleted?)"
                    ),
                });
            };
            let part = single_value(&cm).map_err(|reason| StoreError::Corrupt {
                location: self.object_location(&chunk),
                reason,
            })?;
            value.extend_from_slice(&part);
            if value.len() > size {
                break;
            }
        }
        let actual = sha256_hex(&value);
        if value.len() != size || actual != digest {
            return Err(corrupt(format!(
                "its chunks hold {} bytes hashing to {actual}, expected {size} bytes hashing to {digest}; a chunk was modified",
                value.len()
            )));
        }
        Ok(value)
    }

    /// The entry ConfigMap for `value` at `key` (without `resourceVersion`), after writing the
    /// chunks of a large value.
    async fn prepare(&self, key: &StoreKey, value: &[u8]) -> Result<ConfigMap, StoreError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(StoreError::Backend {
                location: self.location(key),
                reason: format!(
                    "the value is {} bytes, more than the store's {MAX_VALUE_BYTES}-byte limit",
                    value.len()
                ),
            });
        }
        let mut annotations = BTreeMap::from([(KEY_ANNOTATION.to_owned(), key.to_string())]);
        let mut labels = base_labels("entry");
        if is_label_value(key.dir()) {
            labels.insert(DIR_LABEL.to_owned(), key.dir().to_owned());
        }
        let binary_data = if value.len() <= CHUNK_BYTES {
            Some(BTreeMap::from([(
                VALUE_KEY.to_owned(),
                ByteString(value.to_vec()),
            )]))
        } else {
            let digest = sha256_hex(value);
            let parts: Vec<&[u8]> = value.chunks(CHUNK_BYTES).collect();
            for (index, part) in parts.iter().enumerate() {
                self.ensure_chunk(key, &chunk_name(&digest, index), part)
                    .await?;
            }
            annotations.insert(CHUNKS_ANNOTATION.to_owned(), parts.len().to_string());
            annotations.insert(SIZE_ANNOTATION.to_owned(), value.len().to_string());
            annotations.insert(SHA256_ANNOTATION.to_owned(), digest);
            None
        };
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(entry_name(key)),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            binary_data,
            ..ConfigMap::default()
        })
    }

    /// Makes the chunk ConfigMap `name` hold `part`.
    async fn ensure_chunk(
        &self,
        key: &StoreKey,
        name: &str,
        part: &[u8],
    ) -> Result<(), StoreError> {
        let location = || self.object_location(name);
        for _ in 0..SET_ATTEMPTS {
            let existing = self.get_object(name, key).await?;
            let mut cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(self.namespace.clone()),
                    labels: Some(base_labels("chunk")),
                    ..ObjectMeta::default()
                },
                binary_data: Some(BTreeMap::from([(
                    VALUE_KEY.to_owned(),
                    ByteString(part.to_vec()),
                )])),
                ..ConfigMap::default()
            };
            let result = match existing {
                Some(old) if single_value(&old).is_ok_and(|v| v == part) => return Ok(()),
                Some(old) => {
                    tracing::warn!(object = %location(), "rewriting a chunk whose content does not match its name");
                    cm.metadata.resource_version = old.metadata.resource_version;
                    self.api.replace(name, &PostParams::default(), &cm).await
                }
                None => self.api.create(&PostParams::default(), &cm).await,
            };
            match result {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {}
                Err(e) => return Err(self.api_error(location(), "write the chunk", &e)),
            }
        }
        Err(StoreError::Backend {
            location: location(),
            reason: format!("changed concurrently {SET_ATTEMPTS} times in a row"),
        })
    }

    /// Creates (`rv` None) or replaces the entry; Ok(false) on a 409 (someone wrote first).
    async fn write_entry(
        &self,
        key: &StoreKey,
        mut cm: ConfigMap,
        rv: Option<String>,
    ) -> Result<bool, StoreError> {
        let name = entry_name(key);
        let result = match rv {
            None => self.api.create(&PostParams::default(), &cm).await,
            Some(rv) => {
                cm.metadata.resource_version = Some(rv);
                self.api.replace(&name, &PostParams::default(), &cm).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => Ok(false),
            // Replacing an entry deleted since it was read: someone else changed it.
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(false),
            Err(e) => Err(self.api_error(self.location(key), "write the ConfigMap", &e)),
        }
    }
}

/// The labels every object of the store carries.
fn base_labels(kind: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (KIND_LABEL.to_owned(), kind.to_owned()),
    ])
}

/// `binaryData.value` of a ConfigMap that must hold exactly that.
fn single_value(cm: &ConfigMap) -> Result<Vec<u8>, String> {
    if cm.data.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err("has `data`; the store only writes `binaryData`".to_owned());
    }
    let binary = cm.binary_data.as_ref();
    match binary.map(|b| (b.len(), b.get(VALUE_KEY))) {
        Some((1, Some(v))) => Ok(v.0.clone()),
        // An empty value: the API server drops empty maps, so accept a missing one too.
        None | Some((0, _)) => Ok(Vec::new()),
        Some(_) => Err(format!(
            "expected exactly one binaryData key, {VALUE_KEY:?}; found {}",
            binary
                .map(|b| b.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        )),
    }
}

/// A kube error for messages: the API status message and code, or the transport error.
pub(crate) fn describe_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() {
                String::new()
            } else {
                format!(" {}", s.reason)
            };
            format!("the API server answered {}{reason}: {}", s.code, s.message)
        }
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl Store for KubeStore {
    async fn get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read(key).await?.map(|e| e.value))
    }

    async fn set(&self, key: &StoreKey, value: &[u8]) -> Result<(), StoreError> {
        let cm = self.prepare(key, value).await?;
        for _ in 0..SET_ATTEMPTS {
            // (resourceVersion, value) of the entry; a value of None: unreadable.
            let current = match self.read(key).await {
                Ok(c) => c.map(|e| (e.resource_version, Some(e.value))),
                // A broken entry is overwritten, as the directory store overwrites a file.
                Err(StoreError::Corrupt { .. }) => {
                    let name = entry_name(key);
                    self.get_object(&name, key)
                        .await?
                        .map(|cm| (cm.metadata.resource_version, None))
                }
                Err(e) => return Err(e),
            };
            let rv = match current {
                Some((Some(_), Some(v))) if v == value => return Ok(()),
                Some((rv, _)) => rv,
                None => None,
            };
            if self.write_entry(key, cm.clone(), rv).await? {
                return Ok(());
            }
        }
        Err(StoreError::Backend {
            location: self.location(key),
            reason: format!("changed concurrently {SET_ATTEMPTS} times in a row"),
        })
    }

    async fn compare_and_swap(
        &self,
        key: &StoreKey,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<(), StoreError> {
        let current = self.read(key).await?;
        let found = current.as_ref().map(|e| e.value.as_slice());
        if found != expected {
            return Err(conflict(self.location(key), expected, found));
        }
        let rv = match current {
            Some(e) => {
                Some(
                    e.resource_version.ok_or_else(|| StoreError::Corrupt {
                        location: self.location(key),
                        reason: "the API server returned the ConfigMap without a resourceVersion"
                            .to_owned(),
                    })?,
                )
            }
            None => None,
        };
        let cm = self.prepare(key, new).await?;
        if self.write_entry(key, cm, rv).await? {
            return Ok(());
        }
        // Someone wrote between our read and our write: report what is there now.
        let now = self.read(key).await.ok().flatten().map(|e| e.value);
        let mut err = conflict(self.location(key), expected, now.as_deref());
        if let StoreError::Conflict { found, .. } = &mut err
            && now.as_deref() == expected
        {
            found.push_str(" after a concurrent write");
        }
        Err(err)
    }

    fn location(&self, key: &StoreKey) -> String {
        format!(
            "{} (store key {key})",
            self.object_location(&entry_name(key))
        )
    }

    fn watch<'a>(&'a self, key: &StoreKey) -> WatchStream<'a> {
        watch::watch(self, key.clone())
    }
}
