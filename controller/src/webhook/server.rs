//! The webhook's HTTPS server: its own port (never a proxy listener), TLS only (rustls),
//! `POST /validate` only, bounded bodies, a deadline per review, a bounded number of reviews
//! at once. The certificate files are read at start and re-read when their content changes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use portico_proxy::TlsCertificate;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::Prepared;
use crate::inputs::Inputs;

/// The only path served.
pub const PATH: &str = "/validate";
/// Largest request body read (the API server's own limit for an object is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// Time a review may take, body read excluded (keep the webhook's `timeoutSeconds` above it).
pub const REVIEW_DEADLINE: Duration = Duration::from_secs(3);
/// Time a client has to send its request body, and to finish a TLS handshake.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Reviews translated at once; more wait (within their deadline).
const CONCURRENT_REVIEWS: usize = 4;
/// Connections served at once; more are closed.
const MAX_CONNECTIONS: usize = 256;
/// How often the certificate files are looked at.
const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the webhook certificate is not usable: {0}")]
    Certificate(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("binding {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// The current certificate, swapped when the files change.
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

async fn read_pair(config: &Config) -> Result<(Vec<u8>, Vec<u8>), StartError> {
    let read = |p: PathBuf| async move {
        tokio::fs::read(&p).await.map_err(|error| StartError::Read {
            path: p.display().to_string(),
            error,
        })
    };
    Ok((
        read(config.cert_file.clone()).await?,
        read(config.key_file.clone()).await?,
    ))
}

fn parse_pair(crt: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, StartError> {
    TlsCertificate::from_pem(crt, key)
        .map(|c| c.certified.clone())
        .map_err(|e| StartError::Certificate(e.to_string()))
}

/// What every request needs.
struct State {
    prepared: watch::Receiver<Option<Arc<Prepared>>>,
    settings: super::Settings,
    /// Held by each review until its translation ends, even past its deadline, so that
    /// reviews given up on cannot pile up on the blocking pool.
    reviews: Arc<Semaphore>,
}

/// Binds the webhook's port, reads its certificate and starts serving; reviews are judged
/// against the latest value of `inputs` (refused until the source's first one).
pub async fn spawn(
    config: Config,
    inputs: watch::Receiver<Arc<Inputs>>,
    settings: super::Settings,
) -> Result<SocketAddr, StartError> {
    let (crt, key) = read_pair(&config).await?;
    let resolver = Arc::new(Reloading {
        current: RwLock::new(parse_pair(&crt, &key)?),
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(portico_proxy::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|error| StartError::Bind {
            addr: config.addr,
            error,
        })?;
    let local = listener.local_addr().map_err(|error| StartError::Bind {
        addr: config.addr,
        error,
    })?;

    tokio::spawn(reload(config, resolver, (crt, key)));
    let (prepared_tx, prepared_rx) = watch::channel(None);
    tokio::spawn(prepare(inputs, prepared_tx));
    let state = Arc::new(State {
        prepared: prepared_rx,
        settings,
        reviews: Arc::new(Semaphore::new(CONCURRENT_REVIEWS)),
    });
    tokio::spawn(accept(listener, TlsAcceptor::from(Arc::new(tls)), state));
    info!(addr = %local, path = PATH, "admission webhook serving");
    Ok(local)
}

/// Re-indexes the inputs after each change (debounced like publishing).
async fn prepare(
    mut inputs: watch::Receiver<Arc<Inputs>>,
    prepared: watch::Sender<Option<Arc<Prepared>>>,
) {
    loop {
        if inputs.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(crate::publish::DEBOUNCE).await;
        let current = inputs.borrow_and_update().clone();
        match tokio::task::spawn_blocking(move || Prepared::new(current)).await {
            Ok(p) => {
                prepared.send_replace(Some(Arc::new(p)));
            }
            Err(e) => warn!(error = %e, "webhook: indexing the inputs failed"),
        }
    }
}

/// Re-reads the certificate files every few seconds; a changed, valid pair replaces the
/// served one, an invalid one is logged and the old pair kept.
async fn reload(config: Config, resolver: Arc<Reloading>, mut last: (Vec<u8>, Vec<u8>)) {
    let mut tick = tokio::time::interval(RELOAD_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let pair = match read_pair(&config).await {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "webhook certificate not re-read; the current one is kept");
                continue;
            }
        };
        if pair == last {
            continue;
        }
        match parse_pair(&pair.0, &pair.1) {
            Ok(key) => {
                if let Ok(mut c) = resolver.current.write() {
                    *c = key;
                }
                info!(
                    cert = %config.cert_file.display(),
                    "webhook certificate reloaded"
                );
                last = pair;
            }
            // Written one file at a time: the next look may find a matching pair.
            Err(e) => {
                warn!(error = %e, "new webhook certificate not usable; the current one is kept")
            }
        }
    }
}

async fn accept(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<State>) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "webhook accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            debug!(%peer, "webhook connection limit reached; closing");
            continue;
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, &state).await) }
            });
            let mut http = auto::Builder::new(TokioExecutor::new());
            http.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT);
            if let Err(e) = http.serve_connection(TokioIo::new(tls), service).await {
                debug!(%peer, error = %e, "webhook connection ended");
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        "text/plain; charset=utf-8",
        format!("{msg}\n").into_bytes(),
    )
}

async fn handle(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview");
    }
    let body = Limited::new(req.into_body(), MAX_BODY);
    let body = match tokio::time::timeout(READ_TIMEOUT, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "the review is too large")
        }
        Ok(Err(_)) => return text(StatusCode::BAD_REQUEST, "the request body was cut short"),
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the request body was too slow"),
    };
    let judged = tokio::time::timeout(REVIEW_DEADLINE, async {
        let permit = state.reviews.clone().acquire_owned().await.ok()?;
        let prepared = state.prepared.borrow().clone();
        let settings = state.settings.clone();
        let body = body.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            super::review(&body, prepared.as_deref(), &settings, now())
        })
        .await
        .ok()
    })
    .await;
    let answer = match judged {
        Ok(Some(a)) => a,
        Ok(None) => super::review_uid(&body)
            .map(|uid| super::refusal(uid, "Portico failed to validate the object".into()))
            .unwrap_or_else(|| Err(super::BadReview("not an AdmissionReview".into()))),
        Err(_) => {
            warn!("webhook review deadline passed; the object is refused");
            super::review_uid(&body)
                .map(|uid| {
                    super::refusal(
                        uid,
                        "Portico could not validate the object in time; try again".into(),
                    )
                })
                .unwrap_or_else(|| Err(super::BadReview("not an AdmissionReview".into())))
        }
    };
    match answer {
        Ok(json) => reply(StatusCode::OK, "application/json", json),
        Err(e) => text(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
