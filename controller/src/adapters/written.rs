//! What a write left in the API, as its answer gave it: the object's resourceVersion, or
//! its absence. The runtime waits for its caches to show these before it plans the
//! Rollout that made them again (`runtime::expectations`).
//!
//! resourceVersions are compared as integers. Kubernetes documents them as opaque, but
//! since 1.35 (KEP-5504) they are guaranteed to be comparable decimal integers, which is
//! what etcd's revisions always were. A version that does not parse is never waited for:
//! the only cost is the old behaviour (an occasional conflict, retried with backoff).

/// The caches sluice plans from, each fed by a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cache {
    Rollout,
    ReplicaSet,
    AnalysisRun,
    Service,
    Ingress,
    HttpRoute,
    VirtualService,
    DestinationRule,
    Pod,
    /// The Jobs of `job` metrics (the AnalysisRun controller's).
    Job,
}

/// What a write left in the API: an object at a resourceVersion, or no object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// The object as the write's answer gave it; a cache shows the write once it holds
    /// this version or a later one.
    At(u64),
    /// Deleted; a cache shows the deletion once the object is gone from it.
    Gone,
    /// Changed by a write whose answer holds no version (an eviction): a cache shows it
    /// once it holds a version later than this one, or no object.
    Past(u64),
}

/// One object a reconcile wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub cache: Cache,
    pub namespace: String,
    pub name: String,
    pub version: Version,
}

impl Written {
    /// The object `name` in `namespace` at the resourceVersion the API answered with;
    /// None when that version is not a comparable integer (nothing to wait for).
    pub fn at(
        cache: Cache,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Option<Self> {
        Some(Written {
            cache,
            namespace: namespace.to_string(),
            name: name.to_string(),
            version: Version::At(parse(resource_version)?),
        })
    }

    /// The object `name` in `namespace`, deleted.
    pub fn gone(cache: Cache, namespace: &str, name: &str) -> Self {
        Written {
            cache,
            namespace: namespace.to_string(),
            name: name.to_string(),
            version: Version::Gone,
        }
    }

    /// The object `name` in `namespace`, changed or deleted since `resource_version`;
    /// None when that version is not a comparable integer.
    pub fn past(
        cache: Cache,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Option<Self> {
        Some(Written {
            cache,
            namespace: namespace.to_string(),
            name: name.to_string(),
            version: Version::Past(parse(resource_version)?),
        })
    }

    /// True when a cache holding the object at `cached` (its resourceVersion, or None when
    /// the cache does not hold it) already shows this write.
    pub fn shown_by(&self, cached: Option<Option<&str>>) -> bool {
        match (&self.version, cached) {
            (Version::Gone, None) => true,
            // Still there: a deletion with finalizers shows as a later version first, and
            // nothing sluice deletes has finalizers of its own, so wait for it to go.
            (Version::Gone, Some(_)) => false,
            // Not in the cache yet: a create on its way. (Deleted by someone else right
            // after our write, it never shows; the runtime bounds every wait.)
            (Version::At(_), None) => false,
            (Version::At(written), Some(rv)) => parse(rv).is_none_or(|cached| cached >= *written),
            (Version::Past(_), None) => true,
            (Version::Past(before), Some(rv)) => parse(rv).is_none_or(|cached| cached > *before),
        }
    }
}

fn parse(resource_version: Option<&str>) -> Option<u64> {
    resource_version?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(version: &str) -> Written {
        Written::at(Cache::ReplicaSet, "shop", "web-abc", Some(version)).unwrap()
    }

    #[test]
    fn a_write_is_shown_by_its_own_version_or_a_later_one() {
        let w = rs("120");
        assert!(!w.shown_by(Some(Some("119"))), "the cache is behind");
        assert!(w.shown_by(Some(Some("120"))));
        assert!(w.shown_by(Some(Some("121"))), "someone wrote after us");
        assert!(!w.shown_by(None), "a create not seen yet");
        // Compared as numbers, not as strings.
        assert!(!rs("1000").shown_by(Some(Some("999"))));
        assert!(rs("999").shown_by(Some(Some("1000"))));
        // A cached version that is not a number cannot be ordered: never wait for it.
        assert!(w.shown_by(Some(Some("opaque"))));
    }

    #[test]
    fn a_version_that_is_not_a_number_is_not_waited_for() {
        assert_eq!(Written::at(Cache::Rollout, "shop", "web", Some("x1")), None);
        assert_eq!(Written::at(Cache::Rollout, "shop", "web", None), None);
    }

    #[test]
    fn an_eviction_is_shown_by_any_later_version_or_the_pod_gone() {
        let w = Written::past(Cache::Pod, "shop", "web-abc-x1", Some("300")).unwrap();
        assert!(!w.shown_by(Some(Some("300"))), "the pod as it was evicted");
        assert!(w.shown_by(Some(Some("301"))), "terminating");
        assert!(w.shown_by(None), "already gone");
    }

    #[test]
    fn a_deletion_is_shown_once_the_object_is_gone() {
        let w = Written::gone(Cache::AnalysisRun, "shop", "web-1");
        assert!(!w.shown_by(Some(Some("5"))));
        assert!(w.shown_by(None));
    }
}
