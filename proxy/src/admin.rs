//! The admin listener: `/healthz`, `/readyz` and `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tracing::debug;

use crate::body::ProxyBody;
use crate::server::Proxy;

/// Serves the admin endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, proxy: Proxy) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(answer(&proxy, &req)) }
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

fn answer(proxy: &Proxy, req: &Request<Incoming>) -> Response<ProxyBody> {
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain; charset=utf-8"),
        "/readyz" => match proxy.readiness() {
            Ok(()) => text(
                StatusCode::OK,
                "ready\n".into(),
                "text/plain; charset=utf-8",
            ),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
                "text/plain; charset=utf-8",
            ),
        },
        "/metrics" => text(
            StatusCode::OK,
            proxy.metrics().render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found\n".into(),
            "text/plain; charset=utf-8",
        ),
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
