//! The proxy: the live snapshot, the listeners, connection serving and graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::client_addr::TrustedProxies;
use crate::client_auth::{ClientAuth, Verdict};
use crate::client_hello::{self, Peek, Rewind};
use crate::config::ProxyConfig;
use crate::error::{CertError, ServeError};
use crate::forward::{self, ConnInfo};
use crate::limits::{self, ClientIo, ConnectionSlots};
use crate::metrics::{HandshakeResult, Metrics};
use crate::snapshot::Snapshot;
use crate::tls::{server_config, server_config_with, SessionState};
use crate::upstream::Upstreams;

/// The configuration being served: one snapshot and the TLS settings built from it.
#[derive(Debug)]
pub struct Live {
    pub snapshot: Arc<Snapshot>,
    pub generation: u64,
    tls: Arc<ServerConfig>,
    /// The configurations of hosts asking for client certificates, by their settings' key.
    client_tls: HashMap<Arc<str>, Arc<ServerConfig>>,
    /// Peers whose `X-Forwarded-*` headers are believed: `--trusted-proxies` and the class's.
    trusted: Arc<TrustedProxies>,
    /// Access-log settings, with the class's format when it sets one.
    access_log: Arc<crate::access_log::Options>,
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) live: ArcSwapOption<Live>,
    pub(crate) config: ProxyConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) upstreams: Upstreams,
    sessions: SessionState,
    generation: AtomicU64,
    draining: AtomicBool,
    /// The next publish attaches every target (at start, and after a failed publish).
    attach_all: AtomicBool,
    http: auto::Builder<TokioExecutor>,
    /// Turns true when the listeners close: idle connections of Portico's own HTTP/1.1
    /// path close then (hyper's are told by the graceful-shutdown watcher).
    pub(crate) closing: watch::Sender<bool>,
}

impl Shared {
    /// Shutdown has begun: the listeners still accept during the drain delay, but
    /// keep-alive clients are told to go elsewhere.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A handle on the data plane. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

/// Listening sockets, bound before serving so that callers can learn their ports.
#[derive(Debug)]
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub https: Option<TcpListener>,
}

/// How shutdown proceeds once it is asked for.
#[derive(Clone, Copy, Debug)]
pub struct Drain {
    /// Time between turning unready and closing the listeners (load balancers notice).
    pub delay: Duration,
    /// Time in-flight requests get to finish after the listeners close.
    pub grace: Duration,
}

impl Proxy {
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn new(config: ProxyConfig) -> Result<Self, ServeError> {
        let upstreams = Upstreams::new(&config);

        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.client_header_timeout)
            .max_buf_size(config.max_header_bytes.max(8192))
            .max_headers(config.max_headers)
            .keep_alive(true);
        let h2 = &config.h2;
        http.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(h2.max_concurrent_streams)
            .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(h2.max_local_error_reset_streams)
            .max_send_buf_size(h2.max_send_buf_size)
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(config.idle_timeout / 3))
            .keep_alive_timeout(h2.keep_alive_timeout);

        Ok(Proxy {
            shared: Arc::new(Shared {
                live: ArcSwapOption::empty(),
                metrics: Arc::new(Metrics::default()),
                upstreams,
                sessions: SessionState::new()?,
                generation: AtomicU64::new(0),
                draining: AtomicBool::new(false),
                attach_all: AtomicBool::new(true),
                http,
                closing: watch::Sender::new(false),
                config,
            }),
        })
    }

    /// Makes `snapshot` the live configuration, atomically; returns its generation.
    pub fn publish(&self, snapshot: Snapshot, build_time: Duration) -> Result<u64, CertError> {
        let snapshot = Arc::new(snapshot);
        // Whether the last publish failed; until this one succeeds, the next one attaches
        // every target.
        let all = self.shared.attach_all.swap(true, Ordering::Relaxed);
        let tls = server_config(snapshot.clone(), &self.shared.sessions)?;
        let mut client_tls = HashMap::new();
        for (_, auth) in snapshot.client_auth.hosts() {
            if client_tls.contains_key(&auth.key) {
                continue;
            }
            if let Some(verifier) = auth.handshake_verifier() {
                let config =
                    server_config_with(snapshot.clone(), &self.shared.sessions, Some(verifier))?;
                client_tls.insert(auth.key.clone(), config);
            }
        }
        // Only what the new targets need happens before the swap; a snapshot patched for a
        // few hosts shares every other target with the live one. After a failed publish the
        // table it was patched from never went live, so every target is looked at.
        self.shared.upstreams.attach(&snapshot, all);
        self.shared.metrics.attach(&snapshot, all);
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let trusted = Arc::new(match &snapshot.listener.trusted_proxies {
            Some(t) => self.shared.config.trusted_proxies.union(t),
            None => self.shared.config.trusted_proxies.clone(),
        });
        let mut access_log = self.shared.config.access_log_options.clone();
        if let Some(format) = snapshot.listener.access_log_format {
            access_log.format = format;
        }
        self.shared.attach_all.store(false, Ordering::Relaxed);
        self.shared.live.store(Some(Arc::new(Live {
            snapshot: snapshot.clone(),
            generation,
            tls,
            client_tls,
            trusted,
            access_log: Arc::new(access_log),
        })));
        // Bookkeeping once the snapshot serves: forgetting what no snapshot uses any more.
        self.shared.upstreams.settle();
        self.shared.metrics.bind(&snapshot, generation, build_time);
        Ok(generation)
    }

    /// The live configuration, if one was published.
    pub fn live(&self) -> Option<Arc<Live>> {
        self.shared.live.load_full()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Ready: a configuration is live and shutdown has not begun.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.shared.draining.load(Ordering::Relaxed) {
            Err("shutting down")
        } else if self.shared.live.load().is_none() {
            Err("no configuration published yet")
        } else {
            Ok(())
        }
    }

    /// Binds the HTTP and HTTPS listeners.
    pub fn bind(
        http: Option<SocketAddr>,
        https: Option<SocketAddr>,
    ) -> Result<Listeners, ServeError> {
        Ok(Listeners {
            http: http.map(bind).transpose()?,
            https: https.map(bind).transpose()?,
        })
    }

    /// Serves until `shutdown` resolves, then drains: unready, wait `drain.delay`, stop
    /// accepting, let in-flight requests finish for up to `drain.grace`.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl std::future::Future<Output = ()>,
        drain: Drain,
    ) {
        let graceful = Arc::new(GracefulShutdown::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut loops = Vec::new();
        for (listener, tls) in [(listeners.http, false), (listeners.https, true)] {
            if let Some(listener) = listener {
                loops.push(tokio::spawn(accept_loop(
                    self.shared.clone(),
                    listener,
                    tls,
                    graceful.clone(),
                    stop_rx.clone(),
                )));
            }
        }
        shutdown.await;
        self.shared.draining.store(true, Ordering::Relaxed);
        info!(delay = ?drain.delay, grace = ?drain.grace, "shutting down: draining");
        tokio::time::sleep(drain.delay).await;
        let _ = stop_tx.send(true);
        self.shared.closing.send_replace(true);
        for l in loops {
            let _ = l.await;
        }
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            warn!("connections still referenced; not waiting");
            return;
        };
        match tokio::time::timeout(drain.grace, graceful.shutdown()).await {
            Ok(()) => info!("all connections closed"),
            Err(_) => warn!("grace period over; closing remaining connections"),
        }
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let err = |source| ServeError::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]` serves IPv4 clients too.
        socket.set_only_v6(false).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(4096).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: bool,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let port_value = http::HeaderValue::from(local_port);
    let slots = ConnectionSlots::new(shared.config.max_connections);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slots.take() else {
            debug!(%peer, open = slots.open(), "connection limit reached");
            limits::refuse(stream, tls);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = SocketAddr::new(crate::client_addr::normalize(peer.ip()), peer.port());
        let watcher = graceful.watcher();
        let shared = shared.clone();
        let port_value = port_value.clone();
        tokio::spawn(async move {
            shared.metrics.connection_opened();
            serve_connection(&shared, stream, peer, port_value, tls, watcher).await;
            shared.metrics.connection_closed();
            drop(slot);
        });
    }
}

async fn serve_connection(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    mut peer: SocketAddr,
    local_port: http::HeaderValue,
    tls: bool,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let (by_class, trusted, access_log) = match shared.live.load().as_ref() {
        Some(live) => (
            live.snapshot
                .listener
                .proxy_protocol_from
                .as_ref()
                .is_some_and(|from| from.contains(peer.ip())),
            live.trusted.clone(),
            live.access_log.clone(),
        ),
        None => (
            false,
            Arc::new(shared.config.trusted_proxies.clone()),
            Arc::new(shared.config.access_log_options.clone()),
        ),
    };
    let proxy_protocol =
        shared.config.proxy_protocol && shared.config.trusted_proxies.contains(peer.ip());
    if by_class || proxy_protocol {
        let header = tokio::time::timeout(
            shared.config.client_header_timeout,
            crate::proxy_protocol::read_header(&mut stream),
        )
        .await;
        match header {
            Ok(Ok(Some(source))) => {
                peer = SocketAddr::new(crate::client_addr::normalize(source.ip()), source.port());
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "PROXY header refused");
                return;
            }
            Err(_) => {
                debug!(%peer, "PROXY header timed out");
                return;
            }
        }
    }
    let conn = Arc::new(ConnInfo {
        peer,
        peer_value: crate::headers::ip_value(peer.ip()),
        peer_trusted: trusted.contains(peer.ip()),
        trusted,
        access_log,
        local_port,
        tls,
    });
    if tls {
        serve_tls(shared, stream, conn, watcher).await;
    } else {
        crate::h1::serve(shared, stream, conn, watcher).await;
    }
}

async fn serve_tls(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    conn: Arc<ConnInfo>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let passthrough = shared
        .live
        .load()
        .as_ref()
        .is_some_and(|l| !l.snapshot.passthrough.is_empty());
    if !passthrough {
        return terminate(shared, stream, conn, watcher).await;
    }
    // Read the ClientHello (bounded in size and time) to choose between passthrough and
    // termination; the bytes read are replayed either way.
    let read = tokio::time::timeout(
        shared.config.client_header_timeout,
        client_hello::read(&mut stream),
    )
    .await;
    let (peek, hello) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            debug!(peer = %conn.peer, error = %e, "reading the ClientHello failed");
            return;
        }
        Err(_) => {
            debug!(peer = %conn.peer, "ClientHello timed out");
            return;
        }
    };
    if let Peek::Hello(Some(sni)) = &peek {
        let live = shared.live.load_full();
        let target = live
            .as_ref()
            .and_then(|l| l.snapshot.passthrough.lookup(sni).cloned());
        if let Some(target) = target {
            drop(live);
            shared.metrics.passthrough_connection();
            crate::passthrough::splice(
                stream,
                hello,
                &target,
                sni,
                conn.peer,
                shared.config.upstream_connect_timeout,
            )
            .await;
            return;
        }
    }
    terminate(shared, Rewind::new(hello, stream), conn, watcher).await;
}

/// What a TLS connection was opened for: its server name and, for a host asking for client
/// certificates, the settings and the verdict on the certificate.
#[derive(Debug)]
pub(crate) struct TlsSession {
    pub(crate) sni: Option<Box<str>>,
    pub(crate) client: Option<(Arc<ClientAuth>, Verdict)>,
}

async fn terminate<S>(
    shared: &Arc<Shared>,
    stream: S,
    conn: Arc<ConnInfo>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let acceptor =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let handshake = async {
        let start = acceptor.await?;
        // One snapshot decides the certificate and the client authentication of this
        // handshake.
        let Some(live) = shared.live.load_full() else {
            return Err(std::io::Error::other("no configuration published yet"));
        };
        let sni: Option<Box<str>> = start
            .client_hello()
            .server_name()
            .map(|n| crate::routing::normalize_host(n).into());
        let auth = sni
            .as_deref()
            .and_then(|n| live.snapshot.client_auth.lookup(n))
            .cloned();
        let config = auth
            .as_ref()
            .and_then(|a| live.client_tls.get(&a.key))
            .unwrap_or(&live.tls)
            .clone();
        let stream = start.into_stream(config).await?;
        Ok((stream, sni, auth))
    };
    let (stream, sni, auth) =
        match tokio::time::timeout(shared.config.client_header_timeout, handshake).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                shared.metrics.tls_handshake(None, HandshakeResult::Failed);
                debug!(peer = %conn.peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                shared.metrics.tls_handshake(None, HandshakeResult::Timeout);
                debug!(peer = %conn.peer, "TLS handshake timed out");
                return;
            }
        };
    let tls = stream.get_ref().1;
    shared
        .metrics
        .tls_handshake(tls.protocol_version(), HandshakeResult::Ok);
    let alpn_h2 = tls.alpn_protocol() == Some(b"h2");
    let client = auth.map(|a| {
        let verdict = a.verdict(tls.peer_certificates());
        (a, verdict)
    });
    let session = Arc::new(TlsSession { sni, client });
    let io = ClientIo::new(TokioIo::new(stream), shared.config.client_header_timeout);
    serve_http(shared, io, conn, watcher, Some(alpn_h2), Some(session)).await;
}

pub(crate) async fn serve_http<I>(
    shared: &Arc<Shared>,
    io: I,
    conn: Arc<ConnInfo>,
    watcher: hyper_util::server::graceful::Watcher,
    alpn_h2: Option<bool>,
    session: Option<Arc<TlsSession>>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let peer = conn.peer;
    let service = service_fn(move |mut req| {
        let shared = svc_shared.clone();
        let conn = conn.clone();
        let refused = crate::client_auth::guard(&shared, &conn, session.as_deref(), &mut req);
        async move {
            match refused {
                Some(resp) => Ok(resp),
                None => forward::handle(shared, conn, req).await,
            }
        }
    });
    let builder = match alpn_h2 {
        Some(true) => shared.http.clone().http2_only(),
        Some(false) => shared.http.clone().http1_only(),
        None => shared.http.clone(),
    };
    // `serve_connection_with_upgrades` ignores `http2_only` and sniffs the protocol, so an
    // ALPN-h2 connection with a bad preface would be answered in HTTP/1: plain
    // `serve_connection` there (HTTP/2 has no HTTP/1 upgrades to carry).
    let ended = if alpn_h2 == Some(true) {
        watcher
            .watch(builder.serve_connection(io, service).into_owned())
            .await
    } else {
        let connection = builder.serve_connection_with_upgrades(io, service);
        watcher.watch(connection.into_owned()).await
    };
    if let Err(e) = ended {
        debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::testing::target;
    use crate::routing::{HostPattern, HostRoutes, PathMatch, Route, RouteTable};

    fn host(name: &str, service: &str) -> (HostPattern, HostRoutes) {
        let route = Route::new(PathMatch::prefix("/"), target(service));
        (
            HostPattern::parse(Some(name)),
            HostRoutes::new(vec![route], None),
        )
    }

    fn snapshot(routes: RouteTable) -> Snapshot {
        let default = Arc::new(crate::TlsCertificate::self_signed(&["portico.invalid"]).unwrap());
        Snapshot {
            routes,
            tls: crate::tls::TlsTable::new([], default),
            client_auth: Default::default(),
            passthrough: Default::default(),
            problems: 0,
            listener: Default::default(),
        }
    }

    fn counted(snapshot: &Snapshot, host: &str) -> bool {
        snapshot
            .routes
            .host(host)
            .is_some_and(|h| h.routes()[0].target.stats.get().is_some())
    }

    #[test]
    fn a_patched_table_gets_counters_for_its_new_hosts_and_keeps_the_others() {
        let proxy = Proxy::new(ProxyConfig::default()).unwrap();
        let first = RouteTable::new(vec![host("a.test", "a")], None);
        proxy
            .publish(snapshot(first.clone()), Duration::ZERO)
            .unwrap();
        assert!(counted(&proxy.live().unwrap().snapshot, "a.test"));
        let (pattern, table) = host("b.test", "b");
        let patched = first.patched([&pattern], vec![(pattern.clone(), Arc::new(table))]);
        assert_eq!(patched.new_host_tables().count(), 1);
        proxy.publish(snapshot(patched), Duration::ZERO).unwrap();
        let live = proxy.live().unwrap();
        assert!(counted(&live.snapshot, "a.test") && counted(&live.snapshot, "b.test"));
    }
}
