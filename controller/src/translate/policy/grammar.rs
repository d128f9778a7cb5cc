//! Strict grammars for policy values. Each takes the whole string and returns a typed value
//! or says why not; nothing is trimmed into meaning, nothing passes through as text.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use regex::{Regex, RegexBuilder};

/// The longest value any policy setting takes.
const MAX_VALUE: usize = 4096;
/// Compiled regexes stay below this many bytes of program (no pathological patterns).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub type Parsed<T> = Result<T, String>;

pub fn sane(v: &str) -> Parsed<&str> {
    if v.len() > MAX_VALUE {
        return Err(format!("longer than {MAX_VALUE} characters"));
    }
    if v.chars().any(char::is_control) {
        return Err("contains control characters (newlines, tabs, …)".into());
    }
    Ok(v)
}

/// `true` or `false`.
pub fn boolean(v: &str) -> Parsed<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected \"true\" or \"false\"".into()),
    }
}

/// `on` or `off`, as nginx writes switches.
pub fn on_off(v: &str) -> Parsed<bool> {
    match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err("expected \"on\" or \"off\"".into()),
    }
}

/// A Kubernetes object reference: `name` or `namespace/name` (DNS labels and subdomains).
pub fn object_name(v: &str) -> Parsed<String> {
    let check = |part: &str| super::super::validate::dns_name(part).is_ok() && !part.ends_with('.');
    let ok = match v.split_once('/') {
        Some((ns, name)) => check(ns) && check(name) && !name.contains('/'),
        None => check(v),
    };
    if ok {
        Ok(v.to_string())
    } else {
        Err("expected a Secret name or namespace/name".into())
    }
}

/// A name a backend's certificate must carry: a DNS name or an IP address.
pub fn tls_name(v: &str) -> Parsed<String> {
    if v.parse::<std::net::IpAddr>().is_ok() {
        return Ok(v.to_string());
    }
    let lower = v.to_ascii_lowercase();
    super::super::validate::dns_name(&lower).map_err(|why| format!("invalid name: {why}"))?;
    Ok(lower)
}

/// An nginx-style key made of text and variables (`upstream-hash-by`): `$request_uri`,
/// `$uri`, `$args`, `$host`, `$remote_addr`, `$http_<name>`, `$cookie_<name>`, `$arg_<name>`.
pub fn hash_key(v: &str) -> Parsed<portico_proxy::balance::HashKey> {
    use portico_proxy::balance::{HashKey, KeyPart};
    let v = sane(v)?;
    if v.len() > 256 {
        return Err("at most 256 characters".into());
    }
    let mut parts = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let Some(after) = rest.strip_prefix('$') else {
            let end = rest.find('$').unwrap_or(rest.len());
            parts.push(KeyPart::Text(rest[..end].to_string()));
            rest = &rest[end..];
            continue;
        };
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let var = &after[..end];
        rest = &after[end..];
        let part = match var {
            "request_uri" => KeyPart::RequestUri,
            "uri" | "document_uri" => KeyPart::Path,
            "args" | "query_string" => KeyPart::Query,
            "host" => KeyPart::Host,
            "remote_addr" | "binary_remote_addr" => KeyPart::ClientIp,
            v if v.starts_with("http_") && v.len() > 5 => {
                KeyPart::Header(header_name(&v[5..].replace('_', "-"))?)
            }
            v if v.starts_with("cookie_") && v.len() > 7 => {
                KeyPart::Cookie(cookie_name(&v[7..])?)
            }
            v if v.starts_with("arg_") && v.len() > 4 => KeyPart::Arg(v[4..].to_string()),
            "" => return Err("'$' must be followed by a variable name".into()),
            other => {
                return Err(format!(
                    "unknown variable ${other} (Portico knows $request_uri, $uri, $args, $host, $remote_addr, $http_NAME, $cookie_NAME, $arg_NAME)"
                ))
            }
        };
        parts.push(part);
    }
    if !parts.iter().any(|p| !matches!(p, KeyPart::Text(_))) {
        return Err("the key uses no variable, so every request would hash alike".into());
    }
    Ok(HashKey(parts))
}

/// A comma-separated list of HTTP statuses from 300 to 599 (`404,503`).
pub fn status_list(v: &str) -> Parsed<Vec<u16>> {
    let v = sane(v)?;
    let codes: Parsed<Vec<u16>> = v
        .split(',')
        .map(|c| number(c.trim(), 300, 599).map(|n| n as u16))
        .collect();
    let mut codes =
        codes.map_err(|_| "expected statuses from 300 to 599, comma-separated".to_string())?;
    codes.sort_unstable();
    codes.dedup();
    Ok(codes)
}

/// A comma-separated list of CIDRs or addresses (`10.0.0.0/8, 192.0.2.7, 2001:db8::/32`).
pub fn cidr_list(v: &str) -> Parsed<portico_proxy::TrustedProxies> {
    let v = sane(v)?;
    let items: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err("no CIDR given".into());
    }
    if items.len() > 1024 {
        return Err("at most 1024 CIDRs".into());
    }
    portico_proxy::TrustedProxies::parse(&items.join(","))
}

/// A whole number in `min..=max`.
pub fn number(v: &str, min: u64, max: u64) -> Parsed<u64> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a whole number from {min} to {max}"));
    }
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// A duration: plain seconds as ingress-nginx writes them (`60`), or a number with one unit
/// `ms`, `s`, `m`, `h` (`500ms`, `5s`, `2m`). At most one day.
pub fn duration(v: &str) -> Parsed<Duration> {
    let err = || {
        "expected seconds (\"60\") or a number with a unit (\"500ms\", \"5s\", \"2m\", \"1h\")"
            .to_string()
    };
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    if digits.is_empty() || digits.len() > 9 {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(err()),
    };
    if d > Duration::from_secs(86_400) {
        return Err("longer than one day".into());
    }
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// A size as nginx writes it: bytes, or `k`/`m`/`g` (either case). `0` means unlimited
/// (`None`).
pub fn size(v: &str) -> Parsed<Option<u64>> {
    let err =
        || "expected a size such as \"8m\", \"512k\", \"1g\" or \"0\" (unlimited)".to_string();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    if digits.is_empty() || digits.len() > 12 {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    let factor = match unit {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return Err(err()),
    };
    let bytes = n.checked_mul(factor).ok_or_else(err)?;
    Ok((bytes > 0).then_some(bytes))
}

/// An absolute `http` or `https` URL, usable as a `Location` header.
pub fn url(v: &str) -> Parsed<HeaderValue> {
    let v = sane(v)?;
    let uri: http::Uri = v.parse().map_err(|_| "not a valid URL".to_string())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the URL must start with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    HeaderValue::from_str(v).map_err(|_| "not usable as a header value".to_string())
}

/// A redirect status code among `allowed`.
pub fn status_code(v: &str, allowed: &[u16]) -> Parsed<http::StatusCode> {
    let n = number(v, 100, 599)?;
    if !allowed.contains(&(n as u16)) {
        return Err(format!("expected one of {allowed:?}"));
    }
    http::StatusCode::from_u16(n as u16).map_err(|e| e.to_string())
}

/// An absolute path (`/app`), without query, fragment, spaces or control characters.
pub fn path(v: &str) -> Parsed<HeaderValue> {
    let v = sane(v)?;
    if !v.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if v.contains(['?', '#', ' ', '\\']) || v.starts_with("//") {
        return Err("must be a plain path (no '?', '#', spaces, '\\' or leading '//')".into());
    }
    HeaderValue::from_str(v).map_err(|_| "not usable as a header value".to_string())
}

/// A cookie's `Path` attribute: a plain path without `;` or `,`, which would end the
/// attribute and let the value add others (`/;Domain=evil.example`).
pub fn cookie_path(v: &str) -> Parsed<String> {
    path(v)?;
    if v.contains([';', ',', '"']) {
        return Err("a cookie path must not contain ';', ',' or '\"'".into());
    }
    Ok(v.to_string())
}

/// A rewrite target: a path that may use `$1`…`$9` (`/$2`, `/api/$1`).
pub fn rewrite_target(v: &str) -> Parsed<String> {
    let v = sane(v)?;
    if !(v.starts_with('/') || v.starts_with('$')) {
        return Err("must start with '/' or a capture group such as $1".into());
    }
    if v.contains([' ', '#', '\\']) {
        return Err("must not contain spaces, '#' or '\\'".into());
    }
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && !chars.peek().is_some_and(char::is_ascii_digit) {
            return Err("'$' must be followed by a group number 0-9".into());
        }
    }
    Ok(v.to_string())
}

/// A host name, optionally with a port (`backend.internal`, `api.example.com:8080`).
pub fn host_and_port(v: &str) -> Parsed<HeaderValue> {
    let v = sane(v)?;
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (v, None),
    };
    if let Some(p) = port {
        number(p, 1, 65535).map_err(|_| "the port must be 1 to 65535".to_string())?;
    }
    let lower = host.to_ascii_lowercase();
    super::super::validate::dns_name(&lower).map_err(|why| format!("invalid host name: {why}"))?;
    HeaderValue::from_str(v).map_err(|_| "not usable as a header value".to_string())
}

/// A header name (an RFC 9110 token).
pub fn header_name(v: &str) -> Parsed<HeaderName> {
    if v.is_empty() || v.len() > 256 {
        return Err("a header name must have 1 to 256 characters".into());
    }
    HeaderName::from_bytes(v.as_bytes()).map_err(|_| format!("{v:?} is not a valid header name"))
}

/// Headers that frame the message or belong to one connection: the proxy writes them itself,
/// and a policy that set or removed them could smuggle requests or break the answer.
const MANAGED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "trailer",
];

/// A header name a policy may set, add or remove: any but [`MANAGED_HEADERS`].
pub fn header_op_name(v: &str) -> Parsed<HeaderName> {
    let name = header_name(v)?;
    if MANAGED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "{name} is managed by the proxy (framing, connection or host) and cannot be changed by a policy"
        ));
    }
    Ok(name)
}

/// A header value: visible characters and spaces, no control characters.
pub fn header_value(v: &str) -> Parsed<HeaderValue> {
    let v = sane(v)?;
    HeaderValue::from_str(v).map_err(|_| "not a valid header value".to_string())
}

/// Header lines `Name: value`, one per line (the only multi-line value Portico reads).
pub fn header_lines(v: &str) -> Parsed<Vec<(HeaderName, HeaderValue)>> {
    if v.len() > MAX_VALUE {
        return Err(format!("longer than {MAX_VALUE} characters"));
    }
    let mut out = Vec::new();
    for (i, line) in v.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("line {}: expected \"Name: value\"", i + 1));
        };
        let name = header_op_name(name.trim()).map_err(|e| format!("line {}: {e}", i + 1))?;
        let value = header_value(value.trim()).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push((name, value));
    }
    if out.is_empty() {
        return Err("no header given".into());
    }
    Ok(out)
}

/// A comma-separated list of header names.
pub fn header_names(v: &str) -> Parsed<Vec<HeaderName>> {
    let v = sane(v)?;
    let names: Parsed<Vec<HeaderName>> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(header_op_name)
        .collect();
    let names = names?;
    if names.is_empty() {
        return Err("no header name given".into());
    }
    Ok(names)
}

/// A cookie name (an RFC 6265 token).
pub fn cookie_name(v: &str) -> Parsed<String> {
    let ok = !v.is_empty()
        && v.len() <= 256
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(v.to_string())
    } else {
        Err("a cookie name must be 1 to 256 token characters".into())
    }
}

/// A regex, compiled with size limits; anchored at the start and case-insensitive when
/// `path` (ingress-nginx's `location ~*`), else as written.
pub fn regex(v: &str, path: bool) -> Parsed<Regex> {
    let v = sane(v)?;
    if v.len() > 1024 {
        return Err("a regex may have at most 1024 characters".into());
    }
    let pattern = if path {
        format!("^(?:{v})")
    } else {
        v.to_string()
    };
    RegexBuilder::new(&pattern)
        .case_insensitive(path)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "the regex is too large".to_string(),
            other => format!("invalid regex: {}", first_line(&other.to_string())),
        })
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 8] = [
        "",
        " ",
        "a\nb",
        "x\r\nSet-Cookie: a=b",
        "\"quoted\"",
        "'single'",
        "\u{0}",
        "tab\there",
    ];

    #[test]
    fn booleans_numbers_durations_sizes() {
        assert_eq!(boolean("true"), Ok(true));
        assert!(boolean("True").is_err());
        assert!(boolean("yes").is_err());
        assert_eq!(number("42", 0, 100), Ok(42));
        assert!(number("101", 0, 100).is_err());
        assert!(number("-1", 0, 100).is_err());
        assert!(number("99999999999999999999999", 0, u64::MAX).is_err());
        assert_eq!(duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("2d").is_err());
        assert!(duration("0").is_err());
        assert!(duration("1.5s").is_err());
        assert!(duration("25h").is_err());
        assert_eq!(size("8m"), Ok(Some(8 << 20)));
        assert_eq!(size("512K"), Ok(Some(512 << 10)));
        assert_eq!(size("0"), Ok(None));
        assert_eq!(size("100"), Ok(Some(100)));
        assert!(size("8mb").is_err());
        assert!(size("999999999999g").is_err());
        for v in HOSTILE {
            assert!(boolean(v).is_err(), "{v:?}");
            assert!(duration(v).is_err(), "{v:?}");
            assert!(size(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn urls_paths_and_targets() {
        assert!(url("https://example.com/new").is_ok());
        assert!(url("http://example.com").is_ok());
        assert!(url("javascript:alert(1)").is_err());
        assert!(url("/relative").is_err());
        assert!(url("https://example.com/\r\nX: y").is_err());
        assert!(path("/app").is_ok());
        assert!(path("app").is_err());
        assert!(path("//evil.com").is_err());
        assert!(path("/a?b").is_err());
        assert_eq!(rewrite_target("/$2"), Ok("/$2".into()));
        assert!(rewrite_target("$1").is_ok());
        assert!(rewrite_target("/$x").is_err());
        assert!(rewrite_target("http://evil/").is_err());
        for v in HOSTILE {
            assert!(url(v).is_err(), "{v:?}");
            assert!(path(v).is_err(), "{v:?}");
            assert!(rewrite_target(v).is_err(), "{v:?}");
            assert!(host_and_port(v).is_err(), "{v:?}");
        }
        assert!(host_and_port("backend.internal:8080").is_ok());
        assert!(host_and_port("a..b").is_err());
        assert!(host_and_port("a.b:99999").is_err());
    }

    #[test]
    fn headers_and_cookies() {
        let lines = header_lines("X-A: 1\nX-B:  two words \n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].1, "two words");
        assert!(header_lines("X-A 1").is_err());
        assert!(header_lines("Bad Name: 1").is_err());
        assert!(header_lines("X-A: \u{7f}").is_err());
        assert!(header_lines("").is_err());
        assert!(header_names("X-A, x-b").is_ok());
        assert!(header_names("X-A,,").is_ok());
        assert!(header_names(",").is_err());
        assert!(cookie_name("canary_1").is_ok());
        // `'` is a token character; every other hostile value is refused.
        for v in HOSTILE.iter().filter(|v| **v != "'single'") {
            assert!(header_name(v).is_err(), "{v:?}");
            assert!(cookie_name(v).is_err(), "{v:?}");
        }
        // Framing, hop-by-hop and host headers are the proxy's own, in any case.
        for name in [
            "Host",
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "TE",
            "Upgrade",
            "Keep-Alive",
            "Proxy-Connection",
            "Trailer",
        ] {
            assert!(header_lines(&format!("{name}: x")).is_err(), "{name}");
            assert!(
                header_lines(&format!("X-Ok: 1\n{name}: x")).is_err(),
                "{name}"
            );
            assert!(header_names(&format!("X-Ok, {name}")).is_err(), "{name}");
            assert!(header_op_name(name).is_err(), "{name}");
        }
        assert!(header_lines("Content-Type: text/plain\nX-Host: a").is_ok());
        assert!(header_names("Server, X-Powered-By").is_ok());
        assert!(header_value("ok value").is_ok());
        assert!(header_value("a\nb").is_err());
        assert_eq!(cookie_path("/app/v1"), Ok("/app/v1".into()));
        for v in HOSTILE.iter().chain(&[
            "/;Domain=evil.example",
            "/a; Secure",
            "/a,b",
            "/\"x\"",
            "/a\r\nSet-Cookie: x=y",
            "relative",
            "//evil.example",
        ]) {
            assert!(cookie_path(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn hash_keys() {
        use portico_proxy::balance::KeyPart;
        let k = hash_key("$host$request_uri").unwrap();
        assert_eq!(k.0, [KeyPart::Host, KeyPart::RequestUri]);
        let k = hash_key("user-$http_x_user_id|$cookie_sid").unwrap();
        assert_eq!(k.0.len(), 4);
        assert!(hash_key("$binary_remote_addr").is_ok());
        assert!(hash_key("$upstream_addr").is_err());
        assert!(hash_key("constant").is_err());
        assert!(hash_key("$").is_err());
        for v in HOSTILE {
            assert!(hash_key(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn regexes_are_bounded() {
        let re = regex("/foo(/|$)(.*)", true).unwrap();
        assert!(re.is_match("/FOO/bar"));
        assert!(!re.is_match("/x/foo"));
        assert!(regex("(unclosed", true).is_err());
        assert!(regex(&"a".repeat(2000), true).is_err());
        // Nested counted repetition explodes in size: refused at compile time.
        assert!(regex("(((a{100}){100}){100})", false).is_err());
        assert!(regex("((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))", false).is_err());
        // Backtracking bombs are harmless: matching is linear.
        let re = regex("(a+)+$", false).unwrap();
        assert!(!re.is_match(&format!("{}b", "a".repeat(10_000))));
    }
}
