//! Services, ports and EndpointSlices to backends.

use super::*;

#[test]
fn service_ports_by_name_and_number_resolve_to_slice_ports() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("h.com", "/num", backend("web", 80))
        .rule("h.com", "/name", named_port("web", "http"))
        .build()]));
    for p in ["/num", "/name"] {
        let t = out.snapshot.routes.find("h.com", p).unwrap().target;
        assert_eq!(
            t.backend.addresses(),
            &["10.0.0.1:8080".parse().unwrap()],
            "{p}"
        );
    }
    assert!(out.problems.is_empty());
}

#[test]
fn missing_services_and_ports_keep_the_route_with_no_endpoint() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("h.com", "/nosvc", backend("nope", 80))
        .rule("h.com", "/noport", backend("web", 81))
        .build()]));
    for p in ["/nosvc", "/noport"] {
        let t = out.snapshot.routes.find("h.com", p).unwrap().target;
        assert!(t.backend.addresses().is_empty(), "{p}");
    }
    let r = reasons(&out);
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::ServiceNotFound { service } if service == "default/nope")));
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::ServicePortNotFound { port, .. } if port == "81")));
}

#[test]
fn endpoint_conditions_families_and_duplicates() {
    let mut inputs = world(vec![ingress("default", "a")
        .rule("h.com", "/", backend("multi", 80))
        .build()]);
    inputs
        .services
        .push(service("default", "multi", &[(Some("http"), 80)]));
    inputs.endpoint_slices.extend([
        slice(
            "default",
            "m1",
            "multi",
            "IPv4",
            (Some("http"), 80),
            &[
                ready("10.1.0.1"),
                Ep("10.1.0.2", None, None, None), // no condition: ready
                Ep("10.1.0.3", Some(false), Some(true), Some(true)), // terminating
                Ep("10.1.0.4", Some(false), None, None), // not ready
            ],
        ),
        slice(
            "default",
            "m2",
            "multi",
            "IPv4",
            (Some("http"), 80),
            &[ready("10.1.0.1")],
        ), // duplicate
        slice(
            "default",
            "m3",
            "multi",
            "IPv4",
            (Some("other"), 81),
            &[ready("10.1.0.9")],
        ), // other port
        slice(
            "default",
            "m4",
            "multi",
            "IPv6",
            (Some("http"), 80),
            &[ready("fd00::1")],
        ),
    ]);
    let out = run(&inputs);
    let addrs: Vec<String> = out
        .snapshot
        .routes
        .find("h.com", "/")
        .unwrap()
        .target
        .backend
        .addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, vec!["10.1.0.1:80", "10.1.0.2:80", "[fd00::1]:80"]);

    // With a primary family, only that family's slices count.
    let svc = Arc::make_mut(inputs.services.to_mut().last_mut().unwrap());
    svc.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into()]);
    let out = run(&inputs);
    let addrs: Vec<String> = out
        .snapshot
        .routes
        .find("h.com", "/")
        .unwrap()
        .target
        .backend
        .addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(addrs, vec!["[fd00::1]:80"]);
}

#[test]
fn terminating_serving_endpoints_are_used_when_none_is_ready() {
    let mut inputs = world(vec![ingress("default", "a")
        .rule("h.com", "/", backend("t", 80))
        .build()]);
    inputs.services.push(service("default", "t", &[(None, 80)]));
    inputs.endpoint_slices.push(slice(
        "default",
        "t1",
        "t",
        "IPv4",
        (None, 80),
        &[
            Ep("10.2.0.1", Some(false), Some(true), Some(true)),
            Ep("10.2.0.2", Some(false), Some(false), Some(true)),
        ],
    ));
    let out = run(&inputs);
    let b = &out
        .snapshot
        .routes
        .find("h.com", "/")
        .unwrap()
        .target
        .backend;
    assert_eq!(b.addresses(), &["10.2.0.1:80".parse().unwrap()]);
}

#[test]
fn external_names_need_the_flag() {
    let mut inputs = world(vec![ingress("default", "a")
        .rule("h.com", "/", backend("ext", 443))
        .build()]);
    let mut ext = (*service("default", "ext", &[(None, 443)])).clone();
    ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    ext.spec.as_mut().unwrap().external_name = Some("api.example.com".into());
    inputs.services.push(Arc::new(ext));
    let out = run(&inputs);
    assert!(matches!(
        reasons(&out)[..],
        [Reason::ExternalNameDisabled { .. }]
    ));
    let opts = Options {
        allow_external_name: true,
        ..options()
    };
    let out = translate(&inputs, &opts);
    assert!(out.problems.is_empty());
    assert_eq!(
        out.snapshot
            .routes
            .find("h.com", "/")
            .unwrap()
            .target
            .backend
            .endpoints,
        Endpoints::ExternalName {
            host: "api.example.com".into(),
            port: 443
        }
    );
}

#[test]
fn backends_are_shared_between_routes() {
    let out = run(&world(vec![
        ingress("default", "a")
            .rule("a.com", "/", backend("web", 80))
            .build(),
        ingress("default", "b")
            .rule("b.com", "/", backend("web", 80))
            .build(),
    ]));
    let a = &out
        .snapshot
        .routes
        .find("a.com", "/")
        .unwrap()
        .target
        .backend;
    let b = &out
        .snapshot
        .routes
        .find("b.com", "/")
        .unwrap()
        .target
        .backend;
    assert!(Arc::ptr_eq(a, b));
}

#[test]
fn resource_backends_are_refused() {
    let out = run(&world(vec![ingress("default", "a")
        .rule(
            "h.com",
            "/",
            IngressBackend {
                service: None,
                resource: None,
            },
        )
        .build()]));
    assert!(matches!(reasons(&out)[..], [Reason::UnsupportedBackend]));
    assert_eq!(out.snapshot.routes.route_count(), 0);
}

#[test]
fn a_port_named_or_numbered_shares_one_backend() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("h.com", "/num", backend("web", 80))
        .rule("h.com", "/name", named_port("web", "http"))
        .build()]));
    let num = &out
        .snapshot
        .routes
        .find("h.com", "/num")
        .unwrap()
        .target
        .backend;
    let name = &out
        .snapshot
        .routes
        .find("h.com", "/name")
        .unwrap()
        .target
        .backend;
    assert!(Arc::ptr_eq(num, name));
    assert_eq!(num.name, "default/web:80");
    // Targets keep the reference as written, for logs.
    assert_eq!(
        served_by(&out, "h.com", "/name").as_deref(),
        Some("web:http")
    );
}

#[test]
fn a_service_in_another_namespace_is_not_used() {
    let mut inputs = world(vec![ingress("team", "a")
        .rule("h.com", "/", backend("web", 80))
        .build()]);
    inputs.services.push(service("other", "web", &[(None, 80)]));
    let out = run(&inputs);
    assert!(
        matches!(&reasons(&out)[..], [Reason::ServiceNotFound { service }] if service == "team/web")
    );
    let t = out.snapshot.routes.find("h.com", "/").unwrap().target;
    assert!(t.backend.addresses().is_empty(), "the route answers 503");
}

#[test]
fn slices_are_matched_by_service_label_namespace_and_port_name() {
    let mut inputs = world(vec![ingress("default", "a")
        .rule("h.com", "/", named_port("svc", "grpc"))
        .build()]);
    inputs.services.push(service(
        "default",
        "svc",
        &[(Some("http"), 80), (Some("grpc"), 81)],
    ));
    inputs.endpoint_slices.extend([
        slice(
            "default",
            "s1",
            "svc",
            "IPv4",
            (Some("grpc"), 9000),
            &[ready("10.3.0.1")],
        ),
        slice(
            "default",
            "s2",
            "svc",
            "IPv4",
            (Some("http"), 8080),
            &[ready("10.3.0.2")],
        ),
        slice(
            "other",
            "s3",
            "svc",
            "IPv4",
            (Some("grpc"), 9000),
            &[ready("10.3.0.3")],
        ),
        slice(
            "default",
            "s4",
            "another",
            "IPv4",
            (Some("grpc"), 9000),
            &[ready("10.3.0.4")],
        ),
        slice(
            "default",
            "s5",
            "svc",
            "FQDN",
            (Some("grpc"), 9000),
            &[ready("10.3.0.5")],
        ),
    ]);
    let out = run(&inputs);
    let b = &out
        .snapshot
        .routes
        .find("h.com", "/")
        .unwrap()
        .target
        .backend;
    assert_eq!(b.addresses(), &["10.3.0.1:9000".parse().unwrap()]);
}

#[test]
fn a_service_without_the_port_named_reports_it() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("h.com", "/", named_port("web", "grpc"))
        .build()]));
    assert!(
        matches!(&reasons(&out)[..], [Reason::ServicePortNotFound { service, port }]
            if service == "default/web" && port == "grpc")
    );
}

#[test]
fn external_names_are_checked_and_take_named_ports() {
    let mut inputs = world(vec![ingress("default", "a")
        .rule("h.com", "/ok", named_port("ext", "https"))
        .rule("h.com", "/bad", backend("bad", 443))
        .build()]);
    for (name, target) in [("ext", "api.example.com."), ("bad", "not a host")] {
        let mut ext = (*service("default", name, &[(Some("https"), 443)])).clone();
        let spec = ext.spec.as_mut().unwrap();
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some(target.into());
        inputs.services.push(Arc::new(ext));
    }
    let opts = Options {
        allow_external_name: true,
        ..options()
    };
    let out = translate(&inputs, &opts);
    assert_eq!(
        out.snapshot
            .routes
            .find("h.com", "/ok")
            .unwrap()
            .target
            .backend
            .endpoints,
        Endpoints::ExternalName {
            host: "api.example.com".into(),
            port: 443
        }
    );
    assert!(
        matches!(&reasons(&out)[..], [Reason::InvalidExternalName { name, .. }] if name == "not a host")
    );
    assert_eq!(
        out.snapshot
            .routes
            .find("h.com", "/bad")
            .unwrap()
            .target
            .backend
            .addresses(),
        &[]
    );
}

#[test]
fn endpoints_are_sorted_whatever_the_slice_order() {
    let mut inputs = world(vec![ingress("default", "a")
        .rule("h.com", "/", backend("s", 80))
        .build()]);
    inputs.services.push(service("default", "s", &[(None, 80)]));
    inputs.endpoint_slices.extend([
        slice(
            "default",
            "b",
            "s",
            "IPv4",
            (None, 80),
            &[ready("10.9.0.9"), ready("10.9.0.3")],
        ),
        slice(
            "default",
            "a",
            "s",
            "IPv4",
            (None, 80),
            &[ready("10.9.0.5")],
        ),
    ]);
    let a = run(&inputs);
    inputs.endpoint_slices.to_mut().reverse();
    let b = run(&inputs);
    let addrs = |o: &Output| {
        o.snapshot
            .routes
            .find("h.com", "/")
            .unwrap()
            .target
            .backend
            .addresses()
            .to_vec()
    };
    assert_eq!(addrs(&a), addrs(&b));
    assert!(addrs(&a).windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_memo_reuses_unchanged_backends_and_rebuilds_changed_ones() {
    let mut inputs = world(vec![
        ingress("default", "a")
            .rule("a.com", "/", backend("web", 80))
            .build(),
        ingress("default", "b")
            .rule("b.com", "/", backend("api", 80))
            .build(),
        ingress("default", "c")
            .rule("c.com", "/", backend("missing", 80))
            .build(),
    ]);
    let backend_of = |out: &Output, host: &str| {
        out.snapshot
            .routes
            .find(host, "/")
            .unwrap()
            .target
            .backend
            .clone()
    };
    let mut memo = Memo::default();
    let first = translate_with(&inputs, &options(), &mut memo);

    // `api`'s EndpointSlice changes (a new object, as a source delivers it); `web` does not.
    inputs.endpoint_slices.to_mut()[1] = slice(
        "default",
        "api-1",
        "api",
        "IPv4",
        (None, 9090),
        &[ready("10.0.0.3")],
    );
    let second = translate_with(&inputs, &options(), &mut memo);
    assert!(Arc::ptr_eq(
        &backend_of(&first, "a.com"),
        &backend_of(&second, "a.com")
    ));
    assert!(!Arc::ptr_eq(
        &backend_of(&first, "b.com"),
        &backend_of(&second, "b.com")
    ));
    assert_eq!(
        backend_of(&second, "b.com").addresses(),
        ["10.0.0.3:9090".parse().unwrap()]
    );

    // With the memo or without, the same table and the same problems (the missing Service's
    // problem comes back from the memo too).
    let fresh = run(&inputs);
    assert_eq!(second.problems, fresh.problems);
    assert!(!second.problems.is_empty());
    for host in ["a.com", "b.com", "c.com"] {
        assert_eq!(
            backend_of(&second, host).addresses(),
            backend_of(&fresh, host).addresses()
        );
        assert_eq!(
            backend_of(&second, host).name,
            backend_of(&fresh, host).name
        );
    }

    // The Service itself changing (a port renamed away) rebuilds its backend too.
    inputs.services.to_mut()[0] = service("default", "web", &[(Some("other"), 80)]);
    let third = translate_with(&inputs, &options(), &mut memo);
    assert!(backend_of(&third, "a.com").addresses().is_empty());
    assert_eq!(third.problems, run(&inputs).problems);
}
