//! A tiny demo backend: answers with JSON saying which service and endpoint answered and what
//! it received; echoes request bodies back (streamed); speaks WebSocket (echo). Used by the
//! quickstart and by the end-to-end tests.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info};

type Body = BoxBody<Bytes, hyper::Error>;

/// One echo listener: the service name it reports and the address it serves.
#[derive(Clone, Debug)]
pub struct EchoEndpoint {
    pub service: String,
    pub addr: SocketAddr,
}

impl std::str::FromStr for EchoEndpoint {
    type Err = String;

    /// `ADDR=SERVICE`, e.g. `127.0.0.1:9101=web`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, service) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected ADDR=SERVICE"))?;
        Ok(EchoEndpoint {
            service: service.to_string(),
            addr: addr
                .parse()
                .map_err(|e| format!("{addr:?} is not a socket address: {e}"))?,
        })
    }
}

/// Binds and serves one echo endpoint until the task is dropped.
pub async fn serve(endpoint: EchoEndpoint) -> std::io::Result<()> {
    let listener = TcpListener::bind(endpoint.addr).await?;
    serve_listener(listener, endpoint.service).await;
    Ok(())
}

/// Serves an already bound listener.
pub async fn serve_listener(listener: TcpListener, service: String) {
    serve_accepted(listener, service, None).await;
}

/// Serves an already bound listener over TLS (HTTP/1.1 or HTTP/2 by ALPN); the JSON answer
/// also says which SNI name the client sent.
pub async fn serve_tls_listener(
    listener: TcpListener,
    service: String,
    config: Arc<rustls::ServerConfig>,
) {
    serve_accepted(
        listener,
        service,
        Some(tokio_rustls::TlsAcceptor::from(config)),
    )
    .await;
}

async fn serve_accepted(
    listener: TcpListener,
    service: String,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let local = listener.local_addr().ok();
    info!(service = %service, addr = ?local, tls = tls.is_some(), "echo backend listening");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let service = service.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_io(TokioIo::new(stream), service, local, None).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        let sni = Some(s.get_ref().1.server_name().unwrap_or("").to_string());
                        serve_io(TokioIo::new(s), service, local, sni).await;
                    }
                    Err(e) => debug!(error = %e, "echo TLS handshake failed"),
                },
            }
        });
    }
}

async fn serve_io<I>(io: I, service: String, local: Option<SocketAddr>, sni: Option<String>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let service = service.clone();
        let sni = sni.clone();
        async move { Ok::<_, Infallible>(answer(req, &service, local, sni.as_deref()).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().max_headers(1000).max_buf_size(1024 * 1024);
    if let Err(e) = builder.serve_connection_with_upgrades(io, svc).await {
        debug!(error = %e, "echo connection ended");
    }
}

async fn answer(
    mut req: Request<Incoming>,
    service: &str,
    local: Option<SocketAddr>,
    sni: Option<&str>,
) -> Response<Body> {
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(ms) = query.get("delay").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let endpoint = local.map(|a| a.to_string()).unwrap_or_default();

    if let Some(key) = websocket_key(&req) {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("connection", HeaderValue::from_static("upgrade"));
        if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            h.insert("sec-websocket-accept", v);
        }
        return with_identity(resp, service, &endpoint);
    }

    let status = query
        .get("status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);

    if matches!(*req.method(), Method::POST | Method::PUT) {
        // Stream the body straight back: nothing is buffered on either side.
        let mut resp = Response::new(req.into_body().boxed());
        *resp.status_mut() = status;
        return with_identity(resp, service, &endpoint);
    }

    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let doc = serde_json::json!({
        "service": service,
        "endpoint": endpoint,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query().unwrap_or(""),
        "version": format!("{:?}", req.version()),
        "headers": headers,
        "tls": sni.is_some(),
        "sni": sni.unwrap_or(""),
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    with_identity(resp, service, &endpoint)
}

fn websocket_key(req: &Request<Incoming>) -> Option<String> {
    let upgrade = req.headers().get("upgrade")?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    req.headers()
        .get("sec-websocket-key")?
        .to_str()
        .ok()
        .map(str::to_string)
}

fn with_identity(mut resp: Response<Body>, service: &str, endpoint: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(service) {
        resp.headers_mut().insert("x-echo-service", v);
    }
    if let Ok(v) = HeaderValue::from_str(endpoint) {
        resp.headers_mut().insert("x-echo-endpoint", v);
    }
    resp
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}
