//! External authentication (`auth-url`), as ingress-nginx's `auth_request`: before a request
//! is forwarded, Portico asks the auth service with the request's method, URI and headers
//! (never its body). 2xx lets it through (with `auth-response-headers` copied upstream),
//! 401 and 403 go back to the client (401 becomes a redirect to `auth-signin` when set),
//! anything else, a timeout or a connection error answers 500: it never lets a request
//! through that the auth service did not approve.
//!
//! Where the sub-request may go is restricted ([`AuthUrlPolicy`]): loopback, link-local
//! (cloud metadata) and unspecified addresses are refused unless the operator's
//! `--auth-url-allowed` list covers them, and when that list is set only its hosts and
//! CIDRs may be used. The check runs on the addresses the name resolves to, when the request
//! is made, so DNS cannot route around it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper_rustls::FixedServerNameResolver;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::ServerName;
use tracing::{debug, warn};

use crate::body::ProxyBody;
use crate::client_addr::TrustedProxies;
use crate::headers::{self, Forwarded};
use crate::respond;
use crate::upstream::{AnyCertificate, UpstreamClient};

/// Where auth sub-requests may go (`--auth-url-allowed`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthUrlPolicy {
    cidrs: Option<TrustedProxies>,
    /// Lower-case host names.
    hosts: Vec<String>,
}

impl AuthUrlPolicy {
    /// A comma-separated list of CIDRs, addresses and host names; empty: any address but
    /// loopback, link-local, unspecified and multicast ones.
    pub fn parse(v: &str) -> Result<AuthUrlPolicy, String> {
        let mut cidrs = Vec::new();
        let mut hosts = Vec::new();
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item.parse::<ipnet::IpNet>().is_ok() || item.parse::<IpAddr>().is_ok() {
                cidrs.push(item);
                continue;
            }
            let valid = item.len() <= 253
                && item.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(format!("{item:?} is neither a CIDR nor a host name"));
            }
            hosts.push(item.to_ascii_lowercase());
        }
        let cidrs = if cidrs.is_empty() {
            None
        } else {
            Some(TrustedProxies::parse(&cidrs.join(","))?)
        };
        Ok(AuthUrlPolicy { cidrs, hosts })
    }

    fn configured(&self) -> bool {
        self.cidrs.is_some() || !self.hosts.is_empty()
    }

    /// May a sub-request for `host` go to `ip`?
    pub fn permits(&self, host: &str, ip: IpAddr) -> bool {
        if self.cidrs.as_ref().is_some_and(|c| c.contains(ip)) {
            return true;
        }
        if crate::forward::forbidden_upstream(ip) {
            return false;
        }
        !self.configured() || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Can `host` be used at all? A literal address is checked now (translate reports it).
    pub fn permits_host(&self, host: &str) -> bool {
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => self.permits(host, ip),
            Err(_) => {
                !self.configured()
                    || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
                    || self.cidrs.is_some()
            }
        }
    }
}

/// `auth-url` and its companions, parsed.
#[derive(Debug)]
pub struct ExternalAuth {
    /// `http(s)://host[:port]/path?query`, perhaps with `$host`.
    pub url: AuthUrl,
    /// `auth-method`; the request's own method when unset.
    pub method: Option<Method>,
    /// `auth-signin`: where a 401 redirects to, `rd=` added as ingress-nginx does.
    pub signin: Option<Signin>,
    /// `auth-response-headers`: copied from the auth answer to the upstream request.
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: sent as `X-Auth-Request-Redirect` (default: the request URI).
    pub request_redirect: Option<HeaderValue>,
    /// The plain-HTTP client, or the HTTPS client of a fixed host.
    client: OnceLock<Option<UpstreamClient>>,
    /// HTTPS clients by host, for a URL with `$host` (each needs its own SNI).
    by_host: Mutex<HashMap<String, UpstreamClient>>,
}

/// HTTPS clients kept per `ExternalAuth` for `$host` URLs; past it, one-off clients.
const MAX_HOST_CLIENTS: usize = 64;

/// `auth-url`: a fixed URL, or one with `$host` (the request's host), as ingress-nginx
/// users write `https://$host/oauth2/auth`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthUrl {
    fixed: Option<Uri>,
    /// The text around each `$host`.
    parts: Vec<String>,
}

/// Parses `auth-url`; `$host` is the only variable.
pub fn parse_auth_url(v: &str) -> Result<AuthUrl, String> {
    let parts: Vec<String> = v.split("$host").map(str::to_string).collect();
    let longer_name = parts[1..].iter().any(|p| {
        p.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if longer_name || parts.iter().any(|p| p.contains('$')) {
        return Err("$host is the only nginx variable auth-url may use".into());
    }
    let sample = parts.join("host.invalid");
    let uri = parse_url(&sample)?;
    if parts.len() == 1 {
        return Ok(AuthUrl {
            fixed: Some(uri),
            parts,
        });
    }
    Ok(AuthUrl { fixed: None, parts })
}

impl AuthUrl {
    /// The host of a fixed URL (`None` with `$host`).
    pub fn fixed_host(&self) -> Option<&str> {
        self.fixed.as_ref().and_then(Uri::host)
    }

    fn render(&self, host: &str) -> Result<Uri, String> {
        if let Some(u) = &self.fixed {
            return Ok(u.clone());
        }
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(format!("the request host {host:?} cannot go into auth-url"));
        }
        parse_url(&self.parts.join(host))
    }
}

impl std::fmt::Display for AuthUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.parts.join("$host"))
    }
}

/// The URL checks shared by `auth-url` and `auth-signin`: absolute http(s), a host, no
/// user info, no fragment, usable as a header value.
pub fn parse_url(v: &str) -> Result<Uri, String> {
    if v.len() > 2048 || v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("not a URL (too long, or holds spaces or control characters)".into());
    }
    if v.contains('#') {
        return Err("a URL with a fragment".into());
    }
    let uri: Uri = v.parse().map_err(|_| "not a valid URL".to_string())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the URL must start with http:// or https://".into()),
    }
    let authority = uri.authority().ok_or("the URL has no host")?;
    if authority.as_str().contains('@') {
        return Err("user info in the URL is not allowed".into());
    }
    if authority.host().is_empty() {
        return Err("the URL has no host".into());
    }
    Ok(uri)
}

/// The first address of `url`'s host that `policy` permits.
async fn resolve(url: &Uri, policy: &AuthUrlPolicy) -> Result<SocketAddr, String> {
    let host = url.host().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(match url.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("resolving {bare}: {e}"))?
            .collect(),
    };
    addrs
        .into_iter()
        .find(|a| policy.permits(bare, a.ip()))
        .ok_or_else(|| format!("{bare} resolves to no address --auth-url-allowed permits"))
}

/// An nginx variable `auth-signin` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    /// `$host`: the request's host, without port.
    Host,
    /// `$http_host`, `$best_http_host`: the request's Host (or `:authority`) as sent.
    HttpHost,
    /// `$scheme`, `$pass_access_scheme`.
    Scheme,
    /// `$request_uri`: path and query as sent.
    RequestUri,
    /// `$escaped_request_uri`: the same, URI-component escaped.
    EscapedRequestUri,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// `auth-signin`, parsed: text and the nginx variables ingress-nginx users write
/// (`https://$host/oauth2/start?rd=$escaped_request_uri`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signin {
    pieces: Vec<Piece>,
    /// Already has an `rd=` parameter (then none is added).
    has_rd: bool,
}

/// Parses `auth-signin`; variables other than `$host`, `$http_host`, `$best_http_host`,
/// `$scheme`, `$pass_access_scheme`, `$request_uri` and `$escaped_request_uri` are refused.
pub fn parse_signin(v: &str) -> Result<Signin, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut sample = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        sample.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let name = &after[..len];
        let (var, example) = match name {
            "host" => (Var::Host, "host.invalid"),
            "http_host" | "best_http_host" => (Var::HttpHost, "host.invalid:8080"),
            "scheme" | "pass_access_scheme" => (Var::Scheme, "https"),
            "request_uri" => (Var::RequestUri, "/path?q=1"),
            "escaped_request_uri" => (Var::EscapedRequestUri, "%2Fpath%3Fq%3D1"),
            _ => {
                return Err(format!(
                    "${name} is not supported in auth-signin (only $host, $http_host, $best_http_host, $scheme, $pass_access_scheme, $request_uri, $escaped_request_uri)"
                ))
            }
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Var(var));
        sample.push_str(example);
        rest = &after[len..];
    }
    text.push_str(rest);
    sample.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    let uri = parse_url(&sample)?;
    let has_rd = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("rd=")));
    Ok(Signin { pieces, has_rd })
}

/// What a sign-in location is built from.
struct RequestFacts<'a> {
    scheme: &'a str,
    http_host: &'a str,
    request_uri: &'a str,
}

impl Signin {
    fn location(&self, facts: &RequestFacts<'_>) -> Option<HeaderValue> {
        let mut s = String::with_capacity(128);
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => s.push_str(t),
                Piece::Var(Var::Host) => {
                    s.push_str(&crate::routing::normalize_host(facts.http_host))
                }
                Piece::Var(Var::HttpHost) => s.push_str(facts.http_host),
                Piece::Var(Var::Scheme) => s.push_str(facts.scheme),
                Piece::Var(Var::RequestUri) => s.push_str(facts.request_uri),
                Piece::Var(Var::EscapedRequestUri) => escape_component(&mut s, facts.request_uri),
            }
        }
        if !self.has_rd {
            // As ingress-nginx: `rd=$pass_access_scheme://$http_host$escaped_request_uri`.
            s.push(if s.contains('?') { '&' } else { '?' });
            s.push_str("rd=");
            s.push_str(facts.scheme);
            s.push_str("://");
            s.push_str(facts.http_host);
            escape_component(&mut s, facts.request_uri);
        }
        HeaderValue::from_str(&s).ok()
    }
}

/// URI-component escaping (everything but unreserved characters), as nginx's
/// `set_escape_uri`.
fn escape_component(out: &mut String, v: &str) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `auth-response-headers`: a comma-separated list of header names.
pub fn parse_header_names(v: &str) -> Result<Vec<HeaderName>, String> {
    let mut out = Vec::new();
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = HeaderName::from_bytes(item.as_bytes())
            .map_err(|_| format!("{item:?} is not a header name"))?;
        let refused = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "host",
            "content-length",
        ];
        if refused.contains(&name.as_str()) {
            return Err(format!("{item} cannot be copied upstream"));
        }
        out.push(name);
    }
    if out.is_empty() {
        return Err("no header name given".into());
    }
    Ok(out)
}

/// What the request does after the auth service answered.
#[derive(Debug)]
pub enum Decision {
    /// Go on, with these headers set on the upstream request (the listed ones the auth
    /// service did not send are removed: a client cannot supply them itself).
    Allow(Vec<(HeaderName, Option<HeaderValue>)>),
    Answer(Response<ProxyBody>),
}

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_SENT_FROM: HeaderName = HeaderName::from_static("x-sent-from");
static X_AUTH_REQUEST_REDIRECT: HeaderName = HeaderName::from_static("x-auth-request-redirect");

/// Timeouts of the sub-request.
#[derive(Debug, Clone, Copy)]
pub struct AuthTimeouts {
    pub connect: Duration,
    pub total: Duration,
}

impl ExternalAuth {
    pub fn new(
        url: AuthUrl,
        method: Option<Method>,
        signin: Option<Signin>,
        response_headers: Vec<HeaderName>,
        request_redirect: Option<HeaderValue>,
    ) -> ExternalAuth {
        ExternalAuth {
            url,
            method,
            signin,
            response_headers,
            request_redirect,
            client: OnceLock::new(),
            by_host: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, url: &Uri, connect: Duration) -> Option<UpstreamClient> {
        if self.url.fixed.is_some() || url.scheme() != Some(&Scheme::HTTPS) {
            return self
                .client
                .get_or_init(|| build_client(url, connect))
                .clone();
        }
        let host = url.host()?.to_string();
        let Ok(mut clients) = self.by_host.lock() else {
            return build_client(url, connect);
        };
        if let Some(c) = clients.get(&host) {
            return Some(c.clone());
        }
        let c = build_client(url, connect)?;
        if clients.len() < MAX_HOST_CLIENTS {
            clients.insert(host, c.clone());
        }
        Some(c)
    }

    /// Asks the auth service about one request.
    pub async fn check(
        &self,
        policy: &AuthUrlPolicy,
        timeouts: AuthTimeouts,
        req: &Request<hyper::body::Incoming>,
        forwarded: &Forwarded<'_>,
        request_id: &HeaderValue,
    ) -> Decision {
        let refuse = || Decision::Answer(respond::status_page(StatusCode::INTERNAL_SERVER_ERROR));
        let work = async {
            let host = crate::routing::normalize_host(forwarded.host.to_str().unwrap_or_default());
            let url = self.url.render(&host)?;
            let addr = resolve(&url, policy).await?;
            let client = self
                .client(&url, timeouts.connect)
                .ok_or_else(|| "no client for the auth URL".to_string())?;
            let sub = self.sub_request(&url, addr, req, forwarded, request_id)?;
            client.request(sub).await.map_err(|e| e.to_string())
        };
        let resp = match tokio::time::timeout(timeouts.total, work).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!(url = %self.url, error = %e, "external authentication failed");
                return refuse();
            }
            Err(_) => {
                warn!(url = %self.url, timeout = ?timeouts.total, "external authentication timed out");
                return refuse();
            }
        };
        let status = resp.status();
        // The body is not read; dropping it ends the exchange.
        let auth_headers = resp.headers();
        if status.is_success() {
            let copied = self
                .response_headers
                .iter()
                .map(|name| (name.clone(), auth_headers.get(name).cloned()))
                .collect();
            return Decision::Allow(copied);
        }
        match status {
            StatusCode::UNAUTHORIZED => {
                if let Some(signin) = &self.signin {
                    let facts = RequestFacts {
                        scheme: forwarded.scheme,
                        http_host: forwarded.host.to_str().unwrap_or_default(),
                        request_uri: req.uri().path_and_query().map_or("/", |p| p.as_str()),
                    };
                    return Decision::Answer(match signin.location(&facts) {
                        Some(loc) => respond::redirect(StatusCode::FOUND, loc),
                        None => respond::status_page(StatusCode::UNAUTHORIZED),
                    });
                }
                let mut r = respond::status_page(StatusCode::UNAUTHORIZED);
                for v in auth_headers.get_all(header::WWW_AUTHENTICATE) {
                    r.headers_mut().append(header::WWW_AUTHENTICATE, v.clone());
                }
                Decision::Answer(r)
            }
            StatusCode::FORBIDDEN => Decision::Answer(respond::status_page(StatusCode::FORBIDDEN)),
            other => {
                debug!(url = %self.url, status = %other, "the auth service answered neither 2xx, 401 nor 403");
                refuse()
            }
        }
    }

    fn sub_request(
        &self,
        url: &Uri,
        addr: SocketAddr,
        req: &Request<hyper::body::Incoming>,
        forwarded: &Forwarded<'_>,
        request_id: &HeaderValue,
    ) -> Result<Request<ProxyBody>, String> {
        let pq = url
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let scheme = if url.scheme() == Some(&Scheme::HTTPS) {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let authority =
            Authority::try_from(addr.to_string().as_str()).map_err(|e| e.to_string())?;
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|e| e.to_string())?;
        let mut h: HeaderMap = req.headers().clone();
        headers::remove_hop_by_hop(&mut h, false);
        for name in [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::EXPECT,
        ] {
            h.remove(name);
        }
        headers::set_forwarded(&mut h, forwarded);
        h.remove(&headers::X_FORWARDED_PROTO);
        let auth_host = url.authority().map(|a| a.as_str()).unwrap_or_default();
        h.insert(
            header::HOST,
            HeaderValue::from_str(auth_host).map_err(|e| e.to_string())?,
        );
        let request_uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let request_uri_value = HeaderValue::from_str(request_uri).map_err(|e| e.to_string())?;
        let original_url = format!(
            "{}://{}{}",
            forwarded.scheme,
            forwarded.host.to_str().unwrap_or_default(),
            request_uri
        );
        h.insert(
            X_ORIGINAL_URL.clone(),
            HeaderValue::from_str(&original_url).map_err(|e| e.to_string())?,
        );
        h.insert(X_ORIGINAL_URI.clone(), request_uri_value.clone());
        h.insert(
            X_ORIGINAL_METHOD.clone(),
            HeaderValue::from_str(req.method().as_str()).map_err(|e| e.to_string())?,
        );
        h.insert(X_SCHEME.clone(), HeaderValue::from_static(forwarded.scheme));
        h.insert(
            X_SENT_FROM.clone(),
            HeaderValue::from_static("nginx-ingress-controller"),
        );
        h.insert(
            X_AUTH_REQUEST_REDIRECT.clone(),
            self.request_redirect.clone().unwrap_or(request_uri_value),
        );
        h.insert(headers::X_REQUEST_ID.clone(), request_id.clone());
        let mut sub = Request::new(ProxyBody::empty());
        *sub.method_mut() = self.method.clone().unwrap_or_else(|| req.method().clone());
        *sub.uri_mut() = uri;
        *sub.headers_mut() = h;
        Ok(sub)
    }
}

fn build_client(url: &Uri, connect: Duration) -> Option<UpstreamClient> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(32)
        .set_host(false);
    if url.scheme() != Some(&Scheme::HTTPS) {
        return Some(UpstreamClient::Plain(builder.build(connector)));
    }
    connector.enforce_http(false);
    let provider = crate::tls::provider();
    // As ingress-nginx (`proxy_ssl_verify off` in its auth location), the auth service's
    // certificate is not verified.
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)))
        .with_no_client_auth();
    let host = url
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = ServerName::try_from(host).ok()?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .with_server_name_resolver(FixedServerNameResolver::new(name))
        .enable_http1()
        .wrap_connector(connector);
    Some(UpstreamClient::Tls(builder.build(https)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_urls() {
        for bad in [
            "",
            "/relative",
            "ftp://auth.test/",
            "http://user:pw@auth.test/",
            "http:///nohost",
            "http://auth.test/a b",
            "http://auth.test/\r\nX: y",
            "http://auth.test/#frag",
            "javascript:alert(1)",
            "file:///etc/passwd",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?}");
        }
        let u = parse_url("https://auth.test:8443/check?x=1").unwrap();
        assert_eq!(u.host(), Some("auth.test"));
        assert!(parse_url("http://[::1]:9000/auth").is_ok());
    }

    #[test]
    fn the_default_policy_refuses_internal_addresses() {
        let p = AuthUrlPolicy::default();
        for bad in [
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!p.permits("x", bad.parse().unwrap()), "{bad}");
        }
        assert!(p.permits("x", "10.1.2.3".parse().unwrap()));
        assert!(!p.permits_host("169.254.169.254"));
        assert!(!p.permits_host("[::1]"));
        assert!(p.permits_host("auth.example.com"));
    }

    #[test]
    fn an_allow_list_is_strict_and_may_open_loopback() {
        let p = AuthUrlPolicy::parse("127.0.0.1/32, auth.internal").unwrap();
        assert!(p.permits("127.0.0.1", "127.0.0.1".parse().unwrap()));
        assert!(!p.permits("127.0.0.2", "127.0.0.2".parse().unwrap()));
        assert!(p.permits("auth.internal", "10.0.0.5".parse().unwrap()));
        assert!(!p.permits("other.test", "10.0.0.5".parse().unwrap()));
        assert!(
            !p.permits("auth.internal", "169.254.169.254".parse().unwrap()),
            "a listed name resolving to metadata is still refused"
        );
        for bad in ["http://x", "10.0.0.0/33", "a..b", "*.example.com"] {
            assert!(AuthUrlPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signin_templates() {
        let facts = RequestFacts {
            scheme: "https",
            http_host: "App.test:8443",
            request_uri: "/a b/c?x=1&y=2",
        };
        let loc = |t: &str| parse_signin(t).unwrap().location(&facts).unwrap();
        assert_eq!(
            loc("https://login.test/start"),
            "https://login.test/start?rd=https://App.test:8443%2Fa%20b%2Fc%3Fx%3D1%26y%3D2"
        );
        assert_eq!(
            loc("https://$host/oauth2/start?rd=$escaped_request_uri"),
            "https://app.test/oauth2/start?rd=%2Fa%20b%2Fc%3Fx%3D1%26y%3D2"
        );
        assert_eq!(
            loc("https://login.test/?next=1"),
            "https://login.test/?next=1&rd=https://App.test:8443%2Fa%20b%2Fc%3Fx%3D1%26y%3D2"
        );
        assert_eq!(
            loc("$scheme://$http_host/sign?rd=x"),
            "https://App.test:8443/sign?rd=x"
        );
        for bad in [
            "https://login.test/$remote_addr",
            "$host/start",
            "https://login.test/\r\n",
            "https://$cookie_session.test/",
            "javascript:$host",
        ] {
            assert!(parse_signin(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn auth_urls_with_host() {
        let u = parse_auth_url("https://$host/oauth2/auth?h=$host").unwrap();
        assert_eq!(u.fixed_host(), None);
        assert_eq!(
            u.render("app.test").unwrap(),
            "https://app.test/oauth2/auth?h=app.test"
        );
        for bad in ["", "evil.test/x?", "a@b", "a b", "[::1]"] {
            assert!(u.render(bad).is_err(), "{bad:?}");
        }
        let fixed = parse_auth_url("http://auth.test:9/check").unwrap();
        assert_eq!(fixed.fixed_host(), Some("auth.test"));
        for bad in [
            "http://$remote_addr/",
            "http://$hostname/",
            "ftp://$host/",
            "$host/auth",
        ] {
            assert!(parse_auth_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn response_header_lists() {
        let names = parse_header_names("X-User, X-Email").unwrap();
        assert_eq!(names, ["x-user", "x-email"]);
        for bad in [
            "",
            "X User",
            "Connection",
            "Host",
            "X-A\nX-B",
            " , ",
            "Transfer-Encoding",
        ] {
            assert!(parse_header_names(bad).is_err(), "{bad:?}");
        }
    }
}
