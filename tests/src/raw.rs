//! Raw-socket tools for the hostile-client tests: a backend that records the exact bytes it
//! received, and a client that reads one HTTP/1.1 response without trusting the server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as a backend received it: the head's raw text and the decoded body.
#[derive(Clone, Debug)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
    /// The whole body arrived (`false`: the connection ended mid-request).
    pub complete: bool,
}

impl Seen {
    /// Values of header `name` (case-insensitive), in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub fn request_line(&self) -> &str {
        self.head.split("\r\n").next().unwrap_or("")
    }

    /// Why the request's framing or head is ambiguous, if it is: anything but CRLF line
    /// ends, folded lines, other than one Host, both Content-Length and Transfer-Encoding,
    /// more than one value of either, a Transfer-Encoding other than `chunked`.
    pub fn ambiguity(&self) -> Option<String> {
        let head = &self.head;
        for line in head.split("\r\n") {
            if line.contains('\r') || line.contains('\n') || line.contains('\0') {
                return Some(format!("bare CR, LF or NUL in {head:?}"));
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                return Some(format!("folded line in {head:?}"));
            }
        }
        let cl = self.header("content-length");
        let te = self.header("transfer-encoding");
        if cl.len() > 1 {
            return Some(format!("{} Content-Length lines: {head:?}", cl.len()));
        }
        if !cl.is_empty() && !te.is_empty() {
            return Some(format!(
                "both Content-Length and Transfer-Encoding: {head:?}"
            ));
        }
        if !te.is_empty() && te != ["chunked"] {
            return Some(format!("Transfer-Encoding other than chunked: {head:?}"));
        }
        let hosts = self.header("host");
        if hosts.len() != 1 {
            return Some(format!("{} Host lines: {head:?}", hosts.len()));
        }
        None
    }
}

/// A backend answering `200 ok` to every request and keeping what it received.
#[derive(Clone)]
pub struct RawBackend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RawBackend {
    pub async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(backend_conn(stream, record.clone()));
            }
        });
        RawBackend { addr, seen }
    }

    /// Everything received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

async fn backend_conn(mut stream: TcpStream, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until_head_end(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut s = Seen {
            head,
            body: Vec::new(),
            complete: false,
        };
        let chunked = s.header("transfer-encoding").iter().any(|v| v == "chunked");
        let length: Option<usize> = s
            .header("content-length")
            .first()
            .and_then(|v| v.parse().ok());
        let complete = if chunked {
            read_chunked(&mut stream, &mut buf, &mut s.body).await
        } else {
            let n = length.unwrap_or(0);
            let ok = fill(&mut stream, &mut buf, n).await;
            if ok {
                s.body = buf.drain(..n).collect();
            }
            ok
        };
        s.complete = complete;
        seen.lock().unwrap().push(s);
        if !complete {
            return;
        }
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-backend: raw\r\n\r\nok";
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

async fn read_until_head_end(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        let mut chunk = [0u8; 16384];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    true
}

async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Some(line);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>, body: &mut Vec<u8>) -> bool {
    loop {
        let Some(line) = read_line(stream, buf).await else {
            return false;
        };
        let size = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return false;
        };
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                match read_line(stream, buf).await {
                    Some(l) if l.is_empty() => return true,
                    Some(_) => {}
                    None => return false,
                }
            }
        }
        if !fill(stream, buf, size + 2).await {
            return false;
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

/// One response as read from the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Reads one response from `stream` (Content-Length or until close), within `limit`.
/// `None`: the connection closed (or failed) before a complete head arrived.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<RawResponse> {
    tokio::time::timeout(limit, async {
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut body = buf.split_off(end + 4);
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let length = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        match length {
            Some(n) => {
                while body.len() < n {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => body.extend_from_slice(&chunk[..k]),
                    }
                }
            }
            None => {
                let _ = stream.read_to_end(&mut body).await;
            }
        }
        Some(RawResponse { status, head, body })
    })
    .await
    .expect("no response and no close within the limit")
}

/// Reads one request (its head and a Content-Length body) from `s`, leaving what follows
/// in `buf` for the next; `None` when the connection ends first.
pub async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < end + length {
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[end..end + length].to_vec();
    buf.drain(..end + length);
    Some((head, body))
}

/// Sends `bytes` on a new connection to `addr` and reads one response.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before everything was written (an early 400).
    let _ = s.write_all(bytes).await;
    read_response(&mut s, Duration::from_secs(20)).await
}

/// Waits until the peer closes `stream` (EOF or reset), reading and discarding what comes;
/// returns what was read. Panics after `limit`.
pub async fn until_closed<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the server kept the connection open past the limit");
    all
}
