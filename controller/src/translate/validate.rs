//! Strict checks of hosts and paths as written in Ingress rules.

/// Checks a rule host: a lowercase DNS-1123 subdomain, optionally `*.` + subdomain. IP
/// addresses are refused, as the Kubernetes API does.
pub fn host(h: &str) -> Result<(), &'static str> {
    let name = h.strip_prefix("*.").unwrap_or(h);
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    if name.contains('*') {
        return Err("a wildcard may only be the whole first label");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("an IP address is not a host name");
    }
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

/// Checks a path: it starts with `/` and holds only characters of a URI path (no `;`, spaces,
/// braces, quotes or control characters).
pub fn path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("must start with '/'");
    }
    let ok = p
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@%/".contains(&c));
    if ok {
        Ok(())
    } else {
        Err("contains a character not allowed in a path")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts() {
        for ok in ["foo.com", "*.foo.com", "a-b.c0.io", "localhost"] {
            assert!(super::host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Foo.com",
            "*.",
            "a.*.com",
            "foo*.com",
            "-a.com",
            "a..com",
            "1.2.3.4",
            "under_score.com",
            "",
        ] {
            assert!(super::host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        for ok in ["/", "/foo/bar", "/a.b_c~d", "/%20"] {
            assert!(super::path(ok).is_ok(), "{ok}");
        }
        for bad in ["foo", "/a b", "/a;b", "/{x}", "/a\"b", ""] {
            assert!(super::path(bad).is_err(), "{bad}");
        }
    }
}
