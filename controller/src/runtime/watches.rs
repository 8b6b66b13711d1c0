//! The watch streams the Controllers are fed with: each retries on its own
//! [`WatchBackoff`] and passes no error on.
//!
//! Why not kube-runtime's `Controller::new` / `owns` / `watches`: the Controller puts all
//! of its trigger streams behind *one* backoff, which stops polling every stream while it
//! waits. After an apiserver restart each watch fails once or twice (a 503 while the new
//! apiserver warms up, a 410 on resuming from the old resourceVersion), and those pauses,
//! one after another, held back every event for about half a minute (measured in the
//! apiserver-restart e2e). A watch that fails here waits for itself only.

use std::fmt::Debug;
use std::hash::Hash;

use futures::{Stream, StreamExt, future};
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tracing::debug;

use super::backoff::WatchBackoff;
use crate::adapters::cache::slim;

/// Objects that change (applied or deleted), for `owns_stream` / `watches_stream`.
pub fn touched<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    errors_dropped(
        watcher(api, config)
            .backoff(WatchBackoff::default())
            .touched_objects(),
    )
}

/// As [`touched`], keeping `writer`'s cache up to date on the way (objects [`slim`]med).
pub fn cached_touched<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    errors_dropped(
        watcher(api, config)
            .backoff(WatchBackoff::default())
            .modify(slim)
            .reflect(writer)
            .touched_objects(),
    )
}

/// Objects created or updated (not deleted), cached in `writer` ([`slim`]med): a
/// Controller's own kind,
/// for `Controller::for_stream` (what `Controller::new` builds, with this module's retries).
pub fn cached_applied<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    errors_dropped(
        watcher(api, config)
            .backoff(WatchBackoff::default())
            .modify(slim)
            .reflect(writer)
            .applied_objects(),
    )
}

/// The errors of a watch that already retries by itself are only worth a log line.
fn errors_dropped<K>(
    stream: impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
{
    stream.filter_map(|item| {
        future::ready(match item {
            Ok(object) => Some(Ok(object)),
            Err(error) => {
                debug!(%error, "watch failed; retrying");
                None
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    #[tokio::test]
    async fn errors_are_dropped_and_objects_pass_in_order() {
        let items: Vec<Result<u32, watcher::Error>> = vec![
            Ok(1),
            Err(watcher::Error::NoResourceVersion),
            Ok(2),
            Err(watcher::Error::NoResourceVersion),
        ];
        let passed: Vec<u32> = errors_dropped(stream::iter(items))
            .map(|r| r.expect("no error passes"))
            .collect()
            .await;
        assert_eq!(passed, vec![1, 2]);
    }
}
