//! One request through the proxy: route, redirect or forward, answer, count, log.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::header::{CONNECTION, HOST, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use crate::access::basic::Verdict;
use crate::access::cors::Cors;
use crate::access::external::Decision;
use crate::access_log::{self, Head, LoggedBody};
use crate::backend::{Endpoints, Pick, Target};
use crate::balance::{Balance, RequestKey};
use crate::body::{BodyError, ProxyBody, SendProgress};
use crate::canary;
use crate::error::{ForwardError, Side};
use crate::headers::{self, Forwarded, X_REQUEST_ID};
use crate::policy::{ErrorPages, Policy, Redirect, RetryOn};
use crate::respond;
use crate::routing::normalize_host;
use crate::server::Shared;
use crate::trace_context::TRACEPARENT;
use crate::upstream::{Protocol, UpstreamError};

/// What the proxy knows about the client connection a request came on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// The TCP peer, with `::ffff:` mapping removed.
    pub peer: SocketAddr,
    /// The peer's address as a header value (`X-Forwarded-For`, `X-Real-IP`).
    pub peer_value: HeaderValue,
    pub peer_trusted: bool,
    /// Peers whose `X-Forwarded-*` headers are believed (`--trusted-proxies` and the class's).
    pub trusted: Arc<crate::client_addr::TrustedProxies>,
    /// Access-log settings (the class's format, when it sets one).
    pub access_log: Arc<crate::access_log::Options>,
    /// The listener's port (for `X-Forwarded-Port`).
    pub local_port: HeaderValue,
    pub tls: bool,
}

const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// The service function of every client connection.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<LoggedBody>, Infallible> {
    let start = Instant::now();
    let request_id = headers::request_id(req.headers());
    let client = crate::client_addr::client_ip(conn.peer.ip(), req.headers(), &conn.trusted);
    let tracing = &shared.config.tracing;
    let trace = crate::trace_context::apply(req.headers_mut(), tracing.sample_new);
    let log = &*conn.access_log;
    let head = Head::capture(shared.config.access_log, log, tracing, &req, start, trace);

    let origin = req.headers().get(http::header::ORIGIN).cloned();
    let http1 = req.version() < Version::HTTP_2;

    let (resp, target, upstream) =
        route_and_forward(&shared, &conn, req, client, &request_id).await;
    let (mut parts, body) = resp.into_parts();
    // CORS headers go on every answer to an allowed origin, Portico's own included.
    if let Some(cors) = target.as_ref().and_then(|t| t.policy.cors.as_ref()) {
        if let Some(allowed) = cors.allowed(origin.as_ref()) {
            cors.decorate(allowed, &mut parts.headers);
        }
    }
    if conn.tls {
        if let Some(hsts) = target.as_ref().and_then(|t| t.policy.hsts.as_ref()) {
            parts
                .headers
                .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    // During the drain delay an HTTP/1 keep-alive connection is closed after each answer, so
    // its client reconnects (to a ready replica) instead of racing the listeners' close.
    // HTTP/2 clients get GOAWAY when the listeners close.
    if http1 && shared.draining() && !parts.status.is_informational() {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let outcome = access_log::Outcome {
        status: parts.status.as_u16(),
        client,
        target,
        upstream,
        request_id,
        tls: conn.tls,
    };
    let body = head.respond(&shared.metrics, log, body, outcome);
    Ok(Response::from_parts(parts, body))
}

type Outcome = (Response<ProxyBody>, Option<Arc<Target>>, Option<SocketAddr>);

async fn route_and_forward(
    shared: &Shared,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    client: IpAddr,
    request_id: &HeaderValue,
) -> Outcome {
    let Some(live) = shared.live.load_full() else {
        return (
            respond::status_page(StatusCode::SERVICE_UNAVAILABLE),
            None,
            None,
        );
    };
    // HTTP/2 carries the host in :authority; HTTP/1.1 in Host.
    let mut hosts = req.headers().get_all(HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    let host_value = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => first.cloned(),
    };
    // Two Host lines are ambiguous (which one routes, which one the backend reads): 400.
    let Some(host_value) = host_value.filter(|_| second.is_none()) else {
        return (respond::status_page(StatusCode::BAD_REQUEST), None, None);
    };
    let Ok(host_str) = host_value.to_str() else {
        return (respond::status_page(StatusCode::BAD_REQUEST), None, None);
    };
    let host = normalize_host(host_str);
    let path = req.uri().path();
    let Some(matched) = live.snapshot.routes.find(&host, path) else {
        return (respond::status_page(StatusCode::NOT_FOUND), None, None);
    };
    let target = canary::choose(matched.target, matched.canaries, req.headers()).clone();
    let policy = &target.policy;

    if policy.deny {
        return (
            respond::status_page(StatusCode::SERVICE_UNAVAILABLE),
            Some(target),
            None,
        );
    }
    // Source ranges: the client address as the data plane sees it (behind trusted proxies,
    // from X-Forwarded-For), deny list first.
    let refused = policy
        .deny_sources
        .as_ref()
        .is_some_and(|d| d.contains(client))
        || policy
            .allow_sources
            .as_ref()
            .is_some_and(|a| !a.contains(client));
    if refused {
        return (
            respond::status_page(StatusCode::FORBIDDEN),
            Some(target),
            None,
        );
    }
    if let Some(cors) = &policy.cors {
        if Cors::is_preflight(req.method(), req.headers())
            && cors
                .allowed(req.headers().get(http::header::ORIGIN))
                .is_some()
        {
            return (Cors::preflight(), Some(target), None);
        }
    }
    if let Some(redirect) = &policy.redirect {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let resp = match redirect {
            Redirect::To { location, code } => respond::redirect(*code, location.clone()),
            Redirect::Host { host, code } => {
                let scheme = if conn.tls { "https" } else { "http" };
                match respond::location(scheme, host, None, pq) {
                    Some(loc) => respond::redirect(*code, loc),
                    None => respond::status_page(StatusCode::BAD_REQUEST),
                }
            }
        };
        return (resp, Some(target), None);
    }
    if target.redirect_https && !conn.tls && !path.starts_with(ACME_PREFIX) {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        // ingress-nginx drops a trailing slash unless `preserve-trailing-slash`; `/` alone
        // stays (`https://host/` and `https://host` are the same URL).
        let pq = match pq.strip_suffix('/') {
            Some(stripped) if !stripped.is_empty() && !policy.preserve_trailing_slash => stripped,
            _ => pq,
        };
        let resp = match respond::https_location(&host, shared.config.https_redirect_port, pq) {
            Some(loc) => respond::redirect(StatusCode::PERMANENT_REDIRECT, loc),
            None => respond::status_page(StatusCode::BAD_REQUEST),
        };
        return (resp, Some(target), None);
    }
    if let Some(root) = &policy.app_root {
        if path == "/" {
            return (
                respond::redirect(StatusCode::FOUND, root.clone()),
                Some(target),
                None,
            );
        }
    }
    drop(host);

    // Rate limits, then authentication, as nginx's preaccess and access phases.
    let in_flight = match &policy.rate_limit {
        Some(limit) => match limit.admit(client) {
            Ok(held) => held,
            Err(why) => {
                if let Some(stats) = target.stats.get() {
                    stats.rate_limited();
                }
                debug!(client = %client, reason = ?why, "rate limited");
                let status = limit.status;
                return (respond::status_page(status), Some(target), None);
            }
        },
        None => None,
    };
    if let Some(auth) = &policy.basic_auth {
        if auth.check(req.headers()).await == Verdict::Deny {
            let mut resp = respond::status_page(StatusCode::UNAUTHORIZED);
            resp.headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, auth.challenge.clone());
            return (resp, Some(target), None);
        }
    }

    let forwarded = Forwarded {
        peer: conn.peer.ip(),
        peer_value: &conn.peer_value,
        peer_trusted: conn.peer_trusted,
        client,
        scheme: if conn.tls { "https" } else { "http" },
        host: &host_value,
        port: &conn.local_port,
    };
    if let Some(auth) = &policy.external_auth {
        // Boxed, as other rare awaits: its state would widen every request's future.
        let decision = Box::pin(auth.check(
            &shared.config.auth_url_allowed,
            shared.config.auth_timeouts,
            &req,
            &forwarded,
            request_id,
        ))
        .await;
        match decision {
            Decision::Allow(set) => {
                // The listed headers come from the auth service only, never from the client.
                let h = req.headers_mut();
                for (name, value) in set {
                    h.remove(&name);
                    if let Some(v) = value {
                        h.insert(name, v);
                    }
                }
            }
            Decision::Answer(resp) => return (resp, Some(target), None),
        }
    }
    let http1 = req.version() < Version::HTTP_2;
    match forward(shared, &target, req, &forwarded, request_id).await {
        Ok((resp, addr)) => {
            // A `limit-connections` slot is held until the answer has been sent.
            let resp = match in_flight {
                Some(held) => resp.map(|body| ProxyBody::Held(Box::new((body, held)))),
                None => resp,
            };
            (resp, Some(target), addr)
        }
        Err((e, addr)) => {
            report_failure(shared, &target, client, addr, &e);
            let mut resp = respond::status_page(e.status());
            // A body left unread (stalled, malformed) leaves the connection unusable.
            if e.side() == Side::Downstream && http1 {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            (resp, Some(target), addr)
        }
    }
}

type Forwarding =
    Result<(Response<ProxyBody>, Option<SocketAddr>), (ForwardError, Option<SocketAddr>)>;

async fn forward(
    shared: &Shared,
    target: &Target,
    mut req: Request<Incoming>,
    forwarded: &Forwarded<'_>,
    request_id: &HeaderValue,
) -> Forwarding {
    let policy: &Policy = &target.policy;
    if let Some(limit) = policy.max_body_size {
        if http_body::Body::size_hint(req.body()).lower() > limit {
            return Err((ForwardError::BodyTooLarge, None));
        }
    }
    // What compression needs of the request, kept before the headers go upstream.
    let accept_encoding: Vec<HeaderValue> = match &policy.compression {
        Some(_) => req
            .headers()
            .get_all(http::header::ACCEPT_ENCODING)
            .iter()
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let websocket =
        req.version() == Version::HTTP_11 && headers::is_websocket_upgrade(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let method: Method = parts.method;
    let mut headers = parts.headers;
    // gRPC over HTTP/2 needs `te: trailers`; it is the one `te` value that goes on.
    let te_trailers = policy.protocol.http2()
        && headers
            .get(http::header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    upstream_headers(
        policy,
        &mut headers,
        forwarded,
        request_id,
        websocket,
        te_trailers,
    );
    let path_and_query = match &policy.rewrite {
        Some(rewrite) => rewrite
            .apply(parts.uri.path(), parts.uri.query())
            .and_then(|pq| PathAndQuery::try_from(pq).ok()),
        None => None,
    };
    let path_and_query = match path_and_query {
        Some(pq) => pq,
        None => parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    };

    let resolved: Vec<SocketAddr>;
    let (addrs, set_cookie): (Pick<'_>, Option<HeaderValue>) = match &target.backend.endpoints {
        Endpoints::Static(_) => target.backend.pick_with(
            &policy.balance,
            &RequestKey {
                uri: &parts.uri,
                headers: &headers,
                client: forwarded.client,
            },
        ),
        Endpoints::ExternalName { host, port } => {
            resolved = resolve_external(shared, host, *port)
                .await
                .map_err(|e| (e, None))?;
            (Pick::in_order(&resolved), None)
        }
    };
    let ewma = matches!(policy.balance, Balance::Ewma);
    let error_info = policy.error_pages.as_ref().map(|pages| ErrorInfo {
        pages,
        uri: parts.uri.path_and_query().map_or_else(
            || HeaderValue::from_static("/"),
            |pq| HeaderValue::from_str(pq.as_str()).unwrap_or(HeaderValue::from_static("/")),
        ),
        accept: headers.get(http::header::ACCEPT).cloned(),
        host: forwarded.host.clone(),
        request_id: request_id.clone(),
    });
    if addrs.len() == 0 {
        if let Some(info) = &error_info {
            return Box::pin(error_page(
                shared,
                target,
                info,
                StatusCode::SERVICE_UNAVAILABLE,
            ))
            .await;
        }
        return Err((ForwardError::NoEndpoint, None));
    }

    let client = policy.client.get().unwrap_or(&shared.upstreams.default);
    let read_timeout = policy
        .timeouts
        .read
        .unwrap_or(shared.config.upstream_response_timeout);
    let retry = policy.retry;
    // CONNECT keeps the client's authority form, which only the pooled client writes.
    let plain_h1 = policy.protocol == Protocol::Http && method != Method::CONNECT;
    let connect_timeout = policy
        .timeouts
        .connect
        .unwrap_or(shared.config.upstream_connect_timeout);
    let scheme = if policy.protocol.tls() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let version = if policy.protocol.http2() {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let body_idle = match policy.timeouts.send {
        Some(send) => send.min(shared.config.client_body_timeout),
        None => shared.config.client_body_timeout,
    };
    let mut body = ProxyBody::guarded(body, policy.max_body_size, Some(body_idle));
    // A request without a body can be sent again to another endpoint.
    let replayable = http_body::Body::is_end_stream(&body);
    // `proxy-send-timeout` also bounds a backend that stops taking the body.
    let send_watch = match policy.timeouts.send {
        Some(limit) if !replayable => {
            let progress = Arc::new(SendProgress::default());
            body = body.with_progress(&progress);
            Some((progress, limit))
        }
        _ => None,
    };
    let mut body = Some(body);
    let resendable = replayable && retry.on.method(&method);
    let attempts = match retry.tries {
        0 => addrs.len(),
        n => addrs.len().min(n as usize),
    };
    let mut last: Option<(ForwardError, Option<SocketAddr>)> = None;
    for (i, (index, addr, authority)) in addrs.take(attempts).enumerate() {
        let more = i + 1 < attempts;
        let b = match body.take() {
            Some(b) => b,
            None if replayable => ProxyBody::empty(),
            None => break,
        };
        // Plain HTTP/1.1 goes through the endpoint's own pool, in origin form; the rest
        // through a pooled client, which takes the absolute URI.
        let pool = if plain_h1 {
            target.backend.pool(index)
        } else {
            None
        };
        let uri = match pool {
            Some(_) => Uri::from(path_and_query.clone()),
            None => upstream_uri(scheme.clone(), addr, authority, &path_and_query)
                .map_err(|e| (e, Some(addr)))?,
        };
        let mut up = Request::new(b);
        *up.method_mut() = method.clone();
        *up.uri_mut() = uri;
        *up.version_mut() = version;
        *up.headers_mut() = if replayable && more {
            headers.clone()
        } else {
            std::mem::take(&mut headers)
        };

        let load = if ewma {
            target.backend.load(index)
        } else {
            None
        };
        let started = load.map(|l| {
            l.start();
            Instant::now()
        });
        let sent_at = Instant::now();
        let exchange = async {
            match pool {
                Some(pool) => pool.send(up, connect_timeout).await,
                None => client
                    .request(up)
                    .await
                    .map(|resp| (resp, None))
                    .map_err(UpstreamError::from),
            }
        };
        // Err: the read timeout passed, or the backend stopped taking the body.
        let sent = match &send_watch {
            None => tokio::time::timeout(read_timeout, exchange)
                .await
                .map_err(|_| ()),
            Some((progress, limit)) => tokio::select! {
                biased;
                r = tokio::time::timeout(read_timeout, exchange) => r.map_err(|_| ()),
                () = progress.stalled(*limit) => Err(()),
            },
        };
        if let (Ok(Ok(_)), Some(stats)) = (&sent, target.stats.get()) {
            stats.upstream_response(sent_at.elapsed());
        }
        if let (Some(l), Some(t)) = (load, started) {
            l.finish(t.elapsed());
        }
        match sent {
            Err(()) => {
                last = Some((ForwardError::Timeout, Some(addr)));
                if more && resendable && retry.on.contains(RetryOn::TIMEOUT) {
                    shared.metrics.upstream_retry();
                    continue;
                }
                break;
            }
            Ok(Err(e)) if e.is_connect() => {
                debug!(upstream = %addr, error = %e, "connect failed");
                // As nginx: a connect timeout is a `timeout` (504), other failures `error`.
                let (error, condition) = if e.is_connect_timeout() {
                    (ForwardError::ConnectTimeout, RetryOn::TIMEOUT)
                } else {
                    (ForwardError::Connect(error_chain(&e)), RetryOn::ERROR)
                };
                last = Some((error, Some(addr)));
                if more && replayable && retry.on.contains(condition) {
                    shared.metrics.upstream_retry();
                    continue;
                }
                break;
            }
            Ok(Err(e)) => {
                if let Some(body_error) = find_body_error(&e) {
                    return Err((body_error, Some(addr)));
                }
                last = Some((ForwardError::Upstream(error_chain(&e)), Some(addr)));
                // As nginx: an answer that does not parse is `invalid_header`, not `error`.
                let condition = if e.is_invalid_response() {
                    RetryOn::INVALID_HEADER
                } else {
                    RetryOn::ERROR
                };
                if more && resendable && retry.on.contains(condition) {
                    shared.metrics.upstream_retry();
                    continue;
                }
                break;
            }
            Ok(Ok((mut resp, lent))) => {
                if more && resendable && retry.on.status(resp.status()) {
                    shared.metrics.upstream_retry();
                    continue;
                }
                if let Some(info) = &error_info {
                    if info.pages.replaces(resp.status()) {
                        return Box::pin(error_page(shared, target, info, resp.status())).await;
                    }
                }
                let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
                if switching {
                    match client_upgrade {
                        Some(client_upgrade) => {
                            let upstream_upgrade = hyper::upgrade::on(&mut resp);
                            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, addr));
                        }
                        None => {
                            return Err((
                                ForwardError::Upstream("unrequested protocol switch".into()),
                                Some(addr),
                            ))
                        }
                    }
                }
                let (mut parts, body) = resp.into_parts();
                headers::remove_hop_by_hop(&mut parts.headers, switching);
                if switching {
                    parts
                        .headers
                        .insert(UPGRADE, HeaderValue::from_static("websocket"));
                }
                policy.response_headers.apply(&mut parts.headers);
                if let Some(cookie) = set_cookie {
                    parts.headers.append(http::header::SET_COOKIE, cookie);
                }
                let mut body = ProxyBody::guarded(body, None, policy.timeouts.read);
                // An upgraded connection is the tunnel's now, never reused.
                if let (Some(lent), false) = (lent, switching) {
                    body = ProxyBody::pooled(body, lent);
                }
                if let Some(c) = &policy.compression {
                    if let Some(encoding) =
                        c.choose(&method, &accept_encoding, parts.status, &parts.headers)
                    {
                        body = ProxyBody::Compressed(Box::new(c.apply(
                            encoding,
                            &mut parts.headers,
                            body,
                        )));
                    }
                }
                return Ok((Response::from_parts(parts, body), Some(addr)));
            }
        }
    }
    Err(last.unwrap_or((ForwardError::NoEndpoint, None)))
}

/// Turns the client's headers into those the backend receives: hop-by-hop headers out
/// (`Upgrade` kept for a WebSocket), forwarding headers, request id, `Host`, and the route's
/// own changes.
pub(crate) fn upstream_headers(
    policy: &Policy,
    headers: &mut http::HeaderMap,
    forwarded: &Forwarded<'_>,
    request_id: &HeaderValue,
    websocket: bool,
    te_trailers: bool,
) {
    // The `traceparent` is Portico's own by now (`trace_context::apply` replaced the
    // client's): a client's `Connection` naming it does not take it away from the next hop.
    let traceparent = headers
        .contains_key(CONNECTION)
        .then(|| headers.get(&TRACEPARENT).cloned())
        .flatten();
    headers::remove_hop_by_hop(headers, websocket);
    if let Some(traceparent) = traceparent {
        headers.insert(TRACEPARENT.clone(), traceparent);
    }
    if te_trailers {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    headers::set_forwarded(headers, forwarded);
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    match &policy.upstream_vhost {
        Some(vhost) => {
            headers.insert(HOST, vhost.clone());
        }
        // The host that routed the request (an absolute URI's authority wins over `Host`,
        // RFC 9112 §3.2.2), so the backend never sees another one.
        None => {
            headers.insert(HOST, forwarded.host.clone());
        }
    }
    if let Some(prefix) = &policy.x_forwarded_prefix {
        headers.insert(headers::X_FORWARDED_PREFIX.clone(), prefix.clone());
    }
    policy.request_headers.apply(headers);
}

/// Counts and logs a request that could not be forwarded: the client's own faults at debug
/// level (the access log has their status), the backend's as warnings.
pub(crate) fn report_failure(
    shared: &Shared,
    target: &Target,
    client: IpAddr,
    addr: Option<SocketAddr>,
    e: &ForwardError,
) {
    shared.metrics.forward_error(e);
    if e.side() == Side::Downstream {
        debug!(
            ingress = %format_args!("{}/{}", target.namespace, target.ingress),
            service = %target.service,
            client = %client,
            error = %e,
            "request refused"
        );
    } else {
        warn!(
            ingress = %format_args!("{}/{}", target.namespace, target.ingress),
            service = %target.service,
            upstream = ?addr,
            error = %e,
            "request not forwarded"
        );
    }
}

/// What the error backend is told about the request it answers for.
struct ErrorInfo<'p> {
    pages: &'p ErrorPages,
    uri: HeaderValue,
    accept: Option<HeaderValue>,
    host: HeaderValue,
    request_id: HeaderValue,
}

static X_CODE: http::HeaderName = http::HeaderName::from_static("x-code");
static X_FORMAT: http::HeaderName = http::HeaderName::from_static("x-format");
static X_ORIGINAL_URI: http::HeaderName = http::HeaderName::from_static("x-original-uri");
static X_NAMESPACE: http::HeaderName = http::HeaderName::from_static("x-namespace");
static X_INGRESS_NAME: http::HeaderName = http::HeaderName::from_static("x-ingress-name");
static X_SERVICE_NAME: http::HeaderName = http::HeaderName::from_static("x-service-name");

/// Asks the route's error backend for the page of `code` (a GET, with the headers
/// ingress-nginx's custom error backends read) and answers with it under `code`. When the
/// error backend fails too, Portico's own page for `code` goes out.
async fn error_page(
    shared: &Shared,
    target: &Target,
    info: &ErrorInfo<'_>,
    code: StatusCode,
) -> Forwarding {
    let fallback = |addr| Ok((respond::status_page(code), addr));
    let Some((_, addr, authority)) = info.pages.backend.pick().next() else {
        return fallback(None);
    };
    let Ok(uri) = upstream_uri(
        Scheme::HTTP,
        addr,
        authority,
        &PathAndQuery::from_static("/"),
    ) else {
        return fallback(Some(addr));
    };
    let mut req = Request::new(ProxyBody::empty());
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(HOST, info.host.clone());
    h.insert(X_CODE.clone(), HeaderValue::from(code.as_u16()));
    h.insert(
        X_FORMAT.clone(),
        info.accept
            .clone()
            .unwrap_or(HeaderValue::from_static("text/html")),
    );
    h.insert(X_ORIGINAL_URI.clone(), info.uri.clone());
    for (name, value) in [
        (&X_NAMESPACE, target.namespace.as_str()),
        (&X_INGRESS_NAME, target.ingress.as_str()),
        (&X_SERVICE_NAME, target.service.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name.clone(), v);
        }
    }
    h.insert(X_REQUEST_ID.clone(), info.request_id.clone());
    let sent = tokio::time::timeout(
        shared.config.upstream_response_timeout,
        shared.upstreams.default.request(req),
    )
    .await;
    match sent {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            headers::remove_hop_by_hop(&mut parts.headers, false);
            parts.status = code;
            Ok((
                Response::from_parts(parts, ProxyBody::Stream(body)),
                Some(addr),
            ))
        }
        Ok(Err(e)) => {
            debug!(upstream = %addr, service = %info.pages.service, error = %e, "error backend failed");
            fallback(Some(addr))
        }
        Err(_) => fallback(Some(addr)),
    }
}

/// A request that failed because of its own body (too large, stalled, malformed, broken
/// off) is the client's fault. Only the request body is read while the upstream request is
/// being sent, so a peer error found there is the client's.
fn find_body_error(e: &(dyn std::error::Error + 'static)) -> Option<ForwardError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<BodyError>() {
            return match b {
                BodyError::TooLarge => Some(ForwardError::BodyTooLarge),
                BodyError::Idle(_) => Some(ForwardError::ClientTimeout),
                BodyError::Peer(p) => Some(ForwardError::ClientBody(error_chain(p))),
                BodyError::Compress(_) => None,
            };
        }
        cur = err.source();
    }
    None
}

fn upstream_uri(
    scheme: Scheme,
    addr: SocketAddr,
    prebuilt: Option<&Authority>,
    pq: &PathAndQuery,
) -> Result<Uri, ForwardError> {
    let authority = match prebuilt {
        Some(a) => a.clone(),
        None => Authority::try_from(addr.to_string().as_str())
            .map_err(|_| ForwardError::Internal("bad upstream address"))?,
    };
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(pq.clone())
        .build()
        .map_err(|_| ForwardError::BadRequest("bad request target"))
}

/// Carries bytes both ways once client and backend have switched protocols.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    addr: SocketAddr,
) {
    match tokio::try_join!(client, upstream) {
        Ok((c, u)) => {
            let mut c = TokioIo::new(c);
            let mut u = TokioIo::new(u);
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                debug!(upstream = %addr, error = %e, "tunnel ended");
            }
        }
        Err(e) => debug!(upstream = %addr, error = %e, "upgrade failed"),
    }
}

/// Resolves an ExternalName, refusing addresses a backend must never have (SSRF guard).
async fn resolve_external(
    shared: &Shared,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ForwardError> {
    if !shared.config.allow_external_name {
        return Err(ForwardError::Resolve(
            "ExternalName backends are disabled (--allow-external-name)".into(),
        ));
    }
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ForwardError::Resolve(format!("{host}: {e}")))?;
    let allowed: Vec<SocketAddr> = found.filter(|a| !forbidden_upstream(a.ip())).collect();
    if allowed.is_empty() {
        return Err(ForwardError::Resolve(format!(
            "{host} resolves to no allowed address"
        )));
    }
    Ok(allowed)
}

/// Loopback, link-local (cloud metadata lives there), unspecified and multicast addresses.
pub(crate) fn forbidden_upstream(ip: IpAddr) -> bool {
    match crate::client_addr::normalize(ip) {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets() == [100, 100, 100, 200]
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_header_naming_traceparent_keeps_porticos_own() {
        let mut h = http::HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("traceparent, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        let own =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        h.insert(TRACEPARENT.clone(), own.clone());
        let value = HeaderValue::from_static("10.0.0.1");
        let forwarded = Forwarded {
            peer: "10.0.0.1".parse().unwrap(),
            peer_value: &value,
            peer_trusted: false,
            client: "10.0.0.1".parse().unwrap(),
            scheme: "http",
            host: &HeaderValue::from_static("a.test"),
            port: &HeaderValue::from_static("80"),
        };
        let id = HeaderValue::from_static("id");
        upstream_headers(&Policy::default(), &mut h, &forwarded, &id, false, false);
        assert_eq!(h.get(&TRACEPARENT), Some(&own));
        assert!(h.get("x-secret").is_none() && h.get(CONNECTION).is_none());
    }

    /// The size of the future an async fn taking three arguments returns.
    fn future_size<A, B, C, R, F: FnOnce(A, B, C) -> R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every request's future is written into hyper's connection state and moved through
    /// each await: its size is copied per request, so rare paths are boxed to keep it small.
    #[test]
    fn the_request_future_stays_small() {
        let size = future_size(&handle);
        eprintln!("request future: {size} bytes");
        assert!(size <= LIMIT, "the request future grew to {size} bytes");
    }
    // 5,880 bytes before the rare paths were boxed, 5,384 after (debug build).
    const LIMIT: usize = 6_500;

    #[test]
    fn ssrf_guard() {
        for bad in [
            "127.0.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
        ] {
            assert!(forbidden_upstream(bad.parse().unwrap()), "{bad}");
        }
        for good in ["10.0.0.1", "93.184.216.34", "2001:db8::1"] {
            assert!(!forbidden_upstream(good.parse().unwrap()), "{good}");
        }
    }
}
