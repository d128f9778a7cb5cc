//! The one body type of the proxy: a streamed hyper body (optionally guarded by a size limit
//! and an idle timeout), or a small local answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

/// Why a streamed body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Peer(#[from] hyper::Error),
    /// The request body grew past the route's `proxy-body-size`.
    #[error("the request body is larger than the route allows")]
    TooLarge,
    /// No data for longer than the route's timeout.
    #[error("no body data for {0:?}")]
    Idle(Duration),
    /// Compressing the answer failed.
    #[error("compressing the answer failed: {0}")]
    Compress(std::io::Error),
}

/// Either a peer's streamed body (never buffered) or bytes Portico produced itself.
#[derive(Debug)]
pub enum ProxyBody {
    Stream(Incoming),
    Guarded(Box<Guarded>),
    Compressed(Box<crate::compress::Compressed<ProxyBody>>),
    Bytes(Option<Bytes>),
    /// A body holding a `limit-connections` slot until the answer is sent.
    Held(Box<(ProxyBody, crate::access::rate_limit::InFlight)>),
    /// An upstream answer on a kept-alive connection, which goes back to its pool once the
    /// answer has been read to the end.
    Pooled(Box<(ProxyBody, Option<crate::pool::Lent>)>),
}

/// A streamed body with a size limit and/or a limit on the pause between two frames.
#[derive(Debug)]
pub struct Guarded {
    inner: Incoming,
    remaining: Option<u64>,
    idle: Option<Duration>,
    /// The deadline of the current pause, armed the first time no frame is ready (so time
    /// spent before the body is first read, connecting upstream, does not count).
    pause: Option<Pin<Box<Sleep>>>,
    /// Where the body stands on its way upstream (`proxy-send-timeout`).
    progress: Option<Arc<SendProgress>>,
}

/// How far a request body has gone upstream, for `proxy-send-timeout`. A body that handed
/// out a frame and was not asked for the next one waits on the backend (its connection
/// stopped taking data); a body waiting for the client's next bytes has its own idle timeout.
#[derive(Debug)]
pub struct SendProgress {
    start: Instant,
    /// Milliseconds since `start` of the last change, shifted left by two, and the state in
    /// the two low bits: one store, never torn.
    state: AtomicU64,
}

const WAITING_ON_CLIENT: u64 = 0;
const WAITING_ON_BACKEND: u64 = 1;
const SENT: u64 = 2;

impl Default for SendProgress {
    fn default() -> Self {
        SendProgress {
            start: Instant::now(),
            state: AtomicU64::new(WAITING_ON_CLIENT),
        }
    }
}

impl SendProgress {
    fn set(&self, state: u64) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.state.store(ms << 2 | state, Ordering::Relaxed);
    }

    /// Resolves when the backend has not taken the next piece of the body for `limit`; never
    /// once the body has been sent whole.
    pub async fn stalled(&self, limit: Duration) {
        loop {
            let v = self.state.load(Ordering::Relaxed);
            let since = self.start + Duration::from_millis(v >> 2);
            match v & 3 {
                WAITING_ON_BACKEND => {
                    let deadline = since + limit;
                    if Instant::now() >= deadline {
                        return;
                    }
                    tokio::time::sleep_until(deadline).await;
                }
                SENT => std::future::pending::<()>().await,
                // The client's pauses are the body's own idle timeout; look again soon.
                _ => tokio::time::sleep(limit / 2).await,
            }
        }
    }
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

    /// `inner`, failing with [`BodyError::TooLarge`] past `limit` bytes and with
    /// [`BodyError::Idle`] when no frame comes for `idle`. Unguarded when both are `None`,
    /// and when the body is empty.
    pub fn guarded(inner: Incoming, limit: Option<u64>, idle: Option<Duration>) -> Self {
        if inner.is_end_stream() {
            return ProxyBody::Stream(inner);
        }
        // A body of known length cannot grow past it (hyper enforces the length): the limit
        // only needs watching on streamed bodies.
        let limit = limit.filter(|_| inner.size_hint().exact().is_none());
        if limit.is_none() && idle.is_none() {
            return ProxyBody::Stream(inner);
        }
        ProxyBody::Guarded(Box::new(Guarded {
            inner,
            remaining: limit,
            idle,
            pause: None,
            progress: None,
        }))
    }

    /// Reports to `progress` how far the body has gone (a guarded body only; the others
    /// are empty).
    pub fn with_progress(mut self, progress: &Arc<SendProgress>) -> Self {
        if let ProxyBody::Guarded(g) = &mut self {
            g.progress = Some(progress.clone());
        }
        self
    }
}

impl ProxyBody {
    /// An upstream answer whose connection goes back to `lent`'s pool at its end (at once
    /// when the answer has no body left to read).
    pub fn pooled(body: ProxyBody, lent: crate::pool::Lent) -> Self {
        if body.is_end_stream() {
            lent.release();
            return body;
        }
        ProxyBody::Pooled(Box::new((body, Some(lent))))
    }

    fn release(lent: &mut Option<crate::pool::Lent>) {
        if let Some(l) = lent.take() {
            l.release();
        }
    }
}

impl From<Incoming> for ProxyBody {
    fn from(b: Incoming) -> Self {
        ProxyBody::Stream(b)
    }
}

impl Guarded {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = self.poll_inner(cx);
        if let Some(p) = &self.progress {
            p.set(match &polled {
                Poll::Pending => WAITING_ON_CLIENT,
                Poll::Ready(Some(Ok(_))) if !self.inner.is_end_stream() => WAITING_ON_BACKEND,
                Poll::Ready(_) => SENT,
            });
        }
        polled
    }

    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Pending => {
                if let Some(d) = self.idle {
                    let pause = self
                        .pause
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
                    if pause.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(BodyError::Idle(d))));
                    }
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(remaining), Some(data)) = (&mut self.remaining, frame.data_ref()) {
                    match remaining.checked_sub(data.len() as u64) {
                        Some(r) => *remaining = r,
                        None => return Poll::Ready(Some(Err(BodyError::TooLarge))),
                    }
                }
                if let (Some(d), Some(pause)) = (self.idle, &mut self.pause) {
                    pause.as_mut().reset(Instant::now() + d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }
}

impl http_body::Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Stream(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::Peer),
            ProxyBody::Guarded(g) => g.poll_frame(cx),
            ProxyBody::Compressed(c) => Pin::new(c.as_mut()).poll_frame(cx),
            ProxyBody::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Held(h) => Pin::new(&mut h.0).poll_frame(cx),
            ProxyBody::Pooled(p) => {
                let (inner, lent) = p.as_mut();
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => ProxyBody::release(lent),
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => ProxyBody::release(lent),
                    // A broken answer: its connection closes.
                    Poll::Ready(Some(Err(_))) => *lent = None,
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Stream(b) => b.is_end_stream(),
            ProxyBody::Guarded(g) => g.inner.is_end_stream(),
            ProxyBody::Compressed(c) => c.is_end_stream(),
            ProxyBody::Bytes(b) => b.is_none(),
            ProxyBody::Held(h) => h.0.is_end_stream(),
            ProxyBody::Pooled(p) => p.0.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Stream(b) => b.size_hint(),
            ProxyBody::Guarded(g) => g.inner.size_hint(),
            ProxyBody::Compressed(c) => c.size_hint(),
            ProxyBody::Bytes(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Bytes(None) => SizeHint::with_exact(0),
            ProxyBody::Held(h) => h.0.size_hint(),
            ProxyBody::Pooled(p) => p.0.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn send_progress_fires_only_while_the_backend_holds_the_body() {
        let p = SendProgress::default();
        let limit = Duration::from_secs(1);
        let ten = Duration::from_secs(10);
        let quiet = tokio::time::timeout(ten, p.stalled(limit)).await.is_err();
        assert!(quiet, "waiting on the client is not the backend's stall");
        p.set(WAITING_ON_BACKEND);
        let started = Instant::now();
        p.stalled(limit).await;
        assert!(started.elapsed() >= limit);
        assert!(started.elapsed() < limit * 2);
        p.set(SENT);
        let quiet = tokio::time::timeout(ten, p.stalled(limit)).await.is_err();
        assert!(quiet, "a body sent whole never stalls");
    }
}
