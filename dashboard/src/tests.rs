//! Route-level tests with `tower::ServiceExt::oneshot` against a fake apiserver.
