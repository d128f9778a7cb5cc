//! W3C Trace Context (`traceparent`, `tracestate`): every request goes upstream with a valid
//! `traceparent` whose parent id is Portico's own span.
//!
//! A valid incoming `traceparent` keeps its trace id and flags and gets a new parent id; a
//! missing or invalid one (anything the specification's grammar refuses, or several headers) is
//! replaced by a new trace and `tracestate` is dropped with it, since it belongs to the refused
//! trace. An invalid `tracestate` is dropped too.
//!
//! Sampling is parent-based: a request whose valid parent is sampled (flag `01`) is sampled; a
//! new trace is sampled with the configured ratio (0 unless spans are exported) and then goes
//! upstream with flag `01`. A sampled request's span goes to the configured [`SpanSink`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Most list members a `tracestate` may have.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// A 16-byte trace id, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A parsed `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value strictly (lowercase hex, no all-zero ids, version `ff`
    /// refused, version `00` exactly 55 characters; later versions may append `-…`).
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        if value.len() < 55 {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        if version == 0xff || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        if version == 0 && value.len() != 55 {
            return None;
        }
        if value.len() > 55 && value[55] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0u8; 8];
        for (i, b) in parent_id.iter_mut().enumerate() {
            *b = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id,
            flags,
        })
    }

    /// The header value's text (version `00`), built without intermediate strings.
    pub fn encode(&self) -> [u8; 55] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [b'-'; 55];
        buf[0] = b'0';
        buf[1] = b'0';
        let mut put = |at: usize, bytes: &[u8]| {
            for (i, b) in bytes.iter().enumerate() {
                buf[at + 2 * i] = HEX[(b >> 4) as usize];
                buf[at + 2 * i + 1] = HEX[(b & 0xf) as usize];
            }
        };
        put(3, &self.trace_id.0);
        put(36, &self.parent_id);
        put(53, &[self.flags]);
        buf
    }

    /// The header value (version `00`).
    pub fn to_header(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.encode()).unwrap_or(HeaderValue::from_static(""))
    }
}

/// Portico's span of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: TraceId,
    /// Portico's span id: the parent id the backend sees.
    pub span_id: [u8; 8],
    /// The incoming parent span, when the request came with a valid `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    pub sampled: bool,
}

/// One finished request span, for an exporter.
#[derive(Debug)]
pub struct Span {
    pub trace: Trace,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub method: Method,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub client: IpAddr,
    pub upstream: Option<SocketAddr>,
    pub namespace: String,
    pub ingress: String,
    pub service: String,
}

/// Where sampled spans go (an exporter the binary provides). `export` must not block.
pub trait SpanSink: Send + Sync + 'static {
    fn export(&self, span: Span);
}

/// Tracing settings of the data plane.
#[derive(Clone, Default)]
pub struct Tracing {
    /// Probability that a request without a sampled parent starts a sampled trace.
    pub sample_new: f64,
    /// Where sampled spans go; without one nothing is recorded.
    pub sink: Option<Arc<dyn SpanSink>>,
}

impl fmt::Debug for Tracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing")
            .field("sample_new", &self.sample_new)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

/// Lowercase hex only, as the specification requires.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

fn new_span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return TraceId(id);
        }
    }
}

/// Is a whole `tracestate` (all its headers joined by commas) well formed?
fn valid_tracestate<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut members = 0;
    for value in values {
        for member in value.split(|b| *b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue;
            }
            members += 1;
            if members > MAX_TRACESTATE_MEMBERS {
                return false;
            }
            let Some(eq) = member.iter().position(|b| *b == b'=') else {
                return false;
            };
            let (key, val) = (&member[..eq], &member[eq + 1..]);
            if !valid_key(key) || !valid_value(val) {
                return false;
            }
        }
    }
    true
}

fn valid_key(key: &[u8]) -> bool {
    let simple = |k: &[u8], max: usize| {
        !k.is_empty()
            && k.len() <= max
            && k[0].is_ascii_lowercase()
            && k.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(c))
    };
    match key.iter().position(|b| *b == b'@') {
        None => simple(key, 256),
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            let tenant_ok = !tenant.is_empty()
                && tenant.len() <= 241
                && tenant
                    .iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(c));
            tenant_ok && simple(system, 14)
        }
    }
}

fn valid_value(val: &[u8]) -> bool {
    !val.is_empty()
        && val.len() <= 256
        && val
            .iter()
            .all(|c| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=')
        && val.last() != Some(&b' ')
}

/// Rewrites a request's trace headers for the hop to the backend; a new trace is sampled
/// with probability `sample_new`.
pub fn apply(headers: &mut HeaderMap, sample_new: f64) -> Trace {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let incoming = match (values.next(), values.next()) {
        (Some(v), None) => TraceParent::parse(v.as_bytes()),
        _ => None,
    };
    let tracestate = headers
        .get_all(&TRACESTATE)
        .iter()
        .map(HeaderValue::as_bytes);
    let (outgoing, trace, keep_tracestate) = next_hop(incoming, tracestate, sample_new);
    if !keep_tracestate {
        headers.remove(&TRACESTATE);
    }
    headers.insert(TRACEPARENT.clone(), outgoing.to_header());
    trace
}

/// The `traceparent` for the backend given the request's own (`None`: missing, invalid or
/// repeated) and whether its `tracestate` (all its values) goes along.
pub fn next_hop<'a>(
    incoming: Option<TraceParent>,
    tracestate: impl Iterator<Item = &'a [u8]>,
    sample_new: f64,
) -> (TraceParent, Trace, bool) {
    let span_id = new_span_id();
    let (outgoing, parent_id, keep_tracestate) = match incoming {
        Some(parent) => (
            TraceParent {
                parent_id: span_id,
                ..parent
            },
            Some(parent.parent_id),
            valid_tracestate(tracestate),
        ),
        None => {
            let sampled = sample_new > 0.0 && fastrand::f64() < sample_new;
            (
                TraceParent {
                    trace_id: new_trace_id(),
                    parent_id: span_id,
                    flags: u8::from(sampled),
                },
                None,
                false,
            )
        }
    };
    let trace = Trace {
        trace_id: outgoing.trace_id,
        span_id,
        parent_id,
        sampled: outgoing.flags & 1 == 1,
    };
    (outgoing, trace, keep_tracestate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append((*k).clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn keeps_a_valid_trace_with_a_new_parent() {
        let mut h = headers(&[(&TRACEPARENT, VALID), (&TRACESTATE, "congo=t61rcWkgMzE")]);
        let t = apply(&mut h, 0.0);
        assert_eq!(t.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.sampled);
        assert_eq!(
            t.parent_id,
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        let out = h.get(&TRACEPARENT).unwrap().to_str().unwrap().to_string();
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{out}"
        );
        assert!(out.ends_with("-01"), "{out}");
        assert_ne!(&out[36..52], "00f067aa0ba902b7");
        assert!(TraceParent::parse(out.as_bytes()).is_some());
        assert_eq!(h.get(&TRACESTATE).unwrap(), "congo=t61rcWkgMzE");
    }

    #[test]
    fn generates_one_when_absent() {
        let mut h = HeaderMap::new();
        let t = apply(&mut h, 0.0);
        let out = h.get(&TRACEPARENT).unwrap().to_str().unwrap();
        let parsed = TraceParent::parse(out.as_bytes()).unwrap();
        assert_eq!(parsed.trace_id, t.trace_id);
        assert_eq!(parsed.parent_id, t.span_id);
        assert_eq!(parsed.flags, 0);
        assert!(!t.sampled && t.parent_id.is_none());
        let mut h2 = HeaderMap::new();
        assert_ne!(
            apply(&mut h2, 0.0).trace_id,
            t.trace_id,
            "trace ids are random"
        );
        // Sampled new traces say so upstream.
        let mut h3 = HeaderMap::new();
        assert!(apply(&mut h3, 1.0).sampled);
        assert!(h3
            .get(&TRACEPARENT)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-01"));
    }

    #[test]
    fn replaces_invalid_ones_and_drops_their_tracestate() {
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // v00 too long
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",  // short
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // separator
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", // not hex
            "",
        ] {
            let mut h = headers(&[(&TRACEPARENT, bad), (&TRACESTATE, "a=b")]);
            let id = apply(&mut h, 0.0).trace_id;
            assert_ne!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
            let out = h.get(&TRACEPARENT).unwrap().to_str().unwrap();
            assert!(TraceParent::parse(out.as_bytes()).is_some(), "{bad}");
            assert!(h.get(&TRACESTATE).is_none(), "{bad}");
        }
        // Two traceparent headers: ambiguous, so replaced.
        let mut h = headers(&[(&TRACEPARENT, VALID), (&TRACEPARENT, VALID)]);
        assert_ne!(
            apply(&mut h, 0.0).trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(h.get_all(&TRACEPARENT).iter().count(), 1);
    }

    #[test]
    fn accepts_later_versions_and_answers_with_version_00() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-says";
        let mut h = headers(&[(&TRACEPARENT, later)]);
        assert_eq!(
            apply(&mut h, 0.0).trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(h
            .get(&TRACEPARENT)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("00-"));
    }

    #[test]
    fn an_unsampled_parent_stays_unsampled() {
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let mut h = headers(&[(&TRACEPARENT, unsampled)]);
        assert!(!apply(&mut h, 1.0).sampled);
        assert!(h
            .get(&TRACEPARENT)
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-00"));
    }

    #[test]
    fn tracestate_grammar() {
        let ok = |s: &str| valid_tracestate([s.as_bytes()].into_iter());
        assert!(ok("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        assert!(ok("tenant@vendor=x, other=y"));
        assert!(!ok("Upper=x"));
        assert!(!ok("novalue"));
        assert!(!ok("a=b=c"));
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(!ok(&many.join(",")));
        // An invalid tracestate next to a valid traceparent is dropped alone.
        let mut h = headers(&[(&TRACEPARENT, VALID), (&TRACESTATE, "BAD")]);
        apply(&mut h, 0.0);
        assert!(h.get(&TRACESTATE).is_none());
        assert!(h
            .get(&TRACEPARENT)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
