//! The request head a backend receives, written straight from the client's head.
//!
//! For the commonest request (a peer that is not a trusted proxy, a route that sets no
//! request headers) the client's header lines are copied as they came, less those Portico
//! replaces or removes, and Portico's own are appended: `Host`, `traceparent`, the
//! `X-Forwarded-*` set, `X-Real-IP` and `X-Request-ID`. No header map is built. What this
//! writer does not cover ([`Scan::plain`] false: `Connection` naming other headers, a header
//! named `close`) goes through the header map as on hyper's path
//! (`forward::upstream_headers`), and the tests hold the two to the same result.

use std::ops::Range;

use super::head::Span;

/// The longest header name `http` takes.
const MAX_NAME: usize = (1 << 16) - 1;

/// What a header is to the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    /// Hop-by-hop (RFC 9110 §7.6.1), never forwarded.
    HopByHop,
    Connection,
    /// `X-Forwarded-For`/`-Proto`/`-Host`/`-Port` and `X-Real-IP`: replaced, as the peer is
    /// not trusted.
    Forwarding,
    Prefix,
    RequestId,
    TraceParent,
    TraceState,
    Referer,
    UserAgent,
    /// A header named `close`: `Connection: close` would remove it.
    Close,
    Other,
}

fn kind(name: &[u8]) -> Kind {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is(b"te") => Kind::HopByHop,
        4 if is(b"host") => Kind::Host,
        5 if is(b"close") => Kind::Close,
        7 if is(b"trailer") || is(b"upgrade") => Kind::HopByHop,
        7 if is(b"referer") => Kind::Referer,
        9 if is(b"x-real-ip") => Kind::Forwarding,
        10 if is(b"connection") => Kind::Connection,
        10 if is(b"keep-alive") => Kind::HopByHop,
        10 if is(b"tracestate") => Kind::TraceState,
        10 if is(b"user-agent") => Kind::UserAgent,
        11 if is(b"traceparent") => Kind::TraceParent,
        12 if is(b"x-request-id") => Kind::RequestId,
        15 if is(b"x-forwarded-for") => Kind::Forwarding,
        16 if is(b"proxy-connection") => Kind::HopByHop,
        16 if is(b"x-forwarded-host") || is(b"x-forwarded-port") => Kind::Forwarding,
        17 if is(b"transfer-encoding") => Kind::HopByHop,
        17 if is(b"x-forwarded-proto") => Kind::Forwarding,
        18 if is(b"x-forwarded-prefix") => Kind::Prefix,
        _ => Kind::Other,
    }
}

/// Does a `Connection` value name only what the writer handles (`keep-alive`, `close`)?
fn plain_connection(value: &[u8]) -> bool {
    value.split(|&b| b == b',').all(|t| {
        let t = t.trim_ascii();
        t.is_empty() || t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close")
    })
}

/// One pass over a request's headers: where the ones Portico reads are.
#[derive(Debug, Default)]
pub struct Scan {
    /// The writer covers this head.
    pub plain: bool,
    /// The first `X-Request-ID`.
    pub request_id: Option<Range<usize>>,
    /// The `traceparent`, when there is exactly one.
    pub traceparent: Option<Range<usize>>,
    pub referer: Option<Range<usize>>,
    pub user_agent: Option<Range<usize>>,
}

impl Scan {
    pub fn new(head: &[u8], spans: &[Span]) -> Scan {
        let mut scan = Scan {
            plain: true,
            ..Scan::default()
        };
        let mut traceparents = 0;
        for (name, value) in spans {
            let name = &head[name.clone()];
            // A name the header map cannot hold (64 KiB or more) sends the request there,
            // to be refused as hyper refuses it.
            scan.plain &= name.len() <= MAX_NAME;
            match kind(name) {
                Kind::Connection => scan.plain &= plain_connection(&head[value.clone()]),
                Kind::Close => scan.plain = false,
                Kind::RequestId => {
                    scan.request_id.get_or_insert(value.clone());
                }
                Kind::TraceParent => {
                    traceparents += 1;
                    scan.traceparent = Some(value.clone());
                }
                Kind::Referer => {
                    scan.referer.get_or_insert(value.clone());
                }
                Kind::UserAgent => {
                    scan.user_agent.get_or_insert(value.clone());
                }
                _ => {}
            }
        }
        if traceparents != 1 {
            scan.traceparent = None;
        }
        scan
    }

    /// The values of the request's `tracestate` headers.
    pub fn tracestate<'h>(head: &'h [u8], spans: &'h [Span]) -> impl Iterator<Item = &'h [u8]> {
        spans
            .iter()
            .filter(|(name, _)| kind(&head[name.clone()]) == Kind::TraceState)
            .map(|(_, value)| &head[value.clone()])
    }
}

/// What Portico adds to the head.
pub struct Added<'a> {
    /// `Host`: the route's `upstream-vhost` or the client's.
    pub host: &'a [u8],
    pub traceparent: &'a [u8],
    /// The client's `tracestate` goes along (its trace continues and it is valid).
    pub keep_tracestate: bool,
    /// The peer's address (`X-Forwarded-For`, `X-Real-IP`).
    pub peer: &'a [u8],
    pub scheme: &'a [u8],
    /// The host the client asked for (`X-Forwarded-Host`).
    pub forwarded_host: &'a [u8],
    pub port: &'a [u8],
    pub request_id: &'a [u8],
    /// The route's `x-forwarded-prefix`.
    pub prefix: Option<&'a [u8]>,
}

/// Writes the head for the backend: origin form, HTTP/1.1, no body. `spans` are the client
/// head's headers, whose [`Scan`] was plain.
pub fn write(
    out: &mut Vec<u8>,
    method: &[u8],
    target: &[u8],
    head: &[u8],
    spans: &[Span],
    added: &Added<'_>,
) {
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in spans {
        let name = &head[name.clone()];
        let keep = match kind(name) {
            Kind::Other | Kind::Referer | Kind::UserAgent => true,
            Kind::TraceState => added.keep_tracestate,
            Kind::Prefix => added.prefix.is_none(),
            Kind::Host
            | Kind::HopByHop
            | Kind::Connection
            | Kind::Forwarding
            | Kind::RequestId
            | Kind::TraceParent
            | Kind::Close => false,
        };
        if keep {
            line(name, &head[value.clone()]);
        }
    }
    line(b"host", added.host);
    line(b"traceparent", added.traceparent);
    line(b"x-forwarded-for", added.peer);
    line(b"x-forwarded-proto", added.scheme);
    line(b"x-forwarded-host", added.forwarded_host);
    line(b"x-forwarded-port", added.port);
    line(b"x-real-ip", added.peer);
    line(b"x-request-id", added.request_id);
    if let Some(prefix) = added.prefix {
        line(b"x-forwarded-prefix", prefix);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_told_apart_whatever_its_case() {
        for (name, k) in [
            ("TE", Kind::HopByHop),
            ("Host", Kind::Host),
            ("CLOSE", Kind::Close),
            ("Trailer", Kind::HopByHop),
            ("Upgrade", Kind::HopByHop),
            ("Referer", Kind::Referer),
            ("X-Real-IP", Kind::Forwarding),
            ("Connection", Kind::Connection),
            ("Keep-Alive", Kind::HopByHop),
            ("TraceState", Kind::TraceState),
            ("User-Agent", Kind::UserAgent),
            ("TraceParent", Kind::TraceParent),
            ("X-Request-ID", Kind::RequestId),
            ("X-Forwarded-For", Kind::Forwarding),
            ("Proxy-Connection", Kind::HopByHop),
            ("X-Forwarded-Host", Kind::Forwarding),
            ("X-Forwarded-Port", Kind::Forwarding),
            ("Transfer-Encoding", Kind::HopByHop),
            ("X-Forwarded-Proto", Kind::Forwarding),
            ("X-Forwarded-Prefix", Kind::Prefix),
            ("X-Forwarded-Fox", Kind::Other),
            ("Accept", Kind::Other),
        ] {
            assert_eq!(kind(name.as_bytes()), k, "{name}");
        }
    }

    /// The answer writer's list and this one stay in step.
    #[test]
    fn every_hop_by_hop_header_is_left_out() {
        for name in super::super::head::HOP_BY_HOP {
            let k = kind(name);
            assert!(matches!(k, Kind::HopByHop | Kind::Connection), "{k:?}");
        }
    }

    #[test]
    fn connection_may_name_only_keep_alive_and_close() {
        assert!(plain_connection(b"keep-alive"));
        assert!(plain_connection(b"Close , KEEP-ALIVE,"));
        assert!(!plain_connection(b"keep-alive, x-secret"));
    }
}
