//! One immutable configuration: routes, backends and certificates together, swapped as a whole.

use std::sync::Arc;

use crate::backend::Target;
use crate::client_addr::TrustedProxies;
use crate::client_auth::ClientAuthTable;
use crate::passthrough::PassthroughTable;
use crate::routing::{HostRoutes, RouteTable};
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
        Self::targets_of(self.routes.host_tables()).chain(self.routes.default.iter())
    }

    /// The targets of the host tables new in this snapshot (all of them unless its table was
    /// patched from the live one), and the default: what needs counters and connection pools
    /// before it goes live.
    pub fn new_targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        Self::targets_of(self.routes.new_host_tables()).chain(self.routes.default.iter())
    }

    /// Every target with `all`, else only the new ones (see [`Snapshot::new_targets`]).
    pub fn targets_to_attach(&self, all: bool) -> Box<dyn Iterator<Item = &Arc<Target>> + '_> {
        if all {
            Box::new(self.targets())
        } else {
            Box::new(self.new_targets())
        }
    }

    fn targets_of<'a>(
        tables: impl Iterator<Item = &'a HostRoutes>,
    ) -> impl Iterator<Item = &'a Arc<Target>> {
        tables.flat_map(|host| {
            host.routes()
                .iter()
                .flat_map(|r| {
                    std::iter::once(&r.target).chain(r.canaries.iter().map(|c| &c.target))
                })
                .chain(host.fallback.iter())
        })
    }
}
