//! Header rewriting between client and backend: hop-by-hop removal, forwarding headers,
//! request ids.

use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, TRANSFER_ENCODING, UPGRADE,
};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static TRAILER: HeaderName = HeaderName::from_static("trailer");

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named by `Connection`.
/// `keep_upgrade` leaves `Upgrade` in place and sets `Connection: upgrade` (WebSocket).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the names is cheaper than six removals.
    let any = headers.keys().any(|n| {
        n == CONNECTION
            || n == TE
            || n == TRANSFER_ENCODING
            || n == UPGRADE
            || n == KEEP_ALIVE
            || n == PROXY_CONNECTION
            || n == TRAILER
    });
    if !any && !keep_upgrade {
        return;
    }
    // Every `Connection` header counts, not only the first.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|list| list.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == UPGRADE))
        .collect();
    for n in named {
        headers.remove(n);
    }
    headers.remove(CONNECTION);
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(TE);
    headers.remove(&TRAILER);
    headers.remove(TRANSFER_ENCODING);
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// Is this an HTTP/1.1 WebSocket upgrade? Other upgrades (h2c, TLS) are never passed through.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let connection = headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    upgrade && connection
}

/// What the forwarding headers say about the request as Portico received it.
pub struct Forwarded<'a> {
    pub peer: IpAddr,
    /// `peer` as a header value, built once per connection.
    pub peer_value: &'a HeaderValue,
    pub peer_trusted: bool,
    pub client: IpAddr,
    pub scheme: &'static str,
    pub host: &'a HeaderValue,
    /// The listener's port as a header value, built once per listener.
    pub port: &'a HeaderValue,
}

/// Writes `X-Forwarded-*` and `X-Real-IP`. Values from an untrusted peer are overwritten;
/// a trusted peer's are kept, and `X-Forwarded-For` gets the peer appended.
pub fn set_forwarded(headers: &mut HeaderMap, f: &Forwarded<'_>) {
    // Room for the five headers (and X-Request-ID, Host, traceparent) at once: one growth.
    headers.reserve(8);
    let peer = f.peer_value.clone();
    if f.peer_trusted {
        let existing: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let joined = if existing.is_empty() {
            peer
        } else {
            let mut s = existing.join(", ");
            s.push_str(", ");
            s.push_str(peer.to_str().unwrap_or_default());
            HeaderValue::from_str(&s).unwrap_or(peer)
        };
        headers.insert(X_FORWARDED_FOR.clone(), joined);
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(f.scheme),
            );
        }
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST.clone(), f.host.clone());
        }
        if !headers.contains_key(&X_FORWARDED_PORT) {
            headers.insert(X_FORWARDED_PORT.clone(), f.port.clone());
        }
    } else {
        headers.insert(X_FORWARDED_FOR.clone(), peer);
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(f.scheme),
        );
        headers.insert(X_FORWARDED_HOST.clone(), f.host.clone());
        headers.insert(X_FORWARDED_PORT.clone(), f.port.clone());
    }
    let client = if f.client == f.peer {
        f.peer_value.clone()
    } else {
        ip_value(f.client)
    };
    headers.insert(X_REAL_IP.clone(), client);
}

/// An IP address as a header value.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    // An IP address's text is always a valid header value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// The request's id: the client's `X-Request-ID` when it is a sane token, else a new random one
/// (32 hex digits, as ingress-nginx's `$req_id`).
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    request_id_from(headers.get(&X_REQUEST_ID))
}

/// The request's id given its first `X-Request-ID` value.
pub fn request_id_from(given: Option<&HeaderValue>) -> HeaderValue {
    if let Some(v) = given {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 200 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    new_request_id()
}

fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    for (i, slot) in buf.iter_mut().enumerate() {
        let word = if i < 16 { a } else { b };
        *slot = HEX[((word >> ((i % 16) * 4)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(UPGRADE, "h2c".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        remove_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(UPGRADE).is_none());
        assert!(h.get(CONNECTION).is_none());
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn every_connection_header_names_hop_by_hop_ones() {
        let mut h = HeaderMap::new();
        h.append(CONNECTION, "keep-alive".parse().unwrap());
        h.append(CONNECTION, "x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        remove_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
    }

    #[test]
    fn websocket_detection() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, "WebSocket".parse().unwrap());
        h.insert(CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        assert!(is_websocket_upgrade(&h));
        h.insert(UPGRADE, "h2c".parse().unwrap());
        assert!(!is_websocket_upgrade(&h));
    }

    #[test]
    fn untrusted_forwarded_headers_are_overwritten() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        let host = HeaderValue::from_static("foo.com");
        let port = HeaderValue::from_static("80");
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        set_forwarded(
            &mut h,
            &Forwarded {
                peer,
                peer_value: &ip_value(peer),
                peer_trusted: false,
                client: peer,
                scheme: "http",
                host: &host,
                port: &port,
            },
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "foo.com");
        assert_eq!(h["x-forwarded-port"], "80");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
    }

    #[test]
    fn trusted_forwarded_headers_are_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.1".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        let host = HeaderValue::from_static("foo.com");
        let port = HeaderValue::from_static("80");
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.1".parse().unwrap();
        set_forwarded(
            &mut h,
            &Forwarded {
                peer,
                peer_value: &ip_value(peer),
                peer_trusted: true,
                client,
                scheme: "http",
                host: &host,
                port: &port,
            },
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-real-ip"], "203.0.113.1");
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        let a = request_id(&h);
        assert_eq!(a.len(), 32);
        assert_ne!(a, request_id(&h));
        h.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(request_id(&h), "abc-123");
    }
}
