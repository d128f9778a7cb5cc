//! defaultBackend per host, per table, and the controller-wide default backend.

use super::*;

#[test]
fn default_backends() {
    let out = run(&world(vec![
        ingress("default", "site")
            .created(1000)
            .rule("h.com", "/app", backend("web", 80))
            .default_backend(backend("api", 80))
            .build(),
        ingress("default", "catchall")
            .created(2000)
            .default_backend(backend("web", 80))
            .build(),
    ]));
    // The host's own fallback, then the oldest defaultBackend for everything else.
    assert_eq!(served_by(&out, "h.com", "/app").as_deref(), Some("web:80"));
    assert_eq!(
        served_by(&out, "h.com", "/other").as_deref(),
        Some("api:80")
    );
    assert_eq!(served_by(&out, "other.com", "/").as_deref(), Some("api:80"));
    assert!(matches!(
        reasons(&out)[..],
        [Reason::DefaultBackendConflict { .. }]
    ));

    let out = run(&world(vec![ingress("default", "site")
        .rule("h.com", "/app", backend("web", 80))
        .build()]));
    assert_eq!(
        served_by(&out, "other.com", "/"),
        None,
        "404 without any default"
    );
    let opts = Options {
        default_backend_service: Some(("default".into(), "api".into())),
        ..options()
    };
    let out = translate(&world(vec![]), &opts);
    assert_eq!(served_by(&out, "other.com", "/").as_deref(), Some("api:80"));
}

#[test]
fn the_oldest_ingress_gives_a_host_its_fallback() {
    let out = run(&world(vec![
        ingress("default", "young")
            .created(2000)
            .rule("h.com", "/b", backend("web", 80))
            .default_backend(backend("web", 80))
            .build(),
        ingress("default", "old")
            .created(1000)
            .rule("h.com", "/a", backend("web", 80))
            .default_backend(backend("api", 80))
            .build(),
    ]));
    assert_eq!(hit(&out, "h.com", "/zzz").unwrap().0, "old");
    assert_eq!(served_by(&out, "h.com", "/zzz").as_deref(), Some("api:80"));
}

#[test]
fn a_rule_with_a_host_and_no_paths_sends_the_host_to_the_default_backend() {
    let mut b = ingress("default", "a").default_backend(backend("api", 80));
    b.spec().rules.get_or_insert_with(Vec::new).push(
        k8s_openapi::api::networking::v1::IngressRule {
            host: Some("h.com".into()),
            http: None,
        },
    );
    let out = run(&world(vec![b.build()]));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(served_by(&out, "h.com", "/x").as_deref(), Some("api:80"));
}

#[test]
fn a_default_backend_with_a_missing_service_still_answers_503() {
    let out = run(&world(vec![ingress("default", "catchall")
        .default_backend(backend("gone", 80))
        .build()]));
    let t = out.snapshot.routes.find("any.com", "/").unwrap().target;
    assert!(t.backend.addresses().is_empty());
    assert!(matches!(
        reasons(&out)[..],
        [Reason::ServiceNotFound { .. }]
    ));
}

#[test]
fn an_ingress_default_backend_beats_the_controller_wide_one() {
    let opts = Options {
        default_backend_service: Some(("default".into(), "web".into())),
        ..options()
    };
    let out = translate(
        &world(vec![ingress("default", "catchall")
            .default_backend(backend("api", 80))
            .build()]),
        &opts,
    );
    assert_eq!(served_by(&out, "x.com", "/").as_deref(), Some("api:80"));
}

#[test]
fn a_missing_controller_wide_default_backend_is_reported() {
    let opts = Options {
        default_backend_service: Some(("kube-system".into(), "nope".into())),
        ..options()
    };
    let out = translate(&world(vec![]), &opts);
    assert!(out.snapshot.routes.default.is_none(), "404 then");
    assert!(
        matches!(&out.problems[..], [p] if p.object.kind == "Service"
            && p.object.name == "nope"
            && matches!(p.reason, Reason::DefaultBackendService { .. })),
        "{:?}",
        out.problems
    );
}
