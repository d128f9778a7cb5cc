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
    inputs.ingress_classes = vec![class_with_parameters("portico", "strict")];
    inputs.class_parameters = vec![crd(serde_json::json!({
        "apiVersion": "portico.dev/v1alpha1", "kind": "IngressClassParameters",
        "metadata": {"name": "strict"},
        "spec": {
            "tls": {"minVersion": "1.3", "hsts": {"maxAge": 600, "includeSubDomains": true}},
            "defaults": {"timeouts": {"read": "30s", "connect": "1s"}, "maxBodySize": "2m"}
        }
    }))];
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
    ];
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
    let (_, targets) = &out.route_policy_status[&("default".to_string(), "older".to_string())];
    let fates: Vec<(&str, bool, &str)> = targets
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
    }))];
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
    inputs.ingress_classes = vec![class_with_parameters("portico", "guarded")];
    inputs.class_parameters = vec![crd(serde_json::json!({
        "apiVersion": "portico.dev/v1alpha1", "kind": "IngressClassParameters",
        "metadata": {"name": "guarded"},
        "spec": {"limits": {"maxBodySize": "10m", "maxTimeout": "60s"},
                 "deniedAnnotations": ["upstream-vhost"]}
    }))];
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
