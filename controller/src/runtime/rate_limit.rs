//! A client-side limit on API requests, as client-go's `--kube-api-qps` / `--kube-api-burst`:
//! a token bucket refilled at `qps` requests a second that holds at most `burst`. A
//! request waits for a token instead of failing, so a burst of work (every Rollout
//! updated at once) is spread out rather than landing on the apiserver all together.
//! kube-rs has no such limit of its own; this is a tower layer on its HTTP stack.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tower::{Layer, Service};

/// Requests a second when nothing else is said: kube-controller-manager's default.
pub const DEFAULT_QPS: u32 = 50;
/// Requests that may go at once after a quiet spell.
pub const DEFAULT_BURST: u32 = 100;

/// The limit: `qps` requests a second, bursts of up to `burst` (`qps` when 0). None when
/// `qps` is 0 (no limit).
pub fn layer(qps: u32, burst: u32) -> Option<RateLimitLayer> {
    let qps = NonZeroU32::new(qps)?;
    let burst = NonZeroU32::new(burst).unwrap_or(qps);
    Some(RateLimitLayer {
        limiter: Arc::new(RateLimiter::direct(
            Quota::per_second(qps).allow_burst(burst),
        )),
    })
}

/// Wraps a service so that each request first waits for a token.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            limiter: self.limiter.clone(),
            permitted: false,
            waiting: None,
        }
    }
}

/// A service whose `poll_ready` first waits for a token. Waiting in `poll_ready` (not in
/// the call) also holds back kube's request buffer in front of it, which is the point.
pub struct RateLimited<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// A token was taken for the next call.
    permitted: bool,
    waiting: Option<BoxFuture<'static, ()>>,
}

impl<S, R> Service<R> for RateLimited<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            if self.waiting.is_none() && self.limiter.check().is_ok() {
                self.permitted = true;
            } else {
                let limiter = self.limiter.clone();
                let waiting = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(async move { limiter.until_ready().await }));
                std::task::ready!(waiting.as_mut().poll(cx));
                self.waiting = None;
                self.permitted = true;
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.permitted = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tower::ServiceExt;

    use super::*;

    #[test]
    fn zero_qps_means_no_limit() {
        assert!(layer(0, 100).is_none());
        assert!(layer(5, 0).is_some(), "no burst means bursts of the rate");
    }

    #[tokio::test]
    async fn requests_beyond_the_burst_wait_for_the_rate() {
        let service =
            tower::service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
        let mut limited = layer(20, 5).expect("a limit").layer(service);
        let start = Instant::now();
        for n in 0..5 {
            assert_eq!(limited.ready().await.unwrap().call(n).await.unwrap(), n);
        }
        assert!(
            start.elapsed() < Duration::from_millis(40),
            "the burst goes at once"
        );
        // Five more at 20 a second: about 250 ms.
        for n in 5..10 {
            limited.ready().await.unwrap().call(n).await.unwrap();
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
