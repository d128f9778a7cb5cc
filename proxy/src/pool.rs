//! Kept-alive HTTP/1.1 connections to plain-HTTP endpoints: a small stack of idle connections
//! per endpoint. Each backend holds its endpoints' pools, attached when a snapshot is
//! published, so a request finds its pool by the endpoint's index: no key to hash, no map to
//! search, no task to wake. Pools are shared across snapshots, so kept-alive connections
//! survive configuration swaps. Each pool keeps two kinds of idle connections: hyper's, for
//! requests forwarded through hyper's client, and bare streams, for Portico's own HTTP/1.1
//! path (`crate::h1`), which writes and reads them itself.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use crate::body::ProxyBody;
use crate::upstream::UpstreamError;

/// Idle connections kept per endpoint at most.
const MAX_IDLE: usize = 256;
/// TCP keep-alive probes start after this long without traffic.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The idle connections to one endpoint.
#[derive(Debug)]
pub struct EndpointPool {
    addr: SocketAddr,
    idle_timeout: Duration,
    /// Most recently returned last: checkout takes the warmest connection.
    idle: Mutex<Vec<Idle>>,
    /// Bare kept-alive streams of Portico's own HTTP/1.1 path, most recent last.
    streams: Mutex<Vec<(TcpStream, Instant)>>,
    /// Whether the task closing connections idle for longer than `idle_timeout` runs.
    reaping: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    tx: SendRequest<ProxyBody>,
    since: Instant,
}

/// A connection whose answer is still streaming; it goes back to its pool when the answer
/// has been read to the end (dropped before that, the connection closes).
#[derive(Debug)]
pub struct Lent {
    tx: SendRequest<ProxyBody>,
    pool: Arc<EndpointPool>,
}

impl Lent {
    /// The answer is complete: the connection is idle again once hyper has seen the end.
    pub(crate) fn release(self) {
        let Lent { mut tx, pool } = self;
        if tx.is_ready() {
            pool.checkin(tx);
            return;
        }
        if tx.is_closed() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if tx.ready().await.is_ok() {
                pool.checkin(tx);
            }
        });
    }
}

impl EndpointPool {
    fn new(addr: SocketAddr, idle_timeout: Duration) -> Self {
        EndpointPool {
            addr,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            reaping: AtomicBool::new(false),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection, or on a new one. A
    /// request that a kept-alive connection refused before sending any of it (the backend
    /// closed the connection meanwhile) goes out again on another connection; a failure on
    /// a new connection is final. The connection comes back with the answer when it is
    /// still busy with it.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, Option<Lent>), UpstreamError> {
        loop {
            let (mut tx, reused) = match self.checkout() {
                Some(tx) => (tx, true),
                // Boxed: connecting is rare on kept-alive paths and its future is large; every
                // request's future would otherwise carry its space.
                None => (Box::pin(self.connect(connect_timeout)).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    // Most answers arrive whole with their head: the connection is idle again.
                    if tx.is_ready() {
                        self.checkin(tx);
                        return Ok((resp, None));
                    }
                    let lent = Lent {
                        tx,
                        pool: self.clone(),
                    };
                    return Ok((resp, Some(lent)));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        debug!(upstream = %self.addr, "kept-alive connection closed; sending again");
                        req = unsent;
                    }
                    _ => return Err(UpstreamError::Send(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open and not expired.
    fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock().ok()?;
            loop {
                match idle.pop() {
                    Some(c) if c.tx.is_ready() && c.since.elapsed() < self.idle_timeout => {
                        break Some(c.tx)
                    }
                    Some(c) => stale.push(c),
                    None => break None,
                }
            }
        };
        // Closed outside the lock.
        drop(stale);
        found
    }

    fn checkin(self: &Arc<Self>, tx: SendRequest<ProxyBody>) {
        if self.idle_timeout.is_zero() {
            return;
        }
        let entry = Idle {
            tx,
            since: Instant::now(),
        };
        {
            let Ok(mut idle) = self.idle.lock() else {
                return;
            };
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(entry);
        }
        self.ensure_reaper();
    }

    fn ensure_reaper(self: &Arc<Self>) {
        if !self.reaping.load(Ordering::Relaxed) && !self.reaping.swap(true, Ordering::AcqRel) {
            self.spawn_reaper();
        }
    }

    /// The most recently returned bare stream that has not expired and has nothing to read.
    /// A backend may still close it just as it is used: the caller tries once more then.
    pub(crate) fn checkout_stream(&self) -> Option<TcpStream> {
        let mut streams = self.streams.lock().ok()?;
        while let Some((stream, since)) = streams.pop() {
            // A stream the backend closed or wrote to since is never lent: its bytes would
            // be read as the next request's answer. (Costs a system call only when the
            // reactor saw the stream turn readable.)
            if since.elapsed() < self.idle_timeout && still_quiet(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps a bare stream whose last answer was read to its end, nothing more pending.
    pub(crate) fn checkin_stream(self: &Arc<Self>, stream: TcpStream) {
        if self.idle_timeout.is_zero() {
            return;
        }
        {
            let Ok(mut streams) = self.streams.lock() else {
                return;
            };
            if streams.len() >= MAX_IDLE {
                return;
            }
            streams.push((stream, Instant::now()));
        }
        self.ensure_reaper();
    }

    /// A new bare stream to the endpoint.
    pub(crate) async fn connect_stream(
        &self,
        timeout: Duration,
    ) -> Result<TcpStream, UpstreamError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
            Err(_) => {
                return Err(UpstreamError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect timed out",
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(stream)
    }

    async fn connect(&self, timeout: Duration) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let stream = self.connect_stream(timeout).await?;
        let (mut tx, conn) = Builder::new()
            .handshake::<_, ProxyBody>(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Send)?;
        let addr = self.addr;
        tokio::spawn(async move {
            // Upgrades: a WebSocket answer takes the connection over.
            if let Err(e) = conn.with_upgrades().await {
                debug!(upstream = %addr, error = %e, "upstream connection ended");
            }
        });
        tx.ready().await.map_err(UpstreamError::Send)?;
        Ok(tx)
    }

    /// Closes the connections idle for longer than the timeout, every half timeout, while
    /// the pool keeps any.
    fn spawn_reaper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaping.store(false, Ordering::Release);
            return;
        };
        let pool: Weak<EndpointPool> = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(50));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                if pool.reap() > 0 {
                    continue;
                }
                pool.reaping.store(false, Ordering::Release);
                // A connection returned meanwhile saw the flag still set: keep going for it.
                if pool.idle_count() == 0 || pool.reaping.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }

    /// Drops expired and closed idle connections; returns how many are left.
    fn reap(&self) -> usize {
        let now = Instant::now();
        let fresh = |since: Instant| now.saturating_duration_since(since) < self.idle_timeout;
        let (mut expired, mut closed) = (Vec::new(), Vec::new());
        let mut left = 0;
        if let Ok(mut idle) = self.idle.lock() {
            let (kept, gone) = idle
                .drain(..)
                .partition(|c| !c.tx.is_closed() && fresh(c.since));
            *idle = kept;
            expired = gone;
            left += idle.len();
        }
        if let Ok(mut streams) = self.streams.lock() {
            // A bare stream the backend closed (or wrote to unasked) reads as ready.
            let (kept, gone) = streams
                .drain(..)
                .partition(|(s, since)| fresh(*since) && still_quiet(s));
            *streams = kept;
            closed = gone;
            left += streams.len();
        }
        // Closed outside the locks.
        drop(expired);
        drop(closed);
        left
    }

    fn idle_count(&self) -> usize {
        let hyper = self.idle.lock().map(|i| i.len()).unwrap_or(0);
        hyper + self.streams.lock().map(|s| s.len()).unwrap_or(0)
    }
}

/// An idle stream with nothing to read: neither closed by the backend nor holding bytes
/// nobody asked for.
fn still_quiet(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Every endpoint's pool, so that a new snapshot finds the pools (and their connections)
/// of the endpoints it shares with the previous one.
#[derive(Debug, Default)]
pub(crate) struct Pools {
    by_addr: HashMap<SocketAddr, Arc<EndpointPool>>,
}

impl Pools {
    /// The pools of `addrs`, in order, created when missing; `used` collects them.
    pub(crate) fn for_endpoints(
        &self,
        addrs: &[SocketAddr],
        idle_timeout: Duration,
        used: &mut HashMap<SocketAddr, Arc<EndpointPool>>,
    ) -> Box<[Arc<EndpointPool>]> {
        addrs
            .iter()
            .map(|a| {
                let pool = used
                    .get(a)
                    .or_else(|| self.by_addr.get(a))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(EndpointPool::new(*a, idle_timeout)));
                used.insert(*a, pool.clone());
                pool
            })
            .collect()
    }

    /// Adds pools made for a snapshot about to go live.
    pub(crate) fn add(&mut self, created: HashMap<SocketAddr, Arc<EndpointPool>>) {
        self.by_addr.extend(created);
    }

    /// Forgets the pools that only this registry holds: no backend of a snapshot still in
    /// use (the live one, or an older one that requests in flight hold) and no connection
    /// refers to them.
    pub(crate) fn forget_unused(&mut self) {
        self.by_addr.retain(|_, pool| Arc::strong_count(pool) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend answering every request with `ok`, counting connections; with `once`, it
    /// closes each connection after its first answer (without saying so).
    async fn backend(once: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() || once {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<ProxyBody> {
        let mut req = Request::new(ProxyBody::empty());
        req.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("a"));
        req
    }

    async fn status(pool: &Arc<EndpointPool>) -> u16 {
        let (resp, lent) = pool.send(get(), Duration::from_secs(1)).await.unwrap();
        let status = resp.status().as_u16();
        let body = ProxyBody::Stream(resp.into_body());
        let body = match lent {
            Some(l) => ProxyBody::pooled(body, l),
            None => body,
        };
        let bytes = http_body_util::BodyExt::collect(body).await.unwrap();
        assert_eq!(bytes.to_bytes().as_ref(), b"ok");
        status
    }

    #[test]
    fn the_registry_keeps_pools_in_use_and_forgets_the_others() {
        let mut pools = Pools::default();
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut created = HashMap::new();
        let first = pools.for_endpoints(&[a, b], Duration::from_secs(30), &mut created);
        pools.add(created);
        // A later snapshot naming `a` again finds the same pool (and its connections).
        let again = pools.for_endpoints(&[a], Duration::from_secs(30), &mut HashMap::new());
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        drop(first);
        pools.forget_unused();
        // `again` still holds a; nothing but the registry holds b.
        assert!(pools.by_addr.contains_key(&a) && !pools.by_addr.contains_key(&b));
        drop(again);
        pools.forget_unused();
        assert!(pools.by_addr.is_empty());
    }

    #[tokio::test]
    async fn connections_are_kept_and_reused() {
        let (addr, accepted) = backend(false).await;
        let pool = Arc::new(EndpointPool::new(addr, Duration::from_secs(30)));
        for _ in 0..5 {
            assert_eq!(status(&pool).await, 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_closed_kept_alive_connection_is_replaced() {
        let (addr, accepted) = backend(true).await;
        let pool = Arc::new(EndpointPool::new(addr, Duration::from_secs(30)));
        for _ in 0..3 {
            assert_eq!(status(&pool).await, 200);
            // The backend's close is noticed: the next request takes a new connection.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let (addr, accepted) = backend(false).await;
        let pool = Arc::new(EndpointPool::new(addr, Duration::from_millis(100)));
        assert_eq!(status(&pool).await, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle_count(), 0, "the reaper closed it");
        assert_eq!(status(&pool).await, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let pool = Arc::new(EndpointPool::new(addr, Duration::from_secs(30)));
        let e = pool.send(get(), Duration::from_secs(1)).await.unwrap_err();
        assert!(e.is_connect(), "{e}");
    }
}
