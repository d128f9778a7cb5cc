//! CORS (`enable-cors`), as ingress-nginx does it: the `Access-Control-*` headers go on every
//! answer to an allowed origin (Portico's own 401/403/503 answers included), and a preflight
//! (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered 204 by Portico.
//!
//! Everything is parsed and turned into header values when the snapshot is built.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::ProxyBody;

/// ingress-nginx's defaults.
pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const DEFAULT_MAX_AGE: u64 = 1_728_000;

/// Which origins may read answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// `*`: every request gets `Access-Control-Allow-Origin: *`.
    Any,
    List(Vec<OriginPattern>),
}

/// `scheme://host[:port]`, where the host may start with `*.` (one DNS label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    https: bool,
    /// Lower case, without the `*.`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl OriginPattern {
    fn matches(&self, origin: &ParsedOrigin<'_>) -> bool {
        if self.https != origin.https || self.port != origin.port {
            return false;
        }
        if !self.wildcard {
            return origin.host.eq_ignore_ascii_case(&self.host);
        }
        // `*.example.com` matches `a.example.com`, not `example.com` nor `a.b.example.com`.
        let host = origin.host;
        let Some(split) = host.len().checked_sub(self.host.len() + 1) else {
            return false;
        };
        let (label, rest) = host.split_at(split);
        rest.as_bytes().first() == Some(&b'.')
            && rest[1..].eq_ignore_ascii_case(&self.host)
            && !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }
}

struct ParsedOrigin<'a> {
    https: bool,
    host: &'a str,
    port: Option<u16>,
}

/// `scheme://host[:port]` with an http(s) scheme, as browsers send it.
fn parse_origin(s: &str, allow_wildcard: bool) -> Option<(bool, &str, Option<u16>)> {
    let (https, rest) = if let Some(r) = strip_prefix_ci(s, "https://") {
        (true, r)
    } else if let Some(r) = strip_prefix_ci(s, "http://") {
        (false, r)
    } else {
        return None;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let port: u16 = p.parse().ok().filter(|p| *p != 0)?;
            (h, Some(port))
        }
        None => (rest, None),
    };
    let name = match host.strip_prefix("*.") {
        Some(n) if allow_wildcard => n,
        _ => host,
    };
    let valid_label = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return None;
    }
    Some((https, host, port))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
    .then(|| &s[prefix.len()..])
}

/// `cors-allow-origin`: `*`, or a comma-separated list of `http(s)://host[:port]`, where the
/// host may be `*.domain`.
pub fn parse_origins(v: &str) -> Result<Origins, String> {
    let mut list = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "*" {
            return Ok(Origins::Any);
        }
        let Some((https, host, port)) = parse_origin(item, true) else {
            return Err(format!(
                "{item:?} is not an origin (expected http(s)://host[:port], host may start with *.)"
            ));
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(h) => (true, h),
            None => (false, host),
        };
        list.push(OriginPattern {
            https,
            host: host.to_ascii_lowercase(),
            wildcard,
            port,
        });
    }
    if list.is_empty() {
        return Err("no origin given".into());
    }
    Ok(Origins::List(list))
}

/// A comma-separated list of tokens (methods, header names), normalised to `A, B`.
pub fn parse_token_list(v: &str, allow_star: bool) -> Result<HeaderValue, String> {
    let items: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err("empty list".into());
    }
    for item in &items {
        let ok = (allow_star && *item == "*")
            || item
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok || item.len() > 128 {
            return Err(format!("{item:?} is not a token"));
        }
    }
    HeaderValue::from_str(&items.join(", ")).map_err(|e| e.to_string())
}

/// The CORS settings of one route.
#[derive(Debug, Clone)]
pub struct Cors {
    pub origins: Origins,
    pub allow_methods: HeaderValue,
    pub allow_headers: HeaderValue,
    pub expose_headers: Option<HeaderValue>,
    pub allow_credentials: bool,
    pub max_age: HeaderValue,
}

impl Default for Cors {
    fn default() -> Self {
        Cors {
            origins: Origins::Any,
            allow_methods: HeaderValue::from_static(DEFAULT_METHODS),
            allow_headers: HeaderValue::from_static(DEFAULT_HEADERS),
            expose_headers: None,
            allow_credentials: true,
            max_age: HeaderValue::from(DEFAULT_MAX_AGE),
        }
    }
}

/// What `Access-Control-Allow-Origin` says for one request, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Any,
    /// The request's origin, echoed (with `Vary: Origin`).
    Origin(HeaderValue),
}

impl Cors {
    /// Is the request's origin allowed?
    pub fn allowed(&self, origin: Option<&HeaderValue>) -> Option<Allowed> {
        match &self.origins {
            Origins::Any => Some(Allowed::Any),
            Origins::List(list) => {
                let value = origin?;
                let (https, host, port) = parse_origin(value.to_str().ok()?, false)?;
                let parsed = ParsedOrigin { https, host, port };
                list.iter()
                    .any(|p| p.matches(&parsed))
                    .then(|| Allowed::Origin(value.clone()))
            }
        }
    }

    /// Is this request a preflight Portico answers?
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The 204 answer to a preflight (the CORS headers are added by [`Cors::decorate`]).
    pub fn preflight() -> Response<ProxyBody> {
        let mut resp = Response::new(ProxyBody::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain charset=UTF-8"),
        );
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        resp
    }

    /// Adds the CORS headers to an answer for an allowed origin.
    pub fn decorate(&self, allowed: Allowed, headers: &mut HeaderMap) {
        match allowed {
            Allowed::Any => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            Allowed::Origin(o) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
            }
        }
        if self.allow_credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers.clone(),
        );
        if let Some(e) = &self.expose_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &str) -> Cors {
        Cors {
            origins: parse_origins(origins).unwrap(),
            ..Cors::default()
        }
    }

    fn check(c: &Cors, origin: &str) -> Option<Allowed> {
        c.allowed(Some(&HeaderValue::from_str(origin).unwrap()))
    }

    #[test]
    fn origin_lists_and_wildcards() {
        let c = cors("https://app.example.com, https://*.example.org, http://localhost:8080");
        assert!(check(&c, "https://app.example.com").is_some());
        assert!(check(&c, "HTTPS://APP.example.com").is_some());
        assert!(
            check(&c, "http://app.example.com").is_none(),
            "scheme counts"
        );
        assert!(
            check(&c, "https://app.example.com:8443").is_none(),
            "port counts"
        );
        assert!(check(&c, "https://a.example.org").is_some());
        assert!(check(&c, "https://example.org").is_none());
        assert!(check(&c, "https://a.b.example.org").is_none(), "one label");
        assert!(check(&c, "https://evilexample.org").is_none());
        assert!(check(&c, "https://a.example.org.evil.com").is_none());
        assert!(check(&c, "http://localhost:8080").is_some());
        assert!(check(&c, "null").is_none());
        assert!(
            check(&c, "https://*.example.org").is_none(),
            "no wildcard in requests"
        );
        assert!(c.allowed(None).is_none());
        assert_eq!(cors("*").allowed(None), Some(Allowed::Any));
        assert_eq!(cors("https://a.test, *").origins, Origins::Any);
    }

    #[test]
    fn hostile_origins_are_refused() {
        for bad in [
            "",
            ",",
            "example.com",
            "ftp://example.com",
            "https://",
            "https://exa mple.com",
            "https://example.com/path",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com:",
            "https://*.*.example.com",
            "https://ex*ample.com",
            "https://example.com\r\nX: y",
            "https://a..b",
            "javascript:alert(1)",
        ] {
            assert!(parse_origins(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_lists() {
        assert_eq!(
            parse_token_list("GET,POST ,  PUT", false).unwrap(),
            "GET, POST, PUT"
        );
        assert!(parse_token_list("GET;rm", false).is_err());
        assert!(parse_token_list("X-A\r\nX-B", false).is_err());
        assert!(parse_token_list("*", false).is_err());
        assert_eq!(parse_token_list("*", true).unwrap(), "*");
        assert!(parse_token_list(" , ", false).is_err());
    }

    #[test]
    fn decorate_echoes_and_varies() {
        let c = Cors {
            expose_headers: Some(HeaderValue::from_static("X-Total")),
            allow_credentials: false,
            ..cors("https://a.test")
        };
        let mut h = HeaderMap::new();
        c.decorate(check(&c, "https://a.test").unwrap(), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.test");
        assert_eq!(h[header::VARY], "Origin");
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "X-Total");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "1728000");
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        let mut h = HeaderMap::new();
        Cors::default().decorate(Allowed::Any, &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(h.get(header::VARY).is_none());
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }
}
