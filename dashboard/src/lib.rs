//! The sluice dashboard: a live, authenticated view of every Rollout, served from
//! reflector caches (no API call per page view) and acting through the same action module
//! as `kubectl-sluice` (`sluice_controller::actions`).
//!
//! - `cache`: the reflectors (Rollouts, their ReplicaSets, AnalysisRuns and Events) and a
//!   change counter that wakes the live streams.
//! - `auth`: sessions, TokenReview, SubjectAccessReview (cached briefly), CSRF checks.
//! - `views` and `chart`: server-rendered HTML and SVG; every interpolated value is
//!   escaped by `maud`.
//! - `handlers`: the axum routes, by concern: `pages`, `streams` (live Server-Sent
//!   Events), `actions` and `session` (who is asking, sign-in); every refusal is one
//!   `Refusal`, which renders as the response.
//!
//! Mounted by `sluice-controller --dashboard-addr` and run locally by
//! `kubectl sluice dashboard`; see `docs/dashboard.md`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kube::Client;
use tracing::{info, warn};

pub mod auth;
pub mod cache;
pub mod chart;
pub mod handlers;
pub mod views;

#[cfg(test)]
mod tests;

pub use auth::{AuthMode, Cluster, KubeCluster};
pub use cache::Caches;
pub use handlers::{AppState, router};

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen. Port 0 picks a free port; the URL is logged.
    pub addr: SocketAddr,
    /// How users sign in.
    pub auth: AuthMode,
    /// Refuse every action; show no action buttons.
    pub read_only: bool,
    /// Show only this namespace (the controller's own scope); all when None.
    pub namespace: Option<String>,
    /// Longest a sign-in lasts.
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (set when users reach the dashboard over HTTPS).
    pub secure_cookie: bool,
}

impl Options {
    /// Options for `addr` with the safe defaults: token sign-in, actions allowed, 8 h
    /// sessions.
    pub fn new(addr: SocketAddr) -> Self {
        Options {
            addr,
            auth: AuthMode::Token,
            read_only: false,
            namespace: None,
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookie: false,
        }
    }

    /// Refuses settings that would be unsafe: no authentication on an address other
    /// machines can reach.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.auth == AuthMode::None && !self.addr.ip().is_loopback() {
            bail!(
                "the dashboard runs without authentication only on a loopback address \
                 (127.0.0.1 or [::1]), not on {}",
                self.addr
            );
        }
        Ok(())
    }
}

/// A dashboard bound to its address, not yet serving: binding first lets a binary fail at
/// start-up (address in use, unsafe options) before it starts anything else.
pub struct Dashboard {
    listener: tokio::net::TcpListener,
    options: Options,
}

impl Dashboard {
    /// Checks the options and binds the address.
    pub async fn bind(options: Options) -> anyhow::Result<Self> {
        options.validate()?;
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .with_context(|| format!("binding the dashboard to {}", options.addr))?;
        Ok(Dashboard { listener, options })
    }

    /// The bound address (the real port when the options asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves: starts the caches and logs the URL. Live streams
    /// end at shutdown so that the server can stop.
    pub async fn serve(
        self,
        client: Client,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Dashboard { listener, options } = self;
        if options.auth == AuthMode::None {
            warn!(
                addr = %options.addr,
                "the dashboard runs WITHOUT authentication: anyone who can reach this \
                 loopback address sees every rollout and acts with the dashboard's own \
                 permissions"
            );
        }
        let local = listener.local_addr()?;
        let (caches, reflectors) = Caches::start(&client, options.namespace.as_deref());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let state = AppState::new(
            caches,
            Arc::new(KubeCluster::new(client)),
            options.clone(),
            stop_rx,
        );
        info!(
            url = %format!("http://{local}/"),
            auth = ?options.auth,
            read_only = options.read_only,
            "dashboard listening"
        );
        let reflectors = tokio::spawn(reflectors);
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        let result = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await;
        reflectors.abort();
        info!("dashboard stopped");
        result.context("serving the dashboard")
    }
}

/// Binds and serves the dashboard until `shutdown` resolves.
pub async fn serve(
    client: Client,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Dashboard::bind(options)
        .await?
        .serve(client, shutdown)
        .await
}
