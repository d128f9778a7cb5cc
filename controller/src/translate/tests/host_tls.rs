//! Host-level TLS annotations: client certificates, passthrough, server aliases.

use super::*;
use portico_proxy::VerifyMode;

const NGINX: &str = "nginx.ingress.kubernetes.io";

fn ca_pem() -> Vec<rustls_pki_types::CertificateDer<'static>> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    vec![params.self_signed(&key).unwrap().der().clone()]
}

fn with_ca(mut inputs: Inputs, ns: &str, name: &str) -> Inputs {
    Arc::make_mut(&mut inputs.ca_bundles).insert((ns.into(), name.into()), Ok(Arc::new(ca_pem())));
    inputs
}

fn mtls(name: &str, host: &str, secret: &str) -> IngressBuilder {
    ingress("default", name)
        .rule(host, "/", backend("web", 80))
        .annotation(&format!("{NGINX}/auth-tls-secret"), secret)
}

fn invalid_annotation(out: &Output, key_suffix: &str) -> Vec<String> {
    out.problems
        .iter()
        .filter_map(|p| match &p.reason {
            Reason::InvalidAnnotation { key, why } if key.ends_with(key_suffix) => {
                Some(why.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn client_auth_applies_to_the_ingress_hosts_and_the_oldest_decides() {
    let inputs = with_ca(
        world(vec![
            mtls("a", "a.example.com", "default/ca")
                .rule("*.w.example.com", "/", backend("web", 80))
                .annotation(&format!("{NGINX}/auth-tls-verify-client"), "optional")
                .annotation(&format!("{NGINX}/auth-tls-verify-depth"), "2")
                .created(1)
                .build(),
            // A younger Ingress for the same host asking otherwise: reported, a.example.com
            // keeps the first settings; its own host gets its settings.
            mtls("b", "a.example.com", "ca")
                .rule("b.example.com", "/", backend("web", 80))
                .created(2)
                .build(),
            ingress("default", "plain")
                .rule("plain.example.com", "/", backend("web", 80))
                .build(),
        ]),
        "default",
        "ca",
    );
    let out = run(&inputs);
    let table = &out.snapshot.client_auth;
    let a = table.lookup("a.example.com").unwrap();
    assert_eq!((a.mode, a.depth), (VerifyMode::Optional, 2));
    assert!(a.usable());
    assert_eq!(
        table.lookup("x.w.example.com").unwrap().key,
        a.key,
        "every host of the Ingress, wildcards too"
    );
    let b = table.lookup("b.example.com").unwrap();
    assert_eq!(b.mode, VerifyMode::On);
    assert_ne!(b.key, a.key);
    assert!(table.lookup("plain.example.com").is_none());
    let whys = invalid_annotation(&out, "auth-tls-secret");
    assert_eq!(whys.len(), 1, "{:?}", out.problems);
    assert!(whys[0].contains("default/a"), "{whys:?}");
    // The auth-tls keys are read, not refused as unsupported access control.
    assert!(served_by(&out, "a.example.com", "/").is_some());
    assert!(!reasons(&out)
        .iter()
        .any(|r| matches!(r, Reason::UnsupportedAccessControl { .. })));
}

#[test]
fn an_unusable_ca_fails_closed() {
    let mut inputs = world(vec![
        mtls("missing", "missing.example.com", "default/nope").build(),
        mtls("other-ns", "other.example.com", "kube-system/ca").build(),
        mtls("bad", "bad.example.com", "default/bad").build(),
        mtls("garbled", "garbled.example.com", "default/ca;x").build(),
        ingress("default", "no-secret")
            .rule("nosecret.example.com", "/", backend("web", 80))
            .annotation(&format!("{NGINX}/auth-tls-verify-client"), "on")
            .build(),
    ]);
    inputs = with_ca(inputs, "kube-system", "ca");
    Arc::make_mut(&mut inputs.ca_bundles).insert(
        ("default".into(), "bad".into()),
        Err("ca.crt: bad PEM".into()),
    );
    let out = run(&inputs);
    for host in [
        "missing.example.com",
        "other.example.com",
        "bad.example.com",
        "garbled.example.com",
        "nosecret.example.com",
    ] {
        let auth = out.snapshot.client_auth.lookup(host);
        assert!(
            auth.is_some_and(|a| !a.usable()),
            "{host} must refuse requests, not serve without client certificates"
        );
    }
    let whys = invalid_annotation(&out, "auth-tls-secret");
    assert!(
        whys.iter().any(|w| w.contains("does not exist")),
        "{whys:?}"
    );
    assert!(whys.iter().any(|w| w.contains("own namespace")), "{whys:?}");
    assert!(whys.iter().any(|w| w.contains("bad PEM")), "{whys:?}");
}

#[test]
fn off_means_no_client_auth() {
    let inputs = with_ca(
        world(vec![mtls("a", "a.example.com", "default/ca")
            .annotation(&format!("{NGINX}/auth-tls-verify-client"), "off")
            .build()]),
        "default",
        "ca",
    );
    let out = run(&inputs);
    assert!(out.snapshot.client_auth.is_empty());
    assert!(out.problems.is_empty(), "{:?}", out.problems);
}

#[test]
fn rules_without_host_are_not_served_unprotected() {
    let inputs = with_ca(
        world(vec![mtls("a", "a.example.com", "default/ca")
            .rule("", "/open", backend("api", 80))
            .build()]),
        "default",
        "ca",
    );
    let out = run(&inputs);
    assert_eq!(served_by(&out, "any.example.org", "/open"), None);
    assert!(served_by(&out, "a.example.com", "/").is_some());
    let whys = invalid_annotation(&out, "auth-tls-secret");
    assert!(whys[0].contains("without host"), "{whys:?}");
}

fn passthrough_ingresses() -> Vec<Arc<Ingress>> {
    vec![
        ingress("default", "pass")
            .rule("pass.example.com", "/", backend("api", 80))
            .rule("second.example.com", "/", backend("web", 80))
            .tls(&["pass.example.com"], Some("whatever"))
            .annotation(&format!("{NGINX}/ssl-passthrough"), "true")
            .created(1)
            .build(),
        ingress("default", "pass-again")
            .rule("pass.example.com", "/", backend("web", 80))
            .annotation(&format!("{NGINX}/ssl-passthrough"), "true")
            .created(2)
            .build(),
    ]
}

#[test]
fn passthrough_takes_the_first_rule_when_enabled() {
    let inputs = world(passthrough_ingresses());
    let opts = Options {
        enable_ssl_passthrough: true,
        ..options()
    };
    let out = translate(&inputs, &opts);
    let hosts = out.snapshot.passthrough.hosts();
    assert_eq!(hosts.len(), 1);
    let (host, target) = &hosts[0];
    assert_eq!(host.to_string(), "pass.example.com");
    assert_eq!(target.ingress, "default/pass");
    assert_eq!(
        target.backend.addresses(),
        &["10.0.0.2:9090".parse().unwrap()]
    );
    // No HTTP routes and no certificate from a passthrough Ingress.
    assert_eq!(served_by(&out, "pass.example.com", "/"), None);
    assert_eq!(served_by(&out, "second.example.com", "/"), None);
    assert!(out.snapshot.tls.hosts().is_empty());
    let whys = invalid_annotation(&out, "ssl-passthrough");
    assert_eq!(whys.len(), 1, "{:?}", out.problems);
    assert!(whys[0].contains("default/pass"), "{whys:?}");
}

#[test]
fn passthrough_is_off_by_default_and_reported() {
    let out = run(&world(passthrough_ingresses()));
    assert!(out.snapshot.passthrough.is_empty());
    assert!(served_by(&out, "pass.example.com", "/").is_some());
    let whys = invalid_annotation(&out, "ssl-passthrough");
    assert_eq!(whys.len(), 2);
    assert!(whys[0].contains("--enable-ssl-passthrough"));
}

#[test]
fn aliases_serve_like_their_host() {
    let inputs = with_certs(
        with_ca(
            world(vec![
                ingress("default", "site")
                    .rule("site.example.com", "/", backend("web", 80))
                    .rule("site.example.com", "/api", backend("api", 80))
                    .tls(&["site.example.com"], Some("site-tls"))
                    .annotation(
                        &format!("{NGINX}/server-alias"),
                        "www.site.example.com, alias.example.net, taken.example.com, *.site.example.org",
                    )
                    .annotation(&format!("{NGINX}/auth-tls-secret"), "default/ca")
                    .created(1)
                    .build(),
                ingress("default", "taken")
                    .rule("taken.example.com", "/", backend("api", 80))
                    .created(2)
                    .build(),
                ingress("default", "late")
                    .rule("late.example.com", "/", backend("api", 80))
                    .annotation(&format!("{NGINX}/server-alias"), "alias.example.net")
                    .created(3)
                    .build(),
            ]),
            "default",
            "ca",
        ),
        &[(
            "site-tls",
            Ok(cert(&["site.example.com", "www.site.example.com"])),
        )],
    );
    let out = run(&inputs);
    for alias in [
        "www.site.example.com",
        "alias.example.net",
        "x.site.example.org",
    ] {
        assert_eq!(
            served_by(&out, alias, "/").as_deref(),
            Some("web:80"),
            "{alias}"
        );
        assert_eq!(
            served_by(&out, alias, "/api").as_deref(),
            Some("api:80"),
            "{alias}"
        );
        assert!(
            out.snapshot.client_auth.lookup(alias).is_some(),
            "{alias} asks for client certificates like its host"
        );
    }
    // A real host wins over an alias; the older Ingress wins an alias.
    assert_eq!(
        served_by(&out, "taken.example.com", "/").as_deref(),
        Some("api:80")
    );
    let whys = invalid_annotation(&out, "server-alias");
    assert_eq!(whys.len(), 2, "{whys:?}");
    // The alias the Secret covers uses it; the others get the default certificate.
    let tls = &out.snapshot.tls;
    assert!(tls
        .resolve(Some("www.site.example.com"))
        .covers("www.site.example.com"));
    assert!(Arc::ptr_eq(
        tls.resolve(Some("alias.example.net")),
        tls.default_certificate()
    ));
    // Aliases of a TLS host redirect plain HTTP like it.
    let m = out.snapshot.routes.find("alias.example.net", "/").unwrap();
    assert!(m.target.redirect_https);
}
