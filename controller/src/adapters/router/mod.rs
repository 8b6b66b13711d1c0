//! Traffic routers: one trait, one implementation per way of splitting traffic. Each
//! reads back what it set, so the status can say whether the weight is verified.

pub mod gateway;
pub mod istio;
mod managed;
pub mod nginx;

use std::collections::BTreeMap;

use kube::Client;
use sluice_api::rollout::{CanaryStrategy, Rollout, TrafficRouting};

use super::AdapterError;
use super::cache::Caches;
use super::written::Written;
use crate::core::routes::RouteSetting;

/// A way of sending `weight`% of the traffic to the canary Service and the rest to the
/// stable Service. Reads come from the caches, writes go to the API.
pub trait TrafficRouter {
    /// The canary weight the router applies now, as the cache holds it. `Ok(None)` when
    /// the router is not set up for this rollout as sluice sets it up (never yet, or
    /// another writer changed its routes): no weight is known to be in place.
    fn current_weight(&self) -> Result<Option<i32>, AdapterError>;

    /// Sets the canary weight (0 to 100); idempotent. With weight 0 the router may remove
    /// what it created (e.g. the canary Ingress): no canary route means no canary traffic.
    /// Returns what the caches must show before the Rollout is planned again (None when
    /// nothing was written).
    fn set_weight(
        &self,
        weight: i32,
    ) -> impl Future<Output = Result<Option<Written>, AdapterError>> + Send;

    /// The managed routes the router holds now, by name, with the fingerprint sluice
    /// recorded when it wrote each (see `core::routes::RouteSetting::fingerprint`).
    fn current_routes(&self) -> Result<BTreeMap<String, String>, AdapterError>;

    /// Makes the router hold exactly `routes` (precedence order) besides the weights;
    /// idempotent, and no write when they are in place.
    fn set_routes(
        &self,
        routes: &[RouteSetting],
    ) -> impl Future<Output = Result<Option<Written>, AdapterError>> + Send;

    /// Objects the router needs that do not exist (e.g. `Ingress web`), for the
    /// `ReferenceNotFound` condition; empty when all are there. An error when one exists
    /// but cannot be used (an Ingress with no path to the stable Service), for
    /// `InvalidReference`.
    fn missing_references(&self) -> Result<Vec<String>, AdapterError>;
}

/// What every router needs to know about the Rollout it serves.
#[derive(Clone)]
pub struct RouterContext {
    pub client: Client,
    pub caches: Caches,
    /// The Rollout's namespace and name, and its uid for owner references.
    pub namespace: String,
    pub rollout: String,
    pub rollout_uid: String,
    /// `spec.strategy.canary.canaryService` and `stableService` (admission guarantees both
    /// are set when a router is configured).
    pub canary_service: String,
    pub stable_service: String,
}

/// The router a Rollout asks for, if any.
pub enum Router {
    Nginx(nginx::NginxRouter),
    GatewayApi(gateway::GatewayApiRouter),
    Istio(istio::IstioRouter),
}

impl Router {
    /// The router of a canary Rollout; None for replica-ratio routing.
    pub fn for_rollout(
        client: &Client,
        caches: &Caches,
        rollout: &Rollout,
        canary: &CanaryStrategy,
    ) -> Option<Self> {
        let routing: &TrafficRouting = canary.traffic_routing.as_ref()?;
        let ctx = RouterContext {
            client: client.clone(),
            caches: caches.clone(),
            namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
            rollout: rollout.metadata.name.clone().unwrap_or_default(),
            rollout_uid: rollout.metadata.uid.clone().unwrap_or_default(),
            canary_service: canary.canary_service.clone().unwrap_or_default(),
            stable_service: canary.stable_service.clone().unwrap_or_default(),
        };
        if let Some(nginx) = &routing.nginx {
            Some(Router::Nginx(nginx::NginxRouter::new(ctx, nginx.clone())))
        } else if let Some(istio) = &routing.istio {
            Some(Router::Istio(istio::IstioRouter::new(ctx, istio.clone())))
        } else {
            routing
                .gateway_api
                .as_ref()
                .map(|g| Router::GatewayApi(gateway::GatewayApiRouter::new(ctx, g.clone())))
        }
    }

    /// The revision the router's own selection of `service`'s pods pins (Istio's
    /// DestinationRule subsets): None when the router selects through the Service alone,
    /// `Some(None)` when it pins none.
    pub fn subset_hash(&self, service: &str) -> Result<Option<Option<String>>, AdapterError> {
        match self {
            Router::Istio(r) => r.subset_hash(service),
            Router::Nginx(_) | Router::GatewayApi(_) => Ok(None),
        }
    }

    /// Points the router's own selection of `service`'s pods at revision `hash`, beside
    /// the Service's selector; nothing for routers that select through the Service.
    pub async fn set_subset_hash(
        &self,
        service: &str,
        hash: &str,
    ) -> Result<Option<Written>, AdapterError> {
        match self {
            Router::Istio(r) => r.set_subset_hash(service, hash).await,
            Router::Nginx(_) | Router::GatewayApi(_) => Ok(None),
        }
    }

    pub fn current_weight(&self) -> Result<Option<i32>, AdapterError> {
        match self {
            Router::Nginx(r) => r.current_weight(),
            Router::GatewayApi(r) => r.current_weight(),
            Router::Istio(r) => r.current_weight(),
        }
    }

    pub async fn set_weight(&self, weight: i32) -> Result<Option<Written>, AdapterError> {
        match self {
            Router::Nginx(r) => r.set_weight(weight).await,
            Router::GatewayApi(r) => r.set_weight(weight).await,
            Router::Istio(r) => r.set_weight(weight).await,
        }
    }

    pub fn current_routes(&self) -> Result<BTreeMap<String, String>, AdapterError> {
        match self {
            Router::Nginx(r) => r.current_routes(),
            Router::GatewayApi(r) => r.current_routes(),
            Router::Istio(r) => r.current_routes(),
        }
    }

    pub async fn set_routes(
        &self,
        routes: &[RouteSetting],
    ) -> Result<Option<Written>, AdapterError> {
        match self {
            Router::Nginx(r) => r.set_routes(routes).await,
            Router::GatewayApi(r) => r.set_routes(routes).await,
            Router::Istio(r) => r.set_routes(routes).await,
        }
    }

    pub fn missing_references(&self) -> Result<Vec<String>, AdapterError> {
        match self {
            Router::Nginx(r) => r.missing_references(),
            Router::GatewayApi(r) => r.missing_references(),
            Router::Istio(r) => r.missing_references(),
        }
    }
}
