//! Host-level TLS annotations: client certificates (`auth-tls-*`), `ssl-passthrough` and
//! `server-alias`, each through a strict grammar.
//!
//! These settings belong to a host, not to a route (nginx's `server` block), so they are read
//! here, apart from the route policy, and applied by translate's TLS and routing steps.
//! Security settings fail closed: client authentication that is asked for but cannot be
//! applied (a Secret reference that does not parse, settings without a Secret) makes the
//! host refuse requests; it is never served without the check.

use std::collections::BTreeMap;

use http::HeaderValue;
use portico_proxy::VerifyMode;

use super::grammar::{self, Parsed};
use super::{NGINX_PREFIX, PORTICO_PREFIX};
use crate::problem::{ObjectRef, Problem, Reason};
use crate::translate::validate;

/// The keys read here (under both prefixes).
pub const KEYS: &[&str] = &[
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-error-page",
    "ssl-passthrough",
    "server-alias",
];

/// The deepest `auth-tls-verify-depth` accepted.
pub const MAX_DEPTH: u64 = 16;

/// The most names `server-alias` may list.
pub const MAX_ALIASES: usize = 64;

/// What an Ingress asks for its hosts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostTlsInput {
    /// Client certificates, unless off or not asked for.
    pub client: Option<ClientTlsInput>,
    /// `ssl-passthrough: "true"`.
    pub passthrough: bool,
    /// `server-alias`: lowercase host names (exact or `*.` wildcards), without duplicates.
    pub aliases: Vec<String>,
}

/// Client-certificate settings of an Ingress's hosts.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientTlsInput {
    /// The CA Secret as `(namespace, name)`; `None` when the reference is missing or does not
    /// parse: the hosts then refuse every request.
    pub secret: Option<(String, String)>,
    pub mode: VerifyMode,
    pub depth: u8,
    pub pass_certificate: bool,
    pub error_page: Option<HeaderValue>,
}

/// `auth-tls-verify-client`: `on`, `optional`, `optional_no_ca`; `off` is `None`.
pub fn verify_client(v: &str) -> Parsed<Option<VerifyMode>> {
    match v {
        "on" => Ok(Some(VerifyMode::On)),
        "off" => Ok(None),
        "optional" => Ok(Some(VerifyMode::Optional)),
        "optional_no_ca" => Ok(Some(VerifyMode::OptionalNoCa)),
        _ => Err("expected on, off, optional or optional_no_ca".into()),
    }
}

/// `auth-tls-secret`: `namespace/name` (as ingress-nginx), or a bare `name` in the Ingress's
/// namespace.
pub fn secret_ref(v: &str, namespace: &str) -> Parsed<(String, String)> {
    let v = grammar::object_name(v).map_err(|_| "expected namespace/name".to_string())?;
    Ok(match v.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (namespace.to_string(), v),
    })
}

/// `auth-tls-verify-depth`: 1 to [`MAX_DEPTH`].
pub fn verify_depth(v: &str) -> Parsed<u8> {
    grammar::number(v, 1, MAX_DEPTH).map(|n| n as u8)
}

/// `server-alias`: a comma-separated list of host names (exact or `*.` wildcards).
pub fn aliases(v: &str) -> Parsed<Vec<String>> {
    if v.len() > 4096 {
        return Err("longer than 4096 characters".into());
    }
    let mut out: Vec<String> = Vec::new();
    for item in v.split(',') {
        let item = item.trim_matches(' ').to_ascii_lowercase();
        if item.is_empty() {
            continue;
        }
        validate::host(&item).map_err(|why| {
            format!(
                "{:?} is not a host name: {why}",
                item.chars().take(64).collect::<String>()
            )
        })?;
        if !out.contains(&item) {
            out.push(item);
        }
    }
    if out.is_empty() {
        return Err("no host name given".into());
    }
    if out.len() > MAX_ALIASES {
        return Err(format!("at most {MAX_ALIASES} names"));
    }
    Ok(out)
}

/// Reads the host-level TLS annotations of an Ingress in `namespace`. Invalid values become
/// problems on `object`.
pub fn from_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    namespace: &str,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) -> HostTlsInput {
    let Some(annotations) = annotations else {
        return HostTlsInput::default();
    };
    let get = |key: &str| -> Option<(String, &str)> {
        [PORTICO_PREFIX, NGINX_PREFIX].iter().find_map(|prefix| {
            let full = format!("{prefix}{key}");
            annotations.get(&full).map(|v| (full, v.as_str()))
        })
    };
    let mut report = |key: String, why: String| {
        problems.push(Problem::new(
            object.clone(),
            Reason::InvalidAnnotation { key, why },
        ));
    };
    let mut out = HostTlsInput::default();
    if let Some((key, v)) = get("ssl-passthrough") {
        match grammar::boolean(v) {
            Ok(b) => out.passthrough = b,
            Err(why) => report(key, why),
        }
    }
    if let Some((key, v)) = get("server-alias") {
        match aliases(v) {
            Ok(a) => out.aliases = a,
            Err(why) => report(key, why),
        }
    }

    // Client certificates. The strictest reading of anything unclear: `on`, depth 1.
    let mode = match get("auth-tls-verify-client") {
        None => Some(VerifyMode::On),
        Some((key, v)) => match verify_client(v) {
            Ok(m) => m,
            Err(why) => {
                report(key, format!("{why}; using on"));
                Some(VerifyMode::On)
            }
        },
    };
    let secret = get("auth-tls-secret");
    let others: Vec<String> = KEYS[2..5]
        .iter()
        .filter_map(|k| get(k).map(|(full, _)| full))
        .collect();
    let Some(mode) = mode else {
        // `off`: no client certificates, whatever else is set.
        return out;
    };
    let written_mode = get("auth-tls-verify-client").is_some();
    if secret.is_none() && others.is_empty() && !written_mode {
        return out;
    }
    let secret = match secret {
        Some((key, v)) => match secret_ref(v, namespace) {
            Ok(s) => Some(s),
            Err(why) => {
                report(key, format!("{why}; the host refuses every request"));
                None
            }
        },
        None => {
            let key = others
                .first()
                .cloned()
                .unwrap_or_else(|| format!("{NGINX_PREFIX}auth-tls-verify-client"));
            report(
                key,
                "client certificates are asked for without auth-tls-secret (the CA); the host refuses every request".into(),
            );
            None
        }
    };
    let depth = match get("auth-tls-verify-depth") {
        None => 1,
        Some((key, v)) => verify_depth(v).unwrap_or_else(|why| {
            report(key, format!("{why}; using 1"));
            1
        }),
    };
    let pass_certificate = match get("auth-tls-pass-certificate-to-upstream") {
        None => false,
        Some((key, v)) => grammar::boolean(v).unwrap_or_else(|why| {
            report(key, why);
            false
        }),
    };
    let error_page = match get("auth-tls-error-page") {
        None => None,
        Some((key, v)) => grammar::url(v)
            .map_err(|why| report(key, format!("{why}; refused requests get 400")))
            .ok(),
    };
    out.client = Some(ClientTlsInput {
        secret,
        mode,
        depth,
        pass_certificate,
        error_page,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (HostTlsInput, Vec<Problem>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("{NGINX_PREFIX}{k}"), v.to_string()))
            .collect();
        let mut problems = Vec::new();
        let object = ObjectRef::new("Ingress", "ns", "ing");
        let out = from_annotations(Some(&map), "ns", &object, &mut problems);
        (out, problems)
    }

    #[test]
    fn defaults_as_ingress_nginx() {
        let (h, problems) = read(&[("auth-tls-secret", "certs/ca")]);
        assert!(problems.is_empty(), "{problems:?}");
        let c = h.client.unwrap();
        assert_eq!(c.secret, Some(("certs".into(), "ca".into())));
        assert_eq!(
            (c.mode, c.depth, c.pass_certificate),
            (VerifyMode::On, 1, false)
        );
        assert!(c.error_page.is_none());
        assert!(!h.passthrough);
        assert!(h.aliases.is_empty());
    }

    #[test]
    fn every_setting() {
        let (h, problems) = read(&[
            ("auth-tls-secret", "ca"),
            ("auth-tls-verify-client", "optional_no_ca"),
            ("auth-tls-verify-depth", "3"),
            ("auth-tls-pass-certificate-to-upstream", "true"),
            ("auth-tls-error-page", "https://errors.example/mtls"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let c = h.client.unwrap();
        assert_eq!(c.secret, Some(("ns".into(), "ca".into())));
        assert_eq!(c.mode, VerifyMode::OptionalNoCa);
        assert_eq!(c.depth, 3);
        assert!(c.pass_certificate);
        assert_eq!(c.error_page.unwrap(), "https://errors.example/mtls");
        let (h, problems) = read(&[
            ("auth-tls-secret", "ns/ca"),
            ("auth-tls-verify-client", "off"),
        ]);
        assert!(problems.is_empty() && h.client.is_none());
    }

    #[test]
    fn hostile_values_fail_closed() {
        for bad in [
            "",
            "/",
            "a/b/c",
            "../etc",
            "ns/ca\nX-Evil: 1",
            "ns/CA",
            "ns/ca;rm",
            "ns/ ca",
            "-ns/ca",
        ] {
            let (h, problems) = read(&[("auth-tls-secret", bad)]);
            let c = h.client.unwrap();
            assert_eq!(c.secret, None, "{bad:?} must not name a Secret");
            assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
        }
        // Settings without a CA: refused, not served without the check.
        let (h, problems) = read(&[("auth-tls-verify-client", "on")]);
        assert_eq!(h.client.unwrap().secret, None);
        assert_eq!(problems.len(), 1);
        let (h, _) = read(&[("auth-tls-pass-certificate-to-upstream", "true")]);
        assert_eq!(h.client.unwrap().secret, None);
        // An unknown mode is read as `on`, the strictest.
        for bad in ["ON", "optional-no-ca", "yes", "on ", "o\u{0}n"] {
            let (h, problems) = read(&[
                ("auth-tls-secret", "ns/ca"),
                ("auth-tls-verify-client", bad),
            ]);
            assert_eq!(h.client.unwrap().mode, VerifyMode::On, "{bad:?}");
            assert_eq!(problems.len(), 1);
        }
        for bad in ["0", "-1", "17", "1.5", "", "99999999999999999999999", "one"] {
            let (h, problems) =
                read(&[("auth-tls-secret", "ns/ca"), ("auth-tls-verify-depth", bad)]);
            assert_eq!(h.client.unwrap().depth, 1, "{bad:?}");
            assert_eq!(problems.len(), 1, "{bad:?}");
        }
        for bad in [
            "javascript:alert(1)",
            "/relative",
            "https://a.example/\r\nX: y",
            "",
        ] {
            let (h, problems) = read(&[("auth-tls-secret", "ns/ca"), ("auth-tls-error-page", bad)]);
            assert!(h.client.unwrap().error_page.is_none(), "{bad:?}");
            assert_eq!(problems.len(), 1, "{bad:?}");
        }
    }

    #[test]
    fn passthrough_and_aliases() {
        let (h, problems) = read(&[
            ("ssl-passthrough", "true"),
            (
                "server-alias",
                "Www.Example.com, *.example.org,www.example.com",
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(h.passthrough);
        assert_eq!(h.aliases, ["www.example.com", "*.example.org"]);
        assert!(h.client.is_none());
        for bad in [
            "",
            ",",
            "a b.com",
            "foo.com;bar.com",
            "*",
            "foo.*.com",
            "-bad.com",
            "x\n.com",
            "1.2.3.4",
        ] {
            let (h, problems) = read(&[("server-alias", bad)]);
            assert!(h.aliases.is_empty(), "{bad:?}");
            assert_eq!(problems.len(), 1, "{bad:?}");
        }
        let many = (0..=MAX_ALIASES)
            .map(|i| format!("h{i}.example.com"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(aliases(&many).is_err());
        let (h, problems) = read(&[("ssl-passthrough", "yes")]);
        assert!(!h.passthrough);
        assert_eq!(problems.len(), 1);
    }
}
