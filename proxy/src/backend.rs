//! Backends (a Service port's endpoints) and targets (what a matched route sends traffic to).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::uri::Authority;

use crate::balance::{endpoint_id, Balance, EndpointLoad, RequestKey};
use crate::metrics::RouteStats;
use crate::policy::Policy;
use crate::pool::EndpointPool;

/// Where a route sends a request: the backend plus what logs, metrics and policies need.
#[derive(Debug)]
pub struct Target {
    /// Namespace of the Ingress (and of the Service).
    pub namespace: String,
    /// Name of the Ingress that declared the route.
    pub ingress: String,
    /// The Service and port, as `name:port`.
    pub service: String,
    pub backend: Arc<Backend>,
    /// Plain-HTTP requests are redirected to HTTPS (the host has a TLS section).
    pub redirect_https: bool,
    /// Counters for this route, attached when the snapshot is published.
    pub stats: OnceLock<Arc<RouteStats>>,
    /// What the proxy does besides forwarding (redirects, rewrites, timeouts, headers, …).
    pub policy: Arc<Policy>,
}

impl Target {
    pub fn new(
        namespace: impl Into<String>,
        ingress: impl Into<String>,
        service: impl Into<String>,
        backend: Arc<Backend>,
        redirect_https: bool,
    ) -> Self {
        Target {
            namespace: namespace.into(),
            ingress: ingress.into(),
            service: service.into(),
            backend,
            redirect_https,
            stats: OnceLock::new(),
            policy: Policy::none(),
        }
    }

    /// The same target with `policy`.
    pub fn with_policy(mut self, policy: Arc<Policy>) -> Self {
        self.policy = policy;
        self
    }
}

/// How a backend's addresses are found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoints {
    /// Ready endpoints from EndpointSlices (possibly empty: the proxy answers 503).
    Static(Vec<SocketAddr>),
    /// An `ExternalName` Service: resolved by the proxy per request, if allowed.
    ExternalName { host: String, port: u16 },
}

/// A Service port with its endpoints and its load-balancing state.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`, for logs.
    pub name: String,
    pub endpoints: Endpoints,
    /// The static endpoints as URI authorities, built once so requests do not format them.
    authorities: Vec<Authority>,
    /// The static endpoints' identities for hashing and affinity cookies.
    ids: Vec<Vec<u8>>,
    /// The static endpoints' latency and load (EWMA).
    loads: Vec<EndpointLoad>,
    balancer: Balancer,
    /// The static endpoints' kept-alive HTTP/1.1 connections, attached at publish time to
    /// backends that plain-HTTP routes use.
    pools: OnceLock<Box<[Arc<EndpointPool>]>>,
}

/// The choice among endpoints. Only the backend knows how it picks, so new strategies
/// (least-loaded, consistent hashing, sticky) change this type and nothing on the request path.
#[derive(Debug)]
enum Balancer {
    /// The next endpoint to start from. A snapshot swap starts it again at zero, which is harmless.
    RoundRobin(AtomicUsize),
}

impl Backend {
    pub fn new(name: impl Into<String>, endpoints: Endpoints) -> Self {
        let authorities = match &endpoints {
            Endpoints::Static(addrs) => addrs
                .iter()
                .filter_map(|a| Authority::from_maybe_shared(Bytes::from(a.to_string())).ok())
                .collect(),
            Endpoints::ExternalName { .. } => Vec::new(),
        };
        let addrs = match &endpoints {
            Endpoints::Static(a) => a.as_slice(),
            Endpoints::ExternalName { .. } => &[],
        };
        let ids = addrs.iter().map(endpoint_id).collect();
        let loads = addrs.iter().map(|_| EndpointLoad::default()).collect();
        Backend {
            name: name.into(),
            endpoints,
            authorities,
            ids,
            loads,
            balancer: Balancer::RoundRobin(AtomicUsize::new(0)),
            pools: OnceLock::new(),
        }
    }

    /// The static endpoints, in the order translate produced them.
    pub fn addresses(&self) -> &[SocketAddr] {
        match &self.endpoints {
            Endpoints::Static(a) => a,
            Endpoints::ExternalName { .. } => &[],
        }
    }

    /// Picks the endpoint order for one request, round robin: the first is tried first, the
    /// rest are alternatives after a failure. Empty when there is no endpoint.
    #[inline]
    pub fn pick(&self) -> Pick<'_> {
        let addrs = self.addresses();
        let start = match &self.balancer {
            Balancer::RoundRobin(_) if addrs.is_empty() => 0,
            Balancer::RoundRobin(next) => next.fetch_add(1, Ordering::Relaxed) % addrs.len(),
        };
        self.pick_from(start)
    }

    /// Picks the endpoint order with a route's strategy; also returns the affinity cookie to
    /// set when the strategy placed a new session.
    #[inline]
    pub fn pick_with(
        &self,
        balance: &Balance,
        req: &RequestKey<'_>,
    ) -> (Pick<'_>, Option<http::HeaderValue>) {
        if matches!(balance, Balance::RoundRobin) || self.ids.is_empty() {
            return (self.pick(), None);
        }
        let Balancer::RoundRobin(next) = &self.balancer;
        let choice = balance.choose(
            &self.ids,
            &self.loads,
            || next.fetch_add(1, Ordering::Relaxed),
            req,
        );
        (self.pick_from(choice.first), choice.set_cookie)
    }

    /// The connection pool of static endpoint `i`, once attached.
    #[inline]
    pub(crate) fn pool(&self, i: usize) -> Option<&Arc<EndpointPool>> {
        self.pools.get().and_then(|p| p.get(i))
    }

    /// Are the endpoints' pools attached?
    pub(crate) fn pools_attached(&self) -> bool {
        self.pools.get().is_some()
    }

    /// The endpoints' pools, or the result of `make` when none are attached yet.
    pub(crate) fn attach_pools(
        &self,
        make: impl FnOnce(&[SocketAddr]) -> Box<[Arc<EndpointPool>]>,
    ) -> &[Arc<EndpointPool>] {
        self.pools.get_or_init(|| make(self.addresses()))
    }

    /// The load record of endpoint `i` (EWMA).
    pub fn load(&self, i: usize) -> Option<&EndpointLoad> {
        self.loads.get(i)
    }

    fn pick_from(&self, start: usize) -> Pick<'_> {
        let addrs = self.addresses();
        Pick {
            addrs,
            authorities: if self.authorities.len() == addrs.len() {
                &self.authorities
            } else {
                &[]
            },
            start,
            taken: 0,
        }
    }
}

/// Endpoints of one request in the order they should be tried.
#[derive(Debug)]
pub struct Pick<'a> {
    addrs: &'a [SocketAddr],
    /// Parallel to `addrs`, or empty when they must be formatted per request.
    authorities: &'a [Authority],
    start: usize,
    taken: usize,
}

impl<'a> Pick<'a> {
    /// Every address of `addrs`, first to last.
    pub fn in_order(addrs: &'a [SocketAddr]) -> Self {
        Pick {
            addrs,
            authorities: &[],
            start: 0,
            taken: 0,
        }
    }

    /// How many endpoints the request may try in all.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.addrs.len()
    }
}

impl<'a> Iterator for Pick<'a> {
    /// An endpoint's index and address, with its prebuilt authority when there is one.
    type Item = (usize, SocketAddr, Option<&'a Authority>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.taken >= self.addrs.len() {
            return None;
        }
        let i = (self.start + self.taken) % self.addrs.len();
        self.taken += 1;
        Some((i, self.addrs[i], self.authorities.get(i)))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) fn target(service: &str) -> Arc<Target> {
        Arc::new(Target::new(
            "default",
            "ing",
            service,
            Arc::new(Backend::new(service, Endpoints::Static(vec![]))),
            false,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_visits_every_endpoint_once() {
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|i| SocketAddr::from(([127, 0, 0, i], 80)))
            .collect();
        let b = Backend::new("b", Endpoints::Static(addrs.clone()));
        let mut seen: Vec<SocketAddr> = b.pick().map(|(_, a, _)| a).collect();
        seen.sort();
        assert_eq!(seen, addrs);
    }

    #[test]
    fn round_robin_spreads_first_choice() {
        let addrs: Vec<SocketAddr> = (1..=4)
            .map(|i| SocketAddr::from(([127, 0, 0, i], 80)))
            .collect();
        let b = Backend::new("b", Endpoints::Static(addrs));
        let firsts: std::collections::HashSet<_> =
            (0..4).map(|_| b.pick().next().map(|(_, a, _)| a)).collect();
        assert_eq!(firsts.len(), 4);
    }

    #[test]
    fn static_endpoints_come_with_prebuilt_authorities() {
        let addrs: Vec<SocketAddr> = vec![
            "10.0.0.1:80".parse().unwrap(),
            "[fd00::1]:8080".parse().unwrap(),
        ];
        let b = Backend::new("b", Endpoints::Static(addrs));
        for (_, addr, authority) in b.pick() {
            assert_eq!(
                authority.map(|a| a.as_str().to_string()),
                Some(addr.to_string())
            );
        }
        let resolved: Vec<SocketAddr> = vec!["10.0.0.2:80".parse().unwrap()];
        assert!(Pick::in_order(&resolved).all(|(_, _, a)| a.is_none()));
    }

    #[test]
    fn empty_backend_picks_nothing() {
        let b = Backend::new("b", Endpoints::Static(vec![]));
        assert!(b.pick().next().is_none());
    }
}
