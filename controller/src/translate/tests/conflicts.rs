//! Conflicts between Ingresses, canaries and host ownership across namespaces.

use super::*;

#[test]
fn the_oldest_ingress_wins_a_path_and_the_loser_is_reported() {
    let out = run(&world(vec![
        ingress("default", "young")
            .created(2000)
            .rule("h.com", "/", backend("api", 80))
            .build(),
        ingress("default", "old")
            .created(1000)
            .rule("h.com", "/", backend("web", 80))
            .build(),
    ]));
    assert_eq!(
        hit(&out, "h.com", "/"),
        Some(("old".into(), "web:80".into()))
    );
    assert_eq!(out.problems.len(), 1);
    assert_eq!(out.problems[0].object.name, "young");
    assert!(
        matches!(&out.problems[0].reason, Reason::PathConflict { winner, .. } if winner == "default/old")
    );
}

#[test]
fn equal_age_breaks_ties_by_namespace_then_name() {
    let mut inputs = world(vec![
        ingress("default", "b")
            .rule("h.com", "/", backend("api", 80))
            .build(),
        ingress("default", "a")
            .rule("h.com", "/", backend("web", 80))
            .build(),
    ]);
    let out = run(&inputs);
    assert_eq!(hit(&out, "h.com", "/").unwrap().0, "a");
    inputs.ingresses.to_mut().reverse();
    assert_eq!(
        run(&inputs).problems,
        out.problems,
        "input order does not matter"
    );
}

#[test]
fn canaries_are_never_conflict_losers() {
    let out = run(&world(vec![
        ingress("default", "canary")
            .created(1000)
            .annotation("nginx.ingress.kubernetes.io/canary", "true")
            .rule("h.com", "/", backend("api", 80))
            .rule("h.com", "/only-canary", backend("api", 80))
            .build(),
        ingress("default", "main")
            .created(2000)
            .rule("h.com", "/", backend("web", 80))
            .build(),
    ]));
    assert_eq!(
        hit(&out, "h.com", "/"),
        Some(("main".into(), "web:80".into()))
    );
    assert_eq!(
        hit(&out, "h.com", "/only-canary"),
        Some(("canary".into(), "api:80".into()))
    );
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let canaries = out.snapshot.routes.find("h.com", "/").unwrap().canaries;
    assert_eq!(canaries.len(), 1);
    assert_eq!(canaries[0].target.ingress, "canary");
}

#[test]
fn the_first_namespace_owns_a_host() {
    let mut inputs = world(vec![
        ingress("team-a", "a")
            .created(1000)
            .rule("h.com", "/", backend("web", 80))
            .build(),
        ingress("team-b", "b")
            .created(2000)
            .rule("h.com", "/b", backend("web", 80))
            .build(),
    ]);
    let out = run(&inputs);
    assert_eq!(hit(&out, "h.com", "/b").unwrap().0, "a");
    assert!(
        matches!(
            reasons(&out)[..],
            [
                Reason::ServiceNotFound { .. },
                Reason::HostOwnedElsewhere { .. }
            ] | [
                Reason::HostOwnedElsewhere { .. },
                Reason::ServiceNotFound { .. }
            ]
        ),
        "{:?}",
        out.problems
    );

    let opts = Options {
        exclusive_host_namespaces: false,
        ..options()
    };
    inputs
        .services
        .push(service("team-b", "web", &[(None, 80)]));
    let out = translate(&inputs, &opts);
    assert_eq!(hit(&out, "h.com", "/b").unwrap().0, "b");
}

#[test]
fn an_ingress_without_creation_timestamp_counts_as_oldest() {
    // Manifest files carry no creationTimestamp: they come before anything the API stamped.
    let out = run(&world(vec![
        ingress("default", "a-stamped")
            .created(1000)
            .rule("h.com", "/", backend("api", 80))
            .build(),
        ingress("default", "z-manifest")
            .rule("h.com", "/", backend("web", 80))
            .build(),
    ]));
    assert_eq!(hit(&out, "h.com", "/").unwrap().0, "z-manifest");
    assert!(
        matches!(&out.problems[..], [p] if p.object.name == "a-stamped"),
        "{:?}",
        out.problems
    );
}

#[test]
fn prefix_paths_differing_by_a_trailing_slash_are_the_same_path() {
    let out = run(&world(vec![
        ingress("default", "a")
            .rule("h.com", "/foo", backend("web", 80))
            .build(),
        ingress("default", "b")
            .rule("h.com", "/foo/", backend("api", 80))
            .build(),
    ]));
    assert_eq!(hit(&out, "h.com", "/foo/x").unwrap().0, "a");
    assert!(
        matches!(&out.problems[..], [p] if p.object.name == "b"
            && matches!(&p.reason, Reason::PathConflict { winner, path_type, .. }
                if winner == "default/a" && path_type == "Prefix")),
        "{:?}",
        out.problems
    );
}

#[test]
fn the_same_path_with_another_type_is_not_a_conflict() {
    let out = run(&world(vec![
        ingress("default", "a")
            .path("h.com", "/foo", "Prefix", backend("web", 80))
            .build(),
        ingress("default", "b")
            .path("h.com", "/foo", "Exact", backend("api", 80))
            .path(
                "h.com",
                "/foo",
                "ImplementationSpecific",
                backend("api", 80),
            )
            .build(),
    ]));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(out.snapshot.routes.route_count(), 3);
}

#[test]
fn a_path_repeated_within_one_ingress_is_reported() {
    let out = run(&world(vec![ingress("default", "a")
        .rule("h.com", "/", backend("web", 80))
        .rule("h.com", "/", backend("api", 80))
        .build()]));
    assert_eq!(served_by(&out, "h.com", "/").as_deref(), Some("web:80"));
    assert!(matches!(reasons(&out)[..], [Reason::PathConflict { .. }]));
}

#[test]
fn canaries_join_the_primary_route_with_its_policy() {
    let out = run(&world(vec![
        ingress("default", "main")
            .annotation("nginx.ingress.kubernetes.io/proxy-read-timeout", "7")
            .rule("h.com", "/", backend("web", 80))
            .build(),
        ingress("default", "canary-a")
            .annotation("portico.dev/canary", "true")
            .annotation("nginx.ingress.kubernetes.io/canary-by-header", "X-Beta")
            .rule("h.com", "/", backend("api", 80))
            .build(),
        ingress("default", "canary-b")
            .annotation("nginx.ingress.kubernetes.io/canary", "true")
            .annotation("nginx.ingress.kubernetes.io/canary-weight", "25")
            .rule("h.com", "/", backend("web", 80))
            .build(),
    ]));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    let m = out.snapshot.routes.find("h.com", "/").unwrap();
    assert_eq!(m.target.ingress, "main");
    let names: Vec<&str> = m
        .canaries
        .iter()
        .map(|c| c.target.ingress.as_str())
        .collect();
    assert_eq!(names, ["canary-a", "canary-b"]);
    let a = &m.canaries[0];
    assert_eq!(a.header.as_ref().unwrap().name, "x-beta");
    assert_eq!(
        (a.weight, m.canaries[1].weight, m.canaries[1].total),
        (0, 25, 100)
    );
    for c in m.canaries {
        assert!(Arc::ptr_eq(&c.target.policy, &m.target.policy));
    }
    assert_eq!(
        m.target.policy.timeouts.read,
        Some(std::time::Duration::from_secs(7))
    );
}

#[test]
fn a_canary_without_a_primary_is_served_like_any_ingress() {
    let out = run(&world(vec![ingress("default", "canary")
        .annotation("nginx.ingress.kubernetes.io/canary", "true")
        .rule("h.com", "/", backend("api", 80))
        .build()]));
    assert!(out.problems.is_empty(), "{:?}", out.problems);
    assert_eq!(
        hit(&out, "h.com", "/"),
        Some(("canary".into(), "api:80".into()))
    );
}

#[test]
fn a_canary_annotation_other_than_true_is_no_canary() {
    let out = run(&world(vec![
        ingress("default", "a")
            .rule("h.com", "/", backend("web", 80))
            .build(),
        ingress("default", "b")
            .annotation("nginx.ingress.kubernetes.io/canary", "false")
            .rule("h.com", "/", backend("api", 80))
            .build(),
    ]));
    assert!(matches!(reasons(&out)[..], [Reason::PathConflict { .. }]));
}

#[test]
fn an_older_canary_in_another_namespace_does_not_own_the_host() {
    let mut inputs = world(vec![
        ingress("team-c", "canary")
            .created(1000)
            .annotation("portico.dev/canary", "true")
            .rule("h.com", "/", backend("web", 80))
            .build(),
        ingress("default", "main")
            .created(2000)
            .rule("h.com", "/", backend("web", 80))
            .build(),
    ]);
    inputs
        .services
        .push(service("team-c", "web", &[(Some("http"), 80)]));
    let out = run(&inputs);
    assert_eq!(hit(&out, "h.com", "/").unwrap().0, "main");
    assert!(
        matches!(&out.problems[..], [p] if p.object.namespace == "team-c"
            && matches!(p.reason, Reason::HostOwnedElsewhere { .. })),
        "{:?}",
        out.problems
    );
}

#[test]
fn ownership_covers_wildcards_hostless_rules_and_tls_hosts() {
    let inputs = world(vec![
        ingress("team-a", "a")
            .created(1000)
            .rule("*.foo.com", "/", backend("web", 80))
            .rule("", "/", backend("web", 80))
            .tls(&["tls-only.com"], None)
            .build(),
        ingress("team-b", "b")
            .created(2000)
            .rule("*.foo.com", "/b", backend("web", 80))
            .rule("", "/b", backend("web", 80))
            .rule("tls-only.com", "/b", backend("web", 80))
            .rule("x.foo.com", "/", backend("web", 80))
            .build(),
    ]);
    let out = run(&inputs);
    let owned: Vec<&str> = out
        .problems
        .iter()
        .filter_map(|p| match &p.reason {
            Reason::HostOwnedElsewhere { host, owner } if owner == "team-a" => Some(host.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(owned, vec!["*", "*.foo.com", "tls-only.com"]);
    // An exact host is its own host, even under another namespace's wildcard.
    assert_eq!(hit(&out, "x.foo.com", "/").unwrap().0, "b");
}

#[test]
fn without_exclusive_ownership_namespaces_share_a_host_and_conflicts_name_the_winner() {
    let mut inputs = world(vec![
        ingress("team-a", "a")
            .created(1000)
            .rule("h.com", "/", backend("web", 80))
            .build(),
        ingress("team-b", "b")
            .created(2000)
            .rule("h.com", "/", backend("web", 80))
            .rule("h.com", "/b", backend("web", 80))
            .build(),
    ]);
    for ns in ["team-a", "team-b"] {
        inputs.services.push(service(ns, "web", &[(None, 80)]));
    }
    let opts = Options {
        exclusive_host_namespaces: false,
        ..options()
    };
    let out = translate(&inputs, &opts);
    assert_eq!(hit(&out, "h.com", "/").unwrap().0, "a");
    assert_eq!(hit(&out, "h.com", "/b").unwrap().0, "b");
    assert!(
        matches!(&out.problems[..], [p] if matches!(&p.reason,
            Reason::PathConflict { winner, .. } if winner == "team-a/a")),
        "{:?}",
        out.problems
    );
}
