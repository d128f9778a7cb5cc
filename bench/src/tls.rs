//! A TLS handshake load generator: closed loop over a number of concurrent connections, each
//! connecting, completing a TLS 1.3 handshake (X25519, TLS_AES_128_GCM_SHA256) with a random
//! SNI name, then closing (close_notify, read to end) so that the server has finished its side
//! and any session tickets were received.
//!
//! The client does not verify the server's certificate or signature: its CPU is not what is
//! measured, and it shares a core with the backend, so it should be as cheap as possible.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http1::Window;

#[derive(Debug)]
struct AcceptAnything(Vec<SignatureScheme>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// The client configuration: TLS 1.3 only, X25519, AES-128-GCM; with or without resumption.
pub fn client_config(resume: bool) -> Result<Arc<ClientConfig>, rustls::Error> {
    use rustls::crypto::aws_lc_rs as p;
    let mut provider = p::default_provider();
    provider.kx_groups = vec![p::kx_group::X25519];
    provider.cipher_suites = vec![p::cipher_suite::TLS13_AES_128_GCM_SHA256];
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(schemes)))
        .with_no_client_auth();
    config.resumption = if resume {
        rustls::client::Resumption::in_memory_sessions(4096)
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// Handshakes completed inside the measured window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshakes {
    pub full: u64,
    pub resumed: u64,
    pub failed: u64,
}

impl Handshakes {
    pub fn total(&self) -> u64 {
        self.full + self.resumed
    }
}

#[derive(Default)]
struct Counters {
    full: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
}

async fn one(
    addr: SocketAddr,
    name: ServerName<'static>,
    connector: &tokio_rustls::TlsConnector,
) -> io::Result<bool> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name, tcp).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    tls.shutdown().await?;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = tls.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(resumed)
}

/// `conns` concurrent clients doing handshakes with random names from `names` until
/// `window.end`, on one thread. With `resume`, each client keeps its own session store, so
/// that every connection after its first can resume with the ticket its previous one got
/// (a shared store runs dry when more clients are in flight than it keeps tickets per server).
pub fn handshakes(
    addr: SocketAddr,
    names: Arc<Vec<ServerName<'static>>>,
    resume: bool,
    conns: usize,
    window: Window,
) -> io::Result<Handshakes> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let counters = Arc::new(Counters::default());
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let config = client_config(resume).map_err(io::Error::other)?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let (names, counters) = (names.clone(), counters.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < window.end {
                    let name = names[fastrand::usize(..names.len())].clone();
                    let r = one(addr, name, &connector).await;
                    if !window.counts_at(Instant::now()) {
                        continue;
                    }
                    let c = match r {
                        Ok(true) => &counters.resumed,
                        Ok(false) => &counters.full,
                        Err(_) => &counters.failed,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok::<_, io::Error>(())
    })?;
    Ok(Handshakes {
        full: counters.full.load(Ordering::Relaxed),
        resumed: counters.resumed.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
    })
}

/// TLS connections held open and idle after their handshake, to measure what a server keeps
/// per connection. Dropping it closes them.
pub struct IdleConnections {
    // Declared before the runtime: the connections are dropped while it still exists.
    conns: Vec<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    pub failed: u64,
    _rt: tokio::runtime::Runtime,
}

impl IdleConnections {
    /// Opens `count` connections, `parallel` handshakes at a time, each with a random name
    /// from `names`; failures are counted, not retried.
    pub fn open(
        addr: SocketAddr,
        names: Arc<Vec<ServerName<'static>>>,
        count: usize,
        parallel: usize,
    ) -> io::Result<IdleConnections> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let config = client_config(false).map_err(io::Error::other)?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let parallel = parallel.clamp(1, count.max(1));
        let (conns, failed) = rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..parallel {
                let share = count / parallel + usize::from(i < count % parallel);
                let (names, connector) = (names.clone(), connector.clone());
                tasks.push(tokio::spawn(async move {
                    let mut open = Vec::with_capacity(share);
                    let mut failed = 0u64;
                    for _ in 0..share {
                        let name = names[fastrand::usize(..names.len())].clone();
                        let conn = async {
                            let tcp = tokio::net::TcpStream::connect(addr).await?;
                            tcp.set_nodelay(true)?;
                            connector.connect(name, tcp).await
                        };
                        match tokio::time::timeout(Duration::from_secs(5), conn).await {
                            Ok(Ok(tls)) => open.push(tls),
                            _ => failed += 1,
                        }
                    }
                    (open, failed)
                }));
            }
            let mut all = Vec::with_capacity(count);
            let mut failed = 0;
            for t in tasks {
                match t.await {
                    Ok((open, f)) => {
                        all.extend(open);
                        failed += f;
                    }
                    Err(_) => failed += 1,
                }
            }
            (all, failed)
        });
        Ok(IdleConnections {
            conns,
            failed,
            _rt: rt,
        })
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}
