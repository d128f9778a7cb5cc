//! Route policies from annotations: regex hosts, rewrites, redirects, HTTPS redirects.

use super::*;
use portico_proxy::policy::Redirect;

#[test]
fn use_regex_turns_every_path_of_the_host_into_a_regex() {
    let out = run(&world(vec![
        ingress("default", "regex")
            .annotation("nginx.ingress.kubernetes.io/use-regex", "true")
            .path(
                "h.com",
                "/api/v[0-9]+",
                "ImplementationSpecific",
                backend("api", 80),
            )
            .build(),
        ingress("default", "plain")
            .path("h.com", "/static", "Prefix", backend("web", 80))
            .path("h.com", "/exact", "Exact", backend("web", 80))
            .path(
                "other.com",
                "/Api",
                "ImplementationSpecific",
                backend("web", 80),
            )
            .build(),
    ]));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(
        served_by(&out, "h.com", "/API/V2/users").as_deref(),
        Some("api:80")
    );
    assert_eq!(served_by(&out, "h.com", "/api/vx"), None);
    // The other Ingress's prefix path on the same host is a regex too (anchored at the start).
    assert_eq!(
        served_by(&out, "h.com", "/staticfile").as_deref(),
        Some("web:80")
    );
    assert_eq!(
        served_by(&out, "h.com", "/exact").as_deref(),
        Some("web:80")
    );
    assert_eq!(
        served_by(&out, "h.com", "/EXACT"),
        None,
        "Exact stays exact"
    );
    // Another host is untouched: its path is a case-sensitive string prefix.
    assert_eq!(served_by(&out, "other.com", "/api"), None);
    assert_eq!(
        served_by(&out, "other.com", "/Apix").as_deref(),
        Some("web:80")
    );
}

#[test]
fn longer_regex_paths_are_tried_first() {
    let out = run(&world(vec![ingress("default", "r")
        .annotation("nginx.ingress.kubernetes.io/use-regex", "true")
        .path("h.com", "/.*", "ImplementationSpecific", backend("web", 80))
        .path(
            "h.com",
            "/api/.*",
            "ImplementationSpecific",
            backend("api", 80),
        )
        .build()]));
    assert_eq!(
        served_by(&out, "h.com", "/api/x").as_deref(),
        Some("api:80")
    );
    assert_eq!(served_by(&out, "h.com", "/x").as_deref(), Some("web:80"));
}

#[test]
fn an_invalid_regex_path_is_reported_and_the_rest_served() {
    let out = run(&world(vec![ingress("default", "r")
        .annotation("nginx.ingress.kubernetes.io/use-regex", "true")
        .path(
            "h.com",
            "/(unclosed",
            "ImplementationSpecific",
            backend("api", 80),
        )
        .path("h.com", "/ok", "ImplementationSpecific", backend("web", 80))
        .build()]));
    assert!(matches!(reasons(&out)[..], [Reason::InvalidPath { .. }]));
    assert_eq!(served_by(&out, "h.com", "/ok").as_deref(), Some("web:80"));
}

#[test]
fn rewrite_target_uses_the_path_captures() {
    let out = run(&world(vec![ingress("default", "r")
        .annotation("nginx.ingress.kubernetes.io/rewrite-target", "/$2")
        .path(
            "h.com",
            "/something(/|$)(.*)",
            "ImplementationSpecific",
            backend("api", 80),
        )
        .build()]));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let m = out.snapshot.routes.find("h.com", "/something/new").unwrap();
    let rw = m.target.policy.rewrite.as_ref().unwrap();
    assert_eq!(
        rw.apply("/something/new", Some("q=1")).as_deref(),
        Some("/new?q=1")
    );
}

#[test]
fn ssl_redirect_can_be_turned_off_or_forced() {
    let inputs = with_certs(
        world(vec![
            ingress("default", "off")
                .annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false")
                .tls(&["off.com"], Some("c"))
                .rule("off.com", "/", backend("web", 80))
                .build(),
            ingress("default", "forced")
                .annotation("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")
                .rule("forced.com", "/", backend("web", 80))
                .build(),
        ]),
        &[("c", Ok(cert(&["off.com"])))],
    );
    let out = run(&inputs);
    let redirect = |h: &str| {
        out.snapshot
            .routes
            .find(h, "/")
            .unwrap()
            .target
            .redirect_https
    };
    assert!(!redirect("off.com"));
    assert!(redirect("forced.com"));
}

#[test]
fn from_to_www_adds_the_twin_host_unless_someone_serves_it() {
    let out = run(&world(vec![
        ingress("default", "a")
            .annotation("nginx.ingress.kubernetes.io/from-to-www-redirect", "true")
            .rule("www.a.com", "/", backend("web", 80))
            .rule("b.com", "/", backend("web", 80))
            .build(),
        ingress("default", "b-www")
            .rule("www.b.com", "/", backend("api", 80))
            .build(),
    ]));
    let twin = out.snapshot.routes.find("a.com", "/anything").unwrap();
    assert!(matches!(
        &twin.target.policy.redirect,
        Some(Redirect::Host { host, code }) if host == "www.a.com" && code.as_u16() == 308
    ));
    assert_eq!(served_by(&out, "www.b.com", "/").as_deref(), Some("api:80"));
}

#[test]
fn routes_without_annotations_share_the_empty_policy() {
    let out = run(&world(vec![ingress("default", "a")
        .annotation("example.com/unrelated", "x")
        .rule("h.com", "/", backend("web", 80))
        .build()]));
    let m = out.snapshot.routes.find("h.com", "/").unwrap();
    assert!(Arc::ptr_eq(
        &m.target.policy,
        &portico_proxy::Policy::none()
    ));
}

fn class_with_parameters(name: &str, params: &str) -> Arc<IngressClass> {
    let mut c = (*class(name, CONTROLLER_NAME, false)).clone();
    if let Some(spec) = c.spec.as_mut() {
        spec.parameters = Some(
            k8s_openapi::api::networking::v1::IngressClassParametersReference {
                api_group: Some("portico.dev".into()),
                kind: "IngressClassParameters".into(),
                name: params.into(),
                namespace: None,
                scope: Some("Cluster".into()),
            },
        );
    }
    Arc::new(c)
}

fn crd<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(json).unwrap())
}

#[test]
fn class_defaults_then_route_policies_then_annotations() {
    let mut inputs = world(vec![
        ingress("default", "app")
            .class("portico")
            .annotation("nginx.ingress.kubernetes.io/proxy-connect-timeout", "9")
            .rule("h.com", "/", backend("web", 80))
            .build(),
        ingress("default", "other")
            .class("portico")
            .rule("o.com", "/", backend("web", 80))
            .build(),
    ]);
    inputs.ingress_classes = vec![class_with_parameters("portico", "strict")].into();
    inputs.class_parameters = vec![crd(serde_json::json!({
        "apiVersion": "portico.dev/v1alpha1", "kind": "IngressClassParameters",
        "metadata": {"name": "strict"},
        "spec": {
            "tls": {"minVersion": "1.3", "hsts": {"maxAge": 600, "includeSubDomains": true}},
            "defaults": {"timeouts": {"read": "30s", "connect": "1s"}, "maxBodySize": "2m"}
        }
    }))]
    .into();
    inputs.route_policies = vec![
        crd(serde_json::json!({
            "apiVersion": "portico.dev/v1alpha1", "kind": "RoutePolicy",
            "metadata": {"name": "newer", "namespace": "default", "creationTimestamp": "2026-02-01T00:00:00Z"},
            "spec": {"targetRefs": [{"kind": "Ingress", "name": "app"}],
                     "timeouts": {"read": "7s"}, "maxBodySize": "5m"}
        })),
        crd(serde_json::json!({
            "apiVersion": "portico.dev/v1alpha1", "kind": "RoutePolicy",
            "metadata": {"name": "older", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"targetRefs": [{"kind": "Ingress", "name": "app"}, {"kind": "Ingress", "name": "missing"}],
                     "timeouts": {"read": "3s"}}
        })),
    ].into();
    let out = run(&inputs);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let app = &out
        .snapshot
        .routes
        .find("h.com", "/")
        .unwrap()
        .target
        .policy;
    assert_eq!(
        app.timeouts.read,
        Some(std::time::Duration::from_secs(3)),
        "the oldest RoutePolicy wins"
    );
    assert_eq!(
        app.max_body_size,
        Some(5 << 20),
        "a RoutePolicy beats the class"
    );
    assert_eq!(
        app.timeouts.connect,
        Some(std::time::Duration::from_secs(9)),
        "annotations beat all"
    );
    assert_eq!(app.hsts.as_ref().unwrap(), "max-age=600; includeSubDomains");
    let other = &out
        .snapshot
        .routes
        .find("o.com", "/")
        .unwrap()
        .target
        .policy;
    assert_eq!(
        other.timeouts.read,
        Some(std::time::Duration::from_secs(30))
    );
    assert!(out.snapshot.listener.tls13_only);
    let outcome = &out.route_policy_status[&("default".to_string(), "older".to_string())];
    let fates: Vec<(&str, bool, &str)> = outcome
        .targets
        .iter()
        .map(|t| (t.name.as_str(), t.accepted, t.reason.as_str()))
        .collect();
    assert_eq!(
        fates,
        [
            ("app", true, "Accepted"),
            ("missing", false, "IngressNotFound")
        ]
    );
}

#[test]
fn bad_route_policy_fields_are_reported_on_the_route_policy() {
    let mut inputs = world(vec![ingress("default", "app")
        .rule("h.com", "/", backend("web", 80))
        .build()]);
    inputs.route_policies = vec![crd(serde_json::json!({
        "apiVersion": "portico.dev/v1alpha1", "kind": "RoutePolicy",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"targetRefs": [{"kind": "Ingress", "name": "app"}],
                 "hashBy": "$nope", "timeouts": {"read": "2s"}}
    }))]
    .into();
    let out = run(&inputs);
    let [p] = &out.problems[..] else {
        panic!("{:?}", out.problems)
    };
    assert_eq!(
        (p.object.kind, p.reason.code()),
        ("RoutePolicy", "InvalidPolicyField")
    );
    let app = &out
        .snapshot
        .routes
        .find("h.com", "/")
        .unwrap()
        .target
        .policy;
    assert_eq!(app.timeouts.read, Some(std::time::Duration::from_secs(2)));
}

#[test]
fn class_limits_cap_annotations_and_denied_annotations_are_ignored() {
    let mut inputs = world(vec![ingress("default", "app")
        .class("portico")
        .annotation("nginx.ingress.kubernetes.io/proxy-body-size", "0")
        .annotation("nginx.ingress.kubernetes.io/proxy-read-timeout", "600")
        .annotation(
            "nginx.ingress.kubernetes.io/upstream-vhost",
            "internal.example",
        )
        .annotation("portico.dev/proxy-connect-timeout", "2")
        .rule("h.com", "/", backend("web", 80))
        .build()]);
    inputs.ingress_classes = vec![class_with_parameters("portico", "guarded")].into();
    inputs.class_parameters = vec![crd(serde_json::json!({
        "apiVersion": "portico.dev/v1alpha1", "kind": "IngressClassParameters",
        "metadata": {"name": "guarded"},
        "spec": {"limits": {"maxBodySize": "10m", "maxTimeout": "60s"},
                 "deniedAnnotations": ["upstream-vhost"]}
    }))]
    .into();
    let out = run(&inputs);
    let codes: Vec<&str> = out.problems.iter().map(|p| p.reason.code()).collect();
    assert_eq!(
        codes,
        ["LimitExceeded", "LimitExceeded", "AnnotationDenied"],
        "{:?}",
        out.problems
    );
    let p = &out
        .snapshot
        .routes
        .find("h.com", "/")
        .unwrap()
        .target
        .policy;
    assert_eq!(p.max_body_size, Some(10 << 20), "unlimited is capped too");
    assert_eq!(p.timeouts.read, Some(std::time::Duration::from_secs(60)));
    assert_eq!(p.timeouts.connect, Some(std::time::Duration::from_secs(2)));
    assert!(p.upstream_vhost.is_none());
}

fn cookie_path_of(out: &Output, host: &str, path: &str) -> String {
    let m = out.snapshot.routes.find(host, path).unwrap();
    match &m.target.policy.balance {
        portico_proxy::balance::Balance::Cookie(c) => c.path.clone(),
        other => panic!("no cookie affinity: {other:?}"),
    }
}

#[test]
fn affinity_cookies_on_regex_paths_get_a_literal_path() {
    let out = run(&world(vec![
        ingress("default", "regex")
            .annotation("nginx.ingress.kubernetes.io/use-regex", "true")
            .annotation("nginx.ingress.kubernetes.io/affinity", "cookie")
            .path(
                "r.com",
                "/api(/|$)(.*)",
                "ImplementationSpecific",
                backend("api", 80),
            )
            .path("r.com", "/v[0-9]+/", "Prefix", backend("api", 80))
            .build(),
        ingress("default", "given")
            .annotation("nginx.ingress.kubernetes.io/use-regex", "true")
            .annotation("nginx.ingress.kubernetes.io/affinity", "cookie")
            .annotation("nginx.ingress.kubernetes.io/session-cookie-path", "/api")
            .path(
                "g.com",
                "/api(/|$)(.*)",
                "ImplementationSpecific",
                backend("api", 80),
            )
            .build(),
        ingress("default", "plain")
            .annotation("nginx.ingress.kubernetes.io/affinity", "cookie")
            .path("p.com", "/shop", "Prefix", backend("web", 80))
            .build(),
    ]));
    // One problem for the Ingress with regex paths and no cookie path; the cookie gets `/`.
    let problems: Vec<String> = out.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("session-cookie-path"), "{problems:?}");
    assert_eq!(cookie_path_of(&out, "r.com", "/api/x"), "/");
    assert_eq!(cookie_path_of(&out, "r.com", "/v2/x"), "/");
    assert_eq!(cookie_path_of(&out, "g.com", "/api/x"), "/api");
    assert_eq!(cookie_path_of(&out, "p.com", "/shop/cart"), "/shop");
}

#[test]
fn hostile_cookie_paths_are_refused() {
    for hostile in [
        "/;Domain=evil.example",
        "/; Secure; SameSite=None",
        "/a,b",
        "/a\nSet-Cookie: x=y",
    ] {
        let out = run(&world(vec![ingress("default", "c")
            .annotation("nginx.ingress.kubernetes.io/affinity", "cookie")
            .annotation("nginx.ingress.kubernetes.io/session-cookie-path", hostile)
            .path("c.com", "/app", "Prefix", backend("web", 80))
            .build()]));
        assert!(
            matches!(reasons(&out)[..], [Reason::InvalidAnnotation { .. }]),
            "{hostile:?}: {:?}",
            out.problems
        );
        assert_eq!(cookie_path_of(&out, "c.com", "/app"), "/app", "{hostile:?}");
    }
}

#[test]
fn class_default_certificate_serves_its_tls_hosts_without_a_certificate() {
    let own = cert(&["own.com"]);
    let class_default = cert(&["*.example.com"]);
    let mut inputs = with_certs(
        world(vec![
            ingress("default", "app")
                .class("portico")
                .tls(&["own.com"], Some("own"))
                .tls(&["nosecret.com"], None)
                .tls(&["missing.com"], Some("missing"))
                .rule("own.com", "/", backend("web", 80))
                .rule("nosecret.com", "/", backend("web", 80))
                .rule("missing.com", "/", backend("web", 80))
                .build(),
            ingress("default", "elsewhere")
                .class("plain")
                .tls(&["plain.com"], None)
                .rule("plain.com", "/", backend("web", 80))
                .build(),
        ]),
        &[
            ("own", Ok(own.clone())),
            ("wild", Ok(class_default.clone())),
        ],
    );
    inputs.ingress_classes = vec![
        class_with_parameters("portico", "certs"),
        class("plain", CONTROLLER_NAME, false),
    ]
    .into();
    inputs.class_parameters = vec![crd(serde_json::json!({
        "apiVersion": "portico.dev/v1alpha1", "kind": "IngressClassParameters",
        "metadata": {"name": "certs"},
        "spec": {"tls": {"defaultCertificate": {"namespace": "default", "name": "wild"}}}
    }))]
    .into();
    let out = run(&inputs);
    let tls = &out.snapshot.tls;
    assert!(Arc::ptr_eq(tls.resolve(Some("own.com")), &own));
    assert!(Arc::ptr_eq(
        tls.resolve(Some("nosecret.com")),
        &class_default
    ));
    assert!(
        Arc::ptr_eq(tls.resolve(Some("missing.com")), &class_default),
        "a missing Secret (reported) falls back to the class's certificate"
    );
    assert!(
        Arc::ptr_eq(tls.resolve(Some("plain.com")), &fallback()),
        "another class: the flag's default"
    );
    assert!(Arc::ptr_eq(tls.resolve(Some("unknown.org")), &fallback()));

    // A missing default certificate is a problem of the parameters; the flag's default stays.
    Arc::make_mut(&mut inputs.certificates).remove(&("default".into(), "wild".into()));
    let out = run(&inputs);
    assert!(Arc::ptr_eq(
        out.snapshot.tls.resolve(Some("nosecret.com")),
        &fallback()
    ));
    assert!(
        out.problems
            .iter()
            .any(|p| p.object.kind == "IngressClassParameters"
                && p.to_string().contains("tls.defaultCertificate")),
        "{:?}",
        out.problems
    );
}

#[test]
fn class_trusted_proxies_cipher_suites_and_access_log_reach_the_listener() {
    let mut inputs = world(vec![ingress("default", "app")
        .class("portico")
        .rule("h.com", "/", backend("web", 80))
        .build()]);
    inputs.ingress_classes = vec![class_with_parameters("portico", "edge")].into();
    let params = |spec: serde_json::Value| {
        vec![crd(serde_json::json!({
            "apiVersion": "portico.dev/v1alpha1", "kind": "IngressClassParameters",
            "metadata": {"name": "edge"}, "spec": spec
        }))]
    };
    inputs.class_parameters = params(serde_json::json!({
        "trustedProxies": ["10.0.0.0/8", "192.0.2.7"],
        "accessLog": {"format": "json"},
        "tls": {"cipherSuites": ["TLS13_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]}
    })).into();
    let out = run(&inputs);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let listener = &out.snapshot.listener;
    assert_eq!(
        listener.access_log_format,
        Some(portico_proxy::access_log::Format::Json)
    );
    let trusted = listener.trusted_proxies.as_ref().unwrap();
    assert!(trusted.contains("10.1.2.3".parse().unwrap()));
    assert!(trusted.contains("192.0.2.7".parse().unwrap()));
    assert!(!trusted.contains("192.0.2.8".parse().unwrap()));
    assert_eq!(
        listener.cipher_suites.as_deref(),
        Some(
            &[
                rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
                rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            ][..]
        )
    );

    // Unknown names, no TLS 1.3 suite, a bad CIDR: reported, and those settings are not used.
    for (spec, field, why) in [
        (
            serde_json::json!({"tls": {"cipherSuites": ["TLS13_AES_128_GCM_SHA256", "TLS_RSA_WITH_RC4_128_MD5"]}}),
            "tls.cipherSuites",
            "TLS_RSA_WITH_RC4_128_MD5",
        ),
        (
            serde_json::json!({"tls": {"cipherSuites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]}}),
            "tls.cipherSuites",
            "TLS 1.3",
        ),
        (
            serde_json::json!({"trustedProxies": ["10.0.0.0/33"]}),
            "trustedProxies",
            "10.0.0.0/33",
        ),
    ] {
        inputs.class_parameters = params(spec).into();
        let out = run(&inputs);
        let [p] = &out.problems[..] else {
            panic!("{:?}", out.problems)
        };
        let text = p.to_string();
        assert!(
            p.object.kind == "IngressClassParameters" && text.contains(field) && text.contains(why),
            "{text}"
        );
        assert!(out.snapshot.listener.cipher_suites.is_none());
        assert!(out.snapshot.listener.trusted_proxies.is_none());
    }
}

fn route_policy(
    name: &str,
    created: &str,
    spec: serde_json::Value,
) -> Arc<portico_crds::RoutePolicy> {
    let mut spec = spec;
    if spec.get("targetRefs").is_none() {
        spec["targetRefs"] = serde_json::json!([{"kind": "Ingress", "name": "app"}]);
    }
    crd(serde_json::json!({
        "apiVersion": "portico.dev/v1alpha1", "kind": "RoutePolicy",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created, "generation": 1},
        "spec": spec
    }))
}

fn read_timeout(out: &Output, host: &str, path: &str) -> Option<std::time::Duration> {
    out.snapshot
        .routes
        .find(host, path)
        .unwrap()
        .target
        .policy
        .timeouts
        .read
}

#[test]
fn route_policies_narrowed_to_a_host_and_path_apply_to_those_routes_only() {
    let mut inputs = world(vec![ingress("default", "app")
        .rule("a.com", "/api", backend("web", 80))
        .rule("a.com", "/web", backend("web", 80))
        .rule("b.com", "/api", backend("web", 80))
        .build()]);
    inputs.route_policies = vec![
        route_policy(
            "whole",
            "2026-01-01T00:00:00Z",
            serde_json::json!({"timeouts": {"read": "5s"}}),
        ),
        route_policy(
            "api-everywhere",
            "2026-01-02T00:00:00Z",
            serde_json::json!({
                "targetRefs": [{"kind": "Ingress", "name": "app", "path": "/api"}],
                "timeouts": {"connect": "2s"}
            }),
        ),
        route_policy(
            "a-api",
            "2026-01-03T00:00:00Z",
            serde_json::json!({
                "targetRefs": [
                    {"kind": "Ingress", "name": "app", "host": "a.com", "path": "/api"},
                    {"kind": "Ingress", "name": "app", "host": "c.com"}
                ],
                "maxBodySize": "1k"
            }),
        ),
    ]
    .into();
    let out = run(&inputs);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let policy = |h: &str, p: &str| {
        out.snapshot
            .routes
            .find(h, p)
            .unwrap()
            .target
            .policy
            .clone()
    };
    let secs = std::time::Duration::from_secs;
    assert_eq!(policy("a.com", "/api").max_body_size, Some(1024));
    assert_eq!(policy("a.com", "/api").timeouts.connect, Some(secs(2)));
    assert_ne!(policy("a.com", "/web").max_body_size, Some(1024));
    assert_eq!(policy("a.com", "/web").timeouts.connect, None);
    assert_ne!(policy("b.com", "/api").max_body_size, Some(1024));
    assert_eq!(policy("b.com", "/api").timeouts.connect, Some(secs(2)));
    for (h, p) in [("a.com", "/api"), ("a.com", "/web"), ("b.com", "/api")] {
        assert_eq!(
            read_timeout(&out, h, p),
            Some(secs(5)),
            "{h}{p}: the whole-Ingress policy"
        );
    }
    let outcome = &out.route_policy_status[&("default".to_string(), "a-api".to_string())];
    let fates: Vec<(bool, &str)> = outcome
        .targets
        .iter()
        .map(|t| (t.accepted, t.reason.as_str()))
        .collect();
    assert_eq!(fates, [(true, "Accepted"), (false, "NoMatchingRoute")]);
    assert!(outcome.conflicts.is_empty());
}

#[test]
fn the_older_route_policy_wins_a_field_and_the_younger_is_conflicted() {
    let mut inputs = world(vec![ingress("default", "app")
        .rule("a.com", "/api", backend("web", 80))
        .rule("a.com", "/web", backend("web", 80))
        .build()]);
    inputs.route_policies = vec![
        // Younger first in the input: order comes from creationTimestamp.
        route_policy(
            "younger",
            "2026-03-01T00:00:00Z",
            serde_json::json!({
                "targetRefs": [{"kind": "Ingress", "name": "app", "path": "/api"}],
                "timeouts": {"read": "9s", "connect": "3s"},
                "headers": {"response": {"set": {"X-From": "younger"}}}
            }),
        ),
        route_policy(
            "older",
            "2026-02-01T00:00:00Z",
            serde_json::json!({
                "timeouts": {"read": "4s"},
                "headers": {"response": {"set": {"X-Other": "older"}}}
            }),
        ),
        // Sets the same field, but for another path: no conflict.
        route_policy(
            "elsewhere",
            "2026-04-01T00:00:00Z",
            serde_json::json!({
                "targetRefs": [{"kind": "Ingress", "name": "app", "path": "/web"}],
                "maxBodySize": "2k"
            }),
        ),
    ]
    .into();
    let out = run(&inputs);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let secs = std::time::Duration::from_secs;
    assert_eq!(
        read_timeout(&out, "a.com", "/api"),
        Some(secs(4)),
        "the older wins"
    );
    let api = &out
        .snapshot
        .routes
        .find("a.com", "/api")
        .unwrap()
        .target
        .policy;
    assert_eq!(
        api.timeouts.connect,
        Some(secs(3)),
        "unchallenged fields apply"
    );
    let conflicts = |name: &str| {
        out.route_policy_status[&("default".to_string(), name.to_string())]
            .conflicts
            .clone()
    };
    assert_eq!(
        conflicts("younger"),
        [
            "field headers.response.set for Ingress app: RoutePolicy default/older is older and wins",
            "field timeouts.read for Ingress app: RoutePolicy default/older is older and wins",
        ]
    );
    assert!(conflicts("older").is_empty());
    assert!(conflicts("elsewhere").is_empty());
}
