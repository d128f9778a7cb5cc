//! The one body type of the proxy: a streamed hyper body, or a small local answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// Either a peer's streamed body (never buffered) or bytes Portico produced itself.
#[derive(Debug)]
pub enum ProxyBody {
    Stream(Incoming),
    Bytes(Option<Bytes>),
}

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody::Bytes(None)
    }

    pub fn text(s: impl Into<Bytes>) -> Self {
        let b = s.into();
        if b.is_empty() {
            ProxyBody::Bytes(None)
        } else {
            ProxyBody::Bytes(Some(b))
        }
    }
}

impl From<Incoming> for ProxyBody {
    fn from(b: Incoming) -> Self {
        ProxyBody::Stream(b)
    }
}

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Stream(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Stream(b) => b.is_end_stream(),
            ProxyBody::Bytes(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Stream(b) => b.size_hint(),
            ProxyBody::Bytes(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Bytes(None) => SizeHint::with_exact(0),
        }
    }
}
