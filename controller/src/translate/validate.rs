//! Strict checks of hosts and paths as written in Ingress rules, mirroring what the Kubernetes
//! API server accepts (a manifest directory has no API server to check them first).

/// Checks a rule host: a lowercase DNS-1123 subdomain, optionally `*.` + subdomain (the
/// wildcard only as the whole first label). IP addresses are refused, as the Kubernetes API
/// does (including the leading-zero forms Go's sloppy parser takes).
pub fn host(h: &str) -> Result<(), &'static str> {
    // Only strings made of what IP literals are made of need parsing as one.
    let maybe_ip = h
        .bytes()
        .all(|c| c.is_ascii_hexdigit() || c == b'.' || c == b':');
    if maybe_ip && (h.parse::<std::net::IpAddr>().is_ok() || is_sloppy_ipv4(h)) {
        return Err("an IP address is not a host name");
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    if name.is_empty() {
        return Err("empty");
    }
    if h.len() > 253 {
        return Err("longer than 253 characters");
    }
    if name.contains('*') {
        return Err("a wildcard may only be the whole first label");
    }
    dns_labels(name)
}

/// Checks a DNS name with no wildcard (an `ExternalName`).
pub fn dns_name(name: &str) -> Result<(), &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    dns_labels(name)
}

fn dns_labels(name: &str) -> Result<(), &'static str> {
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label must have 1 to 63 characters");
        }
        let b = label.as_bytes();
        if !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        {
            return Err("only lowercase letters, digits, '-' and '.' are allowed");
        }
        if b[0] == b'-' || b[b.len() - 1] == b'-' {
            return Err("labels must start and end with a letter or digit");
        }
    }
    Ok(())
}

/// Four dot-separated decimal numbers up to 255, leading zeros allowed (`010.0.0.1`).
fn is_sloppy_ipv4(h: &str) -> bool {
    h.split('.').count() == 4
        && h.split('.').all(|p| {
            !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u8>().is_ok()
        })
}

/// Sequences the Kubernetes API refuses in `Exact` and `Prefix` paths.
const INVALID_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
/// Suffixes the Kubernetes API refuses in `Exact` and `Prefix` paths.
const INVALID_SUFFIXES: [&str; 2] = ["/..", "/."];

/// Checks an `Exact` or `Prefix` path: what [`path_chars`] checks, plus the sequences the
/// Kubernetes API refuses (`//`, `/./`, `/../`, `%2f`, a trailing `/.` or `/..`).
pub fn path(p: &str) -> Result<(), &'static str> {
    path_chars(p)?;
    if INVALID_SEQUENCES.iter().any(|s| p.contains(s)) {
        return Err("must not contain '//', '/./', '/../' or '%2f'");
    }
    if INVALID_SUFFIXES.iter().any(|s| p.ends_with(s)) {
        return Err("must not end with '/.' or '/..'");
    }
    Ok(())
}

/// Checks any rule path: it starts with `/` and holds only characters of a URI path (RFC 3986
/// `pchar` and `/`; no `;`, spaces, braces, quotes or control characters), with every `%`
/// starting a two-digit escape. A path failing this could never match a request.
pub fn path_chars(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("must start with '/'");
    }
    let b = p.as_bytes();
    for (i, c) in b.iter().enumerate() {
        let ok = c.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/".contains(c);
        if ok {
            continue;
        }
        if *c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if hex(i + 1) && hex(i + 2) {
                continue;
            }
            return Err("'%' must start a two-digit escape");
        }
        return Err("contains a character not allowed in a path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts() {
        for ok in [
            "foo.com",
            "*.foo.com",
            "a-b.c0.io",
            "localhost",
            "1.2.3.com",
        ] {
            assert!(super::host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Foo.com",
            "*.",
            "*",
            "a.*.com",
            "foo*.com",
            "*foo.com",
            "-a.com",
            "a-.com",
            "a..com",
            ".a.com",
            "a.com.",
            "1.2.3.4",
            "010.0.0.1",
            "::1",
            "[::1]",
            "foo.com:80",
            "under_score.com",
            "",
        ] {
            assert!(super::host(bad).is_err(), "{bad}");
        }
        assert!(super::host(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(super::host(&format!("{}.com", "a".repeat(63))).is_ok());
    }

    #[test]
    fn exact_and_prefix_paths() {
        for ok in ["/", "/foo/bar", "/a.b_c~d", "/%20", "/foo/", "/a:b@c"] {
            assert!(super::path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "foo", "/a b", "/a;b", "/{x}", "/a\"b", "", "/a//b", "/a/./b", "/a/../b", "/a%2fb",
            "/a%2Fb", "/a/..", "/a/.", "/%zz", "/%2", "/a?b", "/a#b", "/a\tb", "/é",
        ] {
            assert!(super::path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn implementation_specific_paths_allow_what_kubernetes_allows() {
        for ok in ["/a//b", "/a/./b", "/a/"] {
            assert!(super::path_chars(ok).is_ok(), "{ok}");
        }
        for bad in ["a", "/a b", "/a;b", "/{x}"] {
            assert!(super::path_chars(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn external_names() {
        assert!(super::dns_name("api.example.com").is_ok());
        assert!(super::dns_name("api.example.com.").is_ok());
        for bad in ["", "*.example.com", "a b", "API.example.com"] {
            assert!(super::dns_name(bad).is_err(), "{bad}");
        }
    }
}
