//! Upstream HTTP clients: one per distinct connection setting (protocol, TLS, connect
//! timeout), shared across snapshots so their connection pools survive configuration swaps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tracing::warn;

use crate::body::ProxyBody;
use crate::config::ProxyConfig;
use crate::pool::Pools;
use crate::snapshot::Snapshot;
use crate::tls::provider;

/// How Portico talks to a backend (`backend-protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 in the clear.
    #[default]
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// HTTP/2 in the clear, prior knowledge (`H2C`, and `GRPC`).
    H2c,
    /// HTTP/2 over TLS (`GRPCS`).
    H2,
}

impl Protocol {
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::H2)
    }

    pub fn http2(self) -> bool {
        matches!(self, Protocol::H2c | Protocol::H2)
    }
}

/// TLS towards a backend (`proxy-ssl-*`).
#[derive(Debug)]
pub struct UpstreamTls {
    /// Verify the backend's certificate against `roots` and `server_name`.
    pub verify: bool,
    pub roots: Vec<CertificateDer<'static>>,
    /// The name checked in the backend's certificate, and sent as SNI when `sni`.
    pub server_name: String,
    pub sni: bool,
    /// A client certificate to present.
    pub client_auth: Option<Arc<CertifiedKey>>,
    /// Identifies these settings (translate derives it from their sources), so routes with
    /// the same settings share one client and its pool.
    pub key: String,
}

/// One client of either kind; both answer with the same future.
#[derive(Clone, Debug)]
pub enum UpstreamClient {
    Plain(Client<HttpConnector, ProxyBody>),
    Tls(Client<HttpsConnector<HttpConnector>, ProxyBody>),
}

impl UpstreamClient {
    #[inline]
    pub fn request(&self, req: Request<ProxyBody>) -> ResponseFuture {
        match self {
            UpstreamClient::Plain(c) => c.request(req),
            UpstreamClient::Tls(c) => c.request(req),
        }
    }
}

/// Why a request got no answer from a backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// From a pooled client (HTTP/2, TLS, ExternalName backends, error pages).
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
    /// Connecting to an endpoint failed.
    #[error("tcp connect error")]
    Connect(#[source] std::io::Error),
    /// The exchange on a connection failed.
    #[error(transparent)]
    Send(#[from] hyper::Error),
}

impl UpstreamError {
    /// Connecting failed: nothing of the request reached the backend.
    pub(crate) fn is_connect(&self) -> bool {
        match self {
            UpstreamError::Client(e) => e.is_connect(),
            UpstreamError::Connect(_) => true,
            UpstreamError::Send(_) => false,
        }
    }

    /// Connecting took longer than the connect timeout (or the system's).
    pub(crate) fn is_connect_timeout(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = match self {
            UpstreamError::Connect(e) => Some(e),
            UpstreamError::Client(e) if e.is_connect() => std::error::Error::source(e),
            _ => None,
        };
        while let Some(inner) = cur {
            if inner
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                return true;
            }
            cur = inner.source();
        }
        false
    }

    /// The backend answered with something that is not HTTP (a malformed status line or
    /// header, a head too large): nginx's `invalid_header`.
    pub(crate) fn is_invalid_response(&self) -> bool {
        match self {
            UpstreamError::Send(e) => e.is_parse(),
            UpstreamError::Connect(_) => false,
            UpstreamError::Client(e) => {
                let mut cur = std::error::Error::source(e);
                while let Some(inner) = cur {
                    if inner
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_parse)
                    {
                        return true;
                    }
                    cur = inner.source();
                }
                false
            }
        }
    }
}

/// What makes two routes need different clients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    connect_timeout: Duration,
    protocol: Protocol,
    tls: Option<String>,
}

/// The default client and the ones routes asked for.
pub(crate) struct Upstreams {
    pub(crate) default: UpstreamClient,
    default_key: ClientKey,
    idle_timeout: Duration,
    others: Mutex<HashMap<ClientKey, UpstreamClient>>,
    /// Plain HTTP/1.1 endpoints' kept-alive connections.
    pools: Mutex<Pools>,
}

impl Upstreams {
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        let default_key = ClientKey {
            connect_timeout: config.upstream_connect_timeout,
            protocol: Protocol::Http,
            tls: None,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.upstream_connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let default = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.upstream_idle_timeout)
            .pool_max_idle_per_host(256)
            .retry_canceled_requests(true)
            .set_host(false)
            .build(connector);
        Upstreams {
            default: UpstreamClient::Plain(default),
            default_key,
            idle_timeout: config.upstream_idle_timeout,
            others: Mutex::new(HashMap::new()),
            pools: Mutex::new(Pools::default()),
        }
    }

    /// Gives every route policy that needs a client of its own that client, and the
    /// backends that have none their endpoints' pools (at publish time, before the snapshot
    /// goes live; never on the request path). With `all`, every target is looked at and
    /// clients no snapshot uses any more are dropped; otherwise only the targets new in the
    /// snapshot (a snapshot patched from the live one shares the others, already attached).
    pub(crate) fn attach(&self, snapshot: &Snapshot, all: bool) {
        self.attach_pools(snapshot, all);
        let Ok(mut others) = self.others.lock() else {
            return;
        };
        let mut used = HashMap::new();
        let targets = snapshot.targets_to_attach(all);
        for target in targets {
            let policy = &target.policy;
            let key = ClientKey {
                connect_timeout: policy
                    .timeouts
                    .connect
                    .unwrap_or(self.default_key.connect_timeout),
                protocol: policy.protocol,
                tls: policy.upstream_tls.as_ref().map(|t| t.key.clone()),
            };
            if key == self.default_key {
                continue;
            }
            let client = match others.get(&key).or_else(|| used.get(&key)) {
                Some(c) => c.clone(),
                None => match build(&key, policy.upstream_tls.as_deref(), self.idle_timeout) {
                    Some(c) => c,
                    None => continue,
                },
            };
            let _ = policy.client.set(client.clone());
            used.insert(key, client);
        }
        if all {
            *others = used;
        } else {
            others.extend(used);
        }
    }
}

impl Upstreams {
    /// Gives the static endpoints of the backends a plain HTTP/1.1 route uses their
    /// connection pools, where they have none yet (a backend carried over from the live
    /// snapshot keeps its pools).
    fn attach_pools(&self, snapshot: &Snapshot, all: bool) {
        let Ok(mut pools) = self.pools.lock() else {
            return;
        };
        let mut created = HashMap::new();
        let targets = snapshot.targets_to_attach(all);
        for target in targets {
            if target.policy.protocol != Protocol::Http || target.backend.pools_attached() {
                continue;
            }
            target
                .backend
                .attach_pools(|addrs| pools.for_endpoints(addrs, self.idle_timeout, &mut created));
        }
        pools.add(created);
    }

    /// Lets go of the pools no snapshot uses any more, once the new one went live (a walk
    /// over the pools, not over the snapshot's targets).
    pub(crate) fn settle(&self) {
        if let Ok(mut pools) = self.pools.lock() {
            pools.forget_unused();
        }
    }
}

/// The client for `key`; `None` (logged) when its TLS settings cannot be built.
fn build(
    key: &ClientKey,
    tls: Option<&UpstreamTls>,
    idle_timeout: Duration,
) -> Option<UpstreamClient> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(key.connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .pool_max_idle_per_host(256)
        .retry_canceled_requests(true)
        .set_host(false)
        .http2_only(key.protocol.http2());
    if !key.protocol.tls() {
        return Some(UpstreamClient::Plain(builder.build(connector)));
    }
    connector.enforce_http(false);
    let config = match client_config(tls) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "TLS towards a backend cannot be set up");
            return None;
        }
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    let https = match tls {
        Some(t) => match ServerName::try_from(t.server_name.clone()) {
            Ok(name) => https.with_server_name_resolver(FixedServerNameResolver::new(name)),
            Err(e) => {
                warn!(name = %t.server_name, error = %e, "invalid backend TLS name");
                return None;
            }
        },
        None => https,
    };
    let https = if key.protocol.http2() {
        https.enable_http2().wrap_connector(connector)
    } else {
        https.enable_http1().wrap_connector(connector)
    };
    Some(UpstreamClient::Tls(builder.build(https)))
}

fn client_config(tls: Option<&UpstreamTls>) -> Result<ClientConfig, rustls::Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verify = tls.is_some_and(|t| t.verify);
    let builder = if verify {
        let mut roots = RootCertStore::empty();
        for c in tls.map(|t| t.roots.as_slice()).unwrap_or_default() {
            if let Err(e) = roots.add(c.clone()) {
                warn!(error = %e, "a CA certificate for a backend was refused");
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)))
    };
    let mut config = match tls.and_then(|t| t.client_auth.clone()) {
        Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCertificate(key))),
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = tls.is_some_and(|t| t.sni);
    // ALPN (h2 or http/1.1) is set by the connector builder from `protocol`.
    Ok(config)
}

/// The one client certificate a backend gets, whatever it asks for.
#[derive(Debug)]
struct ClientCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `proxy-ssl-verify: off` (ingress-nginx's default): the backend's certificate is not
/// checked, but the handshake signatures still are.
#[derive(Debug)]
pub struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl AnyCertificate {
    pub fn new(provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        AnyCertificate(provider)
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
