//! One immutable configuration: routes, backends and certificates together, swapped as a whole.

use std::sync::Arc;

use crate::backend::Target;
use crate::client_addr::TrustedProxies;
use crate::client_auth::ClientAuthTable;
use crate::passthrough::PassthroughTable;
use crate::routing::RouteTable;
use crate::tls::TlsTable;

/// Everything the data plane needs to serve, produced by the controller's translate step.
#[derive(Debug)]
pub struct Snapshot {
    pub routes: RouteTable,
    pub tls: TlsTable,
    /// Hosts asking for client certificates (`auth-tls-*`), chosen by SNI.
    pub client_auth: ClientAuthTable,
    /// Hosts whose TLS connections go unterminated to a backend (`ssl-passthrough`).
    pub passthrough: PassthroughTable,
    /// How many per-object problems translate reported while building this snapshot.
    pub problems: usize,
    /// Listener settings that come from Kubernetes objects (the class's parameters).
    pub listener: ListenerSettings,
}

/// Listener-wide settings carried by the snapshot, so they change without a restart.
#[derive(Clone, Debug, Default)]
pub struct ListenerSettings {
    /// Refuse TLS 1.2: only TLS 1.3 handshakes.
    pub tls13_only: bool,
    /// Expect a PROXY protocol header from these peers (in addition to `--proxy-protocol`).
    pub proxy_protocol_from: Option<TrustedProxies>,
    /// Believe the `X-Forwarded-*` headers of these peers too (in addition to
    /// `--trusted-proxies`).
    pub trusted_proxies: Option<TrustedProxies>,
    /// The access log's format, instead of the configured one.
    pub access_log_format: Option<crate::access_log::Format>,
    /// Offer only these cipher suites (a subset of [`crate::tls::cipher_suites`]).
    pub cipher_suites: Option<Vec<rustls::CipherSuite>>,
}

impl Snapshot {
    /// Every target the table can send requests to (each once per route).
    pub fn targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.routes
            .host_tables()
            .flat_map(|host| {
                host.routes()
                    .iter()
                    .flat_map(|r| {
                        std::iter::once(&r.target).chain(r.canaries.iter().map(|c| &c.target))
                    })
                    .chain(host.fallback.iter())
            })
            .chain(self.routes.default.iter())
    }
}
