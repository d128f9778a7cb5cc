//! TLS: certificates by SNI, problems, conflicts, redirects and the default certificate.

use super::*;

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
    let redirect = |h: &str| {
        out.snapshot
            .routes
            .find(h, "/")
            .unwrap()
            .target
            .redirect_https
    };
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
    Arc::make_mut(&mut inputs.certificates)
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
    Arc::make_mut(&mut inputs.certificates).insert((ns.into(), name.into()), Ok(cert));
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
            .target
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

#[test]
fn an_entry_without_hosts_covers_the_rule_hosts_no_entry_lists() {
    let a = cert(&["a.com"]);
    let wild = cert(&["*.b.com"]);
    let inputs = with_certs(
        world(vec![ingress("default", "i")
            .tls(&["listed.com"], Some("wild"))
            .tls(&[], Some("a"))
            .rule("listed.com", "/", backend("web", 80))
            .rule("a.com", "/", backend("web", 80))
            .rule("x.b.com", "/", backend("web", 80))
            .rule("other.com", "/", backend("web", 80))
            .rule("", "/", backend("web", 80))
            .build()]),
        &[("a", Ok(a.clone())), ("wild", Ok(wild.clone()))],
    );
    let out = run(&inputs);
    let tls = &out.snapshot.tls;
    assert!(Arc::ptr_eq(tls.resolve(Some("a.com")), &a));
    // As ingress-nginx: the first Secret of the Ingress whose certificate covers the host.
    assert!(Arc::ptr_eq(tls.resolve(Some("x.b.com")), &wild));
    // Not covered by any: the entry's own Secret does not fit, so the default, reported.
    assert!(Arc::ptr_eq(tls.resolve(Some("other.com")), &fallback()));
    // listed.com names the wildcard Secret, which does not cover it.
    assert!(Arc::ptr_eq(tls.resolve(Some("listed.com")), &fallback()));
    let mismatches: Vec<(&str, &str)> = out
        .problems
        .iter()
        .filter_map(|p| match &p.reason {
            Reason::CertificateMismatch { host, secret } => Some((host.as_str(), secret.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        mismatches,
        vec![("other.com", "default/a"), ("listed.com", "default/wild")]
    );
    assert_eq!(out.problems.len(), 2, "{:?}", out.problems);
    let redirect = |h: &str| {
        out.snapshot
            .routes
            .find(h, "/")
            .unwrap()
            .target
            .redirect_https
    };
    for h in ["a.com", "x.b.com", "other.com", "listed.com"] {
        assert!(redirect(h), "{h}");
    }
    assert!(!redirect("hostless.org"));
}

#[test]
fn an_entry_without_hosts_or_secret_gives_rule_hosts_the_default_certificate() {
    let mut b = ingress("default", "i").rule("a.com", "/", backend("web", 80));
    b.spec()
        .tls
        .get_or_insert_with(Vec::new)
        .push(k8s_openapi::api::networking::v1::IngressTLS {
            hosts: None,
            secret_name: None,
        });
    let out = run(&world(vec![b.build()]));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert!(Arc::ptr_eq(
        out.snapshot.tls.resolve(Some("a.com")),
        &fallback()
    ));
    assert!(
        out.snapshot
            .routes
            .find("a.com", "/")
            .unwrap()
            .target
            .redirect_https
    );
}

#[test]
fn one_ingress_listing_a_host_twice_keeps_the_first_secret() {
    let first = cert(&["h.com"]);
    let inputs = with_certs(
        world(vec![ingress("default", "i")
            .tls(&["h.com"], Some("first"))
            .tls(&["h.com"], Some("second"))
            .build()]),
        &[
            ("first", Ok(first.clone())),
            ("second", Ok(cert(&["h.com"]))),
        ],
    );
    let out = run(&inputs);
    assert!(Arc::ptr_eq(out.snapshot.tls.resolve(Some("h.com")), &first));
    assert!(
        matches!(&reasons(&out)[..], [Reason::TlsConflict { winner_secret: Some(s), .. }]
            if s == "default/first"),
        "{:?}",
        out.problems
    );
}

#[test]
fn a_conflict_with_a_secretless_winner_reads_well() {
    let inputs = with_certs(
        world(vec![
            ingress("default", "old")
                .created(1000)
                .tls(&["h.com"], None)
                .build(),
            ingress("default", "young")
                .created(2000)
                .tls(&["h.com"], Some("s"))
                .build(),
        ]),
        &[("s", Ok(cert(&["h.com"])))],
    );
    let out = run(&inputs);
    assert!(Arc::ptr_eq(
        out.snapshot.tls.resolve(Some("h.com")),
        &fallback()
    ));
    let [p] = &out.problems[..] else {
        panic!("{:?}", out.problems)
    };
    assert_eq!(
        p.to_string(),
        "Ingress default/young: h.com already uses the default certificate of Ingress default/old"
    );
}

#[test]
fn canary_tls_entries_never_conflict_and_apply_only_without_a_primary() {
    let primary = cert(&["h.com"]);
    let solo = cert(&["solo.com"]);
    let inputs = with_certs(
        world(vec![
            ingress("default", "canary")
                .created(1000)
                .annotation("portico.dev/canary", "true")
                .tls(&["h.com"], Some("other"))
                .tls(&["plain.com"], Some("other"))
                .tls(&["solo.com"], Some("solo"))
                .rule("h.com", "/", backend("api", 80))
                .rule("plain.com", "/", backend("api", 80))
                .rule("solo.com", "/", backend("api", 80))
                .build(),
            ingress("default", "main")
                .created(2000)
                .tls(&["h.com"], Some("primary"))
                .rule("h.com", "/", backend("web", 80))
                .rule("plain.com", "/", backend("web", 80))
                .build(),
        ]),
        &[
            ("primary", Ok(primary.clone())),
            ("other", Ok(cert(&["h.com", "plain.com"]))),
            ("solo", Ok(solo.clone())),
        ],
    );
    let out = run(&inputs);
    let tls = &out.snapshot.tls;
    assert!(Arc::ptr_eq(tls.resolve(Some("h.com")), &primary));
    assert!(Arc::ptr_eq(tls.resolve(Some("solo.com")), &solo));
    assert!(
        !out.snapshot
            .routes
            .find("plain.com", "/")
            .unwrap()
            .target
            .redirect_https,
        "a canary does not turn its primary's host into a TLS host"
    );
    assert!(
        out.snapshot
            .routes
            .find("solo.com", "/")
            .unwrap()
            .target
            .redirect_https
    );
    assert!(out.problems.is_empty(), "{:?}", out.problems);
}

#[test]
fn an_expired_default_certificate_is_reported_and_still_served() {
    let old = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["default.example".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let c = p.self_signed(&key).unwrap();
        Arc::new(
            TlsCertificate::from_pem(c.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap(),
        )
    };
    let inputs = with_certs(world(vec![]), &[("dflt", Ok(old.clone()))]);
    let opts = Options {
        default_certificate: Some(("default".into(), "dflt".into())),
        ..options()
    };
    let out = translate(&inputs, &opts);
    assert!(Arc::ptr_eq(out.snapshot.tls.resolve(None), &old));
    assert!(matches!(
        reasons(&out)[..],
        [Reason::DefaultCertificateExpired]
    ));
}

#[test]
fn invalid_tls_hosts_are_reported() {
    let out = run(&world(vec![ingress("default", "i")
        .tls(&["Bad_Host"], None)
        .build()]));
    assert!(matches!(reasons(&out)[..], [Reason::InvalidHost { .. }]));
    assert_eq!(out.snapshot.tls.hosts().len(), 0);
}
