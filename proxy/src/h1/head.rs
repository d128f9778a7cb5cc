//! Request and response heads of Portico's own HTTP/1.1 path: parsed in place (httparse),
//! checked against what the path takes on, turned into `http` types whose values share the
//! bytes read, and written back out.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, DATE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// Headers per message this path parses at most; more goes to hyper, with its own limit.
const MAX_HEADERS: usize = 128;

/// Headers per backend answer at most (as hyper's client).
const MAX_RESPONSE_HEADERS: usize = 100;

/// Where a header's name and value are in the head.
pub type Span = (Range<usize>, Range<usize>);

/// A request head this path can forward.
#[derive(Debug)]
pub struct RequestHead {
    /// Bytes of the head, final CRLF included.
    pub len: usize,
    pub method: Method,
    pub target: Range<usize>,
    /// The value of its one `Host`.
    pub host: Range<usize>,
    /// The client asked to close after the answer (`Connection: close`).
    pub close: bool,
}

/// What the bytes read so far hold.
#[derive(Debug)]
pub enum Request {
    Head(RequestHead),
    /// A head not complete yet.
    Partial,
    /// Anything this path leaves to hyper: another version or method, a body, an upgrade,
    /// `Expect`, a missing or repeated `Host`, or a head hyper should refuse.
    Other,
}

/// Where `part` lies in `base`; empty when it is not inside (httparse answers some reason
/// phrases with a static empty string).
fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= base.len() => start..end,
        _ => 0..0,
    }
}

/// Does a comma-separated header value list `token`?
fn lists(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Parses a request head at the start of `buf`, keeping its headers' places in `spans`.
/// Only bodiless `GET` and `HEAD` requests in HTTP/1.1 with one `Host` are taken.
pub fn parse_request(buf: &[u8], max_headers: usize, spans: &mut Vec<Span>) -> Request {
    spans.clear();
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let headers = &mut storage[..max_headers.min(MAX_HEADERS)];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Request::Partial,
        Err(_) => return Request::Other,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Request::Other,
    };
    let Some(path) = req.path.filter(|p| p.starts_with('/')) else {
        return Request::Other;
    };
    if req.version != Some(1) {
        return Request::Other;
    }
    let mut host = None;
    let mut close = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return Request::Other;
            }
            host = Some(offset(buf, h.value));
        } else if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Request::Other;
        } else if name.eq_ignore_ascii_case(b"connection") {
            if lists(h.value, b"upgrade") {
                return Request::Other;
            }
            close |= lists(h.value, b"close");
        }
        spans.push((offset(buf, h.name.as_bytes()), offset(buf, h.value)));
    }
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return Request::Other;
    };
    Request::Head(RequestHead {
        len,
        method,
        target: offset(buf, path.as_bytes()),
        host,
        close,
    })
}

/// The request's headers, their values sharing `head`; `None` when one does not convert.
pub fn header_map(head: &Bytes, spans: &[Span]) -> Option<HeaderMap> {
    // Room for what forwarding adds (forwarding headers, request id, traceparent).
    let mut map = HeaderMap::with_capacity(spans.len() + 8);
    for (name, value) in spans {
        let name = HeaderName::from_bytes(&head[name.clone()]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.clone())).ok()?;
        map.append(name, value);
    }
    Some(map)
}

/// Writes a request head for the backend: origin form, HTTP/1.1, no body.
pub fn write_request(out: &mut Vec<u8>, method: &Method, target: &[u8], headers: &HeaderMap) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(out, headers);
    out.extend_from_slice(b"\r\n");
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// How the body of an answer is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: an answer to `HEAD`, 204, 304.
    Empty,
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    Close,
}

/// A backend's answer head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The backend's reason phrase, when it has one.
    pub reason: Range<usize>,
    pub framing: Framing,
    /// The connection may carry another request after this answer.
    pub keep_alive: bool,
    /// `Content-Length` is dropped: `Transfer-Encoding` decides.
    drop_length: bool,
}

impl ResponseHead {
    /// The headers, sharing the bytes of `head` (the head's bytes as parsed, with `spans`).
    pub fn headers(&self, head: &Bytes, spans: &[Span]) -> Result<HeaderMap, BadResponse> {
        let mut headers = header_map(head, spans).ok_or(BadResponse::Malformed)?;
        if self.drop_length {
            headers.remove(CONTENT_LENGTH);
        }
        Ok(headers)
    }

    /// Writes the head for the client straight from the backend's bytes, as
    /// [`write_response`] writes it after `headers::remove_hop_by_hop` and `X-Request-ID`:
    /// hop-by-hop headers and those `Connection` names are left out, the request id replaces
    /// the backend's.
    pub fn write_raw(
        &self,
        out: &mut Vec<u8>,
        head: &[u8],
        spans: &[Span],
        request_id: &[u8],
        chunked: bool,
        close: bool,
    ) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        match &head[self.reason.clone()] {
            [] => out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes()),
            r => out.extend_from_slice(r),
        }
        out.extend_from_slice(b"\r\n");
        let named = |name: &[u8]| {
            spans.iter().any(|(n, v)| {
                head[n.clone()].eq_ignore_ascii_case(b"connection") && lists(&head[v.clone()], name)
            })
        };
        let mut date = false;
        for (n, v) in spans {
            let name = &head[n.clone()];
            if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
                || name.eq_ignore_ascii_case(b"x-request-id")
                || (self.drop_length && name.eq_ignore_ascii_case(b"content-length"))
                // The framing stays whatever `Connection` names.
                || (named(name) && !name.eq_ignore_ascii_case(b"content-length"))
            {
                continue;
            }
            date |= name.eq_ignore_ascii_case(b"date");
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&head[v.clone()]);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(request_id);
        out.extend_from_slice(b"\r\n");
        finish_head(out, chunked, date, close);
    }
}

/// The hop-by-hop headers (RFC 9110 §7.6.1), as `headers::remove_hop_by_hop` removes them.
pub(crate) const HOP_BY_HOP: [&[u8]; 7] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
];

/// A backend's answer that cannot be forwarded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    #[error("malformed response head")]
    Malformed,
    #[error("response head too large")]
    TooLarge,
    #[error("unrequested protocol switch")]
    Switch,
    #[error("invalid content-length")]
    Length,
}

/// What the bytes read from a backend hold.
#[derive(Debug)]
pub enum Response {
    /// A final answer's head, `len` bytes long.
    Head {
        len: usize,
        head: ResponseHead,
    },
    /// An interim (1xx) answer of `len` bytes, passed over.
    Interim(usize),
    Partial,
}

/// Parses an answer head at the start of `head`; `to_head` says it answers a `HEAD`.
pub fn parse_response(
    head: &[u8],
    to_head: bool,
    spans: &mut Vec<Span>,
) -> Result<Response, BadResponse> {
    // Most answers have a few headers: a small table first, the full one when it is short.
    let mut few = [httparse::EMPTY_HEADER; 24];
    match response_head(head, to_head, &mut few, spans) {
        Err(BadResponse::TooLarge) => {
            let mut many = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            response_head(head, to_head, &mut many, spans)
        }
        r => r,
    }
}

fn response_head<'h>(
    head: &'h [u8],
    to_head: bool,
    table: &mut [httparse::Header<'h>],
    spans: &mut Vec<Span>,
) -> Result<Response, BadResponse> {
    spans.clear();
    let mut resp = httparse::Response::new(table);
    let len = match resp.parse(head) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Response::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(BadResponse::TooLarge),
        Err(_) => return Err(BadResponse::Malformed),
    };
    let code = resp.code.ok_or(BadResponse::Malformed)?;
    let status = StatusCode::from_u16(code).map_err(|_| BadResponse::Malformed)?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(BadResponse::Switch);
    }
    if status.is_informational() {
        return Ok(Response::Interim(len));
    }
    let http11 = resp.version == Some(1);
    let mut keep_alive = http11;
    let mut chunked = None;
    let mut length: Option<u64> = None;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding decides; anything but chunked runs to the close.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for v in h.value.split(|&b| b == b',') {
                let v = std::str::from_utf8(v.trim_ascii()).map_err(|_| BadResponse::Length)?;
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(BadResponse::Length);
                }
                let n: u64 = v.parse().map_err(|_| BadResponse::Length)?;
                if length.is_some_and(|l| l != n) {
                    return Err(BadResponse::Length);
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"connection") && lists(h.value, b"close") {
            keep_alive = false;
        }
        spans.push((offset(head, name), offset(head, h.value)));
    }
    let reason = offset(head, resp.reason.unwrap_or("").as_bytes());
    let framing =
        if to_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Empty
        } else {
            match (chunked, length) {
                (Some(true), _) => Framing::Chunked,
                (Some(false), _) => Framing::Close,
                (None, Some(n)) => Framing::Length(n),
                (None, None) => Framing::Close,
            }
        };
    if framing == Framing::Close {
        keep_alive = false;
    }
    Ok(Response::Head {
        len,
        head: ResponseHead {
            status,
            reason,
            framing,
            keep_alive,
            // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
            drop_length: chunked.is_some() && framing != Framing::Empty,
        },
    })
}

/// Writes an answer head for the client. `reason` is the backend's phrase (or empty);
/// `chunked` says the body goes out chunked; `close` adds `Connection: close`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: &[u8],
    headers: &HeaderMap,
    chunked: bool,
    close: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match reason {
        [] => out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes()),
        r => out.extend_from_slice(r),
    }
    out.extend_from_slice(b"\r\n");
    write_headers(out, headers);
    finish_head(out, chunked, headers.contains_key(DATE), close);
}

/// The framing, date and connection lines, and the blank line.
fn finish_head(out: &mut Vec<u8>, chunked: bool, date: bool, close: bool) {
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !date {
        out.extend_from_slice(b"date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the current time as an HTTP date, formatted once a second per thread.
fn http_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Uri;

    fn parse(text: &str) -> (Request, Vec<Span>) {
        let mut spans = Vec::new();
        let r = parse_request(text.as_bytes(), 100, &mut spans);
        (r, spans)
    }

    #[test]
    fn plain_gets_and_heads_are_taken() {
        let text = "GET /a?b=1 HTTP/1.1\r\nHost: a.test\r\nX-Y: z\r\nConnection: keep-alive, close\r\n\r\nGET";
        let (Request::Head(h), spans) = parse(text) else {
            panic!("not taken")
        };
        assert_eq!(h.len, text.len() - 3);
        assert_eq!(&text[h.target.clone()], "/a?b=1");
        assert!(h.close);
        assert_eq!(spans.len(), 3);
        let head = Bytes::copy_from_slice(text.as_bytes());
        let uri = Uri::from_maybe_shared(head.slice(h.target.clone())).unwrap();
        let headers = header_map(&head, &spans).unwrap();
        assert_eq!(uri, "/a?b=1");
        assert_eq!(headers["x-y"], "z");
        assert_eq!(headers["host"], "a.test");
        let (r, _) = parse("HEAD / HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(matches!(r, Request::Head(h) if h.method == Method::HEAD && !h.close));
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for text in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: \r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nHost a\r\n\r\n",
            "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(matches!(parse(text).0, Request::Other), "{text:?}");
        }
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: a\r\n").0,
            Request::Partial
        ));
    }

    fn response(
        text: &str,
        to_head: bool,
    ) -> Result<(usize, ResponseHead, HeaderMap), BadResponse> {
        let mut spans = Vec::new();
        match parse_response(text.as_bytes(), to_head, &mut spans)? {
            Response::Head { len, head } => {
                let map = head.headers(&Bytes::copy_from_slice(text.as_bytes()), &spans)?;
                Ok((len, head, map))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answer_framing() {
        let (len, r, _) =
            response("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).unwrap();
        assert_eq!(
            (len, r.framing, r.keep_alive),
            (38, Framing::Length(2), true)
        );
        let (_, r, map) = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(r.framing, Framing::Chunked);
        assert!(map.get(CONTENT_LENGTH).is_none());
        let (_, r, _) = response("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!((r.framing, r.keep_alive), (Framing::Close, false));
        let (_, r, map) = response("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true).unwrap();
        assert_eq!((r.framing, r.keep_alive), (Framing::Empty, true));
        assert_eq!(map[CONTENT_LENGTH], "9");
        let (_, r, _) = response("HTTP/1.1 304 Not Modified\r\n\r\n", false).unwrap();
        assert_eq!(r.framing, Framing::Empty);
        let (_, r, _) = response("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false).unwrap();
        assert!(!r.keep_alive);
        let (_, r, _) = response(
            "HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(!r.keep_alive);
        let (_, r, _) = response("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n", false).unwrap();
        assert_eq!(r.framing, Framing::Length(3));
    }

    #[test]
    fn answers_that_cannot_be_forwarded() {
        for (text, err) in [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
                BadResponse::Length,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                BadResponse::Length,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                BadResponse::Length,
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\n\r\n",
                BadResponse::Switch,
            ),
            ("HTTP/1.1 2000 OK\r\n\r\n", BadResponse::Malformed),
            ("SMTP ready\r\n\r\n", BadResponse::Malformed),
        ] {
            assert_eq!(
                parse_response(text.as_bytes(), false, &mut Vec::new()).err(),
                Some(err),
                "{text:?}"
            );
        }
        let interim = parse_response(
            b"HTTP/1.1 103 Early Hints\r\nlink: x\r\n\r\nHTTP/1.1 200",
            false,
            &mut Vec::new(),
        );
        assert!(matches!(interim, Ok(Response::Interim(37))));
    }

    #[test]
    fn a_raw_head_matches_the_header_map_route() {
        let text = "HTTP/1.1 200 Fine\r\nX-A: 1\r\nConnection: x-secret, keep-alive\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nX-Request-Id: theirs\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nDate: then\r\n\r\n";
        let mut spans = Vec::new();
        let Ok(Response::Head { head, .. }) = parse_response(text.as_bytes(), false, &mut spans)
        else {
            panic!("not parsed")
        };
        let mut raw = Vec::new();
        head.write_raw(&mut raw, text.as_bytes(), &spans, b"ours", true, false);
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            "HTTP/1.1 200 Fine\r\nX-A: 1\r\nDate: then\r\nx-request-id: ours\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        // The same head through a header map keeps the same headers.
        let mut map = head
            .headers(&Bytes::copy_from_slice(text.as_bytes()), &spans)
            .unwrap();
        crate::headers::remove_hop_by_hop(&mut map, false);
        map.insert("x-request-id", HeaderValue::from_static("ours"));
        let mut names: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["date", "x-a", "x-request-id"]);
    }

    #[test]
    fn status_lines_without_a_reason_are_forwarded() {
        for text in [
            "HTTP/1.1 200\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 R\u{e9}ussi\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\ncontent-length: 0\n\n",
        ] {
            let mut spans = Vec::new();
            let Ok(Response::Head { head, .. }) =
                parse_response(text.as_bytes(), false, &mut spans)
            else {
                panic!("not parsed: {text:?}")
            };
            let mut out = Vec::new();
            head.write_raw(&mut out, text.as_bytes(), &spans, b"id", false, false);
            let out = String::from_utf8_lossy(&out).into_owned();
            assert!(out.starts_with("HTTP/1.1 200 "), "{out:?}");
        }
    }

    #[test]
    fn connection_cannot_name_the_framing_away() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Content-Length\r\n\r\n";
        let mut spans = Vec::new();
        let Ok(Response::Head { head, .. }) = parse_response(text.as_bytes(), false, &mut spans)
        else {
            panic!("not parsed")
        };
        let mut out = Vec::new();
        head.write_raw(&mut out, text.as_bytes(), &spans, b"id", false, false);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("Content-Length: 5\r\n"));
    }

    #[test]
    fn written_heads() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert(DATE, HeaderValue::from_static("then"));
        let mut out = Vec::new();
        write_response(&mut out, StatusCode::OK, b"Fine", &h, true, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 Fine\r\nx-a: 1\r\ndate: then\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        write_response(
            &mut out,
            StatusCode::NOT_FOUND,
            b"",
            &HeaderMap::new(),
            false,
            false,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\ndate: "),
            "{text}"
        );
        let mut out = Vec::new();
        write_request(&mut out, &Method::GET, b"/x", &h);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /x HTTP/1.1\r\nx-a: 1\r\ndate: then\r\n\r\n"
        );
    }
}
