//! Portico's own HTTP/1.1 path for plain-HTTP keep-alive connections.
//!
//! The commonest request — a `GET` or `HEAD` without a body, to a route that asks for nothing
//! but forwarding — is read, forwarded and answered here without an HTTP library in between:
//! its head is parsed in place, the backend connection is the request's own (a bare stream
//! from the endpoint's pool: no connection task, no channel), and the answer's bytes go to the
//! client as they come, its chunks passed through as they are. Everything else — other
//! methods, bodies, upgrades, HTTP/1.0 and HTTP/2, routes with access control, redirects,
//! rewrites, compression, error pages, canaries or another backend protocol, unknown hosts,
//! a draining proxy — hands the connection, with the bytes read so far, to hyper, which
//! serves the rest of it. Both paths send the backend the same headers and count, log and
//! answer failures the same way.

pub mod chunked;
pub mod head;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tracing::debug;

use crate::access_log::{self, Head};
use crate::backend::{Endpoints, Target};
use crate::balance::Balance;
use crate::body::ProxyBody;
use crate::client_hello::Rewind;
use crate::error::ForwardError;
use crate::forward::{self, ConnInfo};
use crate::headers::{self, Forwarded, X_REQUEST_ID};
use crate::limits::ClientIo;
use crate::policy::RetryOn;
use crate::pool::EndpointPool;
use crate::routing::normalize_host;
use crate::server::Shared;
use crate::upstream::Protocol;

use chunked::ChunkedEnd;
use head::{BadResponse, Framing, Request, RequestHead, Response, ResponseHead, Span};

/// The largest answer head read from a backend.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Room made before each read.
const READ_SIZE: usize = 8 * 1024;

/// Makes room for the next read (a read into no room would look like a close).
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_SIZE / 2 {
        buf.reserve(READ_SIZE);
    }
}

/// The largest request head this path reads before leaving it to hyper (as hyper's
/// `max_buf_size`).
fn max_head(shared: &Shared) -> usize {
    shared.config.max_header_bytes.max(8192)
}

/// One client connection's buffers, kept from request to request.
struct Client {
    stream: TcpStream,
    /// Bytes read from the client and not yet used.
    buf: BytesMut,
    /// Bytes read from the backend and not yet sent.
    up: BytesMut,
    /// Bytes about to be written.
    out: Vec<u8>,
    spans: Vec<Span>,
}

/// How a request on this path ended for its connection.
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
    /// Give the connection to hyper, `consumed` (a head taken off the buffer) first.
    HandOff(Option<Bytes>),
}

/// Serves a plain-HTTP connection: requests this path takes, until one it does not.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    stream: TcpStream,
    conn: Arc<ConnInfo>,
    watcher: Watcher,
) {
    let mut c = Client {
        stream,
        buf: BytesMut::new(),
        up: BytesMut::new(),
        out: Vec::new(),
        spans: Vec::new(),
    };
    let mut closing = shared.closing.subscribe();
    // One wait for the whole connection: registered once, not once per request.
    let mut closed = std::pin::pin!(closing.wait_for(|closing| *closing));
    // One timer for the connection, moved forward for each wait (for the head, for the
    // backend's answer): moving a deadline later costs no timer-wheel work.
    let mut timer = std::pin::pin!(tokio::time::sleep(shared.config.client_header_timeout));
    loop {
        // The whole head, not each read, must arrive in time (slowloris).
        let deadline = tokio::time::Instant::now() + shared.config.client_header_timeout;
        timer.as_mut().reset(deadline);
        let parsed = loop {
            if !c.buf.is_empty() {
                let limit = max_head(shared);
                match head::parse_request(&c.buf, shared.config.max_headers, &mut c.spans) {
                    Request::Head(h) if h.len <= limit => break h,
                    Request::Partial if c.buf.len() < limit => {}
                    // hyper answers what this path does not take, errors included.
                    Request::Head(_) | Request::Partial | Request::Other => {
                        return hand_off(shared, c, None, conn, watcher).await;
                    }
                }
            }
            make_room(&mut c.buf);
            let read = tokio::select! {
                biased;
                r = c.stream.read_buf(&mut c.buf) => Ok(r),
                () = timer.as_mut() => Err(()),
                // Shutdown: an idle connection closes now, a started head is dropped.
                _ = &mut closed => return,
            };
            match read {
                Ok(Ok(0)) => return,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(peer = %conn.peer, error = %e, "client connection failed");
                    return;
                }
                Err(_) => {
                    debug!(peer = %conn.peer, "request head timed out");
                    return;
                }
            }
        };
        match request(shared, &conn, &mut c, parsed, timer.as_mut()).await {
            Next::KeepAlive => {}
            Next::Close => return,
            Next::HandOff(consumed) => return hand_off(shared, c, consumed, conn, watcher).await,
        }
    }
}

/// Lets hyper serve the rest of the connection, starting with the bytes already read.
async fn hand_off(
    shared: &Arc<Shared>,
    c: Client,
    consumed: Option<Bytes>,
    conn: Arc<ConnInfo>,
    watcher: Watcher,
) {
    let mut prefix = Vec::with_capacity(consumed.as_ref().map_or(0, Bytes::len) + c.buf.len());
    if let Some(head) = consumed {
        prefix.extend_from_slice(&head);
    }
    prefix.extend_from_slice(&c.buf);
    let io = Rewind::new(prefix, c.stream);
    let io = ClientIo::new(TokioIo::new(io), shared.config.client_header_timeout);
    // Boxed: hyper's connection state would otherwise widen this path's future.
    Box::pin(crate::server::serve_http(
        shared, io, conn, watcher, None, None,
    ))
    .await;
}

/// Does the route ask for nothing but forwarding to plain-HTTP endpoints, round robin?
fn forward_only(target: &Target) -> bool {
    let p = &target.policy;
    !target.redirect_https
        && !p.deny
        && p.allow_sources.is_none()
        && p.deny_sources.is_none()
        && p.basic_auth.is_none()
        && p.cors.is_none()
        && p.rate_limit.is_none()
        && p.external_auth.is_none()
        && p.redirect.is_none()
        && p.app_root.is_none()
        && p.rewrite.is_none()
        && p.error_pages.is_none()
        && p.compression.is_none()
        && p.protocol == Protocol::Http
        && matches!(p.balance, Balance::RoundRobin)
        && matches!(target.backend.endpoints, Endpoints::Static(_))
        && target.backend.pools_attached()
        && target.stats.get().is_some()
}

/// One request whose head is at the start of the client buffer.
async fn request(
    shared: &Shared,
    conn: &ConnInfo,
    c: &mut Client,
    parsed: RequestHead,
    timer: Pin<&mut Sleep>,
) -> Next {
    let start = Instant::now();
    let head_bytes = c.buf.split_to(parsed.len).freeze();
    if shared.draining() {
        // hyper closes each kept-alive connection after its answer while draining.
        return Next::HandOff(Some(head_bytes));
    }
    let Some(parts) = head::request_parts(&head_bytes, &parsed, &c.spans) else {
        return Next::HandOff(Some(head_bytes));
    };
    let Some(host_value) = parts.headers.get(HOST).cloned() else {
        return Next::HandOff(Some(head_bytes));
    };
    let Ok(host) = host_value.to_str() else {
        return Next::HandOff(Some(head_bytes));
    };
    let host = normalize_host(host);
    let target = {
        let live = shared.live.load();
        let Some(live) = live.as_ref() else {
            return Next::HandOff(Some(head_bytes));
        };
        // A host asking for client certificates is never served over plain HTTP: hyper's
        // path redirects it (`client_auth::guard`).
        let client_auth = &live.snapshot.client_auth;
        if !client_auth.is_empty() && client_auth.lookup(&host).is_some() {
            return Next::HandOff(Some(head_bytes));
        }
        match live.snapshot.routes.find(&host, parts.uri.path()) {
            Some(m) if m.canaries.is_empty() && forward_only(m.target) => m.target.clone(),
            _ => return Next::HandOff(Some(head_bytes)),
        }
    };
    drop(host);

    let mut req = http::Request::from_parts(parts, http_body_util::Empty::<Bytes>::new());
    let request_id = headers::request_id(req.headers());
    let client = crate::client_addr::client_ip(conn.peer.ip(), req.headers(), &conn.trusted);
    let tracing = &shared.config.tracing;
    let trace = crate::trace_context::apply(req.headers_mut(), tracing.sample_new);
    let log = &*conn.access_log;
    let logged = Head::capture(shared.config.access_log, log, tracing, &req, start, trace);
    let (parts, _) = req.into_parts();
    let mut headers = parts.headers;
    let forwarded = Forwarded {
        peer: conn.peer.ip(),
        peer_value: &conn.peer_value,
        peer_trusted: conn.peer_trusted,
        client,
        scheme: "http",
        host: &host_value,
        port: &conn.local_port,
    };
    let policy = &target.policy;
    forward::upstream_headers(policy, &mut headers, &forwarded, &request_id, false, false);
    c.out.clear();
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    head::write_request(&mut c.out, &parts.method, pq.as_bytes(), &headers);
    drop(headers);
    drop(head_bytes);

    let to_head = parts.method == Method::HEAD;
    let answer = exchange(shared, &target, &parts.method, c, to_head, timer).await;
    let outcome = |status: StatusCode, upstream| access_log::Outcome {
        status: status.as_u16(),
        client,
        target: Some(target.clone()),
        upstream,
        request_id: request_id.clone(),
        tls: false,
    };
    let close = parsed.close;
    match answer {
        // As hyper drops a request whose client left: no answer, no log line.
        Err(Failed::ClientGone) => Next::Close,
        Ok(answer) => {
            let addr = answer.addr;
            let asked = Asked {
                request_id: &request_id,
                client,
                close,
                to_head,
            };
            let (status, sent, next, complete) =
                match relay(shared, &target, c, answer, asked).await {
                    Ok((status, sent, next)) => (status, sent, next, true),
                    // Cut off mid-answer: the client can only learn it by the close.
                    Err((status, sent)) => (status, sent, Next::Close, false),
                };
            let body = logged.respond(
                &shared.metrics,
                log,
                ProxyBody::empty(),
                outcome(status, Some(addr)),
            );
            body.written(sent, complete);
            next
        }
        Err(Failed::Forward(e, addr)) => {
            forward::report_failure(shared, &target, client, addr, &e);
            let status = e.status();
            let body = logged.respond(
                &shared.metrics,
                log,
                ProxyBody::empty(),
                outcome(status, addr),
            );
            let close = close || shared.draining();
            let (sent, written) = status_page(c, status, &request_id, close, to_head).await;
            body.written(sent, written);
            if written && !close {
                Next::KeepAlive
            } else {
                Next::Close
            }
        }
    }
}

/// Portico's own answer for a request that could not be forwarded (as `respond::status_page`;
/// an answer to `HEAD` has its length and no body).
async fn status_page(
    c: &mut Client,
    status: StatusCode,
    request_id: &HeaderValue,
    close: bool,
    to_head: bool,
) -> (u64, bool) {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut h = HeaderMap::with_capacity(3);
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(X_REQUEST_ID.clone(), request_id.clone());
    h.insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
    c.out.clear();
    head::write_response(&mut c.out, status, b"", &h, false, close);
    if to_head {
        let written = c.stream.write_all(&c.out).await.is_ok();
        return (0, written);
    }
    c.out.extend_from_slice(text.as_bytes());
    let written = c.stream.write_all(&c.out).await.is_ok();
    (text.len() as u64, written)
}

/// A backend's answer whose head has been read: the rest is in the client's `up` buffer
/// and on `stream`.
struct Answer {
    stream: TcpStream,
    pool: Arc<EndpointPool>,
    addr: SocketAddr,
    len: usize,
    head: ResponseHead,
}

/// Why one attempt failed.
enum Failure {
    Connect(crate::upstream::UpstreamError),
    /// A kept-alive stream ended (closed or reset) before any byte of an answer.
    Closed(io::Error),
    Io(io::Error),
    Bad(BadResponse),
    /// The client closed its connection while the request waited for the backend.
    ClientGone,
}

/// Why a request got no answer from a backend.
enum Failed {
    Forward(ForwardError, Option<SocketAddr>),
    ClientGone,
}

type Attempts = Result<Answer, Failed>;

/// Sends the request in `c.out` to the route's endpoints, retrying as the route says
/// (`proxy-next-upstream`), until an answer head arrives.
async fn exchange(
    shared: &Shared,
    target: &Target,
    method: &Method,
    c: &mut Client,
    to_head: bool,
    mut timer: Pin<&mut Sleep>,
) -> Attempts {
    let policy = &target.policy;
    let read_timeout = policy
        .timeouts
        .read
        .unwrap_or(shared.config.upstream_response_timeout);
    let connect_timeout = policy
        .timeouts
        .connect
        .unwrap_or(shared.config.upstream_connect_timeout);
    let retry = policy.retry;
    let addrs = target.backend.pick();
    if addrs.len() == 0 {
        return Err(Failed::Forward(ForwardError::NoEndpoint, None));
    }
    // No body: every request here can be sent again.
    let resendable = retry.on.method(method);
    let attempts = match retry.tries {
        0 => addrs.len(),
        n => addrs.len().min(n as usize),
    };
    let mut last = None;
    // As nginx: a kept-alive stream that ends before answering gets one more try, on a new
    // stream to the same endpoint, without using up one of the route's tries.
    let mut kept_alive_retry = resendable && retry.on.contains(RetryOn::ERROR);
    let limit = max_head(shared);
    // Room to notice the client leaving.
    make_room(&mut c.buf);
    let mut endpoints = addrs.take(attempts).enumerate();
    let mut again = None;
    while let Some((i, (index, addr, _))) = again.take().or_else(|| endpoints.next()) {
        let more = i + 1 < attempts;
        let Some(pool) = target.backend.pool(index) else {
            last = Some((ForwardError::Internal("endpoint pool missing"), Some(addr)));
            break;
        };
        let sent_at = tokio::time::Instant::now();
        timer.as_mut().reset(sent_at + read_timeout);
        let mut attempt = std::pin::pin!(send(
            pool,
            &c.out,
            &mut c.up,
            &mut c.spans,
            to_head,
            connect_timeout,
        ));
        let sent = loop {
            tokio::select! {
                biased;
                r = &mut attempt => break Ok(r),
                () = timer.as_mut() => break Err(()),
                // A client that leaves is noticed; what it pipelines meanwhile is kept.
                r = c.stream.read_buf(&mut c.buf),
                    if c.buf.len() < limit.min(c.buf.capacity()) => match r {
                    Ok(0) | Err(_) => break Ok(Err(Failure::ClientGone)),
                    Ok(_) => {}
                },
            }
        };
        // The condition under which the route retries the failure; `None`: never.
        let (error, condition) = match sent {
            Ok(Ok((stream, len, head))) => {
                if let Some(stats) = target.stats.get() {
                    stats.upstream_response(sent_at.elapsed());
                }
                if more && resendable && retry.on.status(head.status) {
                    shared.metrics.upstream_retry();
                    continue;
                }
                return Ok(Answer {
                    stream,
                    pool: pool.clone(),
                    addr,
                    len,
                    head,
                });
            }
            Ok(Err(Failure::ClientGone)) => return Err(Failed::ClientGone),
            Err(()) => (ForwardError::Timeout, Some(RetryOn::TIMEOUT)),
            Ok(Err(Failure::Connect(e))) => {
                debug!(upstream = %addr, error = %e, "connect failed");
                if e.is_connect_timeout() {
                    (ForwardError::ConnectTimeout, Some(RetryOn::TIMEOUT))
                } else {
                    (ForwardError::Connect(e.to_string()), Some(RetryOn::ERROR))
                }
            }
            Ok(Err(Failure::Closed(e))) if kept_alive_retry => {
                debug!(upstream = %addr, error = %e, "kept-alive backend connection closed; sending again");
                kept_alive_retry = false;
                shared.metrics.upstream_retry();
                again = Some((i, (index, addr, None)));
                continue;
            }
            Ok(Err(Failure::Closed(e) | Failure::Io(e))) => {
                (ForwardError::Upstream(e.to_string()), Some(RetryOn::ERROR))
            }
            // As hyper's path: a protocol switch nobody asked for is not retried.
            Ok(Err(Failure::Bad(e @ BadResponse::Switch))) => {
                (ForwardError::Upstream(e.to_string()), None)
            }
            Ok(Err(Failure::Bad(e))) => (
                ForwardError::Upstream(e.to_string()),
                Some(RetryOn::INVALID_HEADER),
            ),
        };
        // A connection never made sent nothing: any request may go elsewhere.
        let connect = matches!(error, ForwardError::Connect(_));
        last = Some((error, Some(addr)));
        if more && (resendable || connect) && condition.is_some_and(|c| retry.on.contains(c)) {
            shared.metrics.upstream_retry();
            continue;
        }
        break;
    }
    let (e, addr) = last.unwrap_or((ForwardError::NoEndpoint, None));
    Err(Failed::Forward(e, addr))
}

/// One attempt on one endpoint: a kept-alive stream or a new one, the request written, the
/// answer head read. A kept-alive stream that ends before answering is `Failure::Closed`
/// (the caller may try once more); a new one that does is an ordinary failure.
async fn send(
    pool: &Arc<EndpointPool>,
    request: &[u8],
    up: &mut BytesMut,
    spans: &mut Vec<Span>,
    to_head: bool,
    connect_timeout: Duration,
) -> Result<(TcpStream, usize, ResponseHead), Failure> {
    let (mut stream, reused) = match pool.checkout_stream() {
        Some(s) => (s, true),
        None => {
            let s = Box::pin(pool.connect_stream(connect_timeout))
                .await
                .map_err(Failure::Connect)?;
            (s, false)
        }
    };
    up.clear();
    match round_trip(&mut stream, request, up, spans, to_head).await {
        Ok((len, head)) => Ok((stream, len, head)),
        Err(Failure::Closed(e)) if !reused => Err(Failure::Io(e)),
        Err(e) => Err(e),
    }
}

async fn round_trip(
    stream: &mut TcpStream,
    request: &[u8],
    up: &mut BytesMut,
    spans: &mut Vec<Span>,
    to_head: bool,
) -> Result<(usize, ResponseHead), Failure> {
    let gone = |e: io::Error| match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Failure::Closed(e),
        _ => Failure::Io(e),
    };
    stream.write_all(request).await.map_err(gone)?;
    let mut received = false;
    loop {
        if !up.is_empty() {
            match head::parse_response(up, to_head, spans).map_err(Failure::Bad)? {
                Response::Head { len, head } => return Ok((len, head)),
                Response::Interim(len) => {
                    up.advance(len);
                    continue;
                }
                Response::Partial if up.len() >= MAX_RESPONSE_HEAD => {
                    return Err(Failure::Bad(BadResponse::TooLarge))
                }
                Response::Partial => {}
            }
        }
        make_room(up);
        match stream.read_buf(up).await {
            Ok(0) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the backend closed the connection before answering",
                );
                return Err(if received {
                    Failure::Io(e)
                } else {
                    Failure::Closed(e)
                });
            }
            Ok(_) => received = true,
            Err(e) if !received => return Err(gone(e)),
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

/// What the answer's relay needs to know of its request.
struct Asked<'a> {
    request_id: &'a HeaderValue,
    client: std::net::IpAddr,
    /// The client asked to close after the answer.
    close: bool,
    /// The request was a `HEAD`.
    to_head: bool,
}

/// Sends the answer to the client: its head, then its body as the backend delimits it.
/// Returns the status, the body bytes sent and what the connection does next; on failure
/// (either side broke off), the status and the bytes sent before.
async fn relay(
    shared: &Shared,
    target: &Target,
    c: &mut Client,
    answer: Answer,
    asked: Asked<'_>,
) -> Result<(StatusCode, u64, Next), (StatusCode, u64)> {
    let Asked {
        request_id,
        client,
        close,
        to_head,
    } = asked;
    let Answer {
        mut stream,
        pool,
        addr,
        len,
        head,
    } = answer;
    let status = head.status;
    let close = close || shared.draining();
    let chunked = matches!(head.framing, Framing::Chunked | Framing::Close);
    c.out.clear();
    let ops = &target.policy.response_headers;
    if ops.is_empty() {
        head.write_raw(
            &mut c.out,
            &c.up[..len],
            &c.spans,
            request_id.as_bytes(),
            chunked,
            close,
        );
        c.up.advance(len);
    } else {
        let head_bytes = c.up.split_to(len).freeze();
        let mut headers = match head.headers(&head_bytes, &c.spans) {
            Ok(h) => h,
            Err(e) => {
                let e = ForwardError::Upstream(e.to_string());
                forward::report_failure(shared, target, client, Some(addr), &e);
                let (sent, _) = status_page(c, e.status(), request_id, true, to_head).await;
                return Err((e.status(), sent));
            }
        };
        headers::remove_hop_by_hop(&mut headers, false);
        ops.apply(&mut headers);
        // The framing is the backend's, whatever its `Connection` named or the route changed.
        if let Framing::Length(n) = head.framing {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        headers.insert(X_REQUEST_ID.clone(), request_id.clone());
        let reason = &head_bytes[head.reason.clone()];
        head::write_response(&mut c.out, status, reason, &headers, chunked, close);
    }
    let idle = target.policy.timeouts.read;
    let body = match head.framing {
        Framing::Empty => write(&mut c.stream, &c.out)
            .await
            .map(|()| 0)
            .map_err(|e| (e, 0)),
        Framing::Length(n) => length_body(c, &mut stream, n, idle).await,
        Framing::Chunked => chunked_body(c, &mut stream, idle).await,
        Framing::Close => close_body(c, &mut stream, idle).await,
    };
    match body {
        Ok(sent) => {
            // Nothing may follow an answer on a connection that is kept.
            if head.keep_alive && c.up.is_empty() {
                pool.checkin_stream(stream);
            }
            let next = if close { Next::Close } else { Next::KeepAlive };
            Ok((status, sent, next))
        }
        Err((e, sent)) => {
            debug!(upstream = %addr, error = %e, "answer broken off");
            Err((status, sent))
        }
    }
}

type Relayed = Result<u64, (io::Error, u64)>;

async fn write(client: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    client.write_all(bytes).await
}

/// Reads more of the body from the backend into `up`; no bytes is an error (cut short).
async fn read_more(
    stream: &mut TcpStream,
    up: &mut BytesMut,
    idle: Option<Duration>,
) -> io::Result<usize> {
    make_room(up);
    let n = match idle {
        Some(limit) => tokio::time::timeout(limit, stream.read_buf(up))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "backend stalled"))??,
        None => stream.read_buf(up).await?,
    };
    Ok(n)
}

fn cut_short() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the backend closed mid-answer",
    )
}

async fn length_body(
    c: &mut Client,
    stream: &mut TcpStream,
    length: u64,
    idle: Option<Duration>,
) -> Relayed {
    let mut left = length;
    let mut sent = 0;
    loop {
        let take = c.up.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        c.out.extend_from_slice(&c.up[..take]);
        c.up.advance(take);
        left -= take as u64;
        write(&mut c.stream, &c.out).await.map_err(|e| (e, sent))?;
        sent += take as u64;
        c.out.clear();
        if left == 0 {
            return Ok(sent);
        }
        match read_more(stream, &mut c.up, idle).await {
            Ok(0) => return Err((cut_short(), sent)),
            Ok(_) => {}
            Err(e) => return Err((e, sent)),
        }
    }
}

async fn chunked_body(c: &mut Client, stream: &mut TcpStream, idle: Option<Duration>) -> Relayed {
    let mut end = ChunkedEnd::default();
    loop {
        let take = end
            .feed(&c.up)
            .map_err(|e| (io::Error::new(io::ErrorKind::InvalidData, e), end.data()))?;
        c.out.extend_from_slice(&c.up[..take]);
        c.up.advance(take);
        write(&mut c.stream, &c.out)
            .await
            .map_err(|e| (e, end.data()))?;
        c.out.clear();
        if end.done() {
            return Ok(end.data());
        }
        match read_more(stream, &mut c.up, idle).await {
            Ok(0) => return Err((cut_short(), end.data())),
            Ok(_) => {}
            Err(e) => return Err((e, end.data())),
        }
    }
}

/// A body that runs until the backend closes goes to the client chunked, so the client's
/// connection stays usable.
async fn close_body(c: &mut Client, stream: &mut TcpStream, idle: Option<Duration>) -> Relayed {
    let mut sent = 0;
    loop {
        let n = c.up.len();
        if n > 0 {
            c.out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            c.out.extend_from_slice(&c.up);
            c.out.extend_from_slice(b"\r\n");
            c.up.clear();
        }
        write(&mut c.stream, &c.out).await.map_err(|e| (e, sent))?;
        sent += n as u64;
        c.out.clear();
        match read_more(stream, &mut c.up, idle).await {
            Ok(0) => {
                write(&mut c.stream, b"0\r\n\r\n")
                    .await
                    .map_err(|e| (e, sent))?;
                return Ok(sent);
            }
            Ok(_) => {}
            Err(e) => return Err((e, sent)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn taking four arguments returns.
    fn future_size<A, B, C, D, R, F: FnOnce(A, B, C, D) -> R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    /// A connection's whole state between requests is this future (the task holds it for
    /// as long as the connection is open): it is what an idle client costs.
    #[test]
    fn a_connection_future_stays_small() {
        let size = future_size(&serve);
        eprintln!("connection future: {size} bytes");
        assert!(size <= 4096, "the connection future grew to {size} bytes");
    }
}
