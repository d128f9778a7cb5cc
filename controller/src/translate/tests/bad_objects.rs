//! Bad objects, one table: each gives a precise problem about the bad object and nothing else,
//! and every other route keeps serving.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use super::*;
use crate::problem::Problem;

/// A `kubernetes.io/tls` Secret holding exactly these bytes.
fn secret(ns: &str, name: &str, crt: &[u8], key: &[u8]) -> Arc<Secret> {
    let mut s = Secret::default();
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(name.into());
    s.type_ = Some("kubernetes.io/tls".into());
    s.data = Some(BTreeMap::from([
        ("tls.crt".to_string(), ByteString(crt.to_vec())),
        ("tls.key".to_string(), ByteString(key.to_vec())),
    ]));
    Arc::new(s)
}

/// PEM certificate and key for `names`, valid in the given years.
fn pem_pair(names: &[&str], years: Option<(i32, i32)>) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    if let Some((from, to)) = years {
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn valid_pair(names: &[&str]) -> (String, String) {
    pem_pair(names, Some((2020, 2090)))
}

struct Case {
    name: &'static str,
    /// The bad objects.
    add: Box<dyn Fn(&mut Inputs)>,
    /// The problem expected (the only one), by its object and reason.
    want: Box<dyn Fn(&Problem) -> bool>,
    /// A piece of the problem's message that makes it precise.
    message: &'static str,
    /// Host and path of the bad object that must still serve (with a fallback), if any.
    still_routed: Option<(&'static str, &'static str)>,
}

fn case(
    name: &'static str,
    add: impl Fn(&mut Inputs) + 'static,
    want: impl Fn(&Problem) -> bool + 'static,
    message: &'static str,
    still_routed: Option<(&'static str, &'static str)>,
) -> Case {
    Case {
        name,
        add: Box::new(add),
        want: Box::new(want),
        message,
        still_routed,
    }
}

fn on(p: &Problem, kind: &str, ns: &str, name: &str) -> bool {
    p.object.kind == kind && p.object.namespace == ns && p.object.name == name
}

/// An Ingress `bad` in `default` with a TLS entry for `host` naming `secret`, serving `host`.
fn tls_ingress(host: &str, secret: &str) -> Arc<Ingress> {
    ingress("default", "bad")
        .tls(&[host], Some(secret))
        .rule(host, "/", backend("web", 80))
        .build()
}

fn cases() -> Vec<Case> {
    let huge = "1".repeat(300_000);
    let huge_path = format!("/{}", "a".repeat(300_000));
    vec![
        case(
            "invalid PEM",
            |i| {
                i.ingresses.push(tls_ingress("pem.com", "s"));
                i.secrets.push(secret(
                    "default",
                    "s",
                    b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
                    b"-----BEGIN PRIVATE KEY-----\n@@@@\n-----END PRIVATE KEY-----\n",
                ));
            },
            |p| {
                on(p, "Ingress", "default", "bad")
                    && matches!(&p.reason, Reason::InvalidCertificate { secret, host, .. }
                        if secret == "default/s" && host == "pem.com")
            },
            "TLS Secret default/s is invalid",
            Some(("pem.com", "/")),
        ),
        case(
            "key of another certificate",
            |i| {
                let (crt, _) = valid_pair(&["mismatch.com"]);
                let (_, other_key) = valid_pair(&["mismatch.com"]);
                i.ingresses.push(tls_ingress("mismatch.com", "s"));
                i.secrets
                    .push(secret("default", "s", crt.as_bytes(), other_key.as_bytes()));
            },
            |p| {
                matches!(&p.reason, Reason::InvalidCertificate { error, host, .. }
                    if error.contains("does not match") && host == "mismatch.com")
            },
            "does not match the certificate",
            Some(("mismatch.com", "/")),
        ),
        case(
            "expired certificate",
            |i| {
                let (crt, key) = pem_pair(&["old.com"], Some((2000, 2001)));
                i.ingresses.push(tls_ingress("old.com", "s"));
                i.secrets
                    .push(secret("default", "s", crt.as_bytes(), key.as_bytes()));
            },
            |p| {
                matches!(&p.reason, Reason::CertificateExpired { secret, host }
                    if secret == "default/s" && host == "old.com")
            },
            "expired or not yet valid",
            Some(("old.com", "/")),
        ),
        case(
            "certificate for another host",
            |i| {
                let (crt, key) = valid_pair(&["someone-else.com"]);
                i.ingresses.push(tls_ingress("mine.com", "s"));
                i.secrets
                    .push(secret("default", "s", crt.as_bytes(), key.as_bytes()));
            },
            |p| {
                matches!(&p.reason, Reason::CertificateMismatch { secret, host }
                    if secret == "default/s" && host == "mine.com")
            },
            "does not cover mine.com",
            Some(("mine.com", "/")),
        ),
        case(
            "Secret in another namespace",
            |i| {
                let (crt, key) = valid_pair(&["team.com"]);
                i.secrets
                    .push(secret("default", "shared", crt.as_bytes(), key.as_bytes()));
                i.services
                    .push(service("team", "web", &[(Some("http"), 80)]));
                i.ingresses.push(
                    ingress("team", "bad")
                        .tls(&["team.com"], Some("shared"))
                        .rule("team.com", "/", backend("web", 80))
                        .build(),
                );
            },
            |p| {
                on(p, "Ingress", "team", "bad")
                    && matches!(&p.reason, Reason::SecretNotFound { secret, host }
                        if secret == "team/shared" && host == "team.com")
            },
            "TLS Secret team/shared not found",
            Some(("team.com", "/")),
        ),
        case(
            "huge annotation value that does not parse",
            move |i| {
                i.ingresses.push(
                    ingress("default", "bad")
                        .annotation("nginx.ingress.kubernetes.io/proxy-body-size", &huge)
                        .rule("huge.com", "/", backend("web", 80))
                        .build(),
                );
            },
            |p| {
                matches!(&p.reason, Reason::InvalidAnnotation { key, .. }
                    if key == "nginx.ingress.kubernetes.io/proxy-body-size")
            },
            "annotation nginx.ingress.kubernetes.io/proxy-body-size",
            Some(("huge.com", "/")),
        ),
        case(
            "huge annotation value that would parse",
            move |i| {
                i.ingresses.push(
                    ingress("default", "bad")
                        .annotation("nginx.ingress.kubernetes.io/app-root", &huge_path)
                        .rule("huge.com", "/", backend("web", 80))
                        .build(),
                );
            },
            |p| {
                matches!(&p.reason, Reason::InvalidAnnotation { key, why }
                    if key == "nginx.ingress.kubernetes.io/app-root" && why.contains("longer than"))
            },
            "longer than",
            Some(("huge.com", "/")),
        ),
        case(
            "huge host",
            |i| {
                let host = format!("{}.com", "a".repeat(300));
                i.ingresses.push(
                    ingress("default", "bad")
                        .rule(&host, "/", backend("web", 80))
                        .rule("sibling.com", "/", backend("web", 80))
                        .build(),
                );
            },
            |p| matches!(&p.reason, Reason::InvalidHost { .. }),
            "invalid host",
            Some(("sibling.com", "/")),
        ),
        case(
            "control characters in an annotation (header injection)",
            |i| {
                i.ingresses.push(
                    ingress("default", "bad")
                        .annotation(
                            "nginx.ingress.kubernetes.io/upstream-vhost",
                            "a.com\r\nX-Injected: 1",
                        )
                        .rule("ctl.com", "/", backend("web", 80))
                        .build(),
                );
            },
            |p| {
                matches!(&p.reason, Reason::InvalidAnnotation { key, .. }
                    if key == "nginx.ingress.kubernetes.io/upstream-vhost")
            },
            "upstream-vhost",
            Some(("ctl.com", "/")),
        ),
        case(
            "control characters in a host",
            |i| {
                i.ingresses.push(
                    ingress("default", "bad")
                        .rule("bell\u{7}.com", "/", backend("web", 80))
                        .rule("sibling.com", "/", backend("web", 80))
                        .build(),
                );
            },
            |p| matches!(&p.reason, Reason::InvalidHost { host, .. } if host.contains('\u{7}')),
            "invalid host",
            Some(("sibling.com", "/")),
        ),
        case(
            "control characters in a path",
            |i| {
                i.ingresses.push(
                    ingress("default", "bad")
                        .rule("ctl.com", "/a\nb", backend("web", 80))
                        .rule("ctl.com", "/ok", backend("web", 80))
                        .build(),
                );
            },
            |p| matches!(&p.reason, Reason::InvalidPath { path, .. } if path == "/a\nb"),
            "invalid path",
            Some(("ctl.com", "/ok")),
        ),
        case(
            "invalid regex",
            |i| {
                i.ingresses.push(
                    ingress("default", "bad")
                        .annotation("nginx.ingress.kubernetes.io/use-regex", "true")
                        .path(
                            "re.com",
                            "/(unclosed",
                            "ImplementationSpecific",
                            backend("web", 80),
                        )
                        .path(
                            "re.com",
                            "/ok",
                            "ImplementationSpecific",
                            backend("web", 80),
                        )
                        .build(),
                );
            },
            |p| matches!(&p.reason, Reason::InvalidPath { path, .. } if path == "/(unclosed"),
            "invalid path \"/(unclosed\"",
            Some(("re.com", "/ok")),
        ),
        case(
            "conflicting Ingresses",
            |i| {
                i.ingresses.push(
                    ingress("default", "first")
                        .created(1000)
                        .rule("both.com", "/", backend("web", 80))
                        .build(),
                );
                i.ingresses.push(
                    ingress("default", "bad")
                        .created(2000)
                        .rule("both.com", "/", backend("api", 80))
                        .build(),
                );
            },
            |p| {
                on(p, "Ingress", "default", "bad")
                    && matches!(&p.reason, Reason::PathConflict { winner, .. } if winner == "default/first")
            },
            "already served by Ingress default/first",
            Some(("both.com", "/")),
        ),
        case(
            "Service without ports",
            |i| {
                let mut s = (*service("default", "noports", &[])).clone();
                if let Some(spec) = s.spec.as_mut() {
                    spec.ports = None;
                }
                i.services.push(Arc::new(s));
                i.ingresses.push(
                    ingress("default", "bad")
                        .rule("np.com", "/", backend("noports", 80))
                        .rule("np.com", "/ok", backend("web", 80))
                        .build(),
                );
            },
            |p| {
                matches!(&p.reason, Reason::ServicePortNotFound { service, port }
                    if service == "default/noports" && port == "80")
            },
            "has no port 80",
            Some(("np.com", "/ok")),
        ),
        case(
            "EndpointSlice for a missing Service",
            |i| {
                i.endpoint_slices.push(slice(
                    "default",
                    "ghost-1",
                    "ghost",
                    "IPv4",
                    (Some("http"), 8080),
                    &[ready("10.0.0.9")],
                ));
                i.ingresses.push(
                    ingress("default", "bad")
                        .rule("ghost.com", "/", backend("ghost", 80))
                        .rule("ghost.com", "/ok", backend("web", 80))
                        .build(),
                );
            },
            |p| matches!(&p.reason, Reason::ServiceNotFound { service } if service == "default/ghost"),
            "Service default/ghost not found",
            Some(("ghost.com", "/ok")),
        ),
    ]
}

#[test]
fn each_bad_object_is_one_precise_problem_and_the_rest_serves() {
    let mut failures = Vec::new();
    for c in cases() {
        let mut inputs = world(vec![ingress("default", "good")
            .rule("good.com", "/", backend("web", 80))
            .build()]);
        (c.add)(&mut inputs);
        inputs.certificates = Arc::new(crate::inputs::tests::certificates_of(&inputs.secrets));
        let out = run(&inputs);
        let msgs: Vec<String> = out.problems.iter().map(|p| p.to_string()).collect();
        if out.problems.len() != 1 || !(c.want)(&out.problems[0]) {
            failures.push(format!("{}: problems {msgs:#?}", c.name));
            continue;
        }
        if !msgs[0].contains(c.message) {
            failures.push(format!(
                "{}: {:?} does not say {:?}",
                c.name, msgs[0], c.message
            ));
        }
        if served_by(&out, "good.com", "/").as_deref() != Some("web:80") {
            failures.push(format!(
                "{}: good.com no longer served: {:?}",
                c.name,
                hit(&out, "good.com", "/")
            ));
        }
        if let Some((host, path)) = c.still_routed {
            if hit(&out, host, path).is_none() {
                failures.push(format!("{}: {host}{path} is not routed", c.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
