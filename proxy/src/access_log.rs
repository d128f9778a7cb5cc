//! The access log: one line per request on the `portico::access` target, written when the
//! response body has been sent (or the client went away), so it knows the bytes sent.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use http_body::{Body, Frame, SizeHint};

use crate::backend::Target;
use crate::body::ProxyBody;

/// The tracing target of access-log lines.
pub const TARGET: &str = "portico::access";

/// Everything one access-log line says, apart from the bytes sent.
#[derive(Debug)]
pub struct Record {
    pub client: IpAddr,
    pub method: Method,
    pub uri: Uri,
    pub host: Option<HeaderValue>,
    pub status: u16,
    pub start: Instant,
    pub bytes_in: u64,
    pub upstream: Option<SocketAddr>,
    pub target: Option<Arc<Target>>,
    pub request_id: HeaderValue,
    pub tls: bool,
}

impl Record {
    fn emit(&self, bytes_out: u64, complete: bool) {
        let (namespace, ingress, service) = match &self.target {
            Some(t) => (t.namespace.as_str(), t.ingress.as_str(), t.service.as_str()),
            None => ("", "", ""),
        };
        tracing::info!(
            target: TARGET,
            client = %self.client,
            method = %self.method,
            host = self.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
            path = self.uri.path(),
            status = self.status,
            bytes_in = self.bytes_in,
            bytes_out,
            duration_ms = self.start.elapsed().as_secs_f64() * 1000.0,
            upstream = %self.upstream.map(|a| a.to_string()).unwrap_or_default(),
            namespace,
            ingress,
            service,
            request_id = self.request_id.to_str().unwrap_or(""),
            tls = self.tls,
            complete,
        );
    }
}

/// A response body that counts what it sends and logs once at its end.
#[derive(Debug)]
pub struct LoggedBody {
    inner: ProxyBody,
    sent: u64,
    record: Option<Box<Record>>,
}

impl LoggedBody {
    pub fn new(inner: ProxyBody, record: Option<Box<Record>>) -> Self {
        LoggedBody {
            inner,
            sent: 0,
            record,
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(r) = self.record.take() {
            r.emit(self.sent, complete);
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // A body dropped before its end (client gone, HEAD, empty) still gets its line.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}
