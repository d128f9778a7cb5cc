//! Answers Portico gives itself: small plain-text pages and redirects.

use std::fmt::Write as _;

use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;

/// A small plain-text page for `status`, e.g. `404 Not Found`.
pub fn status_page(status: StatusCode) -> Response<ProxyBody> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = Response::new(ProxyBody::text(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A redirect to `location` with `status` (301, 302, 307, 308).
pub fn redirect(status: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let mut resp = status_page(status);
    resp.headers_mut().insert(LOCATION, location);
    resp
}

/// `https://host[:port]/path?query` for a plain-HTTP request; `None` if it cannot be a header.
pub fn https_location(host: &str, port: u16, path_and_query: &str) -> Option<HeaderValue> {
    location("https", host, (port != 443).then_some(port), path_and_query)
}

/// `scheme://host[:port]/path?query`; `None` if it cannot be a header.
pub fn location(
    scheme: &str,
    host: &str,
    port: Option<u16>,
    path_and_query: &str,
) -> Option<HeaderValue> {
    let mut s = String::with_capacity(host.len() + path_and_query.len() + 16);
    s.push_str(scheme);
    s.push_str("://");
    if host.contains(':') {
        s.push('[');
        s.push_str(host);
        s.push(']');
    } else {
        s.push_str(host);
    }
    if let Some(port) = port {
        let _ = write!(s, ":{port}");
    }
    s.push_str(path_and_query);
    HeaderValue::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            https_location("foo.com", 443, "/a?b=c").unwrap(),
            "https://foo.com/a?b=c"
        );
        assert_eq!(
            https_location("foo.com", 8443, "/").unwrap(),
            "https://foo.com:8443/"
        );
        assert_eq!(https_location("::1", 443, "/").unwrap(), "https://[::1]/");
    }

    #[test]
    fn pages_say_their_status() {
        let r = status_page(StatusCode::NOT_FOUND);
        assert_eq!(r.status(), 404);
        assert!(matches!(r.body(), ProxyBody::Bytes(Some(b)) if b.as_ref() == b"404 Not Found\n"));
    }
}
