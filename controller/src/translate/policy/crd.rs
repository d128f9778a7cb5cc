//! The custom-resource front-end of the policy model: a `RoutePolicy`'s or an
//! `IngressClassParameters`' [`PolicySpec`] through the same strict grammars as annotations.
//! The CRD schema already refused most bad values; what it cannot express (a URL, a regex, a
//! header) is checked here, and a bad field is a problem on the object, that field ignored.

use portico_crds::{
    AffinityMode, AuthSecretType, BackendProtocol, LoadBalance, PolicySpec, SameSite,
};
use portico_proxy::compress::Compression;
use portico_proxy::upstream::Protocol;

use super::annotations::retry_conditions;
use super::grammar::{self, Parsed};
use super::PolicyInput;
use crate::problem::{ObjectRef, Problem, Reason};

struct Checker<'a> {
    object: &'a ObjectRef,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn check<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Parsed<T>,
    ) -> Option<T> {
        match parse(value?) {
            Ok(v) => Some(v),
            Err(why) => {
                self.problems.push(Problem::new(
                    self.object.clone(),
                    Reason::InvalidPolicyField {
                        field: field.to_string(),
                        why,
                    },
                ));
                None
            }
        }
    }
}

fn seconds(v: i64) -> Parsed<u64> {
    u64::try_from(v).map_err(|_| "must not be negative".to_string())
}

/// The policy a [`PolicySpec`] asks for; bad fields become problems on `object`.
pub fn from_spec(
    spec: &PolicySpec,
    object: &ObjectRef,
    problems: &mut Vec<Problem>,
) -> PolicyInput {
    let mut c = Checker { object, problems };
    let upstream = spec.upstream.as_ref();
    let tls = upstream.and_then(|u| u.tls.as_ref());
    let cookie = spec.affinity.as_ref().and_then(|a| a.cookie.as_ref());
    let timeouts = spec.timeouts.as_ref();
    let headers = spec.headers.as_ref();
    let ops = |response: bool| {
        headers.and_then(|h| {
            if response {
                h.response.as_ref()
            } else {
                h.request.as_ref()
            }
        })
    };
    let mut p = PolicyInput {
        ssl_redirect: spec.ssl_redirect,
        force_ssl_redirect: spec.force_ssl_redirect,
        preserve_trailing_slash: spec.preserve_trailing_slash,
        app_root: c.check("appRoot", spec.app_root.as_deref(), grammar::path),
        from_to_www_redirect: spec.from_to_www_redirect,
        use_regex: spec.use_regex,
        rewrite_target: c.check(
            "rewriteTarget",
            spec.rewrite_target.as_deref(),
            grammar::rewrite_target,
        ),
        x_forwarded_prefix: c.check(
            "xForwardedPrefix",
            spec.x_forwarded_prefix.as_deref(),
            grammar::path,
        ),
        upstream_vhost: c.check(
            "upstream.vhost",
            upstream.and_then(|u| u.vhost.as_deref()),
            grammar::host_and_port,
        ),
        protocol: upstream.and_then(|u| u.protocol).map(|p| match p {
            BackendProtocol::Http => Protocol::Http,
            BackendProtocol::Https => Protocol::Https,
            BackendProtocol::Grpc | BackendProtocol::H2c => Protocol::H2c,
            BackendProtocol::Grpcs => Protocol::H2,
        }),
        ssl_verify: tls.and_then(|t| t.verify),
        ssl_secret: c.check(
            "upstream.tls.secretName",
            tls.and_then(|t| t.secret_name.as_deref()),
            grammar::object_name,
        ),
        ssl_name: c.check(
            "upstream.tls.serverName",
            tls.and_then(|t| t.server_name.as_deref()),
            grammar::tls_name,
        ),
        ssl_server_name: tls.and_then(|t| t.send_sni),
        max_body_size: c.check("maxBodySize", spec.max_body_size.as_deref(), grammar::size),
        connect_timeout: c.check(
            "timeouts.connect",
            timeouts.and_then(|t| t.connect.as_deref()),
            grammar::duration,
        ),
        read_timeout: c.check(
            "timeouts.read",
            timeouts.and_then(|t| t.read.as_deref()),
            grammar::duration,
        ),
        send_timeout: c.check(
            "timeouts.send",
            timeouts.and_then(|t| t.send.as_deref()),
            grammar::duration,
        ),
        ewma: spec.load_balance.map(|l| l == LoadBalance::Ewma),
        hash_by: c.check("hashBy", spec.hash_by.as_deref(), grammar::hash_key),
        affinity_cookie: cookie.map(|_| true),
        affinity_persistent: spec
            .affinity
            .as_ref()
            .and_then(|a| a.mode)
            .map(|m| m == AffinityMode::Persistent),
        cookie_name: c.check(
            "affinity.cookie.name",
            cookie.and_then(|k| k.name.as_deref()),
            grammar::cookie_name,
        ),
        cookie_path: c.check(
            "affinity.cookie.path",
            cookie.and_then(|k| k.path.as_deref()),
            grammar::cookie_path,
        ),
        cookie_max_age: cookie
            .and_then(|k| k.max_age)
            .and_then(|v| c.check("affinity.cookie.maxAge", Some(""), |_| seconds(v))),
        cookie_expires: cookie
            .and_then(|k| k.expires)
            .and_then(|v| c.check("affinity.cookie.expires", Some(""), |_| seconds(v))),
        cookie_same_site: cookie.and_then(|k| k.same_site).map(|s| match s {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }),
        cookie_secure: cookie.and_then(|k| k.secure),
        request_set: header_map(&mut c, "headers.request.set", ops(false).map(|o| &o.set)),
        request_add: header_map(&mut c, "headers.request.add", ops(false).map(|o| &o.add)),
        request_remove: header_list(
            &mut c,
            "headers.request.remove",
            ops(false).map(|o| &o.remove),
        ),
        response_set: header_map(&mut c, "headers.response.set", ops(true).map(|o| &o.set)),
        response_add: header_map(&mut c, "headers.response.add", ops(true).map(|o| &o.add)),
        response_remove: header_list(
            &mut c,
            "headers.response.remove",
            ops(true).map(|o| &o.remove),
        ),
        custom_errors: (!spec.custom_http_errors.is_empty()).then(|| {
            let mut codes = spec.custom_http_errors.clone();
            codes.sort_unstable();
            codes.dedup();
            codes
        }),
        error_backend: c.check("defaultBackend", spec.default_backend.as_deref(), |v| {
            crate::translate::validate::dns_name(v)
                .map(|_| v.to_string())
                .map_err(|why| format!("expected a Service name: {why}"))
        }),
        ..PolicyInput::default()
    };
    if let Some(z) = spec.compression.as_ref() {
        let defaults = Compression::default();
        p.compression = Some(Compression {
            gzip: z.gzip == Some(true),
            brotli: z.brotli == Some(true),
            gzip_level: z.gzip_level.unwrap_or(defaults.gzip_level).clamp(1, 9),
            brotli_level: z.brotli_level.unwrap_or(defaults.brotli_level).min(11),
            min_length: z.min_length.unwrap_or(defaults.min_length),
            types: if z.types.is_empty() {
                defaults.types
            } else {
                z.types.iter().map(|t| t.to_ascii_lowercase()).collect()
            },
        });
    }
    if let Some(basic) = spec.auth.as_ref().and_then(|a| a.basic.as_ref()) {
        p.auth_basic = Some(true);
        p.auth_secret = c.check("auth.basic.secretName", Some(&basic.secret_name), |v| {
            if v.contains('/') {
                Err("a Secret name in the policy's namespace".to_string())
            } else {
                grammar::object_name(v)
            }
        });
        if p.auth_secret.is_none() {
            // Asked for but unusable: the routes refuse (fail closed).
            p.auth_basic = Some(false);
        }
        p.auth_secret_map = basic.secret_type.map(|t| t == AuthSecretType::AuthMap);
        p.auth_realm = c.check("auth.basic.realm", basic.realm.as_deref(), |v| {
            if v.chars().any(char::is_control) {
                Err("no control characters".to_string())
            } else {
                Ok(v.to_string())
            }
        });
    }
    if let Some(ext) = spec.auth.as_ref().and_then(|a| a.external.as_ref()) {
        p.auth_url = Some(c.check(
            "auth.external.url",
            Some(&ext.url),
            portico_proxy::access::external::parse_auth_url,
        ));
        p.auth_method = c.check("auth.external.method", ext.method.as_deref(), |v| {
            http::Method::from_bytes(v.as_bytes()).map_err(|e| e.to_string())
        });
        p.auth_signin = c.check("auth.external.signinUrl", ext.signin_url.as_deref(), |v| {
            portico_proxy::access::external::parse_signin(v).map(|_| v.to_string())
        });
        if !ext.response_headers.is_empty() {
            p.auth_response_headers = c.check(
                "auth.external.responseHeaders",
                Some(&ext.response_headers.join(",")),
                portico_proxy::access::external::parse_header_names,
            );
        }
        p.auth_request_redirect = c.check(
            "auth.external.requestRedirect",
            ext.request_redirect.as_deref(),
            grammar::header_value,
        );
        let bad = (ext.method.is_some() && p.auth_method.is_none())
            || (ext.signin_url.is_some() && p.auth_signin.is_none())
            || (!ext.response_headers.is_empty() && p.auth_response_headers.is_none())
            || (ext.request_redirect.is_some() && p.auth_request_redirect.is_none());
        if bad {
            // Asked for, but not as written: refuse rather than serve open.
            p.auth_url = Some(None);
        }
    }
    if let Some(cors) = spec.cors.as_ref() {
        p.cors_enabled = Some(true);
        if !cors.allow_origins.is_empty() {
            p.cors_origins = c.check(
                "cors.allowOrigins",
                Some(&cors.allow_origins.join(",")),
                portico_proxy::access::cors::parse_origins,
            );
            if p.cors_origins.is_none() {
                p.cors_enabled = Some(false);
            }
        }
        let list = |c: &mut Checker<'_>, field: &str, items: &[String], star: bool| {
            if items.is_empty() {
                return None;
            }
            c.check(field, Some(&items.join(",")), |v| {
                portico_proxy::access::cors::parse_token_list(v, star)
            })
        };
        p.cors_methods = list(&mut c, "cors.allowMethods", &cors.allow_methods, false);
        p.cors_headers = list(&mut c, "cors.allowHeaders", &cors.allow_headers, false);
        p.cors_expose = list(&mut c, "cors.exposeHeaders", &cors.expose_headers, true);
        p.cors_credentials = cors.allow_credentials;
        p.cors_max_age = cors.max_age;
    }
    if let Some(limit) = spec.rate_limit.as_ref() {
        p.limit_rps = limit.rps;
        p.limit_rpm = limit.rpm;
        p.limit_connections = limit.connections;
        p.limit_burst_multiplier = limit.burst_multiplier;
        if !limit.exempt.is_empty() {
            p.limit_exempt = c.check(
                "rateLimit.exempt",
                Some(&limit.exempt.join(",")),
                grammar::cidr_list,
            );
        }
        p.limit_status = c.check(
            "rateLimit.statusCode",
            limit.status_code.map(|s| s.to_string()).as_deref(),
            |v| grammar::status_code(v, &[429, 503]),
        );
    }
    if let Some(r) = spec.retries.as_ref() {
        if !r.on.is_empty() {
            p.retry_on = c.check("retries.on", Some(&r.on.join(" ")), retry_conditions);
        }
        p.retry_tries = r.tries;
    }
    if let Some(r) = spec.redirect.as_ref() {
        let code = c.check(
            "redirect.code",
            Some(&r.code.unwrap_or(301).to_string()),
            |v| grammar::status_code(v, &[301, 302, 303, 307, 308]),
        );
        let url = c.check("redirect.url", Some(&r.url), grammar::url);
        p.redirect = url.zip(code);
    }
    p
}

fn header_map(
    c: &mut Checker<'_>,
    field: &str,
    map: Option<&std::collections::BTreeMap<String, String>>,
) -> Option<Vec<(http::HeaderName, http::HeaderValue)>> {
    let map = map.filter(|m| !m.is_empty())?;
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let name = c.check(field, Some(name), grammar::header_op_name)?;
        let value = c.check(field, Some(value), grammar::header_value)?;
        out.push((name, value));
    }
    Some(out)
}

fn header_list(
    c: &mut Checker<'_>,
    field: &str,
    list: Option<&Vec<String>>,
) -> Option<Vec<http::HeaderName>> {
    let list = list.filter(|l| !l.is_empty())?;
    let mut out = Vec::with_capacity(list.len());
    for name in list {
        out.push(c.check(field, Some(name), grammar::header_op_name)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_like_its_annotations() {
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "rewriteTarget": "/$1",
            "timeouts": {"read": "5s", "connect": "200ms"},
            "maxBodySize": "1m",
            "retries": {"on": ["error", "http_502"], "tries": 2},
            "upstream": {"protocol": "GRPCS", "tls": {"verify": true, "serverName": "api.internal"}},
            "headers": {"response": {"set": {"X-Frame-Options": "DENY"}, "remove": ["Server"]}},
            "affinity": {"cookie": {"name": "sticky", "sameSite": "Lax"}, "mode": "persistent"},
            "redirect": {"url": "https://new.example/", "code": 308}
        }))
        .unwrap();
        let mut problems = Vec::new();
        let p = from_spec(
            &spec,
            &ObjectRef::new("RoutePolicy", "ns", "p"),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.read_timeout, Some(std::time::Duration::from_secs(5)));
        assert_eq!(p.max_body_size, Some(Some(1 << 20)));
        assert_eq!(p.retry_tries, Some(2));
        assert_eq!(p.protocol, Some(Protocol::H2));
        assert_eq!(p.ssl_name.as_deref(), Some("api.internal"));
        assert_eq!(p.response_set.as_ref().unwrap()[0].0, "x-frame-options");
        assert_eq!(p.affinity_persistent, Some(true));
        assert_eq!(p.redirect.unwrap().1.as_u16(), 308);
    }

    #[test]
    fn access_fields() {
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "auth": {"basic": {"secretName": "users", "secretType": "auth-map", "realm": "Staff"}},
            "cors": {"allowOrigins": ["https://app.example.com"], "allowMethods": ["GET"], "maxAge": 60},
            "rateLimit": {"rps": 10, "burstMultiplier": 2, "exempt": ["10.0.0.0/8"], "statusCode": 429}
        }))
        .unwrap();
        let mut problems = Vec::new();
        let object = ObjectRef::new("RoutePolicy", "ns", "p");
        let p = from_spec(&spec, &object, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(p.auth_basic, Some(true));
        assert_eq!(p.auth_secret.as_deref(), Some("users"));
        assert_eq!(p.auth_secret_map, Some(true));
        assert_eq!(p.cors_enabled, Some(true));
        assert_eq!(p.cors_methods.as_ref().unwrap(), "GET");
        assert_eq!(p.limit_rps, Some(10));
        assert_eq!(p.limit_status.map(|s| s.as_u16()), Some(429));
        // Bad values: basic auth refuses, CORS turns off, a bad exempt list exempts no one.
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "auth": {"basic": {"secretName": "other-ns/users"}},
            "cors": {"allowOrigins": ["https://*.*.example.com"]},
            "rateLimit": {"rpm": 5, "exempt": ["10.0.0.0/33"]}
        }))
        .unwrap();
        let mut problems = Vec::new();
        let p = from_spec(&spec, &object, &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(p.auth_basic, Some(false));
        assert_eq!(p.cors_enabled, Some(false));
        assert!(p.limit_exempt.is_none() && p.limit_rpm == Some(5));
        let built = p.build(super::super::RouteContext::default());
        assert!(built.deny && built.cors.is_none() && built.rate_limit.is_some());

        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "auth": {"external": {
                "url": "https://$host/oauth2/auth",
                "signinUrl": "https://$host/oauth2/start?rd=$escaped_request_uri",
                "responseHeaders": ["X-Auth-Request-User"]
            }}
        }))
        .unwrap();
        let mut problems = Vec::new();
        let p = from_spec(&spec, &object, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let built = p.build(super::super::RouteContext::default());
        assert!(!built.deny && built.external_auth.is_some());
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "auth": {"external": {"url": "https://auth.test/", "signinUrl": "https://$cookie_x/"}}
        }))
        .unwrap();
        let mut problems = Vec::new();
        let p = from_spec(&spec, &object, &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(p.build(super::super::RouteContext::default()).deny);
    }

    #[test]
    fn bad_fields_are_problems_and_ignored() {
        let spec: PolicySpec = serde_json::from_value(serde_json::json!({
            "redirect": {"url": "javascript:alert(1)"},
            "headers": {"request": {"set": {"X-Ok": "a\nb"}}},
            "hashBy": "$nothing",
            "sslRedirect": false
        }))
        .unwrap();
        let mut problems = Vec::new();
        let p = from_spec(
            &spec,
            &ObjectRef::new("RoutePolicy", "ns", "p"),
            &mut problems,
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(p.redirect.is_none() && p.request_set.is_none() && p.hash_by.is_none());
        assert_eq!(p.ssl_redirect, Some(false));
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_refused() {
        for (field, name) in [
            ("set", "Host"),
            ("set", "Content-Length"),
            ("add", "Transfer-Encoding"),
            ("set", "connection"),
            ("add", "TE"),
            ("set", "Upgrade"),
            ("set", "Keep-Alive"),
            ("add", "Proxy-Connection"),
            ("set", "Trailer"),
        ] {
            for side in ["request", "response"] {
                let spec: PolicySpec = serde_json::from_value(serde_json::json!({
                    "headers": {side: {field: {"X-Fine": "1", name: "evil"}, "remove": [name]}}
                }))
                .unwrap();
                let mut problems = Vec::new();
                let p = from_spec(
                    &spec,
                    &ObjectRef::new("RoutePolicy", "ns", "p"),
                    &mut problems,
                );
                assert_eq!(problems.len(), 2, "{side} {field} {name}: {problems:?}");
                assert!(
                    p.request_set.is_none()
                        && p.request_add.is_none()
                        && p.request_remove.is_none()
                        && p.response_set.is_none()
                        && p.response_add.is_none()
                        && p.response_remove.is_none(),
                    "{side} {field} {name}"
                );
            }
        }
    }
}
