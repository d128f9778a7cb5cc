//! Hosts (exact, wildcard, any) and path validation.

use super::*;

#[test]
fn wildcard_hosts_cover_one_label_and_exact_hosts_win() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("*.foo.com", "/", backend("web", 80))
        .rule("bar.foo.com", "/", backend("api", 80))
        .build()]));
    assert_eq!(
        served_by(&out, "baz.foo.com", "/").as_deref(),
        Some("web:80")
    );
    assert_eq!(
        served_by(&out, "bar.foo.com", "/").as_deref(),
        Some("api:80")
    );
    assert_eq!(served_by(&out, "foo.com", "/"), None);
    assert_eq!(served_by(&out, "a.baz.foo.com", "/"), None);
}

#[test]
fn implementation_specific_is_a_plain_string_prefix() {
    let out = run(&world(vec![ingress("default", "a")
        .path(
            "h.com",
            "/foo",
            "ImplementationSpecific",
            backend("web", 80),
        )
        .path("h.com", "", "ImplementationSpecific", backend("api", 80))
        .build()]));
    assert_eq!(
        served_by(&out, "h.com", "/foobar").as_deref(),
        Some("web:80")
    );
    assert_eq!(
        served_by(&out, "h.com", "/other").as_deref(),
        Some("api:80")
    );
}

#[test]
fn rules_for_one_host_merge_across_ingresses() {
    let out = run(&world(vec![
        ingress("default", "a")
            .rule("h.com", "/a", backend("web", 80))
            .build(),
        ingress("default", "b")
            .rule("h.com", "/b", backend("api", 80))
            .build(),
    ]));
    assert_eq!(
        hit(&out, "h.com", "/a"),
        Some(("a".into(), "web:80".into()))
    );
    assert_eq!(
        hit(&out, "h.com", "/b"),
        Some(("b".into(), "api:80".into()))
    );
    assert!(out.problems.is_empty(), "{:?}", out.problems);
}

#[test]
fn invalid_hosts_and_paths_are_problems_and_skipped() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("Bad_Host.com", "/", backend("web", 80))
        .rule("10.0.0.1", "/", backend("web", 80))
        .rule("ok.com", "no-slash", backend("web", 80))
        .path("ok.com", "/x", "Regex", backend("web", 80))
        .rule("ok.com", "/a;b", backend("web", 80))
        .rule("ok.com", "/fine", backend("web", 80))
        .build()]));
    let r = reasons(&out);
    assert_eq!(
        r.iter()
            .filter(|r| matches!(r, Reason::InvalidHost { .. }))
            .count(),
        2,
        "{r:?}"
    );
    assert_eq!(
        r.iter()
            .filter(|r| matches!(r, Reason::InvalidPath { .. }))
            .count(),
        2,
        "{r:?}"
    );
    assert!(r
        .iter()
        .any(|r| matches!(r, Reason::UnknownPathType(t) if t == "Regex")));
    assert_eq!(
        served_by(&out, "ok.com", "/fine").as_deref(),
        Some("web:80")
    );
    assert_eq!(out.snapshot.routes.route_count(), 1);
}

#[test]
fn a_missing_path_type_is_implementation_specific_without_a_problem() {
    let out = run(&world(vec![ingress("default", "a")
        .path("h.com", "/foo", "", backend("web", 80))
        .build()]));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(
        served_by(&out, "h.com", "/foobar").as_deref(),
        Some("web:80"),
        "a plain string prefix"
    );
}

#[test]
fn paths_kubernetes_refuses_are_problems_for_exact_and_prefix_only() {
    let out = run(&world(vec![ingress("default", "a")
        .path("h.com", "/a//b", "Prefix", backend("web", 80))
        .path("h.com", "/c/../d", "Exact", backend("web", 80))
        .path("h.com", "/e/.", "Prefix", backend("web", 80))
        .path("h.com", "/f%2fg", "Prefix", backend("web", 80))
        .path("h.com", "/has space", "Prefix", backend("web", 80))
        .path(
            "h.com",
            "/x//y",
            "ImplementationSpecific",
            backend("api", 80),
        )
        .build()]));
    let invalid: Vec<&str> = out
        .problems
        .iter()
        .filter_map(|p| match &p.reason {
            Reason::InvalidPath { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        invalid,
        vec!["/a//b", "/c/../d", "/e/.", "/f%2fg", "/has space"]
    );
    assert_eq!(out.snapshot.routes.route_count(), 1);
    assert_eq!(
        served_by(&out, "h.com", "/x//y/z").as_deref(),
        Some("api:80")
    );
}

#[test]
fn a_host_table_does_not_fall_through_to_hostless_rules() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("h.com", "/app", backend("web", 80))
        .rule("", "/", backend("api", 80))
        .build()]));
    assert_eq!(
        served_by(&out, "other.com", "/x").as_deref(),
        Some("api:80")
    );
    assert_eq!(served_by(&out, "h.com", "/app").as_deref(), Some("web:80"));
    assert_eq!(
        served_by(&out, "h.com", "/x"),
        None,
        "h.com's rules decide for h.com: 404, as ingress-nginx"
    );
}

#[test]
fn ip_addresses_and_misplaced_wildcards_are_invalid_hosts() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("010.0.0.1", "/", backend("web", 80))
        .rule("a.*.com", "/", backend("web", 80))
        .rule("*", "/", backend("web", 80))
        .rule("UPPER.com", "/", backend("web", 80))
        .build()]));
    assert_eq!(out.problems.len(), 4, "{:?}", out.problems);
    assert!(reasons(&out)
        .iter()
        .all(|r| matches!(r, Reason::InvalidHost { .. })));
    assert_eq!(out.snapshot.routes.route_count(), 0);
}

#[test]
fn the_longest_path_wins_across_ingresses_and_types() {
    let out = run(&world(vec![
        ingress("default", "a")
            .path("h.com", "/api", "Prefix", backend("web", 80))
            .build(),
        ingress("default", "b")
            .path(
                "h.com",
                "/api/v1",
                "ImplementationSpecific",
                backend("api", 80),
            )
            .path("h.com", "/api", "Exact", backend("api", 80))
            .build(),
    ]));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(
        hit(&out, "h.com", "/api").unwrap().0,
        "b",
        "Exact beats Prefix"
    );
    assert_eq!(hit(&out, "h.com", "/api/x").unwrap().0, "a");
    assert_eq!(hit(&out, "h.com", "/api/v1x").unwrap().0, "b");
}
