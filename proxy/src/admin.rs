//! The admin listener, in two parts:
//!
//! - open to any peer: the probes `/healthz` and `/readyz` (its body says why it is not ready)
//!   and `/metrics`;
//! - protected (loopback peers, or any peer with `Authorization: Bearer <token>` when a token is
//!   configured): the status page `/status`, the routes API `/api/routes[?host=H]`, and the log
//!   level `/api/log-level` (GET reads it, PUT sets it).
//!
//! What the protected pages show comes from an [`Extension`] the binary provides (the proxy
//! knows nothing of Kubernetes objects; the controller does).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::body::ProxyBody;
use crate::server::Proxy;

/// What the binary adds to the admin listener.
pub trait Extension: Send + Sync + 'static {
    /// Appends metrics of the control plane (watches, leader election) to `/metrics`.
    fn metrics(&self, out: &mut String);
    /// Why the instance is not ready yet beyond the data plane's own reasons (e.g. which
    /// watches have not synced).
    fn not_ready(&self) -> Option<String>;
    /// The status page (a whole HTML document).
    fn status_page(&self) -> String;
    /// The routing table as JSON; with `host`, only the table that host is served from.
    fn routes(&self, host: Option<&str>) -> String;
    /// The current log filter.
    fn log_level(&self) -> String;
    /// Replaces the log filter (`tracing` directives, e.g. `info,portico::access=off`);
    /// returns the new one.
    fn set_log_level(&self, directives: &str) -> Result<String, String>;
}

/// Settings of the admin listener.
#[derive(Clone, Default)]
pub struct AdminConfig {
    /// Bearer token that opens the protected endpoints to non-loopback peers.
    pub token: Option<String>,
    pub extension: Option<Arc<dyn Extension>>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("extension", &self.extension.is_some())
            .finish()
    }
}

/// Largest request body the admin listener reads (a log filter).
const MAX_BODY: usize = 4096;

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, proxy: Proxy, config: AdminConfig) {
    let config = Arc::new(config);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let proxy = proxy.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                let config = config.clone();
                async move { Ok::<_, Infallible>(answer(&proxy, &config, peer, req).await) }
            });
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %e, "admin connection failed");
            }
        });
    }
}

/// Binds the admin address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

async fn answer(
    proxy: &Proxy,
    config: &AdminConfig,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let path = req.uri().path();
    match path {
        "/healthz" => return text(StatusCode::OK, "ok\n".into(), TEXT),
        "/readyz" => return readyz(proxy, config),
        "/metrics" => {
            let mut out = proxy.metrics().render();
            if let Some(ext) = &config.extension {
                ext.metrics(&mut out);
            }
            return text(
                StatusCode::OK,
                out,
                "text/plain; version=0.0.4; charset=utf-8",
            );
        }
        "/status" | "/api/routes" | "/api/log-level" => {}
        _ => return text(StatusCode::NOT_FOUND, "not found\n".into(), TEXT),
    }
    if let Err(refused) = authorize(config, peer, &req) {
        return refused;
    }
    let Some(ext) = config.extension.clone() else {
        return text(StatusCode::NOT_FOUND, "not available\n".into(), TEXT);
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/status") => {
            let mut resp = text(
                StatusCode::OK,
                ext.status_page(),
                "text/html; charset=utf-8",
            );
            let h = resp.headers_mut();
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // No script, style only inline, nothing from elsewhere.
            h.insert(
                http::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            resp
        }
        (&Method::GET, "/api/routes") => {
            let host = query_param(req.uri().query(), "host");
            text(StatusCode::OK, ext.routes(host.as_deref()), JSON)
        }
        (&Method::GET, "/api/log-level") => text(StatusCode::OK, ext.log_level() + "\n", TEXT),
        (&Method::PUT, "/api/log-level") => {
            let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the log filter is limited to {MAX_BODY} bytes\n"),
                        TEXT,
                    )
                }
            };
            let Ok(directives) = std::str::from_utf8(&body) else {
                return text(StatusCode::BAD_REQUEST, "not UTF-8\n".into(), TEXT);
            };
            match ext.set_log_level(directives.trim()) {
                Ok(now) => {
                    info!(%peer, filter = %now, "log level changed");
                    text(StatusCode::OK, now + "\n", TEXT)
                }
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n"), TEXT),
            }
        }
        _ => {
            let mut resp = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".into(),
                TEXT,
            );
            let allow = if req.uri().path() == "/api/log-level" {
                "GET, PUT"
            } else {
                "GET"
            };
            resp.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
    }
}

fn readyz(proxy: &Proxy, config: &AdminConfig) -> Response<ProxyBody> {
    let detail = config.extension.as_ref().and_then(|e| e.not_ready());
    match (proxy.readiness(), detail) {
        (Ok(()), None) => text(StatusCode::OK, "ready\n".into(), TEXT),
        (Ok(()), Some(d)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {d}\n"),
            TEXT,
        ),
        (Err(why), None) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
            TEXT,
        ),
        (Err(why), Some(d)) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}: {d}\n"),
            TEXT,
        ),
    }
}

/// Loopback peers pass; others need the configured bearer token.
#[allow(clippy::result_large_err)]
fn authorize<B>(
    config: &AdminConfig,
    peer: SocketAddr,
    req: &Request<B>,
) -> Result<(), Response<ProxyBody>> {
    if crate::client_addr::normalize(peer.ip()).is_loopback() {
        return Ok(());
    }
    let Some(token) = &config.token else {
        return Err(text(
            StatusCode::FORBIDDEN,
            "only from localhost (or configure an admin token)\n".into(),
            TEXT,
        ));
    };
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        _ => {
            let mut resp = text(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required\n".into(),
                TEXT,
            );
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portico-admin\""),
            );
            Err(resp)
        }
    }
}

/// Compares without an early exit, so timing does not reveal the matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of `name` in a query string (percent-decoded).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/status");
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn protected_pages_need_loopback_or_the_token() {
        let open = AdminConfig::default();
        let remote: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let local: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert!(authorize(&open, local, &req(None)).is_ok());
        assert_eq!(
            authorize(&open, remote, &req(None)).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
        let with_token = AdminConfig {
            token: Some("s3cret".into()),
            extension: None,
        };
        assert!(authorize(&with_token, remote, &req(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("Basic s3cret"),
            Some("Bearer s3cre"),
        ] {
            let r = authorize(&with_token, remote, &req(bad)).unwrap_err();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
            assert!(r.headers().contains_key(WWW_AUTHENTICATE));
        }
        assert!(format!("{with_token:?}").contains("redacted"));
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            query_param(Some("a=1&host=foo.com"), "host").as_deref(),
            Some("foo.com")
        );
        assert_eq!(
            query_param(Some("host=%2A.foo.com"), "host").as_deref(),
            Some("*.foo.com")
        );
        assert_eq!(
            query_param(Some("host=50%"), "host").as_deref(),
            Some("50%")
        );
        assert_eq!(query_param(None, "host"), None);
    }
}
