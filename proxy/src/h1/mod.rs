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
pub mod upstream_head;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tracing::debug;

use crate::access_log::{self, Head, Seen};
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
use crate::trace_context::{self, TraceParent};
use crate::upstream::Protocol;

use chunked::ChunkedEnd;
use head::{BadResponse, Framing, Request, RequestHead, Response, ResponseHead, Span};
use upstream_head::{Added, Scan};

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
    let Ok(uri) = Uri::from_maybe_shared(head_bytes.slice(parsed.target.clone())) else {
        return Next::HandOff(Some(head_bytes));
    };
    let Ok(host_value) = HeaderValue::from_maybe_shared(head_bytes.slice(parsed.host.clone()))
    else {
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
        match live.snapshot.routes.find(&host, uri.path()) {
            Some(m) if m.canaries.is_empty() && forward_only(m.target) => m.target.clone(),
            _ => return Next::HandOff(Some(head_bytes)),
        }
    };
    drop(host);

    let scan = Scan::new(&head_bytes, &c.spans);
    let asked = Received {
        head: &head_bytes,
        spans: &c.spans,
        method: &parsed.method,
        uri: &uri,
        host: &host_value,
    };
    // The backend's head is written from the client's unless the request needs the header
    // map: both give it the same headers.
    let prepared = if scan.plain && !conn.peer_trusted && target.policy.request_headers.is_empty() {
        Some(prepare_plain(
            shared, conn, &target, &asked, &scan, start, &mut c.out,
        ))
    } else {
        prepare_mapped(shared, conn, &target, &asked, start, &mut c.out)
    };
    let Some((request_id, client, logged)) = prepared else {
        return Next::HandOff(Some(head_bytes));
    };
    // Only the request id and the log line may still hold the head's bytes (a client's
    // `X-Request-ID`, the logged URI and headers); when neither does, the client buffer
    // takes its room back for the next read.
    drop((uri, host_value, head_bytes));
    let method = parsed.method;

    let to_head = method == Method::HEAD;
    let answer = exchange(shared, &target, &method, c, to_head, timer).await;
    let outcome = |status: StatusCode, upstream| access_log::Outcome {
        status: status.as_u16(),
        client,
        target: Some(target.clone()),
        upstream,
        request_id: request_id.clone(),
        tls: false,
    };
    let close = parsed.close;
    let log = &*conn.access_log;
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

/// A request as read: its head and the pieces already taken from it.
struct Received<'a> {
    head: &'a Bytes,
    spans: &'a [Span],
    method: &'a Method,
    uri: &'a Uri,
    host: &'a HeaderValue,
}

/// What writing the backend's head learnt: the request id, the client's address and what
/// the log and metrics keep.
type Prepared = (HeaderValue, IpAddr, Head);

/// Writes the backend's head into `out` from the client's own ([`upstream_head`]).
fn prepare_plain(
    shared: &Shared,
    conn: &ConnInfo,
    target: &Target,
    asked: &Received<'_>,
    scan: &Scan,
    start: Instant,
    out: &mut Vec<u8>,
) -> Prepared {
    let head = asked.head;
    let value = |at: &Option<Range<usize>>| {
        at.as_ref()
            .and_then(|r| HeaderValue::from_maybe_shared(head.slice(r.clone())).ok())
    };
    // The same order of random draws as the header-map path: the request id, then the trace.
    let request_id = headers::request_id_from(value(&scan.request_id).as_ref());
    // The peer is no trusted proxy: it is the client.
    let client = conn.peer.ip();
    let tracing = &shared.config.tracing;
    let incoming = scan
        .traceparent
        .as_ref()
        .and_then(|r| TraceParent::parse(&head[r.clone()]));
    let tracestate = Scan::tracestate(head, asked.spans);
    let (outgoing, trace, keep_tracestate) =
        trace_context::next_hop(incoming, tracestate, tracing.sample_new);
    let logging = shared.config.access_log;
    let (referer, user_agent) = if logging {
        (value(&scan.referer), value(&scan.user_agent))
    } else {
        (None, None)
    };
    let seen = Seen {
        method: asked.method,
        uri: asked.uri,
        version: Version::HTTP_11,
        host: Some(asked.host),
        referer: referer.as_ref(),
        user_agent: user_agent.as_ref(),
        bytes_in: 0,
    };
    let logged = Head::capture_seen(logging, &conn.access_log, tracing, &seen, start, trace);
    let policy = &target.policy;
    let traceparent = outgoing.encode();
    let added = Added {
        host: policy
            .upstream_vhost
            .as_ref()
            .unwrap_or(asked.host)
            .as_bytes(),
        traceparent: &traceparent,
        keep_tracestate,
        peer: conn.peer_value.as_bytes(),
        scheme: b"http",
        forwarded_host: asked.host.as_bytes(),
        port: conn.local_port.as_bytes(),
        request_id: request_id.as_bytes(),
        prefix: policy
            .x_forwarded_prefix
            .as_ref()
            .map(HeaderValue::as_bytes),
    };
    out.clear();
    let target_bytes = path_and_query(asked.uri);
    upstream_head::write(
        out,
        asked.method.as_str().as_bytes(),
        target_bytes,
        head,
        asked.spans,
        &added,
    );
    (request_id, client, logged)
}

/// Writes the backend's head into `out` through a header map, as hyper's path does
/// (`forward::upstream_headers`); `None` when a header does not convert (hyper refuses it).
fn prepare_mapped(
    shared: &Shared,
    conn: &ConnInfo,
    target: &Target,
    asked: &Received<'_>,
    start: Instant,
    out: &mut Vec<u8>,
) -> Option<Prepared> {
    let mut req = http::Request::new(http_body_util::Empty::<Bytes>::new());
    *req.method_mut() = asked.method.clone();
    *req.uri_mut() = asked.uri.clone();
    *req.headers_mut() = head::header_map(asked.head, asked.spans)?;
    let request_id = headers::request_id(req.headers());
    let client = crate::client_addr::client_ip(conn.peer.ip(), req.headers(), &conn.trusted);
    let tracing = &shared.config.tracing;
    let trace = trace_context::apply(req.headers_mut(), tracing.sample_new);
    let log = &*conn.access_log;
    let logged = Head::capture(shared.config.access_log, log, tracing, &req, start, trace);
    let mut headers = std::mem::take(req.headers_mut());
    let forwarded = Forwarded {
        peer: conn.peer.ip(),
        peer_value: &conn.peer_value,
        peer_trusted: conn.peer_trusted,
        client,
        scheme: "http",
        host: asked.host,
        port: &conn.local_port,
    };
    forward::upstream_headers(
        &target.policy,
        &mut headers,
        &forwarded,
        &request_id,
        false,
        false,
    );
    out.clear();
    head::write_request(out, asked.method, path_and_query(asked.uri), &headers);
    Some((request_id, client, logged))
}

/// The request target the backend gets (origin form).
fn path_and_query(uri: &Uri) -> &[u8] {
    uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes()
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

    /// Header names and their values in order, names lowercased, and the request line.
    fn fields(head: &[u8]) -> (String, std::collections::BTreeMap<String, Vec<String>>) {
        let mut storage = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut storage);
        assert!(req.parse(head).unwrap().is_complete());
        let line = format!("{} {}", req.method.unwrap(), req.path.unwrap());
        let mut map = std::collections::BTreeMap::<String, Vec<String>>::new();
        for h in req.headers.iter() {
            map.entry(h.name.to_ascii_lowercase())
                .or_default()
                .push(String::from_utf8_lossy(h.value).into_owned());
        }
        (line, map)
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// The backend's head written from the client's and through the header map (as hyper's
    /// path writes it) agree: the same request line, the same names, each with the same
    /// values in the same order.
    #[test]
    fn both_ways_of_writing_the_backends_head_agree() {
        let proxy = crate::server::Proxy::new(crate::config::ProxyConfig::default()).unwrap();
        let shared = proxy.shared();
        let conn = ConnInfo {
            peer: "10.1.2.3:4444".parse().unwrap(),
            peer_value: HeaderValue::from_static("10.1.2.3"),
            peer_trusted: false,
            trusted: Arc::default(),
            access_log: Arc::default(),
            local_port: HeaderValue::from_static("80"),
            tls: false,
        };
        let rewriting = crate::policy::Policy {
            upstream_vhost: Some(HeaderValue::from_static("inside.svc")),
            x_forwarded_prefix: Some(HeaderValue::from_static("/shop")),
            ..crate::policy::Policy::default()
        };
        let policies = [crate::policy::Policy::default(), rewriting];
        let heads = [
            "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n".to_string(),
            "HEAD /x?q=1#frag HTTP/1.1\r\nhOsT: A.Test:8080\r\nUser-Agent: curl/8\r\nReferer: http://r/\r\nAccept: a\r\nX-A: 1\r\nAccept: b\r\nX-Empty:\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 9.9.9.9\r\nX-Forwarded-Host: evil\r\nx-forwarded-port: 1\r\nX-Forwarded-Prefix: /client\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: a.test\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: x\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close, Keep-Alive\r\n\r\n".to_string(),
            format!("GET / HTTP/1.1\r\nHost: a.test\r\ntraceparent: {TRACEPARENT}\r\ntracestate: a=1\r\nX: y\r\nTraceState: b=2\r\n\r\n"),
            format!("GET / HTTP/1.1\r\nHost: a.test\r\ntraceparent: {TRACEPARENT}\r\ntracestate: A=1\r\n\r\n"),
            format!("GET / HTTP/1.1\r\nHost: a.test\r\ntraceparent: {TRACEPARENT}\r\ntraceparent: {TRACEPARENT}\r\ntracestate: a=1\r\n\r\n"),
            "GET / HTTP/1.1\r\nHost: a.test\r\ntraceparent: 00-zz\r\ntracestate: a=1\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-Request-ID: abc-123\r\nX-Request-ID: second\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nHost: a.test\r\nx-request-id: has space\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-Request-ID: bad id\r\nX-Request-ID: good\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nHost: a.test\r\ntracestate: a=1\r\n\r\n".to_string(),
            format!("GET / HTTP/1.1\r\nHost: a.test\r\ntraceparent: {TRACEPARENT}\r\ntracestate:\r\n\r\n"),
            "GET / HTTP/1.1\r\nHost: a.test\r\ntraceparent: 01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later\r\ntracestate: a=1\r\n\r\n".to_string(),
            "GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: a.test\r\nConnection: close\r\n\r\n".to_string(),
        ];
        let mut spans = Vec::new();
        for policy in policies {
            let target = Target::new(
                "default",
                "ing",
                "svc:80",
                Arc::new(crate::backend::Backend::new(
                    "svc:80",
                    Endpoints::Static(vec![]),
                )),
                false,
            )
            .with_policy(Arc::new(policy));
            for head in &heads {
                let bytes = Bytes::copy_from_slice(head.as_bytes());
                let Request::Head(parsed) = head::parse_request(&bytes, 100, &mut spans) else {
                    panic!("not taken: {head}");
                };
                let scan = Scan::new(&bytes, &spans);
                assert!(scan.plain, "{head}");
                let uri = Uri::from_maybe_shared(bytes.slice(parsed.target.clone())).unwrap();
                let host =
                    HeaderValue::from_maybe_shared(bytes.slice(parsed.host.clone())).unwrap();
                let asked = Received {
                    head: &bytes,
                    spans: &spans,
                    method: &parsed.method,
                    uri: &uri,
                    host: &host,
                };
                let start = Instant::now();
                let (mut plain, mut mapped) = (Vec::new(), Vec::new());
                fastrand::seed(7);
                let a = prepare_plain(shared, &conn, &target, &asked, &scan, start, &mut plain);
                fastrand::seed(7);
                let b = prepare_mapped(shared, &conn, &target, &asked, start, &mut mapped).unwrap();
                assert_eq!((&a.0, a.1), (&b.0, b.1), "{head}");
                assert_eq!(
                    fields(&plain),
                    fields(&mapped),
                    "{head}\n{}\n{}",
                    String::from_utf8_lossy(&plain),
                    String::from_utf8_lossy(&mapped)
                );
            }
        }
    }

    #[test]
    fn heads_the_writer_does_not_cover_go_through_the_map() {
        let mut spans = Vec::new();
        for head in [
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nClose: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: x-secret\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: traceparent\r\ntraceparent: x\r\n\r\n",
        ] {
            let Request::Head(_) = head::parse_request(head.as_bytes(), 100, &mut spans) else {
                panic!("not taken: {head}");
            };
            assert!(!Scan::new(head.as_bytes(), &spans).plain, "{head}");
        }
    }

    /// A head the parser takes has names and values the header map takes too: the writer,
    /// which copies them, forwards nothing hyper's path would refuse.
    #[test]
    fn every_header_the_parser_takes_converts() {
        let mut spans = Vec::new();
        for b in 0..=255u8 {
            for (name, value) in [
                (vec![b'a', b, b'b'], b"v".to_vec()),
                (b"x".to_vec(), vec![b'a', b, b'b']),
            ] {
                let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
                head.extend_from_slice(&name);
                head.extend_from_slice(b": ");
                head.extend_from_slice(&value);
                head.extend_from_slice(b"\r\n\r\n");
                let bytes = Bytes::from(head);
                if let Request::Head(_) = head::parse_request(&bytes, 100, &mut spans) {
                    assert!(head::header_map(&bytes, &spans).is_some(), "byte {b:#x}");
                }
            }
        }
    }
}
