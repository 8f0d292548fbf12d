//! The polling implementation of [`Store::watch`], for backends without change notifications.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};

use crate::{Store, StoreError, StoreKey};

/// What [`Store::watch`] returns: the watched key's values (None = absent) as they are seen.
pub type WatchStream<'a> = BoxStream<'a, Result<Option<Vec<u8>>, StoreError>>;

/// Polling interval of the default [`Store::watch`].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A [`Store::watch`] stream built on [`Store::get`]: reads `key` now, then every `interval`,
/// and yields each value that differs from the last one yielded. A failed read is yielded as
/// an error and retried after `interval`.
pub fn poll_watch<'a, S: Store + ?Sized>(
    store: &'a S,
    key: StoreKey,
    interval: Duration,
) -> WatchStream<'a> {
    struct State<'a, S: ?Sized> {
        store: &'a S,
        key: StoreKey,
        interval: Duration,
        /// The value yielded last; None before the first.
        last: Option<Option<Vec<u8>>>,
        /// Whether to wait before the next read (not before the first one).
        wait: bool,
    }
    let state = State {
        store,
        key,
        interval,
        last: None,
        wait: false,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if st.wait {
                tokio::time::sleep(st.interval).await;
            }
            st.wait = true;
            match st.store.get(&st.key).await {
                Ok(value) if st.last.as_ref() != Some(&value) => {
                    st.last = Some(value.clone());
                    return Some((Ok(value), st));
                }
                Ok(_) => {}
                Err(e) => return Some((Err(e), st)),
            }
        }
    })
    .boxed()
}
