//! The annotation front-end of the policy model: `portico.dev/<key>` first, then
//! `nginx.ingress.kubernetes.io/<key>`, each value through its strict grammar.

use std::collections::BTreeMap;

use http::header::{HeaderName, HeaderValue};
use portico_proxy::policy::RetryOn;
use portico_proxy::upstream::Protocol;
use regex::Regex;

use portico_proxy::access::{cors, external};

use super::grammar::{self, Parsed};
use super::PolicyInput;
use crate::problem::{ObjectRef, Problem, Reason};

pub const PORTICO_PREFIX: &str = "portico.dev/";
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Keys read under both prefixes, with ingress-nginx's meaning.
const SHARED_KEYS: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "preserve-trailing-slash",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "app-root",
    "from-to-www-redirect",
    "use-regex",
    "rewrite-target",
    "x-forwarded-prefix",
    "upstream-vhost",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "backend-protocol",
    "proxy-ssl-verify",
    "proxy-ssl-secret",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "load-balance",
    "upstream-hash-by",
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-samesite",
    "session-cookie-secure",
    "custom-http-errors",
    "default-backend",
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
    // Host-level TLS settings, read by `client_tls`.
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-error-page",
    "ssl-passthrough",
    "server-alias",
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "limit-rps",
    "limit-rpm",
    "limit-connections",
    "limit-burst-multiplier",
    "limit-whitelist",
    "auth-url",
    "auth-method",
    "auth-signin",
    "auth-response-headers",
    "auth-request-redirect",
];

/// Keys only Portico has.
const PORTICO_KEYS: &[&str] = &[
    "set-request-headers",
    "add-request-headers",
    "remove-request-headers",
    "set-response-headers",
    "add-response-headers",
    "remove-response-headers",
    "limit-status-code",
];

/// Access-control keys Portico does not read. A route carrying one is refused (503), not
/// served with less protection than its owner asked for (without CN matching, any
/// certificate from the CA would pass).
const SECURITY_KEYS: &[&str] = &["auth-tls-match-cn"];

/// Does the Ingress ask for access control Portico cannot apply yet?
fn unsupported_security(annotations: &BTreeMap<String, String>) -> bool {
    annotations.keys().any(|k| {
        [NGINX_PREFIX, PORTICO_PREFIX]
            .iter()
            .filter_map(|p| k.strip_prefix(p))
            .any(|name| SECURITY_KEYS.contains(&name))
    })
}

/// ingress-nginx keys whose setting has no effect in Portico, with why. Anything else under
/// `nginx.ingress.kubernetes.io/` that Portico does not read is reported as unsupported.
const NGINX_NO_EFFECT: &[(&str, &str)] = &[
    (
        "proxy-buffering",
        "Portico streams requests and responses without buffering",
    ),
    (
        "proxy-request-buffering",
        "Portico streams requests and responses without buffering",
    ),
    (
        "proxy-buffer-size",
        "Portico streams requests and responses without buffering",
    ),
    (
        "proxy-buffers-number",
        "Portico streams requests and responses without buffering",
    ),
    (
        "client-body-buffer-size",
        "Portico streams request bodies without buffering",
    ),
    (
        "proxy-http-version",
        "Portico speaks HTTP/1.1 to HTTP backends",
    ),
];

/// What a canary Ingress asks for.
#[derive(Debug, Default)]
pub struct CanaryInput {
    pub header: Option<HeaderName>,
    pub header_value: Option<HeaderValue>,
    pub header_pattern: Option<Regex>,
    pub cookie: Option<String>,
    pub weight: u32,
    pub total: u32,
}

struct Reader<'a> {
    annotations: &'a BTreeMap<String, String>,
    object: &'a ObjectRef,
    problems: &'a mut Vec<Problem>,
}

impl<'a> Reader<'a> {
    /// The value of `key`: Portico's annotation when set, else ingress-nginx's.
    fn get(&self, key: &str) -> Option<(String, &'a str)> {
        for prefix in [PORTICO_PREFIX, NGINX_PREFIX] {
            let full = format!("{prefix}{key}");
            if let Some(v) = self.annotations.get(&full) {
                return Some((full, v.as_str()));
            }
        }
        None
    }

    fn only_portico(&self, key: &str) -> Option<(String, &'a str)> {
        let full = format!("{PORTICO_PREFIX}{key}");
        self.annotations.get(&full).map(|v| (full, v.as_str()))
    }

    fn parse<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Parsed<T>) -> Option<T> {
        let (full, value) = self.get(key)?;
        self.report(full, value, parse)
    }

    fn parse_portico<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Parsed<T>) -> Option<T> {
        let (full, value) = self.only_portico(key)?;
        self.report(full, value, parse)
    }

    fn report<T>(
        &mut self,
        key: String,
        value: &str,
        parse: impl FnOnce(&str) -> Parsed<T>,
    ) -> Option<T> {
        match parse(value) {
            Ok(v) => Some(v),
            Err(why) => {
                self.problems.push(Problem::new(
                    self.object.clone(),
                    Reason::InvalidAnnotation { key, why },
                ));
                None
            }
        }
    }
}

pub fn retry_conditions(v: &str) -> Parsed<RetryOn> {
    let mut on = RetryOn::OFF;
    let mut any = false;
    for word in v.split(' ').filter(|w| !w.is_empty()) {
        any = true;
        on |= match word {
            "error" => RetryOn::ERROR,
            "timeout" => RetryOn::TIMEOUT,
            "invalid_header" => RetryOn::INVALID_HEADER,
            "http_500" => RetryOn::HTTP_500,
            "http_502" => RetryOn::HTTP_502,
            "http_503" => RetryOn::HTTP_503,
            "http_504" => RetryOn::HTTP_504,
            "http_403" => RetryOn::HTTP_403,
            "http_404" => RetryOn::HTTP_404,
            "http_429" => RetryOn::HTTP_429,
            "non_idempotent" => RetryOn::NON_IDEMPOTENT,
            "off" => RetryOn::OFF,
            other => {
                return Err(format!(
                    "unknown condition {:?} (expected error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent or off)",
                    other.chars().take(32).collect::<String>()
                ))
            }
        };
    }
    if !any {
        return Err("no condition given".into());
    }
    if v.split(' ').any(|w| w == "off") {
        return Ok(RetryOn::OFF);
    }
    Ok(on)
}

fn backend_protocol(v: &str) -> Parsed<Protocol> {
    match v.to_ascii_uppercase().as_str() {
        "HTTP" => Ok(Protocol::Http),
        "HTTPS" => Ok(Protocol::Https),
        "GRPC" | "H2C" => Ok(Protocol::H2c),
        "GRPCS" => Ok(Protocol::H2),
        "AUTO_HTTP" | "FCGI" => Err(format!("{v} backends are not supported by Portico")),
        _ => Err("expected HTTP, HTTPS, GRPC, GRPCS or H2C".into()),
    }
}

/// Codes `permanent-redirect-code` takes. ingress-nginx takes 300 to 308; 300, 304, 305 and
/// 306 are no redirects a browser follows, so Portico reports them and uses the default.
const PERMANENT_CODES: [u16; 5] = [301, 302, 303, 307, 308];
/// Codes `temporal-redirect-code` takes (ingress-nginx: 300 to 307, with the same exceptions).
const TEMPORAL_CODES: [u16; 4] = [301, 302, 303, 307];

/// The policy an Ingress's annotations ask for. Invalid values become problems on `object`;
/// snippets and annotations Portico does not read are reported too.
pub fn from_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) -> PolicyInput {
    let Some(annotations) = annotations else {
        return PolicyInput::default();
    };
    report_unread(annotations, object, problems);
    let mut r = Reader {
        annotations,
        object,
        problems,
    };
    let mut p = PolicyInput {
        ssl_redirect: r.parse("ssl-redirect", grammar::boolean),
        force_ssl_redirect: r.parse("force-ssl-redirect", grammar::boolean),
        preserve_trailing_slash: r.parse("preserve-trailing-slash", grammar::boolean),
        app_root: r.parse("app-root", grammar::path),
        from_to_www_redirect: r.parse("from-to-www-redirect", grammar::boolean),
        use_regex: r.parse("use-regex", grammar::boolean),
        rewrite_target: r.parse("rewrite-target", grammar::rewrite_target),
        x_forwarded_prefix: r.parse("x-forwarded-prefix", grammar::path),
        upstream_vhost: r.parse("upstream-vhost", grammar::host_and_port),
        max_body_size: r.parse("proxy-body-size", grammar::size),
        connect_timeout: r.parse("proxy-connect-timeout", grammar::duration),
        read_timeout: r.parse("proxy-read-timeout", grammar::duration),
        send_timeout: r.parse("proxy-send-timeout", grammar::duration),
        retry_on: r.parse("proxy-next-upstream", retry_conditions),
        retry_tries: r
            .parse("proxy-next-upstream-tries", |v| grammar::number(v, 0, 100))
            .map(|n| n as u32),
        request_set: r.parse_portico("set-request-headers", grammar::header_lines),
        request_add: r.parse_portico("add-request-headers", grammar::header_lines),
        request_remove: r.parse_portico("remove-request-headers", grammar::header_names),
        response_set: r.parse_portico("set-response-headers", grammar::header_lines),
        response_add: r.parse_portico("add-response-headers", grammar::header_lines),
        response_remove: r.parse_portico("remove-response-headers", grammar::header_names),
        protocol: r.parse("backend-protocol", backend_protocol),
        ssl_verify: r.parse("proxy-ssl-verify", grammar::on_off),
        ssl_secret: r.parse("proxy-ssl-secret", grammar::object_name),
        ssl_name: r.parse("proxy-ssl-name", grammar::tls_name),
        ssl_server_name: r.parse("proxy-ssl-server-name", grammar::on_off),
        ewma: r.parse("load-balance", |v| match v {
            "ewma" => Ok(true),
            "round_robin" => Ok(false),
            _ => Err("expected round_robin or ewma".to_string()),
        }),
        hash_by: r.parse("upstream-hash-by", grammar::hash_key),
        affinity_cookie: r.parse("affinity", |v| match v {
            "cookie" => Ok(true),
            _ => Err("expected cookie (the only affinity ingress-nginx has)".to_string()),
        }),
        affinity_persistent: r.parse("affinity-mode", |v| match v {
            "persistent" => Ok(true),
            "balanced" => Ok(false),
            _ => Err("expected balanced or persistent".to_string()),
        }),
        cookie_name: r.parse("session-cookie-name", grammar::cookie_name),
        cookie_path: r.parse("session-cookie-path", grammar::cookie_path),
        cookie_max_age: r.parse("session-cookie-max-age", |v| {
            grammar::number(v, 0, 10 * 365 * 86_400)
        }),
        cookie_expires: r.parse("session-cookie-expires", |v| {
            grammar::number(v, 0, 10 * 365 * 86_400)
        }),
        cookie_same_site: r.parse("session-cookie-samesite", |v| match v {
            "Strict" | "strict" => Ok("Strict"),
            "Lax" | "lax" => Ok("Lax"),
            "None" | "none" => Ok("None"),
            _ => Err("expected Strict, Lax or None".to_string()),
        }),
        cookie_secure: r.parse("session-cookie-secure", grammar::boolean),
        custom_errors: r.parse("custom-http-errors", grammar::status_list),
        error_backend: r.parse("default-backend", |v| {
            super::super::validate::dns_name(v)
                .map(|_| v.to_string())
                .map_err(|why| format!("expected a Service name: {why}"))
        }),
        deny: unsupported_security(annotations).then_some(true),
        deny_sources: r.parse("denylist-source-range", grammar::cidr_list),
        ..PolicyInput::default()
    };
    // `allowlist-source-range` (or its old name); a source list that cannot be applied
    // refuses everyone (fail closed).
    let allow_key = ["allowlist-source-range", "whitelist-source-range"]
        .into_iter()
        .find(|k| r.get(k).is_some());
    p.allow_sources = allow_key.and_then(|k| r.parse(k, grammar::cidr_list));
    let deny_written = r.get("denylist-source-range").is_some();
    if (allow_key.is_some() && p.allow_sources.is_none())
        || (deny_written && p.deny_sources.is_none())
    {
        p.deny = Some(true);
    }
    read_access(&mut r, &mut p);
    // A temporal redirect wins over a permanent one: ingress-nginx reads `temporal-redirect`
    // first ("the execution order is temporal and then permanent").
    for (url_key, code_key, codes, default) in [
        (
            "temporal-redirect",
            "temporal-redirect-code",
            &TEMPORAL_CODES[..],
            302,
        ),
        (
            "permanent-redirect",
            "permanent-redirect-code",
            &PERMANENT_CODES[..],
            301,
        ),
    ] {
        if p.redirect.is_some() {
            break;
        }
        if let Some(location) = r.parse(url_key, grammar::url) {
            let code = r
                .parse(code_key, |v| grammar::status_code(v, codes))
                .or_else(|| http::StatusCode::from_u16(default).ok());
            p.redirect = code.map(|c| (location, c));
        }
    }
    p
}

/// Basic auth, CORS and rate limits. Basic-auth settings that cannot be applied deny (503);
/// a CORS origin list that cannot be read turns CORS off (no origin is allowed more than
/// written); bad limits are ignored, as ingress-nginx does.
fn read_access(r: &mut Reader<'_>, p: &mut PolicyInput) {
    // `auth-type` or `auth-secret` asks for authentication; a realm or secret type alone
    // asks for nothing.
    let auth_written = r.get("auth-type").is_some() || r.get("auth-secret").is_some();
    p.auth_basic = r.parse("auth-type", |v| match v {
        "basic" => Ok(true),
        "digest" => Err("digest authentication is not supported; use basic".to_string()),
        _ => Err("expected basic".to_string()),
    });
    p.auth_secret = r.parse("auth-secret", grammar::object_name);
    p.auth_secret_map = r.parse("auth-secret-type", |v| match v {
        "auth-file" => Ok(false),
        "auth-map" => Ok(true),
        _ => Err("expected auth-file or auth-map".to_string()),
    });
    p.auth_realm = r.parse("auth-realm", |v| {
        if v.len() > 128 || v.chars().any(char::is_control) {
            Err("at most 128 characters, no control characters".to_string())
        } else {
            Ok(v.to_string())
        }
    });
    if auth_written
        && (p.auth_basic != Some(true)
            || p.auth_secret.is_none()
            || (r.get("auth-secret-type").is_some() && p.auth_secret_map.is_none()))
    {
        // Asked for, but not something Portico can apply: refuse rather than serve open.
        p.auth_basic = Some(false);
        let missing = ["auth-type", "auth-secret"]
            .into_iter()
            .find(|k| r.get(k).is_none());
        if let Some(key) = missing {
            r.problems.push(Problem::new(
                r.object.clone(),
                Reason::InvalidAnnotation {
                    key: format!("{NGINX_PREFIX}{key}"),
                    why: "basic authentication needs auth-type: basic and auth-secret; the routes answer 503".to_string(),
                },
            ));
        }
    }

    if r.get("auth-url").is_some() {
        // Written: used when valid, else the routes refuse (fail closed).
        p.auth_url = Some(r.parse("auth-url", external::parse_auth_url));
        p.auth_method = r.parse("auth-method", |v| match v {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
                http::Method::from_bytes(v.as_bytes()).map_err(|e| e.to_string())
            }
            _ => Err("expected GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS".to_string()),
        });
        p.auth_signin = r.parse("auth-signin", |v| {
            external::parse_signin(v).map(|_| v.to_string())
        });
        p.auth_response_headers = r.parse("auth-response-headers", external::parse_header_names);
        p.auth_request_redirect = r.parse("auth-request-redirect", grammar::header_value);
        let invalid_companion = (r.get("auth-method").is_some() && p.auth_method.is_none())
            || (r.get("auth-signin").is_some() && p.auth_signin.is_none())
            || (r.get("auth-response-headers").is_some() && p.auth_response_headers.is_none());
        if invalid_companion {
            p.auth_url = Some(None);
        }
    }

    p.cors_enabled = r.parse("enable-cors", grammar::boolean);
    if r.get("cors-allow-origin").is_some() {
        p.cors_origins = r.parse("cors-allow-origin", |v| {
            grammar::sane(v).and_then(cors::parse_origins)
        });
        if p.cors_origins.is_none() && p.cors_enabled == Some(true) {
            p.cors_enabled = Some(false);
        }
    }
    p.cors_methods = r.parse("cors-allow-methods", |v| cors::parse_token_list(v, false));
    p.cors_headers = r.parse("cors-allow-headers", |v| cors::parse_token_list(v, false));
    p.cors_expose = r.parse("cors-expose-headers", |v| cors::parse_token_list(v, true));
    p.cors_credentials = r.parse("cors-allow-credentials", grammar::boolean);
    p.cors_max_age = r.parse("cors-max-age", |v| grammar::number(v, 0, 31_536_000));

    let count = |v: &str| grammar::number(v, 1, 1_000_000).map(|n| n as u32);
    p.limit_rps = r.parse("limit-rps", count);
    p.limit_rpm = r.parse("limit-rpm", count);
    p.limit_connections = r.parse("limit-connections", count);
    p.limit_burst_multiplier = r.parse("limit-burst-multiplier", |v| {
        grammar::number(v, 1, 1000).map(|n| n as u32)
    });
    p.limit_exempt = r.parse("limit-whitelist", grammar::cidr_list);
    p.limit_status = r.parse_portico("limit-status-code", |v| {
        grammar::status_code(v, &[429, 503])
    });
}

/// The canary settings of a canary Ingress.
pub fn canary_of(
    annotations: Option<&BTreeMap<String, String>>,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) -> CanaryInput {
    let Some(annotations) = annotations else {
        return CanaryInput::default();
    };
    let mut r = Reader {
        annotations,
        object,
        problems,
    };
    let total = r
        .parse("canary-weight-total", |v| grammar::number(v, 1, 1_000_000))
        .unwrap_or(100) as u32;
    let weight = r
        .parse("canary-weight", |v| grammar::number(v, 0, u64::from(total)))
        .unwrap_or(0) as u32;
    CanaryInput {
        header: r.parse("canary-by-header", grammar::header_name),
        header_value: r.parse("canary-by-header-value", grammar::header_value),
        header_pattern: r.parse("canary-by-header-pattern", |v| grammar::regex(v, false)),
        cookie: r.parse("canary-by-cookie", grammar::cookie_name),
        weight,
        total,
    }
}

/// Snippets, and annotations under Portico's or ingress-nginx's prefix that Portico does not
/// read: each is reported, so a migrating user sees exactly what to check.
fn report_unread(
    annotations: &BTreeMap<String, String>,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) {
    for key in annotations.keys() {
        let (prefix, name) = if let Some(n) = key.strip_prefix(NGINX_PREFIX) {
            (NGINX_PREFIX, n)
        } else if let Some(n) = key.strip_prefix(PORTICO_PREFIX) {
            (PORTICO_PREFIX, n)
        } else {
            continue;
        };
        let reason = if name.ends_with("-snippet") || name == "server-snippets" {
            Reason::SnippetIgnored { key: key.clone() }
        } else if SHARED_KEYS.contains(&name)
            || (prefix == PORTICO_PREFIX && PORTICO_KEYS.contains(&name))
        {
            continue;
        } else if SECURITY_KEYS.contains(&name) {
            Reason::UnsupportedAccessControl { key: key.clone() }
        } else if let Some((_, why)) = NGINX_NO_EFFECT
            .iter()
            .find(|(k, _)| prefix == NGINX_PREFIX && *k == name)
        {
            Reason::AnnotationNoEffect {
                key: key.clone(),
                why,
            }
        } else {
            Reason::UnsupportedAnnotation { key: key.clone() }
        };
        problems.push(Problem::new(object.clone(), reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> (PolicyInput, Vec<Problem>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut problems = Vec::new();
        let object = ObjectRef::new("Ingress", "ns", "ing");
        let p = from_annotations(Some(&map), &object, &mut problems);
        (p, problems)
    }

    #[test]
    fn portico_annotations_win_over_nginx_ones() {
        let (p, problems) = parse(&[
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "10"),
            ("portico.dev/proxy-read-timeout", "3s"),
        ]);
        assert_eq!(p.read_timeout, Some(std::time::Duration::from_secs(3)));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn invalid_values_are_problems_and_ignored() {
        let (p, problems) = parse(&[
            ("nginx.ingress.kubernetes.io/proxy-body-size", "8 megabytes"),
            ("nginx.ingress.kubernetes.io/ssl-redirect", "false"),
            (
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "https://a.example/\nX: y",
            ),
        ]);
        assert_eq!(p.max_body_size, None);
        assert_eq!(p.ssl_redirect, Some(false));
        assert!(p.redirect.is_none());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .all(|p| matches!(p.reason, Reason::InvalidAnnotation { .. })));
    }

    #[test]
    fn header_annotations_cannot_touch_framing_or_hop_by_hop_headers() {
        let (p, problems) = parse(&[
            (
                "portico.dev/set-request-headers",
                "X-Team: blue\nContent-Length: 0",
            ),
            (
                "portico.dev/add-request-headers",
                "Transfer-Encoding: chunked",
            ),
            ("portico.dev/remove-request-headers", "X-Debug, Host"),
            ("portico.dev/set-response-headers", "Connection: keep-alive"),
            ("portico.dev/add-response-headers", "Trailer: X-Checksum"),
            ("portico.dev/remove-response-headers", "Upgrade"),
        ]);
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert_eq!(p, PolicyInput::default(), "every header setting is ignored");
    }

    #[test]
    fn snippets_and_unknown_annotations_are_reported() {
        let (_, problems) = parse(&[
            (
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "more_set_headers x;",
            ),
            ("nginx.ingress.kubernetes.io/server-snippet", "return 200;"),
            ("nginx.ingress.kubernetes.io/some-future-thing", "1"),
            ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
            ("portico.dev/typo-annotation", "1"),
            ("example.com/other", "ignored silently"),
        ]);
        let codes: Vec<&str> = problems.iter().map(|p| p.reason.code()).collect();
        assert_eq!(
            codes,
            [
                "SnippetIgnored",
                "AnnotationNoEffect",
                "SnippetIgnored",
                "UnsupportedAnnotation",
                "UnsupportedAnnotation"
            ]
        );
    }

    #[test]
    fn access_control_that_cannot_be_applied_denies() {
        let (p, problems) = parse(&[(
            "nginx.ingress.kubernetes.io/auth-tls-match-cn",
            "CN=partner",
        )]);
        assert_eq!(p.deny, Some(true));
        assert_eq!(problems[0].reason.code(), "UnsupportedAccessControl");
        let (p, problems) = parse(&[("nginx.ingress.kubernetes.io/limit-rps", "5")]);
        assert_eq!(p.deny, None);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.limit_rps, Some(5));
    }

    #[test]
    fn basic_auth_settings_and_what_denies() {
        let (p, problems) = parse(&[
            ("nginx.ingress.kubernetes.io/auth-type", "basic"),
            ("nginx.ingress.kubernetes.io/auth-secret", "ns/users"),
            ("nginx.ingress.kubernetes.io/auth-secret-type", "auth-map"),
            ("nginx.ingress.kubernetes.io/auth-realm", "Staff \"only\""),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.auth_basic, Some(true));
        assert_eq!(p.auth_secret.as_deref(), Some("ns/users"));
        assert_eq!(p.auth_secret_map, Some(true));
        assert_eq!(p.auth_realm.as_deref(), Some("Staff \"only\""));
        let (p, problems) = parse(&[("nginx.ingress.kubernetes.io/auth-realm", "left over")]);
        assert!(problems.is_empty() && p.auth_basic.is_none());
        assert!(!p.build(super::super::RouteContext::default()).deny);
        // Each of these asks for authentication Portico cannot apply: the routes answer 503.
        for pairs in [
            &[("nginx.ingress.kubernetes.io/auth-type", "basic")][..],
            &[("nginx.ingress.kubernetes.io/auth-secret", "users")][..],
            &[
                ("nginx.ingress.kubernetes.io/auth-type", "digest"),
                ("nginx.ingress.kubernetes.io/auth-secret", "users"),
            ][..],
            &[
                ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                (
                    "nginx.ingress.kubernetes.io/auth-secret",
                    "../../etc/passwd",
                ),
            ][..],
            &[
                ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                ("nginx.ingress.kubernetes.io/auth-secret", "users"),
                ("nginx.ingress.kubernetes.io/auth-secret-type", "htdigest"),
            ][..],
        ] {
            let (p, problems) = parse(pairs);
            assert_eq!(p.auth_basic, Some(false), "{pairs:?}");
            assert!(!problems.is_empty(), "{pairs:?}");
            let built = p.build(super::super::RouteContext::default());
            assert!(built.deny, "{pairs:?}");
        }
    }

    #[test]
    fn external_auth_settings_and_what_denies() {
        let (p, problems) = parse(&[
            (
                "nginx.ingress.kubernetes.io/auth-url",
                "http://auth.test:9000/check?x=1",
            ),
            ("nginx.ingress.kubernetes.io/auth-method", "POST"),
            (
                "nginx.ingress.kubernetes.io/auth-signin",
                "https://login.test/start",
            ),
            (
                "nginx.ingress.kubernetes.io/auth-response-headers",
                "X-User, X-Email",
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let built = p.build(super::super::RouteContext::default());
        assert!(!built.deny);
        let ext = built.external_auth.as_ref().unwrap();
        assert_eq!(ext.method, Some(http::Method::POST));
        assert_eq!(ext.response_headers.len(), 2);
        for pairs in [
            &[("nginx.ingress.kubernetes.io/auth-url", "not a url")][..],
            &[(
                "nginx.ingress.kubernetes.io/auth-url",
                "http://$remote_addr/auth",
            )][..],
            &[(
                "nginx.ingress.kubernetes.io/auth-url",
                "http://u:p@auth.test/",
            )][..],
            &[
                ("nginx.ingress.kubernetes.io/auth-url", "http://auth.test/"),
                ("nginx.ingress.kubernetes.io/auth-method", "TRACE"),
            ][..],
            &[
                ("nginx.ingress.kubernetes.io/auth-url", "http://auth.test/"),
                (
                    "nginx.ingress.kubernetes.io/auth-response-headers",
                    "Connection",
                ),
            ][..],
        ] {
            let (p, problems) = parse(pairs);
            assert!(!problems.is_empty(), "{pairs:?}");
            let built = p.build(super::super::RouteContext::default());
            assert!(built.deny && built.external_auth.is_none(), "{pairs:?}");
        }
        // A destination the operator did not permit is a problem and denies.
        let (mut p, _) = parse(&[(
            "nginx.ingress.kubernetes.io/auth-url",
            "http://169.254.169.254/latest/meta-data",
        )]);
        let mut problems = Vec::new();
        let object = ObjectRef::new("Ingress", "ns", "ing");
        p.check_auth_url(&Default::default(), &object, &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(p.build(super::super::RouteContext::default()).deny);
        let (mut p, _) = parse(&[(
            "nginx.ingress.kubernetes.io/auth-url",
            "http://127.0.0.1:9/",
        )]);
        let allowed = portico_proxy::access::external::AuthUrlPolicy::parse("127.0.0.0/8").unwrap();
        let mut problems = Vec::new();
        p.check_auth_url(&allowed, &object, &mut problems);
        assert!(problems.is_empty());
        assert!(!p.build(super::super::RouteContext::default()).deny);
    }

    #[test]
    fn cors_settings() {
        let (p, problems) = parse(&[
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
            (
                "nginx.ingress.kubernetes.io/cors-allow-origin",
                "https://a.example.com, https://*.example.org",
            ),
            ("nginx.ingress.kubernetes.io/cors-allow-methods", "GET,POST"),
            ("nginx.ingress.kubernetes.io/cors-expose-headers", "*"),
            ("nginx.ingress.kubernetes.io/cors-max-age", "600"),
            (
                "nginx.ingress.kubernetes.io/cors-allow-credentials",
                "false",
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let built = p.build(super::super::RouteContext::default());
        let cors = built.cors.as_ref().unwrap();
        assert_eq!(cors.allow_methods, "GET, POST");
        assert_eq!(cors.max_age, "600");
        assert!(!cors.allow_credentials);
        assert_eq!(
            cors.allow_headers,
            portico_proxy::access::cors::DEFAULT_HEADERS
        );
        // An origin list that cannot be read turns CORS off instead of allowing `*`.
        let (p, problems) = parse(&[
            ("nginx.ingress.kubernetes.io/enable-cors", "true"),
            (
                "nginx.ingress.kubernetes.io/cors-allow-origin",
                "https://a.example.com\r\nSet-Cookie: x",
            ),
        ]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(p
            .build(super::super::RouteContext::default())
            .cors
            .is_none());
    }

    #[test]
    fn rate_limit_settings() {
        let (p, problems) = parse(&[
            ("nginx.ingress.kubernetes.io/limit-rpm", "60"),
            ("nginx.ingress.kubernetes.io/limit-connections", "3"),
            ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "2"),
            ("nginx.ingress.kubernetes.io/limit-whitelist", "10.0.0.0/8"),
            ("portico.dev/limit-status-code", "429"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let built = p.build(super::super::RouteContext::default());
        let limit = built.rate_limit.as_ref().unwrap();
        assert_eq!(limit.status.as_u16(), 429);
        assert_eq!(limit.connections, Some(3));
        assert!(limit.per_minute.is_some() && limit.per_second.is_none());
        let (p, problems) = parse(&[
            ("nginx.ingress.kubernetes.io/limit-rps", "0"),
            ("nginx.ingress.kubernetes.io/limit-rpm", "-1"),
            ("nginx.ingress.kubernetes.io/limit-connections", "1e3"),
            ("nginx.ingress.kubernetes.io/limit-status-code", "429"),
            ("portico.dev/limit-status-code", "200"),
        ]);
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(p
            .build(super::super::RouteContext::default())
            .rate_limit
            .is_none());
    }

    #[test]
    fn source_ranges_parse_and_fail_closed() {
        let (p, problems) = parse(&[
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8, 192.0.2.7",
            ),
            (
                "nginx.ingress.kubernetes.io/denylist-source-range",
                "10.1.0.0/16",
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let allow = p.allow_sources.unwrap();
        assert!(allow.contains("10.2.3.4".parse().unwrap()));
        assert!(allow.contains("192.0.2.7".parse().unwrap()));
        assert!(!allow.contains("192.0.2.8".parse().unwrap()));
        assert!(p
            .deny_sources
            .unwrap()
            .contains("10.1.2.3".parse().unwrap()));
        assert_eq!(p.deny, None);
        let (p, problems) = parse(&[(
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "10.0.0.0/8, office",
        )]);
        assert_eq!(problems.len(), 1);
        assert_eq!(
            p.deny,
            Some(true),
            "an allow list that cannot be applied refuses all"
        );
    }

    #[test]
    fn redirects_and_retries() {
        let (p, problems) = parse(&[
            (
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "https://new.example/",
            ),
            ("nginx.ingress.kubernetes.io/permanent-redirect-code", "308"),
            (
                "nginx.ingress.kubernetes.io/temporal-redirect",
                "https://other.example/",
            ),
            (
                "nginx.ingress.kubernetes.io/proxy-next-upstream",
                "error http_502",
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let (loc, code) = p.redirect.unwrap();
        assert_eq!(
            (loc.to_str().unwrap(), code.as_u16()),
            ("https://other.example/", 302),
            "temporal before permanent, as ingress-nginx"
        );
        let on = p.retry_on.unwrap();
        assert!(on.contains(RetryOn::HTTP_502) && !on.contains(RetryOn::TIMEOUT));
        let (p, problems) = parse(&[
            (
                "nginx.ingress.kubernetes.io/temporal-redirect",
                "https://other.example/",
            ),
            ("nginx.ingress.kubernetes.io/temporal-redirect-code", "200"),
            (
                "nginx.ingress.kubernetes.io/proxy-next-upstream",
                "error sometimes",
            ),
        ]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(p.redirect.unwrap().1.as_u16(), 302);
        assert!(p.retry_on.is_none());
        assert_eq!(retry_conditions("error off"), Ok(RetryOn::OFF));
        // Each kind keeps its own codes: 308 is permanent only; 300 and 304-306 redirect
        // nowhere a browser follows, so they are reported and the default is used.
        let code = |pairs: &[(&str, &str)]| {
            let (p, problems) = parse(pairs);
            (p.redirect.unwrap().1.as_u16(), problems.len())
        };
        let perm = (
            "nginx.ingress.kubernetes.io/permanent-redirect",
            "https://a.example/",
        );
        let temp = (
            "nginx.ingress.kubernetes.io/temporal-redirect",
            "https://b.example/",
        );
        assert_eq!(code(&[perm]), (301, 0));
        assert_eq!(code(&[temp]), (302, 0));
        for (pairs, want) in [
            (
                [
                    perm,
                    ("nginx.ingress.kubernetes.io/permanent-redirect-code", "308"),
                ],
                (308, 0),
            ),
            (
                [
                    perm,
                    ("nginx.ingress.kubernetes.io/permanent-redirect-code", "304"),
                ],
                (301, 1),
            ),
            (
                [
                    temp,
                    ("nginx.ingress.kubernetes.io/temporal-redirect-code", "307"),
                ],
                (307, 0),
            ),
            (
                [
                    temp,
                    ("nginx.ingress.kubernetes.io/temporal-redirect-code", "308"),
                ],
                (302, 1),
            ),
        ] {
            assert_eq!(code(&pairs), want, "{pairs:?}");
        }
        // The permanent redirect is used alone when the temporal one is invalid.
        let (p, problems) = parse(&[
            perm,
            ("nginx.ingress.kubernetes.io/temporal-redirect", "/relative"),
        ]);
        assert_eq!(problems.len(), 1);
        assert_eq!(p.redirect.unwrap().0, "https://a.example/");
    }

    #[test]
    fn canary_settings() {
        let map: BTreeMap<String, String> = [
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary"),
            ("nginx.ingress.kubernetes.io/canary-weight", "30"),
            ("nginx.ingress.kubernetes.io/canary-weight-total", "1000"),
            (
                "nginx.ingress.kubernetes.io/canary-by-header-pattern",
                "(unclosed",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut problems = Vec::new();
        let c = canary_of(
            Some(&map),
            &ObjectRef::new("Ingress", "ns", "c"),
            &mut problems,
        );
        assert_eq!(c.header.unwrap(), "x-canary");
        assert_eq!((c.weight, c.total), (30, 1000));
        assert!(c.header_pattern.is_none());
        assert_eq!(problems.len(), 1);
    }
}
