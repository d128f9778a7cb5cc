//! ingress-nginx's controller ConfigMap, mapped onto an `IngressClassParameters` (typed: the
//! suggested object is serialised from `portico_crds` types, never assembled as text).

use std::collections::BTreeMap;

use portico_crds::class_parameters::{
    ClassTls, Hsts, IngressClassParametersSpec, ProxyProtocol, TlsVersion,
};
use portico_crds::policy::{Compression, LoadBalance, PolicySpec, Retries, Timeouts};
use serde::Serialize;

use super::{Finding, Verdict};
use crate::translate::policy::grammar;

/// ingress-nginx's defaults that Portico's defaults differ from, applied when the ConfigMap
/// does not set them (HSTS is on in ingress-nginx unless turned off).
const NGINX_HSTS_MAX_AGE: i64 = 31_536_000;

/// Keys that tune nginx itself: nothing to carry over.
const NGINX_INTERNALS: &[&str] = &[
    "worker-processes",
    "worker-connections",
    "max-worker-connections",
    "max-worker-open-files",
    "worker-cpu-affinity",
    "worker-shutdown-timeout",
    "keep-alive",
    "keep-alive-requests",
    "upstream-keepalive-connections",
    "upstream-keepalive-requests",
    "upstream-keepalive-timeout",
    "upstream-keepalive-time",
    "reuse-port",
    "server-tokens",
    "variables-hash-bucket-size",
    "variables-hash-max-size",
    "server-name-hash-bucket-size",
    "server-name-hash-max-size",
    "map-hash-bucket-size",
    "proxy-headers-hash-bucket-size",
    "proxy-headers-hash-max-size",
    "proxy-buffering",
    "proxy-buffer-size",
    "proxy-buffers-number",
    "client-body-buffer-size",
    "error-log-level",
    "access-log-path",
    "error-log-path",
    "log-format-escape-json",
    "log-format-escape-none",
    "log-format-upstream",
    "log-format-stream",
    "enable-access-log-for-default-backend",
    "disable-access-log",
    "ssl-buffer-size",
    "ssl-session-cache",
    "ssl-session-cache-size",
    "ssl-session-tickets",
    "ssl-session-timeout",
    "ssl-ecdh-curve",
    "ssl-dh-param",
    "http2-max-concurrent-streams",
    "http2-max-field-size",
    "http2-max-header-size",
    "http2-max-requests",
    "use-geoip",
    "use-geoip2",
];

/// What the ConfigMap maps to.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapReport {
    pub namespace: String,
    pub name: String,
    pub keys: Vec<Finding>,
    /// The suggested `IngressClassParameters` spec.
    pub class_parameters: IngressClassParametersSpec,
    /// Controller flags (or chart values) to set, as `--flag=value`.
    pub flags: Vec<String>,
}

fn supported(key: &str, detail: impl Into<String>) -> Finding {
    Finding {
        key: key.to_string(),
        verdict: Verdict::Supported,
        detail: detail.into(),
    }
}

fn finding(key: &str, verdict: Verdict, detail: impl Into<String>) -> Finding {
    Finding {
        key: key.to_string(),
        verdict,
        detail: detail.into(),
    }
}

/// Seconds as ingress-nginx writes timeouts (`"60"`), as a duration string the CRD accepts.
fn seconds(v: &str) -> Result<String, String> {
    grammar::duration(v).map(|d| {
        if d.subsec_millis() == 0 {
            format!("{}s", d.as_secs())
        } else {
            format!("{}ms", d.as_millis())
        }
    })
}

fn bool_value(v: &str) -> Result<bool, String> {
    grammar::boolean(v)
}

/// Maps the ConfigMap `data` of an ingress-nginx controller.
pub fn check(namespace: &str, name: &str, data: &BTreeMap<String, String>) -> ConfigMapReport {
    let mut keys = Vec::new();
    let mut defaults = PolicySpec::default();
    let mut compression = Compression::default();
    let mut timeouts = Timeouts::default();
    let mut retries = Retries::default();
    let mut tls = ClassTls::default();
    let mut proxy_protocol = None;
    let mut flags = Vec::new();
    let get = |k: &str| data.get(k).map(String::as_str);

    // HSTS is on in ingress-nginx unless `hsts: "false"`.
    let hsts_on = match get("hsts").map(bool_value) {
        Some(Err(why)) => {
            keys.push(finding("hsts", Verdict::Invalid, why));
            true
        }
        Some(Ok(on)) => on,
        None => true,
    };
    if hsts_on {
        let mut hsts = Hsts {
            max_age: Some(NGINX_HSTS_MAX_AGE),
            include_sub_domains: Some(true),
            preload: None,
        };
        if let Some(v) = get("hsts-max-age") {
            match grammar::number(v, 0, 10 * 31_536_000) {
                Ok(n) => hsts.max_age = i64::try_from(n).ok(),
                Err(why) => keys.push(finding("hsts-max-age", Verdict::Invalid, why)),
            }
        }
        for (key, slot) in [
            ("hsts-include-subdomains", &mut hsts.include_sub_domains),
            ("hsts-preload", &mut hsts.preload),
        ] {
            if let Some(v) = get(key) {
                match bool_value(v) {
                    Ok(b) => *slot = Some(b),
                    Err(why) => keys.push(finding(key, Verdict::Invalid, why)),
                }
            }
        }
        tls.hsts = Some(hsts);
        if !data.contains_key("hsts") {
            keys.push(finding(
                "hsts",
                Verdict::Difference,
                "not set, so on as ingress-nginx's default: carried over as spec.tls.hsts (Portico sends no HSTS unless asked)",
            ));
        }
    }

    for (key, value) in data {
        let key = key.as_str();
        let value = value.as_str();
        let f = match key {
            "hsts" | "hsts-max-age" | "hsts-include-subdomains" | "hsts-preload" => {
                if keys.iter().any(|f| f.key == key) {
                    continue;
                }
                if hsts_on {
                    supported(key, "spec.tls.hsts")
                } else {
                    supported(key, "HSTS off (Portico's default)")
                }
            }
            "ssl-redirect" | "force-ssl-redirect" | "preserve-trailing-slash" => {
                match bool_value(value) {
                    Ok(b) => {
                        let (slot, field) = match key {
                            "ssl-redirect" => (&mut defaults.ssl_redirect, "sslRedirect"),
                            "force-ssl-redirect" => {
                                (&mut defaults.force_ssl_redirect, "forceSslRedirect")
                            }
                            _ => (&mut defaults.preserve_trailing_slash, "preserveTrailingSlash"),
                        };
                        *slot = Some(b);
                        supported(key, format!("spec.defaults.{field}"))
                    }
                    Err(why) => finding(key, Verdict::Invalid, why),
                }
            }
            "proxy-body-size" => match grammar::size(value) {
                Ok(_) => {
                    defaults.max_body_size = Some(value.to_string());
                    supported(key, "spec.defaults.maxBodySize (spec.limits.maxBodySize caps annotations)")
                }
                Err(why) => finding(key, Verdict::Invalid, why),
            },
            "proxy-connect-timeout" | "proxy-read-timeout" | "proxy-send-timeout" => {
                match seconds(value) {
                    Ok(d) => {
                        let (slot, field) = match key {
                            "proxy-connect-timeout" => (&mut timeouts.connect, "connect"),
                            "proxy-read-timeout" => (&mut timeouts.read, "read"),
                            _ => (&mut timeouts.send, "send"),
                        };
                        *slot = Some(d);
                        supported(key, format!("spec.defaults.timeouts.{field}"))
                    }
                    Err(why) => finding(key, Verdict::Invalid, why),
                }
            }
            "proxy-next-upstream" => {
                match crate::translate::policy::retry_conditions(value) {
                    Ok(_) => {
                        retries.on = value.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect();
                        finding(key, Verdict::Difference, "spec.defaults.retries.on; a request with a body is never sent twice")
                    }
                    Err(why) => finding(key, Verdict::Invalid, why),
                }
            }
            "proxy-next-upstream-tries" => match grammar::number(value, 1, 16) {
                Ok(n) => {
                    retries.tries = u32::try_from(n).ok();
                    supported(key, "spec.defaults.retries.tries")
                }
                Err(why) => finding(key, Verdict::Invalid, why),
            },
            "load-balance" => match value {
                "round_robin" => {
                    defaults.load_balance = Some(LoadBalance::RoundRobin);
                    supported(key, "spec.defaults.loadBalance")
                }
                "ewma" => {
                    defaults.load_balance = Some(LoadBalance::Ewma);
                    supported(key, "spec.defaults.loadBalance")
                }
                _ => finding(key, Verdict::Invalid, "expected round_robin or ewma"),
            },
            "custom-http-errors" => match grammar::status_list(value) {
                Ok(codes) => {
                    defaults.custom_http_errors = codes;
                    finding(key, Verdict::Difference, "spec.defaults.customHttpErrors; answered by each Ingress's default-backend annotation or --default-backend-service")
                }
                Err(why) => finding(key, Verdict::Invalid, why),
            },
            "use-gzip" | "enable-brotli" => match bool_value(value) {
                Ok(b) => {
                    if key == "use-gzip" {
                        compression.gzip = Some(b);
                    } else {
                        compression.brotli = Some(b);
                    }
                    supported(key, "spec.defaults.compression")
                }
                Err(why) => finding(key, Verdict::Invalid, why),
            },
            "gzip-level" | "brotli-level" => {
                let max = if key == "gzip-level" { 9 } else { 11 };
                match grammar::number(value, u64::from(key == "gzip-level"), max) {
                    Ok(n) => {
                        let n = u32::try_from(n).ok();
                        if key == "gzip-level" {
                            compression.gzip_level = n;
                        } else {
                            compression.brotli_level = n;
                        }
                        supported(key, "spec.defaults.compression")
                    }
                    Err(why) => finding(key, Verdict::Invalid, why),
                }
            }
            "gzip-min-length" => match grammar::number(value, 0, 1 << 30) {
                Ok(n) => {
                    compression.min_length = Some(n);
                    supported(key, "spec.defaults.compression.minLength")
                }
                Err(why) => finding(key, Verdict::Invalid, why),
            },
            "gzip-types" | "brotli-types" => {
                let types: Vec<String> = value.split_whitespace().map(str::to_string).collect();
                let valid = !types.is_empty()
                    && types.len() <= 64
                    && types.iter().all(|t| media_type(t));
                if !valid {
                    finding(key, Verdict::Invalid, "expected space-separated media types (type/subtype)")
                } else {
                    for t in types {
                        if !compression.types.contains(&t) {
                            compression.types.push(t);
                        }
                    }
                    finding(key, Verdict::Difference, "spec.defaults.compression.types: one list for gzip and brotli")
                }
            }
            "ssl-protocols" => {
                let words: Vec<&str> = value.split_whitespace().collect();
                let lowest = words
                    .iter()
                    .filter_map(|w| match *w {
                        "TLSv1.2" => Some(TlsVersion::Tls12),
                        "TLSv1.3" => Some(TlsVersion::Tls13),
                        _ => None,
                    })
                    .min();
                let older = words.iter().any(|w| matches!(*w, "TLSv1" | "TLSv1.1" | "SSLv3"));
                match lowest {
                    Some(v) => {
                        tls.min_version = Some(v);
                        if older {
                            finding(key, Verdict::NotRead, "spec.tls.minVersion; TLS 1.0/1.1 are never offered: clients that need them fail")
                        } else {
                            supported(key, "spec.tls.minVersion")
                        }
                    }
                    None => finding(key, Verdict::Invalid, "no TLSv1.2 or TLSv1.3 listed; Portico offers only those"),
                }
            }
            "use-proxy-protocol" => match bool_value(value) {
                Ok(true) => {
                    let cidrs = real_ip_cidrs(get("proxy-real-ip-cidr"));
                    proxy_protocol = Some(ProxyProtocol {
                        trusted_cidrs: cidrs.clone(),
                    });
                    finding(key, Verdict::Difference, format!("spec.proxyProtocol.trustedCidrs = {}: only those peers' PROXY headers are read, others are served as they come; narrow it to the load balancers' addresses", cidrs.join(",")))
                }
                Ok(false) => supported(key, "PROXY protocol off (Portico's default)"),
                Err(why) => finding(key, Verdict::Invalid, why),
            },
            "use-forwarded-headers" => match bool_value(value) {
                Ok(true) => {
                    let cidrs = real_ip_cidrs(get("proxy-real-ip-cidr"));
                    flags.push(format!("--trusted-proxies={}", cidrs.join(",")));
                    finding(key, Verdict::Difference, "controller flag --trusted-proxies (chart value controller.trustedProxies): X-Forwarded-* are trusted only from those peers")
                }
                Ok(false) => supported(key, "X-Forwarded-* from clients are overwritten (Portico's default)"),
                Err(why) => finding(key, Verdict::Invalid, why),
            },
            "compute-full-forwarded-for" => finding(key, Verdict::Difference, "X-Forwarded-For is appended to for peers in --trusted-proxies and replaced for everyone else"),
            "proxy-real-ip-cidr" => supported(key, "used for the trusted peers of use-forwarded-headers / use-proxy-protocol"),
            "allow-snippet-annotations" => match value {
                "true" => finding(key, Verdict::Refused, "snippets are never executed"),
                _ => supported(key, "snippets are never executed"),
            },
            "annotations-risk-level" => finding(key, Verdict::Difference, "list the keys to forbid in spec.deniedAnnotations; snippets are refused at every level"),
            "large-client-header-buffers" | "client-header-buffer-size" => finding(key, Verdict::Difference, "request heads up to 32 KiB (4×8k) and 200 header fields; larger gets 431"),
            "enable-underscores-in-headers" | "ignore-invalid-headers" => finding(key, Verdict::Difference, "headers with underscores are passed through; invalid header names get 400"),
            "whitelist-source-range" | "denylist-source-range" => finding(key, Verdict::NotRead, "no class-wide source list: set allowlist-source-range / denylist-source-range per Ingress"),
            "default-ssl-certificate" => finding(key, Verdict::Difference, "controller flag --default-certificate"),
            k if NGINX_INTERNALS.contains(&k) => finding(key, Verdict::NoEffect, "tunes nginx itself; Portico has no such setting"),
            k if k.ends_with("-snippet") || k.ends_with("-snippets") => finding(key, Verdict::Refused, "configuration text is never executed"),
            _ => finding(key, Verdict::NotRead, "not mapped by Portico"),
        };
        keys.push(f);
    }
    if compression != Compression::default() {
        defaults.compression = Some(compression);
    }
    if timeouts != Timeouts::default() {
        defaults.timeouts = Some(timeouts);
    }
    if retries != Retries::default() {
        defaults.retries = Some(retries);
    }
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    ConfigMapReport {
        namespace: namespace.to_string(),
        name: name.to_string(),
        keys,
        class_parameters: IngressClassParametersSpec {
            tls: (tls != ClassTls::default()).then_some(tls),
            proxy_protocol,
            defaults: (defaults != PolicySpec::default()).then_some(defaults),
            limits: None,
            denied_annotations: Vec::new(),
            trusted_proxies: Vec::new(),
            access_log: None,
        },
        flags,
    }
}

/// `proxy-real-ip-cidr` (ingress-nginx's default: everyone).
fn real_ip_cidrs(v: Option<&str>) -> Vec<String> {
    match v.map(grammar::cidr_list) {
        Some(Ok(_)) => v
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => vec!["0.0.0.0/0".to_string(), "::/0".to_string()],
    }
}

fn media_type(t: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
    };
    matches!(t.split_once('/'), Some((a, b)) if ok(a) && ok(b))
}
