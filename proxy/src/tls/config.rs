//! The rustls server configuration of one snapshot. Session caches and ticket keys live outside
//! the snapshot so that resumption survives configuration changes.

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, StoresServerSessions};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::error::CertError;
use crate::snapshot::Snapshot;

/// The cipher suites Portico can offer, by IANA name, and whether each is a TLS 1.3 suite.
pub fn cipher_suites() -> Vec<(String, rustls::CipherSuite, bool)> {
    crate::tls::provider()
        .cipher_suites
        .iter()
        .map(|s| {
            let suite = s.suite();
            let name = suite
                .as_str()
                .map_or_else(|| format!("{suite:?}"), str::to_string);
            (name, suite, s.tls13().is_some())
        })
        .collect()
}

/// Resumption state shared by every snapshot's configuration.
#[derive(Clone, Debug)]
pub struct SessionState {
    cache: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
}

impl SessionState {
    pub fn new() -> Result<Self, CertError> {
        Ok(SessionState {
            cache: rustls::server::ServerSessionMemoryCache::new(64 * 1024),
            ticketer: rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|e| CertError::Key(e.to_string()))?,
        })
    }
}

/// Resolves certificates from one snapshot's table: a hash lookup, nothing parsed.
#[derive(Debug)]
struct SnapshotResolver(Arc<Snapshot>);

impl ResolvesServerCert for SnapshotResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(crate::routing::normalize_host);
        Some(self.0.tls.resolve(sni.as_deref()).certified.clone())
    }
}

/// TLS 1.2 and 1.3 (or 1.3 only, by the class's parameters) with rustls' default (modern,
/// AEAD-only) cipher suites, or the subset the class's parameters name; ALPN `h2` then
/// `http/1.1`.
pub fn server_config(
    snapshot: Arc<Snapshot>,
    sessions: &SessionState,
) -> Result<Arc<ServerConfig>, CertError> {
    server_config_with(snapshot, sessions, None)
}

/// The same configuration, asking clients for certificates with `client_auth` (the hosts of
/// `auth-tls-*`).
pub fn server_config_with(
    snapshot: Arc<Snapshot>,
    sessions: &SessionState,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, CertError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = if snapshot.listener.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let provider = match &snapshot.listener.cipher_suites {
        Some(allowed) => {
            let mut p = (*crate::tls::provider()).clone();
            p.cipher_suites.retain(|s| allowed.contains(&s.suite()));
            Arc::new(p)
        }
        None => crate::tls::provider(),
    };
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| CertError::Key(e.to_string()))?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SnapshotResolver(snapshot)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = sessions.cache.clone();
    config.ticketer = sessions.ticketer.clone();
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}
