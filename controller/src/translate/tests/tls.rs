//! TLS: certificates by SNI, problems, conflicts, redirects and the default certificate.

use super::*;

fn with_certs(mut inputs: Inputs, certs: &[(&str, Result<Arc<TlsCertificate>, String>)]) -> Inputs {
    for (name, c) in certs {
        inputs
            .certificates
            .insert(("default".into(), name.to_string()), c.clone());
    }
    inputs
}

#[test]
fn tls_hosts_get_their_certificates_and_redirect() {
    let a = cert(&["a.com"]);
    let wild = cert(&["*.b.com"]);
    let inputs = with_certs(
        world(vec![ingress("default", "i")
            .tls(&["a.com"], Some("a"))
            .tls(&["*.b.com"], Some("wild"))
            .tls(&["nosecret.com"], None)
            .rule("a.com", "/", backend("web", 80))
            .rule("x.b.com", "/", backend("web", 80))
            .rule("nosecret.com", "/", backend("web", 80))
            .rule("plain.com", "/", backend("web", 80))
            .rule("", "/", backend("web", 80))
            .build()]),
        &[("a", Ok(a.clone())), ("wild", Ok(wild.clone()))],
    );
    let out = run(&inputs);
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let tls = &out.snapshot.tls;
    assert!(Arc::ptr_eq(tls.resolve(Some("a.com")), &a));
    assert!(Arc::ptr_eq(tls.resolve(Some("y.b.com")), &wild));
    assert!(Arc::ptr_eq(tls.resolve(Some("nosecret.com")), &fallback()));
    let redirect = |h: &str| out.snapshot.routes.find(h, "/").unwrap().redirect_https;
    assert!(redirect("a.com"));
    assert!(redirect("x.b.com"), "covered by the wildcard TLS host");
    assert!(redirect("nosecret.com"));
    assert!(!redirect("plain.com"));
    assert!(!redirect("anything.org"), "hostless rules never redirect");
}

#[test]
fn unusable_secrets_are_problems_and_get_the_default_certificate() {
    let expired = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["old.com".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let c = p.self_signed(&key).unwrap();
        Arc::new(
            TlsCertificate::from_pem(c.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap(),
        )
    };
    let inputs = with_certs(
        world(vec![ingress("default", "i")
            .tls(&["missing.com"], Some("missing"))
            .tls(&["bad.com"], Some("bad"))
            .tls(&["other.com"], Some("mismatch"))
            .tls(&["old.com"], Some("expired"))
            .build()]),
        &[
            (
                "bad",
                Err("the private key does not match the certificate".into()),
            ),
            ("mismatch", Ok(cert(&["not-it.com"]))),
            ("expired", Ok(expired.clone())),
        ],
    );
    let out = run(&inputs);
    let tls = &out.snapshot.tls;
    for h in ["missing.com", "bad.com", "other.com"] {
        assert!(Arc::ptr_eq(tls.resolve(Some(h)), &fallback()), "{h}");
    }
    assert!(
        Arc::ptr_eq(tls.resolve(Some("old.com")), &expired),
        "expired is still served"
    );
    let r = reasons(&out);
    assert!(r.iter().any(|r| matches!(r, Reason::SecretNotFound { .. })));
    assert!(r.iter().any(|r| matches!(r, Reason::InvalidCertificate { error, .. } if error.contains("does not match"))));
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::CertificateMismatch { .. })));
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::CertificateExpired { .. })));
    assert_eq!(out.snapshot.problems, 4);
}

#[test]
fn the_oldest_ingress_decides_a_hosts_secret() {
    let old = cert(&["h.com"]);
    let young = cert(&["h.com"]);
    let inputs = with_certs(
        world(vec![
            ingress("default", "young")
                .created(2000)
                .tls(&["h.com"], Some("young"))
                .build(),
            ingress("default", "old")
                .created(1000)
                .tls(&["h.com"], Some("old"))
                .build(),
        ]),
        &[("old", Ok(old.clone())), ("young", Ok(young))],
    );
    let out = run(&inputs);
    assert!(Arc::ptr_eq(out.snapshot.tls.resolve(Some("h.com")), &old));
    assert!(
        matches!(&out.problems[..], [p] if p.object.name == "young" && matches!(p.reason, Reason::TlsConflict { .. }))
    );
}

#[test]
fn a_configured_default_certificate_replaces_the_generated_one() {
    let d = cert(&["default.example"]);
    let inputs = with_certs(world(vec![]), &[("dflt", Ok(d.clone()))]);
    let opts = Options {
        default_certificate: Some(("default".into(), "dflt".into())),
        ..options()
    };
    assert!(Arc::ptr_eq(
        translate(&inputs, &opts).snapshot.tls.resolve(None),
        &d
    ));
    let opts = Options {
        default_certificate: Some(("default".into(), "absent".into())),
        ..options()
    };
    let out = translate(&inputs, &opts);
    assert!(Arc::ptr_eq(out.snapshot.tls.resolve(None), &fallback()));
    assert!(matches!(
        reasons(&out)[..],
        [Reason::DefaultCertificate { .. }]
    ));
}

#[test]
fn another_namespace_cannot_take_a_hosts_certificate() {
    let mut inputs = world(vec![
        ingress("team-a", "a")
            .created(1000)
            .tls(&["h.com"], None)
            .rule("h.com", "/", backend("web", 80))
            .build(),
        ingress("team-b", "b")
            .created(2000)
            .tls(&["h.com"], Some("evil"))
            .build(),
    ]);
    inputs
        .certificates
        .insert(("team-b".into(), "evil".into()), Ok(cert(&["h.com"])));
    let out = run(&inputs);
    assert!(Arc::ptr_eq(
        out.snapshot.tls.resolve(Some("h.com")),
        &fallback()
    ));
    assert!(reasons(&out)
        .iter()
        .any(|r| matches!(r, Reason::HostOwnedElsewhere { .. })));
}

#[test]
fn source_problems_are_carried_and_output_is_deterministic() {
    let mut inputs = world(vec![
        ingress("default", "a")
            .rule("h.com", "/", backend("nope", 80))
            .build(),
        ingress("default", "b")
            .rule("h.com", "/", backend("nope2", 80))
            .build(),
    ]);
    inputs.problems.push(crate::problem::Problem::new(
        crate::problem::ObjectRef::new("File", "", "x.yaml"),
        Reason::Manifest {
            document: 1,
            line: Some(3),
            message: "bad".into(),
        },
    ));
    let a = run(&inputs);
    let b = run(&inputs);
    assert_eq!(a.problems, b.problems);
    assert_eq!(a.problems.len(), 3);
    assert!(a.problems.windows(2).all(|w| w[0] <= w[1]), "sorted");
}

/// A labelled certificate Secret (`portico.dev/certificate: "true"`) in `ns`.
fn labelled(inputs: &mut Inputs, ns: &str, name: &str, cert: Arc<TlsCertificate>) {
    let mut s = k8s_openapi::api::core::v1::Secret::default();
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(name.into());
    s.metadata.labels = Some(std::collections::BTreeMap::from([(
        "portico.dev/certificate".to_string(),
        "true".to_string(),
    )]));
    inputs.secrets.push(Arc::new(s));
    inputs
        .certificates
        .insert((ns.into(), name.into()), Ok(cert));
}

fn cert_valid_until(names: &[&str], year: i32) -> Arc<TlsCertificate> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(year, 1, 1);
    let c = p.self_signed(&key).unwrap();
    Arc::new(TlsCertificate::from_pem(c.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap())
}

#[test]
fn labelled_certificates_serve_hosts_no_secret_names() {
    let exact = cert_valid_until(&["a.shop.com"], 2040);
    let wild_short = cert_valid_until(&["*.shop.com"], 2035);
    let wild_long = cert_valid_until(&["*.shop.com"], 2045);
    let mut inputs = world(vec![ingress("default", "i")
        .tls(&["a.shop.com", "b.shop.com"], None)
        .tls(&["c.shop.com"], Some("missing"))
        .rule("a.shop.com", "/", backend("web", 80))
        .build()]);
    labelled(&mut inputs, "default", "exact", exact.clone());
    labelled(&mut inputs, "default", "wild-short", wild_short);
    labelled(&mut inputs, "default", "wild-long", wild_long.clone());
    let out = run(&inputs);
    let tls = &out.snapshot.tls;
    // An exact name beats a wildcard; among wildcards, the one valid longest.
    assert!(Arc::ptr_eq(tls.resolve(Some("a.shop.com")), &exact));
    assert!(Arc::ptr_eq(tls.resolve(Some("b.shop.com")), &wild_long));
    // A named but missing Secret: the index first (the missing Secret is still reported).
    assert!(Arc::ptr_eq(tls.resolve(Some("c.shop.com")), &wild_long));
    assert!(
        matches!(reasons(&out)[..], [Reason::SecretNotFound { .. }]),
        "{:?}",
        out.problems
    );
    // Such hosts are TLS hosts.
    assert!(
        out.snapshot
            .routes
            .find("a.shop.com", "/")
            .unwrap()
            .redirect_https
    );
}

#[test]
fn labelled_certificates_come_only_from_the_own_or_shared_namespaces() {
    let team_b = cert_valid_until(&["*.corp.com"], 2040);
    let shared = cert_valid_until(&["*.corp.com"], 2030);
    let mut inputs = world(vec![ingress("team-a", "i")
        .tls(&["x.corp.com"], None)
        .build()]);
    labelled(&mut inputs, "team-b", "theirs", team_b);
    labelled(&mut inputs, "certs", "shared", shared.clone());
    let out = run(&inputs);
    assert!(
        Arc::ptr_eq(out.snapshot.tls.resolve(Some("x.corp.com")), &fallback()),
        "never another tenant's"
    );
    let opts = Options {
        shared_certificate_namespaces: vec!["certs".into()],
        ..options()
    };
    let out = translate(&inputs, &opts);
    assert!(Arc::ptr_eq(
        out.snapshot.tls.resolve(Some("x.corp.com")),
        &shared
    ));
}
