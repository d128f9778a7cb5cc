//! Bounds on what one client can hold: connection slots per listener, and a deadline on the
//! first bytes of a connection (the part hyper's own header timeout does not cover).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The HTTP/2 connection preface: a plain connection is HTTP/2 only if it starts with it.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connection slots of one listener. `max == 0`: unlimited.
#[derive(Debug)]
pub struct ConnectionSlots {
    max: usize,
    open: Arc<AtomicUsize>,
}

/// One taken slot, given back when dropped (when the connection's task ends).
#[derive(Debug)]
pub struct Slot {
    open: Arc<AtomicUsize>,
}

impl ConnectionSlots {
    pub fn new(max: usize) -> Self {
        ConnectionSlots {
            max,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot, or `None` when `max` connections are open.
    pub fn take(&self) -> Option<Slot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (self.max == 0 || n < self.max).then_some(n + 1)
            });
        taken.ok().map(|_| Slot {
            open: self.open.clone(),
        })
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Turns away a connection accepted over the limit: plain HTTP gets a `503` written without
/// waiting (the socket's send buffer is empty), TLS is simply closed; no task, no buffer.
pub fn refuse(stream: TcpStream, tls: bool) {
    if !tls {
        let _ = stream.try_write(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
              content-length: 20\r\nconnection: close\r\n\r\ntoo many connections",
        );
    }
    drop(stream);
}

/// A client connection's stream whose first bytes must arrive before a deadline.
///
/// hyper's `header_read_timeout` starts only once HTTP/1 is chosen; before that, the
/// automatic HTTP/1-or-2 detection (and an HTTP/2 server waiting for the preface) reads
/// without any limit, so a client that connects and sends nothing, or the preface one byte a
/// minute, would hold its connection forever. This wrapper fails reads once `deadline` passes
/// while the bytes read so far are still a strict prefix of the HTTP/2 preface (nothing
/// counts as a prefix). Any other first byte means HTTP/1, where hyper's own timeout takes
/// over; a complete preface means HTTP/2, where keep-alive pings and stream limits take over.
/// After that the wrapper only passes bytes through.
pub struct ClientIo<I> {
    inner: I,
    /// `Some` while armed.
    deadline: Option<Pin<Box<Sleep>>>,
    seen: usize,
    timeout: Duration,
}

impl<I> ClientIo<I> {
    pub fn new(inner: I, timeout: Duration) -> Self {
        ClientIo {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep_until(Instant::now() + timeout))),
            seen: 0,
            timeout,
        }
    }

    /// Looks at bytes just read; disarms once the connection's protocol is settled.
    fn observe(&mut self, bytes: &[u8]) {
        if self.deadline.is_none() || bytes.is_empty() {
            return;
        }
        let want = &PREFACE[self.seen.min(PREFACE.len())..];
        let n = bytes.len().min(want.len());
        if bytes[..n] != want[..n] {
            // Not HTTP/2: HTTP/1's header timeout governs from here.
            self.deadline = None;
            return;
        }
        self.seen += n;
        if self.seen >= PREFACE.len() || bytes.len() > n {
            self.deadline = None;
        }
    }
}

impl<I: Read + Unpin> Read for ClientIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.deadline.is_none() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Read into a small stack buffer first, to see what arrived before handing it on.
        let mut tmp = [0u8; 64];
        let room = tmp.len().min(buf.remaining());
        let mut small = hyper::rt::ReadBuf::new(&mut tmp[..room]);
        let polled = Pin::new(&mut this.inner).poll_read(cx, small.unfilled());
        match (polled, small.filled()) {
            (Poll::Ready(Ok(())), got) => {
                this.observe(got);
                buf.put_slice(got);
                Poll::Ready(Ok(()))
            }
            (Poll::Ready(Err(e)), _) => Poll::Ready(Err(e)),
            (Poll::Pending, _) => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no request within {:?}", this.timeout),
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: Write + Unpin> Write for ClientIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let slots = ConnectionSlots::new(2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        assert!(slots.take().is_none());
        assert_eq!(slots.open(), 2);
        drop(a);
        assert!(slots.take().is_some());
        let unlimited = ConnectionSlots::new(0);
        let held: Vec<_> = (0..1000).map(|_| unlimited.take().unwrap()).collect();
        assert_eq!(unlimited.open(), held.len());
    }

    fn armed_after(chunks: &[&[u8]]) -> bool {
        let mut f = ClientIo::new((), Duration::from_secs(1));
        for c in chunks {
            f.observe(c);
        }
        f.deadline.is_some()
    }

    #[tokio::test]
    async fn the_deadline_covers_only_an_unfinished_preface() {
        assert!(armed_after(&[]));
        assert!(!armed_after(&[b"GET / HTTP/1.1\r\n"]));
        assert!(!armed_after(&[b"G"]));
        assert!(armed_after(&[b"P"]));
        assert!(armed_after(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM"]));
        assert!(!armed_after(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"]));
        assert!(!armed_after(&[PREFACE, b"\0\0\0\x04"]));
        // Diverging after a shared start ("PRI" then not the preface) is HTTP/1.
        assert!(!armed_after(&[b"PR", b"X"]));
    }
}
