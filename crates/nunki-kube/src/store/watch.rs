//! [`Store::watch`](nunki_store::Store::watch) for [`KubeStore`]: list the entry by name, then
//! a Kubernetes watch from the list's `resourceVersion`. A watch the server ends (its timeout)
//! is resumed from the last version seen; 410 Gone (that version was compacted away), as an
//! HTTP status or as an `ERROR` event, starts over with a list.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, WatchEvent, WatchParams};
use nunki_store::{Store, StoreError, StoreKey, WatchStream};

use super::names::entry_name;
use super::{KubeStore, describe_kube_error};

/// Seconds after which the API server ends a watch request (it is then resumed).
const WATCH_TIMEOUT_SECS: u32 = 290;

type Events = BoxStream<'static, kube::Result<WatchEvent<ConfigMap>>>;

struct State<'a> {
    store: &'a KubeStore,
    key: StoreKey,
    name: String,
    /// Version to watch from; None: list first.
    resource_version: Option<String>,
    events: Option<Events>,
    /// The value yielded last; None before the first.
    last: Option<Option<Vec<u8>>>,
    /// Wait this long before the next request (after a failure).
    delay: Option<Duration>,
    /// The delay after the next failure.
    next_delay: Duration,
}

type Item = Result<Option<Vec<u8>>, StoreError>;

impl State<'_> {
    fn failed(&mut self, error: StoreError) -> Item {
        self.delay = Some(self.next_delay);
        self.next_delay = (self.next_delay * 2).min(self.store.retry_max);
        Err(error)
    }

    fn succeeded(&mut self) {
        self.next_delay = self.store.retry_min;
    }

    /// The value to yield for `value`, if it differs from the last one.
    fn changed(&mut self, value: Option<Vec<u8>>) -> Option<Item> {
        if self.last.as_ref() == Some(&value) {
            return None;
        }
        self.last = Some(value.clone());
        Some(Ok(value))
    }

    fn error(&self, what: &str, e: &kube::Error) -> StoreError {
        self.store
            .api_error(self.store.location(&self.key), what, e)
    }

    fn is_gone(e: &kube::Error) -> bool {
        matches!(e, kube::Error::Api(s) if s.code == 410)
    }

    /// The value of an entry ConfigMap from an event.
    async fn value_of(&mut self, cm: &ConfigMap) -> Result<Vec<u8>, StoreError> {
        self.store.decode(&self.key, cm).await
    }

    async fn next(&mut self) -> Item {
        loop {
            if let Some(d) = self.delay.take() {
                tokio::time::sleep(d).await;
            }
            let Some(rv) = self.resource_version.clone() else {
                // (Re)list: the current value and the version to watch from.
                let params = ListParams::default().fields(&format!("metadata.name={}", self.name));
                let list = match self.store.api.list(&params).await {
                    Ok(l) => l,
                    Err(e) => {
                        let err = self.error("list the ConfigMap to watch it", &e);
                        return self.failed(err);
                    }
                };
                let Some(rv) = list.metadata.resource_version.clone() else {
                    let err = StoreError::Backend {
                        location: self.store.location(&self.key),
                        reason: "the API server listed ConfigMaps without a resourceVersion"
                            .to_owned(),
                    };
                    return self.failed(err);
                };
                let current = match list.items.first() {
                    None => None,
                    Some(cm) => match self.value_of(cm).await {
                        Ok(v) => Some(v),
                        Err(e) => return self.failed(e),
                    },
                };
                self.resource_version = Some(rv);
                self.events = None;
                self.succeeded();
                if let Some(item) = self.changed(current) {
                    return item;
                }
                continue;
            };
            let events = match self.events.as_mut() {
                Some(events) => events,
                None => {
                    let params = WatchParams::default()
                        .fields(&format!("metadata.name={}", self.name))
                        .timeout(WATCH_TIMEOUT_SECS);
                    match self.store.api.watch(&params, &rv).await {
                        Ok(events) => self.events.insert(events.boxed()),
                        Err(e) if Self::is_gone(&e) => {
                            tracing::debug!(key = %self.key, "watch version expired; listing again");
                            self.resource_version = None;
                            continue;
                        }
                        Err(e) => {
                            let err = self.error("watch the ConfigMap", &e);
                            return self.failed(err);
                        }
                    }
                }
            };
            match events.next().await {
                // The server ended the watch (its timeout): resume from the last version.
                None => self.events = None,
                Some(Ok(WatchEvent::Added(cm) | WatchEvent::Modified(cm))) => {
                    if cm.metadata.name.as_deref() != Some(self.name.as_str()) {
                        continue;
                    }
                    self.resource_version = cm.metadata.resource_version.clone().or(Some(rv));
                    self.succeeded();
                    match self.value_of(&cm).await {
                        Ok(v) => {
                            if let Some(item) = self.changed(Some(v)) {
                                return item;
                            }
                        }
                        // A broken entry is reported; the watch goes on.
                        Err(e) => return Err(e),
                    }
                }
                Some(Ok(WatchEvent::Deleted(cm))) => {
                    if cm.metadata.name.as_deref() != Some(self.name.as_str()) {
                        continue;
                    }
                    self.resource_version = cm.metadata.resource_version.clone().or(Some(rv));
                    if let Some(item) = self.changed(None) {
                        return item;
                    }
                }
                Some(Ok(WatchEvent::Bookmark(b))) => {
                    self.resource_version = Some(b.metadata.resource_version);
                }
                Some(Ok(WatchEvent::Error(status))) if status.code == 410 => {
                    tracing::debug!(key = %self.key, "watch version expired; listing again");
                    self.resource_version = None;
                    self.events = None;
                }
                Some(Ok(WatchEvent::Error(status))) => {
                    self.events = None;
                    let err = self.error("watch the ConfigMap", &kube::Error::Api(status));
                    return self.failed(err);
                }
                Some(Err(e)) if Self::is_gone(&e) => {
                    self.resource_version = None;
                    self.events = None;
                }
                Some(Err(e)) => {
                    self.events = None;
                    let err = StoreError::Backend {
                        location: self.store.location(&self.key),
                        reason: format!(
                            "the watch broke off: {}; resuming",
                            describe_kube_error(&e)
                        ),
                    };
                    return self.failed(err);
                }
            }
        }
    }
}

/// The watch stream of `key`.
pub(super) fn watch(store: &KubeStore, key: StoreKey) -> WatchStream<'_> {
    let state = State {
        store,
        name: entry_name(&key),
        key,
        resource_version: None,
        events: None,
        last: None,
        delay: None,
        next_delay: store.retry_min,
    };
    stream::unfold(state, |mut st| async move {
        let item = st.next().await;
        Some((item, st))
    })
    .boxed()
}
