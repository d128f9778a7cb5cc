//! Per-route traffic policy: what the proxy does to a request besides choosing its backend.
//!
//! translate builds one [`Policy`] per route from annotations, RoutePolicies and the class's
//! parameters; everything here is already parsed, validated and compiled (header values,
//! regexes, durations), so the request path only reads it. A route with no policy shares
//! [`Policy::none`], and costs one pointer and a few untaken branches.

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use regex::Regex;

use crate::access::basic::BasicAuth;
use crate::access::cors::Cors;
use crate::access::external::ExternalAuth;
use crate::access::rate_limit::RateLimit;
use crate::backend::Backend;
use crate::balance::Balance;
use crate::client_addr::TrustedProxies;
use crate::compress::Compression;
use crate::upstream::{Protocol, UpstreamClient, UpstreamTls};

/// Everything a route may ask of the proxy. `Default` is "nothing special".
#[derive(Debug, Default)]
pub struct Policy {
    /// Refuse every request with 503: the route asks for access control that cannot be
    /// applied (fail closed).
    pub deny: bool,
    /// Clients allowed (`allowlist-source-range`); others get 403. `None`: everyone.
    pub allow_sources: Option<TrustedProxies>,
    /// Clients refused with 403 (`denylist-source-range`), checked first.
    pub deny_sources: Option<TrustedProxies>,
    /// Users and passwords (`auth-type: basic`); others get 401.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// CORS headers and preflight answers (`enable-cors`).
    pub cors: Option<Arc<Cors>>,
    /// Request and connection limits per client (`limit-rps`, `limit-rpm`,
    /// `limit-connections`).
    pub rate_limit: Option<Arc<RateLimit>>,
    /// Ask an auth service before forwarding (`auth-url`).
    pub external_auth: Option<Arc<ExternalAuth>>,
    /// Answer with a redirect instead of forwarding.
    pub redirect: Option<Redirect>,
    /// Requests for `/` are redirected (302) to this path (`app-root`).
    pub app_root: Option<HeaderValue>,
    /// Rewrite the path sent upstream (`rewrite-target`).
    pub rewrite: Option<Rewrite>,
    /// Sent upstream as `X-Forwarded-Prefix`.
    pub x_forwarded_prefix: Option<HeaderValue>,
    /// Sent upstream as `Host` instead of the client's (`upstream-vhost`).
    pub upstream_vhost: Option<HeaderValue>,
    /// Largest request body accepted; larger ones get 413 (`proxy-body-size`; 1 MiB unless
    /// a source sets it, as ingress-nginx; `None` is unlimited).
    pub max_body_size: Option<u64>,
    pub timeouts: Timeouts,
    pub retry: Retry,
    /// Keep a trailing `/` in HTTPS redirects (ingress-nginx strips it by default).
    pub preserve_trailing_slash: bool,
    /// How the backend is spoken to (`backend-protocol`).
    pub protocol: Protocol,
    /// TLS settings towards the backend, for `HTTPS` and `GRPCS`.
    pub upstream_tls: Option<Arc<UpstreamTls>>,
    /// How an endpoint is chosen (`load-balance`, `upstream-hash-by`, `affinity`).
    pub balance: Balance,
    /// Backend answers to replace with the error backend's (`custom-http-errors` with
    /// `default-backend`); the error backend also takes requests when the route's own
    /// backend has no endpoint.
    pub error_pages: Option<ErrorPages>,
    /// Changes to the request before it goes upstream.
    pub request_headers: HeaderOps,
    /// Changes to the backend's response before it goes to the client.
    pub response_headers: HeaderOps,
    /// `Strict-Transport-Security` for answers over TLS (the class's parameters).
    pub hsts: Option<HeaderValue>,
    /// Compress answers (`use-gzip`, `enable-brotli`).
    pub compression: Option<Compression>,
    /// The upstream client when this policy needs one of its own (attached at publish).
    pub client: OnceLock<UpstreamClient>,
}

/// ingress-nginx's default `proxy-body-size`.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 20;

static NONE: LazyLock<Arc<Policy>> = LazyLock::new(|| {
    Arc::new(Policy {
        max_body_size: Some(DEFAULT_MAX_BODY_SIZE),
        ..Policy::default()
    })
});

impl Policy {
    /// The shared empty policy of every route that sets nothing.
    pub fn none() -> Arc<Policy> {
        NONE.clone()
    }
}

/// A redirect answered by Portico itself.
#[derive(Debug)]
pub enum Redirect {
    /// To a fixed URL (`permanent-redirect`, `temporal-redirect`).
    To {
        location: HeaderValue,
        code: StatusCode,
    },
    /// To the same path and query on another host, same scheme (`from-to-www-redirect`).
    Host { host: String, code: StatusCode },
}

/// The path sent upstream, built from the request path's regex captures.
#[derive(Debug)]
pub struct Rewrite {
    /// The route's path as a regex, anchored at the start and case-insensitive.
    regex: Regex,
    template: Vec<Piece>,
}

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

impl Rewrite {
    /// `regex` must already be anchored; `target` is the rewrite target with `$1`…`$9`.
    pub fn new(regex: Regex, target: &str) -> Self {
        let mut template = Vec::new();
        let mut text = String::new();
        let mut chars = target.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek().and_then(|d| d.to_digit(10))) {
                ('$', Some(d)) => {
                    chars.next();
                    if !text.is_empty() {
                        template.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    template.push(Piece::Group(d as usize));
                }
                _ => text.push(c),
            }
        }
        if !text.is_empty() {
            template.push(Piece::Text(text));
        }
        Rewrite { regex, template }
    }

    /// The new path and query for a request, or `None` when the path does not match (then
    /// the request goes upstream unchanged). The query is kept, as nginx does.
    pub fn apply(&self, path: &str, query: Option<&str>) -> Option<String> {
        let caps = self.regex.captures(path)?;
        let mut out = String::with_capacity(path.len() + 16);
        for piece in &self.template {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(i) => out.push_str(caps.get(*i).map_or("", |m| m.as_str())),
            }
        }
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(q) = query {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(q);
        }
        Some(out)
    }
}

/// `custom-http-errors` and `default-backend`.
#[derive(Debug)]
pub struct ErrorPages {
    /// Statuses (300-599) whose answers the error backend replaces.
    pub codes: Vec<u16>,
    pub backend: Arc<Backend>,
    /// The error backend's Service as `name:port`, for logs.
    pub service: String,
}

impl ErrorPages {
    #[inline]
    pub fn replaces(&self, status: StatusCode) -> bool {
        self.codes.contains(&status.as_u16())
    }
}

/// Upstream timeouts; `None` uses the controller-wide setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Per endpoint tried.
    pub connect: Option<Duration>,
    /// Until the response head, and then between two reads of the response body.
    pub read: Option<Duration>,
    /// Between two reads of the request body while it is sent upstream.
    pub send: Option<Duration>,
}

/// When a failed attempt is tried again on another endpoint (`proxy-next-upstream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub on: RetryOn,
    /// Attempts in all, the first included; 0 means one per endpoint.
    pub tries: u32,
}

impl Default for Retry {
    /// ingress-nginx's defaults: `error timeout`, three tries.
    fn default() -> Self {
        Retry {
            on: RetryOn::ERROR | RetryOn::TIMEOUT,
            tries: 3,
        }
    }
}

/// A set of retry conditions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RetryOn(u16);

impl RetryOn {
    pub const ERROR: RetryOn = RetryOn(1);
    pub const TIMEOUT: RetryOn = RetryOn(1 << 1);
    pub const INVALID_HEADER: RetryOn = RetryOn(1 << 2);
    pub const HTTP_500: RetryOn = RetryOn(1 << 3);
    pub const HTTP_502: RetryOn = RetryOn(1 << 4);
    pub const HTTP_503: RetryOn = RetryOn(1 << 5);
    pub const HTTP_504: RetryOn = RetryOn(1 << 6);
    pub const HTTP_403: RetryOn = RetryOn(1 << 7);
    pub const HTTP_404: RetryOn = RetryOn(1 << 8);
    pub const HTTP_429: RetryOn = RetryOn(1 << 9);
    /// Also retry methods that are not idempotent (POST, PATCH, LOCK).
    pub const NON_IDEMPOTENT: RetryOn = RetryOn(1 << 10);
    pub const OFF: RetryOn = RetryOn(0);

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Is a response with this status retried?
    pub fn status(self, status: StatusCode) -> bool {
        let flag = match status.as_u16() {
            500 => RetryOn::HTTP_500,
            502 => RetryOn::HTTP_502,
            503 => RetryOn::HTTP_503,
            504 => RetryOn::HTTP_504,
            403 => RetryOn::HTTP_403,
            404 => RetryOn::HTTP_404,
            429 => RetryOn::HTTP_429,
            _ => return false,
        };
        self.contains(flag)
    }

    /// May a request with this method be sent again after it reached a backend?
    pub fn method(self, method: &Method) -> bool {
        self.contains(RetryOn::NON_IDEMPOTENT) || method.is_idempotent()
    }
}

impl std::ops::BitOr for RetryOn {
    type Output = RetryOn;
    fn bitor(self, rhs: RetryOn) -> RetryOn {
        RetryOn(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for RetryOn {
    fn bitor_assign(&mut self, rhs: RetryOn) {
        self.0 |= rhs.0;
    }
}

/// Header changes: remove, then set (replacing), then add (appending).
#[derive(Debug, Default)]
pub struct HeaderOps {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    #[inline]
    pub fn apply(&self, headers: &mut HeaderMap) {
        if self.is_empty() {
            return;
        }
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(path_regex: &str, target: &str) -> Rewrite {
        let re = regex::RegexBuilder::new(&format!("^(?:{path_regex})"))
            .case_insensitive(true)
            .build()
            .unwrap();
        Rewrite::new(re, target)
    }

    #[test]
    fn rewrite_with_captures() {
        let r = rewrite("/something(/|$)(.*)", "/$2");
        assert_eq!(r.apply("/something", None).as_deref(), Some("/"));
        assert_eq!(r.apply("/something/", None).as_deref(), Some("/"));
        assert_eq!(
            r.apply("/something/new", Some("a=b")).as_deref(),
            Some("/new?a=b")
        );
        assert_eq!(r.apply("/SomeThing/x", None).as_deref(), Some("/x"));
        assert_eq!(r.apply("/other", None), None);
    }

    #[test]
    fn rewrite_without_captures_replaces_the_path() {
        let r = rewrite("/app", "/");
        assert_eq!(r.apply("/app/deep/path", None).as_deref(), Some("/"));
        let r = rewrite("/api(/|$)(.*)", "/v2/$2$9");
        assert_eq!(r.apply("/api/users", None).as_deref(), Some("/v2/users"));
        let r = rewrite("/x", "to-$1");
        assert_eq!(r.apply("/x", None).as_deref(), Some("/to-"));
    }

    #[test]
    fn retry_conditions() {
        let on = RetryOn::ERROR | RetryOn::HTTP_502;
        assert!(on.contains(RetryOn::ERROR));
        assert!(!on.contains(RetryOn::TIMEOUT));
        assert!(on.status(StatusCode::BAD_GATEWAY));
        assert!(!on.status(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(on.method(&Method::GET));
        assert!(!on.method(&Method::POST));
        assert!((on | RetryOn::NON_IDEMPOTENT).method(&Method::POST));
        assert!(!RetryOn::OFF.contains(RetryOn::OFF));
    }

    #[test]
    fn header_ops_order() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-gone", HeaderValue::from_static("1"));
        let ops = HeaderOps {
            remove: vec![HeaderName::from_static("x-gone")],
            set: vec![(
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("2"),
            )],
            add: vec![(
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("3"),
            )],
        };
        ops.apply(&mut h);
        assert!(h.get("x-gone").is_none());
        let all: Vec<_> = h.get_all("x-a").iter().collect();
        assert_eq!(all, ["2", "3"]);
    }
}
