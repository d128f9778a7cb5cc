//! A minimal HTTP/1.1 load generator: keep-alive `GET /` with a chosen `Host`, either closed
//! loop (each connection sends its next request when the previous answer arrived) or open loop
//! (a fixed offered rate; latency counts from when each request was due, so a stalled server
//! is charged for the requests it delayed: coordinated-omission correction).
//!
//! A request that finds its kept-alive connection closed before any byte of an answer is
//! retried once on a new connection, as browsers and HTTP client libraries do; such retries are
//! counted apart from failures.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The request bytes for `GET /` on `host`.
pub fn request(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-bench\r\n\r\n").into_bytes()
}

/// What a buffer holds so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    /// A whole response of `len` bytes; `close` when the server will close the connection.
    Complete {
        status: u16,
        len: usize,
        close: bool,
    },
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Parses one response (Content-Length or chunked body; no trailers) at the start of `buf`.
pub fn parse_response(buf: &[u8]) -> io::Result<Parsed> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(Parsed::Incomplete);
    };
    let head = &buf[..head_end];
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
        return Err(invalid("not an HTTP/1 response"));
    }
    let status: u16 = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status code"))?;
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut close = head.starts_with(b"HTTP/1.0");
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| invalid("bad content-length"))?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.eq_ignore_ascii_case(b"close");
        }
    }
    let mut pos = head_end + 4;
    if !chunked {
        let len = pos + content_length;
        return Ok(if buf.len() < len {
            Parsed::Incomplete
        } else {
            Parsed::Complete { status, len, close }
        });
    }
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(Parsed::Incomplete);
        };
        let line = &buf[pos..pos + eol];
        let digits = line.split(|&b| b == b';').next().unwrap_or(line);
        let size = std::str::from_utf8(trim(digits))
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| invalid("bad chunk size"))?;
        pos += eol + 2;
        let need = pos + size + 2;
        if buf.len() < need {
            return Ok(Parsed::Incomplete);
        }
        pos = need;
        if size == 0 {
            return Ok(Parsed::Complete {
                status,
                len: pos,
                close,
            });
        }
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// The connection ended before any byte of an answer: safe to retry on a new connection.
    NoAnswer(io::Error),
    /// Anything else.
    Broken(io::Error),
}

/// Counters shared by the connections of one run; only answers completed inside the measured
/// window count.
#[derive(Debug, Default)]
pub struct Counters {
    pub ok: AtomicU64,
    pub non_2xx: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
}

/// Totals of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub non_2xx: u64,
    pub failed: u64,
    pub retried: u64,
}

impl Counters {
    pub fn get(&self) -> Counts {
        Counts {
            ok: self.ok.load(Ordering::Relaxed),
            non_2xx: self.non_2xx.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }

    fn answer(&self, status: u16) {
        if (200..300).contains(&status) {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.non_2xx.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The measured window of a run: load starts at `start`, counts from `measure` to `end`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub measure: Instant,
    pub end: Instant,
}

impl Window {
    /// Starts now: `warmup` uncounted, then `duration` counted.
    pub fn new(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now();
        Window {
            start,
            measure: start + warmup,
            end: start + warmup + duration,
        }
    }

    /// Whether something finished at `t` counts.
    pub fn counts_at(&self, t: Instant) -> bool {
        t >= self.measure && t < self.end
    }
}

async fn exchange(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    req: &[u8],
) -> Result<(u16, bool), Failure> {
    buf.clear();
    s.write_all(req).await.map_err(Failure::NoAnswer)?;
    loop {
        match parse_response(buf) {
            Ok(Parsed::Complete { status, close, .. }) => return Ok((status, close)),
            Ok(Parsed::Incomplete) => {}
            Err(e) => return Err(Failure::Broken(e)),
        }
        buf.reserve(4096);
        match s.read_buf(buf).await {
            Ok(0) => {
                let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                return Err(if buf.is_empty() {
                    Failure::NoAnswer(e)
                } else {
                    Failure::Broken(e)
                });
            }
            Ok(_) => {}
            Err(e) if buf.is_empty() => return Err(Failure::NoAnswer(e)),
            Err(e) => return Err(Failure::Broken(e)),
        }
    }
}

async fn connect(addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn closed_connection(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    window: Window,
    counters: Arc<Counters>,
) {
    let mut buf = Vec::with_capacity(4096);
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut reused = false;
    while Instant::now() < window.end {
        let req = &requests[fastrand::usize(..requests.len())];
        let mut attempt = 0;
        let result = loop {
            let s = match &mut conn {
                Some(s) => s,
                None => match connect(addr).await {
                    Ok(s) => {
                        reused = false;
                        conn.insert(s)
                    }
                    Err(e) => break Err(Failure::Broken(e)),
                },
            };
            match exchange(s, &mut buf, req).await {
                Err(Failure::NoAnswer(_)) if reused && attempt == 0 => {
                    attempt += 1;
                    conn = None;
                    if window.counts_at(Instant::now()) {
                        counters.retried.fetch_add(1, Ordering::Relaxed);
                    }
                }
                other => break other,
            }
        };
        let now = Instant::now();
        match result {
            Ok((status, close)) => {
                if window.counts_at(now) {
                    counters.answer(status);
                }
                reused = true;
                if close {
                    conn = None;
                }
            }
            Err(_) => {
                if window.counts_at(now) {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                }
                conn = None;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// Closed loop over `conns` keep-alive connections, each request to a random one of
/// `requests`, on one thread until `window.end`.
pub fn closed_loop(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    conns: usize,
    window: Window,
) -> io::Result<Counts> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let counters = Arc::new(Counters::default());
    rt.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|_| {
                tokio::spawn(closed_connection(
                    addr,
                    requests.clone(),
                    window,
                    counters.clone(),
                ))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    Ok(counters.get())
}

fn exchange_blocking(
    s: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
    req: &[u8],
) -> Result<(u16, bool), Failure> {
    buf.clear();
    s.write_all(req).map_err(Failure::NoAnswer)?;
    let mut chunk = [0u8; 4096];
    loop {
        match parse_response(buf) {
            Ok(Parsed::Complete { status, close, .. }) => return Ok((status, close)),
            Ok(Parsed::Incomplete) => {}
            Err(e) => return Err(Failure::Broken(e)),
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                return Err(if buf.is_empty() {
                    Failure::NoAnswer(e)
                } else {
                    Failure::Broken(e)
                });
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if buf.is_empty() => return Err(Failure::NoAnswer(e)),
            Err(e) => return Err(Failure::Broken(e)),
        }
    }
}

fn connect_blocking(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Result of an open-loop run: latencies (µs, from when each request was due) of the
/// requests due inside the measured window, sorted, and the counts.
#[derive(Debug, Default)]
pub struct OpenLoop {
    pub latencies_us: Vec<u32>,
    pub counts: Counts,
}

/// Works through the requests handed to one connection, in order: a request waits for the
/// ones before it, and its latency counts from when it was due.
async fn open_connection(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    mut due: tokio::sync::mpsc::UnboundedReceiver<Instant>,
    window: Window,
    counters: Arc<Counters>,
) -> Vec<u32> {
    let mut lat = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut reused = false;
    while let Some(due) = due.recv().await {
        let counted = window.counts_at(due);
        let mut attempt = 0;
        let result = loop {
            let s = match &mut conn {
                Some(s) => s,
                None => match connect(addr).await {
                    Ok(s) => {
                        reused = false;
                        conn.insert(s)
                    }
                    Err(e) => break Err(Failure::Broken(e)),
                },
            };
            match exchange(s, &mut buf, &request).await {
                Err(Failure::NoAnswer(_)) if reused && attempt == 0 => {
                    attempt += 1;
                    conn = None;
                    if counted {
                        counters.retried.fetch_add(1, Ordering::Relaxed);
                    }
                }
                other => break other,
            }
        };
        match result {
            Ok((status, close)) => {
                if counted {
                    counters.answer(status);
                    let us = due.elapsed().as_micros().min(u32::MAX as u128);
                    lat.push(us as u32);
                }
                reused = true;
                if close {
                    conn = None;
                }
            }
            Err(_) => {
                if counted {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                }
                conn = None;
            }
        }
    }
    lat
}

/// Open loop at `rate` requests/s over `conns` keep-alive connections, on one thread. Every
/// millisecond the requests that fell due are handed round-robin to the connections (each
/// works through its own in order), so the offered load does not slow down when the server
/// does, and each latency runs from the request's due time (coordinated-omission
/// correction). Due times are spaced exactly at 1/rate; the millisecond pacing adds up to a
/// millisecond to a latency only when the dispatcher itself runs late.
pub fn open_loop(
    addr: SocketAddr,
    request: Arc<Vec<u8>>,
    conns: usize,
    rate: f64,
    window: Window,
) -> io::Result<OpenLoop> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let counters = Arc::new(Counters::default());
    let step = Duration::from_secs_f64(1.0 / rate);
    let latencies = rt.block_on(async {
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..conns.max(1) {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            queues.push(tx);
            tasks.push(tokio::spawn(open_connection(
                addr,
                request.clone(),
                rx,
                window,
                counters.clone(),
            )));
        }
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut next = 0u64;
        let mut i = 0usize;
        loop {
            tick.tick().await;
            let now = Instant::now();
            loop {
                let due = window.start + step * next as u32;
                if due > now || due >= window.end {
                    break;
                }
                let _ = queues[i % queues.len()].send(due);
                i += 1;
                next += 1;
            }
            if window.start + step * next as u32 >= window.end {
                break;
            }
        }
        drop(queues);
        let mut all = Vec::new();
        for t in tasks {
            if let Ok(l) = t.await {
                all.extend(l);
            }
        }
        all
    });
    let mut latencies_us = latencies;
    latencies_us.sort_unstable();
    Ok(OpenLoop {
        latencies_us,
        counts: counters.get(),
    })
}

/// One `GET /` on a new connection: the status code, or an error.
pub fn get_status(addr: SocketAddr, host: &str, path: &str) -> io::Result<u16> {
    let mut s = connect_blocking(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    match exchange_blocking(&mut s, &mut buf, req.as_bytes()) {
        Ok((status, _)) => Ok(status),
        Err(Failure::NoAnswer(e) | Failure::Broken(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lengths_and_chunks() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            parse_response(r).unwrap(),
            Parsed::Complete {
                status: 200,
                len: r.len(),
                close: false
            }
        );
        assert_eq!(
            parse_response(&r[..r.len() - 1]).unwrap(),
            Parsed::Incomplete
        );
        let c = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(c).unwrap(),
            Parsed::Complete {
                status: 404,
                len: c.len(),
                close: true
            }
        );
        assert_eq!(
            parse_response(&c[..c.len() - 2]).unwrap(),
            Parsed::Incomplete
        );
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }
}
